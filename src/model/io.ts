/**
 * Reading TF.js model artifacts from disk with our own IO handler: weight
 * paths are confined to the model's folder (by name, and by real path once
 * symbolic links are followed), and a missing, short or oversized weight
 * file is a clear error naming that file (tfjs's own handlers would read
 * past the end or fail with a generic message).
 */
import { sha256Hex } from '../util/sha256.js';
import { realpath, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import type * as tf from '../engine/tf.js';
import { minimumWeightBytes, storedWeightBytes } from '../engine/weight-bytes.js';
import { CamvizError } from '../util/errors.js';
import { ReadsAhead } from '../util/reads-ahead.js';
import { MAX_FILE_BYTES, isNotRegularFileCode, openRegularFile, readFromStart, readRegularFile } from '../util/read-whole-file.js';
import { checkTopologyAgainstManifest } from './topology-check.js';
import type { FileIdentity } from '../util/file-identity.js';
import { unchangedIdentity } from './file-fingerprints.js';
import { isInsideFolder, realPathInside } from '../util/inside-folder.js';

type ModelArtifacts = tf.io.ModelArtifacts;
type WeightsManifestEntry = tf.io.WeightsManifestEntry;

interface WeightsGroup {
  paths: string[];
  weights: WeightsManifestEntry[];
}

export interface ModelJson {
  modelTopology: Record<string, unknown>;
  weightsManifest: WeightsGroup[];
  format?: string;
  generatedBy?: string;
  convertedBy?: string | null;
  signature?: Record<string, unknown>;
  userDefinedMetadata?: Record<string, unknown>;
  modelInitializer?: Record<string, unknown>;
}

export interface LocalModelFiles {
  /** Absolute path of model.json. */
  modelJsonPath: string;
  /** The folder the weights must stay in. */
  folder: string;
  modelJson: ModelJson;
  /**
   * The model's identity, hex: the sha256 of model.json's bytes (of a Keras
   * file's: ./keras/load.ts), what the manifest records.
   */
  sha256: string;
  artifacts: ModelArtifacts;
  /**
   * What was read: model.json's identity, then every weight file's in
   * manifest order (file-fingerprints.ts); absent for a Keras file, and
   * when a file is on a file system that may not keep change times or
   * changed while it was read (unchangedIdentity).
   */
  identities?: readonly FileIdentity[];
  /** With `identities`: each file's path as it was read (absolute, links not resolved). */
  usedPaths?: readonly string[];
}

/**
 * A TF.js layers model's files as they were read, and the tensors of its
 * weights as loaded from them: a weight written since (setWeights) has
 * another tensor, and then the files no longer say what the model is.
 */
export interface ModelSourceFiles {
  readonly identities: readonly FileIdentity[];
  /** Each file's path as the load used it (absolute, links not resolved), in the order of `identities`. */
  readonly usedPaths: readonly string[];
  /** The dataId of each of the model's weights (LayersModel.weights, in order) when loaded. */
  readonly weightIds: readonly object[];
}

/**
 * The largest model.json camviz reads, downloaded or local: it is parsed
 * whole (a 300 MB file took over 1 GB), and real ones, graph models' whole
 * graphs included, are a few MB.
 */
export const MODEL_JSON_LIMIT = 64 * 2 ** 20;

/** Accepts a model folder or the path of its model.json. */
export async function resolveModelJsonPath(path: string): Promise<string> {
  const absolute = resolve(path);
  const info = await stat(absolute).catch(() => undefined);
  if (info === undefined) throw new CamvizError('model not found', { file: path });
  if (info.isDirectory()) {
    const candidate = join(absolute, 'model.json');
    if (!(await stat(candidate).catch(() => undefined))?.isFile()) {
      throw new CamvizError('model folder has neither model.json (TF.js) nor model.onnx', { file: path });
    }
    return candidate;
  }
  return absolute;
}

/** Model files being read ahead of their load (`readModelAhead`), by the absolute path of the spec given. */
const readsAhead = new ReadsAhead<LocalModelFiles>();

/**
 * Starts reading the TF.js model at `path` (a folder with model.json, or a
 * .json file), if it is one, for a later readLocalModel of the same path.
 * The command line calls it before the command's modules load: importing
 * tfjs and sharp holds the main thread about 0.5 s, while the files (10 MB
 * for MobileNet v1, and their page faults) are read on libuv's threads.
 * A read that fails is made again, and reported, by that readLocalModel.
 * The promise returned settles (never rejects) when the read ends.
 */
export function readModelAhead(path: string): Promise<void> {
  const key = resolve(path);
  return readsAhead.start(key, async () => ((await isTfjsModelPath(key)) ? readLocalModelNow(path) : undefined));
}

async function isTfjsModelPath(path: string): Promise<boolean> {
  const info = await stat(path).catch(() => undefined);
  if (info?.isFile() === true) return path.endsWith('.json');
  return info?.isDirectory() === true && (await stat(join(path, 'model.json')).catch(() => undefined))?.isFile() === true;
}

export async function readLocalModel(path: string): Promise<LocalModelFiles> {
  return (await readsAhead.take(resolve(path))) ?? readLocalModelNow(path);
}

async function readLocalModelNow(path: string): Promise<LocalModelFiles> {
  const modelJsonPath = await resolveModelJsonPath(path);
  const folder = dirname(modelJsonPath);
  const realJsonPath = await realpath(modelJsonPath);
  // Checked a regular file through the descriptor read, opened without waiting (O_NONBLOCK): a FIFO or a device, even one swapped in after the
  // lookup, is refused, not read without end. Its stats are taken before the read: a file written after it has another change time.
  const { bytes, stats } = await readRegularFile(realJsonPath, MODEL_JSON_LIMIT).catch((error: unknown) => {
    const code = (error as NodeJS.ErrnoException).code;
    if (isNotRegularFileCode(code)) throw new CamvizError('the model file is not a regular file: refused', { file: modelJsonPath });
    if (code === 'ERR_FS_FILE_TOO_LARGE') throw new CamvizError(`model.json is over the ${MODEL_JSON_LIMIT / 2 ** 20} MiB camviz reads: refused`, { file: modelJsonPath });
    throw new CamvizError(`model.json unreadable (${code ?? (error as Error).message})`, { file: modelJsonPath });
  });
  const jsonIdentity = unchangedIdentity(realJsonPath, stats);
  const modelJson = parseModelJson(bytes, modelJsonPath);
  // Before tfjs builds anything: building allocates every declared variable.
  checkTopologyAgainstManifest(modelJson, modelJsonPath);
  const { weightSpecs, weightData, identities, paths } = await readWeights(modelJson.weightsManifest, folder, modelJsonPath);
  const artifacts: ModelArtifacts = {
    modelTopology: modelJson.modelTopology,
    weightSpecs,
    weightData,
    ...(modelJson.format === undefined ? {} : { format: modelJson.format }),
    ...(modelJson.generatedBy === undefined ? {} : { generatedBy: modelJson.generatedBy }),
    ...(modelJson.convertedBy === undefined ? {} : { convertedBy: modelJson.convertedBy }),
    ...(modelJson.signature === undefined ? {} : { signature: modelJson.signature }),
    ...(modelJson.userDefinedMetadata === undefined ? {} : { userDefinedMetadata: modelJson.userDefinedMetadata as Record<string, {}> }),
    ...(modelJson.modelInitializer === undefined ? {} : { modelInitializer: modelJson.modelInitializer }),
  };
  // Identities of every file, each unchanged by the end of its read, or none: the model is then hashed.
  const everyIdentity = [await jsonIdentity, ...identities];
  const known = everyIdentity.every((identity) => identity !== undefined);
  const usedPaths = [resolve(modelJsonPath), ...paths.map((path) => resolve(path))];
  return { modelJsonPath, folder, modelJson, sha256: sha256Hex(bytes), artifacts, ...(known ? { identities: everyIdentity as FileIdentity[], usedPaths } : {}) };
}


/** model.json's bytes as a TF.js model description, or a one-line error naming `file`. */
export function parseModelJson(bytes: Buffer, file: string): ModelJson {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new CamvizError(`model.json is not valid JSON: ${(error as Error).message}`, { file });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new CamvizError('model.json is not a JSON object', { file });
  }
  const record = parsed as Record<string, unknown>;
  const topology = record['modelTopology'];
  if (typeof topology !== 'object' || topology === null) {
    throw new CamvizError('model.json has no modelTopology: not a TF.js model', { file });
  }
  const manifest = record['weightsManifest'] ?? [];
  if (!Array.isArray(manifest) || !manifest.every(isWeightsGroup)) {
    throw new CamvizError('model.json has a malformed weightsManifest', { file });
  }
  return { ...(record as Partial<ModelJson>), modelTopology: topology as Record<string, unknown>, weightsManifest: manifest };
}

