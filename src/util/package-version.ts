/** An installed package's version, found from one of its modules. */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * The version in the nearest package.json above `modulePath` that names
 * `name`; undefined when there is none. Read this way because a package's
 * `exports` may not list its package.json (sharp's does not).
 */
export function installedPackageVersion(modulePath: string, name: string): string | undefined {
  for (let folder = dirname(modulePath); folder !== dirname(folder); folder = dirname(folder)) {
    const manifest = readManifest(join(folder, 'package.json'));
    if (manifest?.name === name) return typeof manifest.version === 'string' ? manifest.version : undefined;
  }
  return undefined;
}

function readManifest(path: string): { name?: unknown; version?: unknown } | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as { name?: unknown; version?: unknown };
  } catch {
    return undefined;
  }
}
