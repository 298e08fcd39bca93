/**
 * The model zoo: named models with their metadata, downloaded once into a
 * cache. The origin can be replaced with CAMVIZ_ZOO_URL (a base URL, or a
 * local folder with the same `<name>/model.json` layout) so that offline
 * machines and tests can serve their own copies.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CamvizError } from '../util/errors.js';
import { sha256Hex } from './io.js';
import type { CamvizJson } from './metadata.js';

export interface ZooEntry {
  name: string;
  description: string;
  /** sha256 of model.json, checked after download when known. */
  sha256?: string;
  metadata: CamvizJson;
  /** For models shipped inside the package: the folder, relative to the package root. */
  embedded?: string;
}

export const DEFAULT_ZOO_URL = 'https://storage.googleapis.com/tfjs-models/tfjs/';
export const DEFAULT_MODEL = 'mobilenet_v1_0.75_224';

const mobilenetV1 = (alpha: string, sha256?: string): ZooEntry => ({
  name: `mobilenet_v1_${alpha}_224`,
  description: `MobileNet v1, width ${alpha}, 224x224, ImageNet (TF.js layers artifact, Apache-2.0)`,
  ...(sha256 === undefined ? {} : { sha256 }),
  metadata: {
    name: `mobilenet_v1_${alpha}_224`,
    preprocess: 'tf',
    inputSize: 224,
    labels: 'imagenet',
    scoreLayer: 'conv_preds',
    targetLayer: 'conv_pw_13_relu',
  },
});

export const ZOO: readonly ZooEntry[] = [
  mobilenetV1('0.25'),
  mobilenetV1('0.50'),
  mobilenetV1('0.75', 'a74c25424bd9939b1c245a58da417e35d1ca16f0b009490a1c44b43d982600d9'),
  mobilenetV1('1.0'),
  {
    name: 'shapes',
    description: 'camviz\'s embedded model: 5 synthetic shape classes, trained by `npm run train:shapes`',
    metadata: {},
    embedded: 'models/shapes',
  },
];

export function zooEntry(name: string): ZooEntry | undefined {
  return ZOO.find((entry) => entry.name === name);
}

/** Zoo metadata for a model.json that is byte-identical to a zoo model's. */
export function knownModelBySha256(sha256: string): ZooEntry | undefined {
  return ZOO.find((entry) => entry.sha256 === sha256);
}

/** The package root (holds package.json and models/). */
export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** CAMVIZ_CACHE, else $XDG_CACHE_HOME/camviz, else ~/.cache/camviz. */
export function cacheRoot(): string {
  const explicit = process.env['CAMVIZ_CACHE'];
  if (explicit) return resolve(explicit);
  const xdg = process.env['XDG_CACHE_HOME'];
  return join(xdg ? resolve(xdg) : join(homedir(), '.cache'), 'camviz');
}

export function zooOrigin(): { kind: 'url'; base: URL } | { kind: 'folder'; path: string } {
  const configured = process.env['CAMVIZ_ZOO_URL'] || DEFAULT_ZOO_URL;
  if (/^https?:\/\//i.test(configured)) {
    return { kind: 'url', base: new URL(configured.endsWith('/') ? configured : `${configured}/`) };
  }
  const path = configured.startsWith('file:') ? fileURLToPath(configured) : resolve(configured);
  return { kind: 'folder', path };
}

export interface FetchLog {
  (message: string): void;
}

/** The local model.json of a zoo entry, downloading it into the cache if needed. */
export async function zooModelJson(entry: ZooEntry, log?: FetchLog): Promise<string> {
  if (entry.embedded !== undefined) return join(packageRoot, entry.embedded, 'model.json');
  const origin = zooOrigin();
  if (origin.kind === 'folder') return join(origin.path, entry.name, 'model.json');
  const folder = join(cacheRoot(), 'zoo', entry.name);
  if (existsSync(join(folder, 'model.json'))) return join(folder, 'model.json');
  const url = new URL(`${entry.name}/model.json`, origin.base);
  try {
    await downloadModel(url, folder, entry.sha256, log);
  } catch (error) {
    if (error instanceof CamvizError) throw error;
    throw new CamvizError(
      `model '${entry.name}' is not cached and could not be downloaded (${(error as Error).message}); ` +
        `without network access, use --model shapes (built in) or a local model folder`,
      { file: url.href },
    );
  }
  return join(folder, 'model.json');
}

