/**
 * The model zoo: named models with their metadata, downloaded once into a
 * cache. The origin can be replaced with CAMVIZ_ZOO_URL (a base URL, or a
 * local folder with the same `<name>/model.json` layout) so that offline
 * machines and tests can serve their own copies.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheRoot } from '../util/cache-root.js';
import { CamvizError } from '../util/errors.js';
import { readRegularFile } from '../util/read-whole-file.js';
import { type DownloadOptions, type FetchLog, downloadModel, downloadModelFile } from './download.js';
import { type ModelJson, expectedGroupBytes, parseModelJson, pathInside } from './io.js';
import { sha256Hex } from '../util/sha256.js';
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

// Defined below the model layer (the engine's code cache lives there too); exported here as before.
export { cacheRoot };

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

export function zooOrigin(): { kind: 'url'; base: URL } | { kind: 'folder'; path: string } {
  const configured = process.env['CAMVIZ_ZOO_URL'] || DEFAULT_ZOO_URL;
  if (/^https?:\/\//i.test(configured)) {
    return { kind: 'url', base: new URL(configured.endsWith('/') ? configured : `${configured}/`) };
  }
  const path = configured.startsWith('file:') ? fileURLToPath(configured) : resolve(configured);
  return { kind: 'folder', path };
}

export type { FetchLog } from './download.js';

/** Where a zoo entry's model.json is, or will be once downloaded: the embedded copy, the zoo folder's, or the download cache's. */
export function zooModelJsonPath(entry: ZooEntry): string {
  if (entry.embedded !== undefined) return join(packageRoot, entry.embedded, 'model.json');
  const origin = zooOrigin();
  return join(origin.kind === 'folder' ? origin.path : join(cacheRoot(), 'zoo'), entry.name, 'model.json');
}

/** The local model.json of a zoo entry, downloading it into the cache if needed. */
export async function zooModelJson(entry: ZooEntry, log?: FetchLog): Promise<string> {
  const origin = zooOrigin();
  if (entry.embedded !== undefined || origin.kind === 'folder') return zooModelJsonPath(entry);
  const url = new URL(`${entry.name}/model.json`, origin.base);
  const folder = dirname(zooModelJsonPath(entry));
  const options = { ...(entry.sha256 === undefined ? {} : { sha256: entry.sha256 }), ...(log === undefined ? {} : { log }) };
  try {
    return await cachedModel(entry.name, url, folder, options);
  } catch (error) {
    if (error instanceof CamvizError) throw error;
    throw new CamvizError(
      `model '${entry.name}' is not cached and could not be downloaded (${(error as Error).message}); ` +
        `without network access, use --model shapes (built in), a local model folder, ` +
        `or set CAMVIZ_ZOO_URL to a mirror URL or a local folder of <name>/model.json`,
      { file: url.href },
    );
  }
}

/** The local model.json of a model at an http(s) URL, downloading it once (with its camviz.json, if any). */
export async function urlModelJson(href: string, log?: FetchLog): Promise<string> {
  const url = new URL(href.endsWith('.json') ? href : `${href.replace(/\/?$/, '/')}model.json`);
  const folder = join(cacheRoot(), 'url', sha256Hex(Buffer.from(url.href)).slice(0, 24));
  try {
    return await cachedModel(url.href, url, folder, { withCamvizJson: true, ...(log === undefined ? {} : { log }) });
  } catch (error) {
    if (error instanceof CamvizError) throw error;
    throw new CamvizError(`could not download the model (${(error as Error).message})`, { file: url.href });
  }
}

/**
 * The local copy of an ONNX model at an http(s) URL, downloaded once (with
 * its camviz.json, if any). `check` refuses a body that is not an ONNX
 * model before it is cached; a cached copy is used as it is.
 */
export async function urlOnnxFile(href: string, check: (path: string) => Promise<void>, log?: FetchLog): Promise<string> {
  const url = new URL(href);
  const folder = join(cacheRoot(), 'url', sha256Hex(Buffer.from(url.href)).slice(0, 24));
  const path = join(folder, 'model.onnx');
  if (existsSync(path)) return path;
  try {
    await downloadModelFile(url, folder, 'model.onnx', check, log);
  } catch (error) {
    if (error instanceof CamvizError) throw error;
    throw new CamvizError(`could not download the model (${(error as Error).message})`, { file: url.href });
  }
  return path;
}

/**
 * The cached model.json in `folder`, downloaded first when there is none.
 * A cached entry that no longer matches its manifest (a file missing or of
 * another size, model.json unreadable or changed) is discarded and
 * downloaded again, saying so: otherwise one bad copy would fail every run.
 */
async function cachedModel(name: string, url: URL, folder: string, options: DownloadOptions): Promise<string> {
  const modelJsonPath = join(folder, 'model.json');
  if (existsSync(folder)) {
    const damage = await damageOf(folder, options.sha256);
    if (damage === undefined) return modelJsonPath;
    options.log?.(`cached model ${name} is damaged (${damage}); downloading again`);
    await discard(folder);
  }
  await downloadModel(url, folder, options);
  return modelJsonPath;
}

/** Why a cached model folder is not what its model.json describes, or undefined when it is. */
async function damageOf(folder: string, sha256?: string): Promise<string | undefined> {
  const modelJsonPath = join(folder, 'model.json');
  let modelJson: ModelJson;
  try {
    const { bytes } = await readRegularFile(modelJsonPath);
    if (sha256 !== undefined && sha256Hex(bytes) !== sha256) return 'model.json does not match the zoo\'s sha256';
    modelJson = parseModelJson(bytes, modelJsonPath);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === undefined ? (error as Error).message : `model.json unreadable: ${code}`;
  }
  for (const group of modelJson.weightsManifest) {
    let size = 0;
    for (const path of group.paths) {
      const file = pathInside(folder, path);
      const info = file === undefined ? undefined : await stat(file).catch(() => undefined);
      if (!info?.isFile()) return `${path} is missing`;
      size += info.size;
    }
    const expected = expectedGroupBytes(group.weights);
    if (expected !== undefined && size !== expected) return `${group.paths.join(', ')}: ${size} bytes, the weightsManifest declares ${expected}`;
  }
  return undefined;
}

/** Removes a damaged cache folder: renamed away first, so no process sees it half-deleted. */
async function discard(folder: string): Promise<void> {
  const away = `${folder}.damaged.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await rename(folder, away);
  } catch (error) {
    // Another process discarded it first.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  await rm(away, { recursive: true, force: true });
}