function isWeightsGroup(value: unknown): value is WeightsGroup {
  if (typeof value !== 'object' || value === null) return false;
  const group = value as Record<string, unknown>;
  return (
    Array.isArray(group['paths']) &&
    group['paths'].every((path) => typeof path === 'string') &&
    Array.isArray(group['weights']) &&
    group['weights'].every(isWeightEntry)
  );
}

function isWeightEntry(value: unknown): value is WeightsManifestEntry {
  if (typeof value !== 'object' || value === null) return false;
  const entry = value as Record<string, unknown>;
  return (
    typeof entry['name'] === 'string' &&
    typeof entry['dtype'] === 'string' &&
    Array.isArray(entry['shape']) &&
    entry['shape'].every((dim) => Number.isInteger(dim) && (dim as number) >= 0)
  );
}

/** `path` resolved in `folder` when, by its name, it stays inside it; else undefined. */
export function pathInside(folder: string, path: string): string | undefined {
  const full = resolve(folder, path);
  return isAbsolute(path) || !isInsideFolder(folder, full) ? undefined : full;
}

/** A weight path that stays inside `folder`, or an error. */
export function confinedWeightPath(folder: string, path: string, modelJsonPath: string): string {
  const full = pathInside(folder, path);
  if (full === undefined) throw new CamvizError(`weight path '${path}' leaves the model folder: refused`, { file: modelJsonPath });
  return full;
}

