/**
 * Written ONNX models cached beside the zoo cache:
 * `<cache>/onnx/<fingerprint>-<H>x<W>.onnx`, with a `.json` beside it that
 * holds the model's sha256 and where the executor graph's values are in it.
 *
 * The fingerprint is the sha256 of what the written model depends on: the
 * writer's version, each layer's class, configuration, connections and
 * weights. A model loaded from other files with the same contents shares the
 * entry; a changed weight gets another. An entry whose bytes do not match
 * their recorded sha256 (a cut-off or damaged file) is written again. Both
 * files are written atomically, the `.json` last, so a reader never trusts
 * an entry that is still being written.
 *
 * The bytes are read, and their sha256 checked, only when ONNX Runtime
 * needs them: a session made from the optimised graph ONNX Runtime saved
 * (engine/onnxruntime.ts) does not, and reading and hashing 10 MB cost a
 * warm start 20-80 ms. A file of another size than recorded (cut off) is
 * found at once; damaged bytes of the recorded size when they are read:
 * then the model is written again in memory and the entry's record removed,
 * so that the next run writes the entry anew.
 *
 * A TF.js layers model read from its files skips the fingerprint's hash
 * (10 MB for MobileNet: 20 ms of a cold start) when its files are as they
 * were when the fingerprint was last computed from them: `file-fingerprints.json`
 * in the folder records, per model.json's real path, every file's identity
 * with the fingerprint (model/file-fingerprints.ts says why that is safe).
 *
 * The folder is pruned (prune.ts) whenever camviz writes to it: here after
 * an entry is written, and after ONNX Runtime saves a session in it (told
 * through onSavedGraph). A hit only touches the entry's mtime.
 */
import { onnxCacheDir } from './cache-limit.js';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { onSavedGraph } from '../../engine/onnxruntime.js';
import { type Tensor, peekValues } from '../../engine/tf.js';
import type * as tfl from '../../engine/tfl.js';
import { type Layer, LayerGraph } from '../../executor/graph.js';
import { writeFileAtomic } from '../../util/atomic-file.js';
import { CamvizError } from '../../util/errors.js';
import { MAX_FILE_BYTES, readRegularFile, readRegularFileSync } from '../../util/read-whole-file.js';
import { VERSION } from '../../util/version.js';
import type { CamvizModel } from '../load.js';
import type { ModelSourceFiles } from '../io.js';
import { sha256Hex } from '../../util/sha256.js';
import { recordedFingerprint } from '../file-fingerprints.js';
import { CONVERTERS, OnnxWriteError, UnsupportedLayerError } from './layers.js';
import { entryStem, markUsed, onnxCacheLimitBytes, pruneOnnxCache, touch } from './prune.js';
import { type OnnxInputSize, type ValueTable, WRITER_VERSION, type WrittenModel, WrittenTrunk, writeOnnxModel } from './write.js';
import { makeFolders } from '../../util/make-folders.js';

export interface OnnxTrunkOptions {
  /** The cache folder; false: write in memory only. Default `<cache root>/onnx`. */
  cache?: string | false;
  /** Says why a cache entry was rewritten or could not be written. */
  log?: (message: string) => void;
  /** The files the model was read from (a loaded model's `sourceFiles`): its fingerprint may be the one recorded for them. */
  sourceFiles?: ModelSourceFiles;
}


export { onnxCacheDir };

/**
 * A saved session read is touched (the size bound's "last used"); one
 * written prunes its folder, keeping its model's entry. Saved sessions are
 * made by the engine (engine/onnxruntime.ts), which cannot import this layer.
 * A wrong CAMVIZ_ONNX_CACHE_MB is said by onnxTrunkOfLayersModel; here it
 * only skips the pruning.
 */
onSavedGraph(async (path, event) => {
  const stem = entryStem(basename(path));
  if (stem !== undefined) markUsed(stem);
  // The engine touched it (engine/onnxruntime.ts).
  if (event === 'read') return;
  let limitBytes: number;
  try {
    limitBytes = onnxCacheLimitBytes();
  } catch {
    return;
  }
  await pruneOnnxCache(dirname(path), { limitBytes, ...(stem === undefined ? {} : { keep: [stem] }) });
});

