/**
 * Keras models as Keras writes them, read with no Python: the legacy
 * full-model HDF5 (`.h5`, Keras 2 and Keras 3) and the Keras 3 zip
 * (`.keras`: config.json + model.weights.h5). The format is told by the
 * first bytes, never the extension (a `.keras` may be HDF5 and the
 * reverse). The result is the same shape as a TF.js layers model read from
 * disk, so the rest of loading is shared.
 */
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, extname, resolve } from 'node:path';
import type * as tf from '../../engine/tf.js';
import { CamvizError } from '../../util/errors.js';
import { openRegularFile } from '../../util/read-whole-file.js';
import { type LocalModelFiles, type ModelJson } from '../io.js';
import type { CamvizJson } from '../metadata.js';
import { checkTopologyAgainstManifest } from '../topology-check.js';
import { type TranslatedConfig, translateModelConfig } from './config.js';
import { Hdf5File } from './hdf5.js';
import { type NamedWeights, kerasV3Weights, legacyWeights } from './weights.js';
import { ZipArchive, looksLikeZip, readFileRange } from './zip.js';

const HDF5_SIGNATURE = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);
/** Larger files are refused before they are read: everything is held in memory. */
export const KERAS_FILE_LIMIT = 1024 * 1024 * 1024;
const WEIGHTS_ENTRY_LIMIT = 768 * 1024 * 1024;
const JSON_ENTRY_LIMIT = 16 * 1024 * 1024;
const WEIGHTS_ENTRY = 'model.weights.h5';

export type KerasContainer = 'hdf5' | 'zip';

export interface KerasModelFiles extends LocalModelFiles {
  container: KerasContainer;
  /** Metadata the file itself implies: its name, and no preprocessing behind a Rescaling layer. */
  defaults: CamvizJson;
}

/** What a path that is no readable regular file gives (missing, a folder, a FIFO or a device, a loop of links). */
const NOT_A_FILE_CODES = new Set(['ENOENT', 'ENOTDIR', 'EISDIR', 'EINVAL', 'ELOOP', 'ENAMETOOLONG']);

/** 'hdf5' or 'zip' by the file's first bytes; undefined for anything else (folders, model.json). */
export async function kerasContainerOf(path: string): Promise<KerasContainer | undefined> {
  // What is missing or no regular file (a folder, a FIFO: not waited on) is no Keras file; what cannot be read is said.
  const opened = await openRegularFile(path).catch((error: unknown) => {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === undefined || NOT_A_FILE_CODES.has(code)) return undefined;
    throw new CamvizError(`model file unreadable (${code})`, { file: path });
  });
  if (opened === undefined) return undefined;
  const { handle } = opened;
  try {
    const head = Buffer.alloc(8);
    const { bytesRead } = await handle.read(head, 0, 8, 0);
    if (bytesRead === 8 && head.equals(HDF5_SIGNATURE)) return 'hdf5';
    if (looksLikeZip(head.subarray(0, bytesRead))) return 'zip';
    refuseFakeKerasFile(path, head.subarray(0, bytesRead));
    return undefined;
  } finally {
    await handle.close();
  }
}

/** The names Keras saves whole models under. */
const KERAS_EXTENSIONS = new Set(['.h5', '.hdf5', '.keras']);

/**
 * A file named as Keras names its models that is neither HDF5 nor a zip is
 * said to be so here: read on as a model.json (a TF.js model may have any
 * name), it was reported as invalid JSON. One that starts as JSON does
 * (whitespace, then `{`) is left to the model.json reader.
 */
function refuseFakeKerasFile(path: string, head: Buffer): void {
  if (!KERAS_EXTENSIONS.has(extname(path).toLowerCase())) return;
  const text = head.toString('latin1').trimStart();
  if (text.startsWith('{') || (text === '' && head.length > 0)) return;
  const what = head.length === 0 ? 'the file is empty' : 'it starts with neither HDF5\'s signature nor a zip header';
  throw new CamvizError(`not a Keras model: ${what}`, { file: path });
}