async function readWeights(
  groups: WeightsGroup[],
  folder: string,
  // The file the manifest came from, which need not be called model.json.
  modelJsonPath: string,
): Promise<{ weightSpecs: WeightsManifestEntry[]; weightData: ArrayBuffer[]; identities: (FileIdentity | undefined)[]; paths: string[] }> {
  const realFolder = await realpath(folder);
  // All groups at once (MobileNet v1 has 55 of one file each): one after the
  // other, each file's realpath, stat and read waited in turn, 20-30 ms of a
  // cold start with the main thread idle. The first problem in manifest
  // order is reported, as when they were read in turn.
  const reads = await Promise.allSettled(groups.map((group) => readGroup(group, folder, realFolder, modelJsonPath)));
  const files: WeightFile[] = [];
  for (const read of reads) {
    if (read.status === 'rejected') throw read.reason;
    files.push(...read.value);
  }
  // tfjs reads a list of buffers as one: no 10 MB concatenation copy.
  return {
    weightSpecs: groups.flatMap((group) => group.weights),
    weightData: files.map((file) => ownArrayBuffer(file.bytes)),
    identities: files.map((file) => file.identity),
    paths: files.map((file) => file.path),
  };
}

/** A weight group's files, confined to the model folder and checked against the sizes its weights need. */
async function readGroup(group: WeightsGroup, folder: string, realFolder: string, modelJsonPath: string): Promise<WeightFile[]> {
  const paths = group.paths.map((path) => confinedWeightPath(folder, path, modelJsonPath));
  // No file of the group is read past what the whole group needs: a file that claims gigabytes is refused by its size, not read.
  const groupBytes = expectedGroupBytes(group.weights);
  const files = await Promise.all(paths.map((path) => readWeightFile(path, realFolder, groupBytes)));
  checkGroupSize(group, paths, files.map((file) => file.bytes));
  return files;
}