interface CacheRecord {
  writerVersion: number;
  sha256: string;
  table: ValueTable;
  /** The .onnx file's size in bytes (absent in records of earlier versions: their bytes are checked at once). */
  size?: number;
}

/** Every layer of the graph has a converter: the first that has none is named before anything is read or hashed. */
function checkSupported(graph: LayerGraph): void {
  for (const node of graph.nodes) {
    const className = node.layer.getClassName();
    if (!CONVERTERS.has(className)) throw new UnsupportedLayerError(node.path, className);
  }
}

/** The weight fields the converters read (tfjs-layers' names; an imported graph node's view uses the same). */
const WEIGHT_FIELDS = ['kernel', 'depthwiseKernel', 'pointwiseKernel', 'bias', 'gamma', 'beta', 'movingMean', 'movingVariance', 'alpha'] as const;

/** A weight field, or another value under that name (LeakyReLU's alpha is a number). */
type WeightField = { read?(): Tensor } | number | null | undefined;

/**
 * What a layer is, as JSON: its class and configuration, and for a layer
 * imported from a TF.js graph model (whose configuration is only its name)
 * its plan: the TF node with its attributes, shapes and fields.
 */
function describeLayer(layer: Layer): string {
  const plan = (layer as unknown as { plan?: unknown }).plan;
  return JSON.stringify([layer.getClassName(), layer.getConfig(), plan ?? null]);
}

let fingerprintsHashed = 0;

/** How many fingerprints this process has hashed (the others were taken from file-fingerprints.json). */
export function hashedFingerprintCount(): number {
  return fingerprintsHashed;
}