/** The local model.json of a model at an http(s) URL, downloading it once. */
export async function urlModelJson(href: string, log?: FetchLog): Promise<string> {
  const url = new URL(href.endsWith('.json') ? href : `${href.replace(/\/?$/, '/')}model.json`);
  const folder = join(cacheRoot(), 'url', sha256Hex(Buffer.from(url.href)).slice(0, 24));
  if (existsSync(join(folder, 'model.json'))) return join(folder, 'model.json');
  try {
    await downloadModel(url, folder, undefined, log);
  } catch (error) {
    if (error instanceof CamvizError) throw error;
    throw new CamvizError(`could not download the model (${(error as Error).message})`, { file: url.href });
  }
  return join(folder, 'model.json');
}

/**
 * Downloads model.json and its weight files into `folder`, atomically: all
 * files go into a temporary folder beside it, renamed into place at the end,
 * so an interrupted download never leaves a half-written model behind.
 */
async function downloadModel(modelJsonUrl: URL, folder: string, sha256: string | undefined, log?: FetchLog): Promise<void> {
  const modelJsonBytes = await fetchBytes(modelJsonUrl);
  if (sha256 !== undefined && sha256Hex(modelJsonBytes) !== sha256) {
    throw new CamvizError('downloaded model.json does not match the zoo\'s sha256', { file: modelJsonUrl.href });
  }
  const weightPaths = weightPathsOf(modelJsonBytes, modelJsonUrl.href);
  // Said once the origin answers, so that an offline run prints its one error line alone.
  log?.(`downloading ${modelJsonUrl.href} and ${weightPaths.length} weight file${weightPaths.length === 1 ? '' : 's'}`);
  const temp = `${folder}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await mkdir(temp, { recursive: true });
  try {
    for (const path of weightPaths) {
      const bytes = await fetchBytes(new URL(path, modelJsonUrl));
      await mkdir(dirname(join(temp, path)), { recursive: true });
      await writeFile(join(temp, path), bytes);
    }
    await writeFile(join(temp, 'model.json'), modelJsonBytes);
    await mkdir(dirname(folder), { recursive: true });
    try {
      await rename(temp, folder);
    } catch (error) {
      // Another process finished the same download first: keep theirs.
      if (!existsSync(join(folder, 'model.json'))) throw error;
    }
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}

function weightPathsOf(modelJsonBytes: Buffer, file: string): string[] {
  let manifest: unknown;
  try {
    manifest = (JSON.parse(modelJsonBytes.toString('utf8')) as { weightsManifest?: unknown }).weightsManifest;
  } catch (error) {
    throw new CamvizError(`model.json is not valid JSON: ${(error as Error).message}`, { file });
  }
  if (!Array.isArray(manifest)) throw new CamvizError('model.json has no weightsManifest', { file });
  const paths = manifest.flatMap((group) => ((group as { paths?: unknown }).paths as unknown[]) ?? []);
  for (const path of paths) {
    if (typeof path !== 'string' || path.includes('..') || path.startsWith('/') || /^[a-z]+:/i.test(path) || path.includes('\\')) {
      throw new CamvizError(`weight path '${String(path)}' leaves the model folder: refused`, { file });
    }
  }
  return paths as string[];
}

async function fetchBytes(url: URL): Promise<Buffer> {
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(120_000) });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(`${url.host}: ${cause?.code ?? cause?.message ?? (error as Error).message}`);
  }
  if (!response.ok) throw new Error(`${url.href}: HTTP ${response.status} ${response.statusText}`);
  return Buffer.from(await response.arrayBuffer());
}
