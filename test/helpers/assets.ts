/**
 * The shared, read-only reference assets (real models, photos, labels) live
 * outside the repository. Tests find them here and skip with a reason when
 * they are absent (a fresh clone elsewhere).
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (tests run from dist/test/...). */
export const repoRoot = findRepoRoot(dirname(fileURLToPath(import.meta.url)));

function findRepoRoot(start: string): string {
  let dir = start;
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${start}`);
    dir = parent;
  }
  return dir;
}

/** `CAMVIZ_SHARED_ASSETS`, else `../shared/assets` beside the repository. */
export const sharedAssetsDir = resolve(process.env['CAMVIZ_SHARED_ASSETS'] ?? join(repoRoot, '..', 'shared', 'assets'));

export const haveSharedAssets = existsSync(join(sharedAssetsDir, 'models', 'mobilenet_v1_0.75_224', 'model.json'));

/** Pass as the `skip` option of a test that needs the shared assets. */
export const skipWithoutSharedAssets: string | false = haveSharedAssets
  ? false
  : `shared assets not found at ${sharedAssetsDir} (set CAMVIZ_SHARED_ASSETS)`;

export const asset = (...parts: string[]): string => join(sharedAssetsDir, ...parts);
export const mobilenetDir = asset('models', 'mobilenet_v1_0.75_224');
export const darknetDir = asset('models', 'darknet_tiny');
export const imagePath = (name: string): string => asset('images', name);