interface WeightFile {
  /** The path as the manifest names it, in the model folder (links not resolved). */
  readonly path: string;
  readonly bytes: Buffer;
  /** Undefined when the file changed while it was read. */
  readonly identity: FileIdentity | undefined;
}

/** The bytes of `buffer` as an ArrayBuffer of their own (a file read usually has one already). */
function ownArrayBuffer(buffer: Buffer): ArrayBuffer {
  const whole = buffer.byteOffset === 0 && buffer.byteLength === buffer.buffer.byteLength;
  return (whole ? buffer.buffer : buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength)) as ArrayBuffer;
}


/**
 * A weight file's bytes. Symbolic links are followed only to a regular file
 * whose real path is inside the model folder's real path (`realFolder`):
 * a name that stays inside the folder can still link to /etc/passwd, and a
 * model unpacked from an archive may carry such links.
 */
async function readWeightFile(path: string, realFolder: string, groupBytes: number | undefined): Promise<WeightFile> {
  try {
    const { real, inside } = await realPathInside(realFolder, path);
    if (!inside) {
      throw new CamvizError(`weight file links outside the model folder (to ${real}): refused`, { file: path });
    }
    // The resolved path: a link swapped after the check is not followed again. The stats are the descriptor's, taken
    // before the read (a file written after it has another change time), and a FIFO swapped in is refused, not waited on.
    const { handle, stats } = await openRegularFile(real);
    try {
      const size = Number(stats.size);
      if (groupBytes !== undefined && size > groupBytes) {
        throw new CamvizError(`weight file is longer than its manifest says: ${size} bytes, the weights listed for its group need ${groupBytes}`, { file: path });
      }
      // A group of unknown size (string weights) is still bounded: one buffer holds at most this.
      if (size > MAX_FILE_BYTES) throw new CamvizError(`weight file is ${size} bytes, more than the ${MAX_FILE_BYTES} camviz reads: refused`, { file: path });
      const bytes = await readFromStart(handle, size);
      return { path, bytes, identity: await unchangedIdentity(real, stats) };
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (error instanceof CamvizError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (isNotRegularFileCode(code)) throw new CamvizError('weight file is not a regular file: refused', { file: path });
    throw new CamvizError(code === 'ENOENT' ? 'weight file missing' : `weight file unreadable (${code ?? (error as Error).message})`, { file: path });
  }
}

function checkGroupSize(group: WeightsGroup, paths: string[], buffers: Buffer[]): void {
  const actual = buffers.reduce((sum, buffer) => sum + buffer.length, 0);
  const expected = expectedGroupBytes(group.weights);
  if (expected === undefined) {
    // Strings: their size is in their bytes, but each takes at least its length's 4.
    const minimum = group.weights.reduce((sum, weight) => sum + minimumWeightBytes(weight), 0);
    if (actual >= minimum) return;
    throw new CamvizError(`${groupFiles(paths)} is short: ${actual} bytes, the weights listed for it need at least ${minimum}`, { file: paths[paths.length - 1] ?? '' });
  }
  if (actual === expected) return;
  const last = paths[paths.length - 1] ?? '';
  const problem = actual < expected ? 'is short' : 'is longer than its manifest says';
  throw new CamvizError(
    `${groupFiles(paths)} ${problem}: ${actual} bytes, the weights listed for it need ${expected}`,
    { file: last },
  );
}

function groupFiles(paths: readonly string[]): string {
  return paths.length === 1 ? 'weight file' : `weight files ${paths.map((p) => basename(p)).join(', ')}`;
}

/** Bytes a group's weights occupy; undefined when it cannot be known (strings). */
export function expectedGroupBytes(weights: WeightsManifestEntry[]): number | undefined {
  let total = 0;
  for (const weight of weights) {
    const bytes = storedWeightBytes(weight);
    if (bytes === undefined) return undefined;
    total += bytes;
  }
  return total;
}