/** sha256 of everything the written model depends on (see the file comment). */
export function modelFingerprint(graph: LayerGraph): string {
  fingerprintsHashed++;
  const hash = createHash('sha256').update(`camviz onnx-writer ${WRITER_VERSION}\n`);
  // Values by position, not by tensor key: keys differ between loads of the same model.
  const positions = new Map<string, string>(graph.inputKeys.map((key, i) => [key, `in${i}`]));
  for (const node of graph.nodes) {
    const inputs = node.inputs.map((key) => positions.get(key) ?? '?');
    hash.update(`${describeLayer(node.layer)}${JSON.stringify(inputs)}\n`);
    for (const field of WEIGHT_FIELDS) {
      const variable = (node.layer as unknown as Record<string, WeightField>)[field];
      // Numbers are in the configuration.
      if (typeof variable !== 'object' || variable === null || typeof variable.read !== 'function') continue;
      const tensor = variable.read();
      // Hashed at once: no copy of the weights (10 MB for MobileNet) is needed.
      const data = peekValues(tensor);
      hash.update(`${field} ${tensor.shape.join('x')}:`).update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
    node.outputs.forEach((key, i) => positions.set(key, `${node.index}.${i}`));
  }
  hash.update(JSON.stringify(graph.outputKeys.map((key) => positions.get(key))));
  return hash.digest('hex');
}

/**
 * The OnnxTrunk of a TF.js layers model at one input size: the written
 * ONNX model, from the cache when it holds a sound copy. Throws an
 * UnsupportedLayerError naming the first layer the writer cannot express.
 */
export async function onnxTrunkOfLayersModel(model: tfl.LayersModel, size: OnnxInputSize, options: OnnxTrunkOptions = {}): Promise<WrittenTrunk> {
  const graph = LayerGraph.fromModel(model);
  checkSupported(graph);
  const folder = options.cache === undefined ? onnxCacheDir() : options.cache;
  if (folder === false) return new WrittenTrunk(graph, writeOnnxModel(model, size), `${modelFingerprint(graph)}-${size.height}x${size.width}`, size, 'written');
  const cacheKey = `${await fingerprintOf(graph, model, folder, options.sourceFiles)}-${size.height}x${size.width}`;
  // Read on every call, so that a wrong value is said whether the entry is cached or not.
  const limitBytes = onnxCacheLimitBytes();
  const onnxPath = join(folder, `${cacheKey}.onnx`);
  const recordPath = join(folder, `${cacheKey}.json`);
  markUsed(cacheKey);
  const cached = await readEntry({ onnxPath, recordPath, graph, rewrite: () => writeOnnxModel(model, size), ...(options.log === undefined ? {} : { log: options.log }) });
  if (cached !== undefined) {
    await touch(recordPath);
    return new WrittenTrunk(graph, cached, cacheKey, size, 'cache');
  }
  const written = writeOnnxModel(model, size);
  try {
    await makeFolders(folder);
    await writeFileAtomic(onnxPath, written.bytes);
    const record: CacheRecord = { writerVersion: WRITER_VERSION, sha256: sha256Hex(written.bytes), table: written.table, size: written.bytes.length };
    await writeFileAtomic(recordPath, `${JSON.stringify(record)}\n`);
  } catch (error) {
    // The model is written: a cache that cannot be written costs time, not the run.
    options.log?.(`cannot cache the written ONNX model: ${error instanceof CamvizError ? error.describe() : (error as Error).message}`);
  }
  await pruneOnnxCache(folder, { limitBytes, keep: [cacheKey], ...(options.log === undefined ? {} : { log: options.log }) });
  return new WrittenTrunk(graph, written, cacheKey, size, 'written');
}

/**
 * The model's fingerprint: the one recorded for its files when every file
 * still has the identity it had then (model/file-fingerprints.ts), else
 * modelFingerprint's hash (then recorded). A model whose weights were
 * written since it was loaded (another tensor than the one loaded), not
 * read from TF.js files (built in memory, a Keras file, an ONNX or graph
 * model), or cached nowhere is hashed.
 */
async function fingerprintOf(graph: LayerGraph, model: tfl.LayersModel, folder: string, source: ModelSourceFiles | undefined): Promise<string> {
  if (source === undefined || source.identities.length === 0 || !weightsAsLoaded(model, source)) return modelFingerprint(graph);
  return recordedFingerprint(folder, source.identities, fingerprintDependencies(), () => modelFingerprint(graph));
}

/** Whether every weight of the model is still the tensor loaded from its files. */
function weightsAsLoaded(model: tfl.LayersModel, source: ModelSourceFiles): boolean {
  const weights = model.weights;
  return weights.length === source.weightIds.length && weights.every((weight, i) => weight.read().dataId === source.weightIds[i]);
}

let layersVersion: string | undefined;

/** What the fingerprint depends on beyond the files: the writer's version, camviz's and tfjs-layers' (which reads model.json into the layers whose configuration is hashed). */
function fingerprintDependencies(): Record<string, string | number> {
  layersVersion ??= (createRequire(import.meta.url)('@tensorflow/tfjs-layers/package.json') as { version: string }).version;
  return { writer: WRITER_VERSION, camviz: VERSION, tfjsLayers: layersVersion };
}

function isOnnxValue(value: unknown): boolean {
  const candidate = value as { name?: unknown; layout?: unknown } | null;
  return typeof candidate?.name === 'string' && (candidate.layout === 'same' || candidate.layout === 'nchw');
}

/** A value table as the writer makes them: the trunk reads every part of it. */
function isValueTable(table: unknown): table is ValueTable {
  const candidate = table as Partial<Record<keyof ValueTable, unknown>> | null;
  if (typeof candidate?.dims !== 'object' || candidate.dims === null || !Array.isArray(candidate.outputs) || !Array.isArray(candidate.nodes)) return false;
  const dims = candidate.dims as Record<string, unknown>;
  const named = (value: unknown): boolean => isOnnxValue(value) && Array.isArray(dims[(value as { name: string }).name]);
  // The input's layout is the record's, never assumed: a model written for another input layout is not fed this one.
  const input = candidate.input as Partial<ValueTable['input']> | undefined;
  if (!named(input?.fed) || !named(input?.read)) return false;
  return candidate.nodes.every((entry: { outputs?: unknown; preActivation?: unknown } | null) => {
    if (!Array.isArray(entry?.outputs) || !entry.outputs.every(named)) return false;
    return entry.preActivation === undefined || named(entry.preActivation);
  });
}

interface EntryRead {
  readonly onnxPath: string;
  readonly recordPath: string;
  readonly graph: LayerGraph;
  /** Writes the model again (in memory), for an entry found damaged when its bytes are read. */
  readonly rewrite: () => WrittenModel;
  readonly log?: (message: string) => void;
}

/** The largest record read (its value table is a few hundred bytes a node): a larger one is damaged. */
const MAX_RECORD_BYTES = 64 * 2 ** 20;

/** The cached model, or undefined when there is none or it is not sound (said through `log`); files that are not regular files are not read. */
async function readEntry({ onnxPath, recordPath, graph, rewrite, log }: EntryRead): Promise<WrittenModel | undefined> {
  let recordText: string;
  try {
    recordText = (await readRegularFile(recordPath, MAX_RECORD_BYTES)).bytes.toString('utf8');
  } catch {
    return undefined;
  }
  const damage = (reason: string): undefined => {
    log?.(`the cached ONNX model is damaged (${reason}); writing it again (${onnxPath})`);
    return undefined;
  };
  let record: CacheRecord;
  try {
    record = JSON.parse(recordText) as CacheRecord;
  } catch {
    return damage('its record is not JSON');
  }
  if (record.writerVersion !== WRITER_VERSION || typeof record.sha256 !== 'string' || !isValueTable(record.table)) return damage('its record is not of this writer');
  if (record.table.nodes.length !== graph.nodes.length) return damage('its record describes another graph');
  if (typeof record.size === 'number') {
    const found = await stat(onnxPath).catch((error: NodeJS.ErrnoException) => error);
    if (found instanceof Error) return damage(`unreadable: ${found.code ?? found.message}`);
    if (found.size !== record.size) return damage(`${found.size} bytes, not the ${record.size} of its record`);
    return lazilyRead(record, { onnxPath, recordPath, graph, rewrite, ...(log === undefined ? {} : { log }) });
  }
  let bytes: Uint8Array;
  try {
    bytes = (await readRegularFile(onnxPath)).bytes;
  } catch (error) {
    return damage(`unreadable: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  if (sha256Hex(bytes) !== record.sha256) return damage('its sha256 does not match its record');
  // A record of an earlier version gains the size, so that later runs read the bytes only when needed.
  const upgraded: CacheRecord = { ...record, size: bytes.length };
  await writeFileAtomic(recordPath, `${JSON.stringify(upgraded)}\n`).catch(() => undefined);
  return { bytes, table: record.table };
}

/**
 * A cached model whose bytes are read and checked against the record's
 * sha256 on first use; damaged ones are written again in memory (the same
 * table: the writer is deterministic) and the record removed.
 */
function lazilyRead(record: CacheRecord, { onnxPath, recordPath, rewrite, log }: EntryRead): WrittenModel {
  let bytes: Uint8Array | undefined;
  const read = (): Uint8Array => {
    const found = readOrUndefined(onnxPath);
    if (found !== undefined && sha256Hex(found) === record.sha256) return found;
    log?.(`the cached ONNX model is damaged (${found === undefined ? 'unreadable' : 'its sha256 does not match its record'}); writing it again (${onnxPath})`);
    rmSync(recordPath, { force: true });
    const written = rewrite();
    if (JSON.stringify(written.table) !== JSON.stringify(record.table)) throw new Error(`the ONNX model written again does not match its cached record (${recordPath})`);
    return written.bytes;
  };
  return {
    table: record.table,
    get bytes(): Uint8Array {
      bytes ??= read();
      return bytes;
    },
  };
}

/** A cached file's bytes; undefined when it is missing, unreadable or no regular file (a link to a device may never end). */
function readOrUndefined(path: string): Uint8Array | undefined {
  return readRegularFileSync(path, MAX_FILE_BYTES);
}

/** The OnnxTrunk of a loaded TF.js layers model at its input size (see onnxTrunkOfLayersModel). */
export async function onnxTrunkOfModel(model: CamvizModel, options: OnnxTrunkOptions = {}): Promise<WrittenTrunk> {
  if (model.onnx !== undefined) throw new CamvizError('an ONNX model runs on ONNX Runtime as it is, not through the ONNX writer', { file: model.meta.modelJsonPath });
  const file = model.meta.modelJsonPath;
  // A graph model that needs executeAsync (control flow) has no layers model.
  if (model.layersModel === undefined) throw new OnnxWriteError('the ONNX writer needs a TF.js layers model', { file });
  try {
    return await onnxTrunkOfLayersModel(model.layersModel, model.meta.inputSize, options.sourceFiles === undefined && model.sourceFiles !== undefined ? { ...options, sourceFiles: model.sourceFiles } : options);
  } catch (error) {
    throw error instanceof OnnxWriteError && error.file === undefined ? error.withFile(file) : error;
  }
}