/** A Keras file read as TF.js model artifacts, or undefined when `path` is not a Keras file. */
export async function readKerasModel(path: string): Promise<KerasModelFiles | undefined> {
  const container = await kerasContainerOf(path);
  if (container === undefined) return undefined;
  const file = resolve(path);
  const { handle, stats } = await openRegularFile(file).catch((error: unknown) => {
    throw new CamvizError(`Keras file unreadable (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, { file: path });
  });
  let read: ReadKeras;
  try {
    const size = Number(stats.size);
    if (size > KERAS_FILE_LIMIT) throw new CamvizError(`Keras file of ${size} bytes is over the ${KERAS_FILE_LIMIT}-byte limit: refused`, { file: path });
    read = container === 'hdf5' ? await readLegacyHdf5(handle, size, path) : readKerasZip(await ZipArchive.readFrom(handle, size, path, WEIGHTS_ENTRY), path);
  } finally {
    await handle.close();
  }
  const modelJson: ModelJson = { modelTopology: read.config.topology, weightsManifest: [{ paths: [], weights: read.weights.specs }], format: 'layers-model', generatedBy: read.generatedBy };
  // Before tfjs builds anything: building allocates every variable the config declares.
  checkTopologyAgainstManifest(modelJson, path);
  const artifacts: tf.io.ModelArtifacts = { modelTopology: read.config.topology, weightSpecs: read.weights.dataSpecs, weightData: read.weights.data, format: 'layers-model', generatedBy: read.generatedBy };
  const hasRescaling = read.config.layers.some((layer) => layer.className === 'Rescaling');
  return {
    modelJsonPath: file,
    folder: dirname(file),
    modelJson,
    sha256: read.sha256,
    artifacts,
    container,
    // Several Keras files may share a folder: the file names the model, not the folder as for model.json.
    defaults: { name: basename(file, extname(file)), ...(hasRescaling ? { preprocess: 'none' as const } : {}) },
  };
}

interface ReadKeras {
  config: TranslatedConfig;
  weights: NamedWeights;
  generatedBy: string;
  /** The model's identity (the manifest's `sha256`). */
  sha256: string;
}

/** An HDF5 file's identity is the sha256 of all its bytes (it has no checksums to stand for them), hashed as they are read. */
async function readLegacyHdf5(handle: FileHandle, size: number, file: string): Promise<ReadKeras> {
  const hash = createHash('sha256');
  const bytes = await readFileRange(handle, 0, size, file, { own: true, onRead: (piece) => void hash.update(piece) });
  const h5 = Hdf5File.open(bytes, file);
  const modelConfig = h5.attribute('', 'model_config');
  if (typeof modelConfig !== 'string') {
    throw new CamvizError('HDF5 file has no model_config: a weights-only file, not a whole Keras model (save with model.save)', { file });
  }
  const config = translateModelConfig(parseJson(modelConfig, 'model_config', file), file);
  const version = h5.attribute('', 'keras_version');
  return { config, weights: legacyWeights(h5), generatedBy: `keras ${typeof version === 'string' ? version : '?'}`, sha256: hash.digest('hex') };
}

/**
 * The weights file (stored, as Keras writes it) is read from the archive
 * into a buffer of its own: the HDF5 reader then reads it where it is. The
 * identity is that of the archive's contents (names, sizes and CRC-32s,
 * each entry read checked against its own), not a sha256 of every byte: a
 * TF.js folder is identified by its model.json alone, and a second pass
 * over a 10 MB file (6 ms) was what kept a .keras load slower than the
 * same model's TF.js folder.
 */
function readKerasZip(zip: ZipArchive, file: string): ReadKeras {
  if (!zip.has('config.json')) throw new CamvizError('zip archive has no config.json: not a Keras 3 .keras file', { file });
  const config = translateModelConfig(parseJson(zip.read('config.json', JSON_ENTRY_LIMIT).toString('utf8'), 'config.json', file), file);
  const metadata = zip.has('metadata.json') ? parseJson(zip.read('metadata.json', JSON_ENTRY_LIMIT).toString('utf8'), 'metadata.json', file) : {};
  const version = (metadata as { keras_version?: unknown }).keras_version;
  if (!zip.has(WEIGHTS_ENTRY)) throw new CamvizError(`.keras archive has no ${WEIGHTS_ENTRY}`, { file });
  const h5 = Hdf5File.open(zip.read(WEIGHTS_ENTRY, WEIGHTS_ENTRY_LIMIT), `${file}:${WEIGHTS_ENTRY}`);
  const weights = kerasV3Weights(h5, config.layers);
  return { config, weights, generatedBy: `keras ${typeof version === 'string' ? version : '?'}`, sha256: zip.contentsSha256() };
}

function parseJson(text: string, what: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new CamvizError(`${what} is not valid JSON: ${(error as Error).message}`, { file });
  }
}
