/**
 * Loading a model from a zoo name, a local folder or model.json, or a URL,
 * with its metadata.
 */
import { existsSync, lstatSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as tf from '../engine/tf.js';
import * as tfl from '../engine/tfl.js';
import type { GraphModel } from '@tensorflow/tfjs-converter';
import { CamvizError, UsageError } from '../util/errors.js';
import { oneLine } from '../util/text.js';
import { withWeightsBuiltOnCpu } from '../engine/backend.js';
import { type EngineChoice, requestedEngine } from '../engine/engine-choices.js';
import type { Executor } from '../executor/executor.js';
import { type ChosenEngine, type EngineReport, type EngineRequest, chooseEngine } from './engine.js';
import { type ModelSourceFiles, readLocalModel } from './io.js';
import type { FileIdentity } from '../util/file-identity.js';
import { readKerasModel } from './keras/load.js';
import { DILATED_DEPTHWISE } from './dilated-depthwise.js';
import { DILATED_CONV_TRANSPOSE } from './dilated-conv-transpose.js';
import { LAYER_NORM_CONSTANTS } from './layer-norm-constants.js';
import { CENTER_CROP_SLICE } from './center-crop-slice.js';
import { withLayerSubstitutes } from './layer-substitutes.js';
import { type CamvizJson, type MetadataOverrides, type ModelMetadata, readCamvizJson, resolveMetadata } from './metadata.js';
import { Network } from '../executor/network.js';
import { setLayerAliases } from '../executor/graph.js';
import { DEFAULT_MODEL, type FetchLog, ZOO, knownModelBySha256, urlModelJson, urlOnnxFile, zooEntry, zooModelJson } from './zoo.js';
import type { BuiltOnnxModel } from './onnx/build.js';
import { isOnnxUrl, localOnnxPath } from './onnx/file.js';
import type { BuiltTfGraph } from './tfgraph/build.js';
import type { ImportedTfGraph } from './tfgraph/load.js';

/** The Keras layers tfjs-layers 4.22 computes otherwise than Keras (or cannot differentiate), and the classes camviz's loader gives them instead. */
const LAYER_SUBSTITUTES = [DILATED_DEPTHWISE, DILATED_CONV_TRANSPOSE, LAYER_NORM_CONSTANTS, CENTER_CROP_SLICE];

export interface LoadOptions extends MetadataOverrides {
  /** Progress messages (downloads). */
  log?: FetchLog;
  /** The engine of `executor()`: default `CAMVIZ_ENGINE`, else auto (see ENGINE_CHOICES). */
  engine?: EngineChoice;
  /** ONNX Runtime intra-op threads (default `CAMVIZ_ORT_THREADS`, else 1). */
  ortThreads?: number;
  /** Why the work asked of the model runs wholly on tfjs (e.g. guided backprop): auto then picks tfjs without making an ONNX Runtime session. */
  tfjsOnly?: string;
}

export class CamvizModel {
  private cachedNetwork: Network | undefined;
  private chosen: Promise<ChosenEngine> | undefined;
  private disposed = false;
  /** Which engine `executor()` picks (loadModel sets it from LoadOptions). */
  engineRequest: EngineRequest = { choice: 'auto' };
  /** For a TF.js layers model read from its files: what was read (the ONNX writer's cache takes a recorded fingerprint by it). */
  sourceFiles: ModelSourceFiles | undefined;

  constructor(
    readonly meta: ModelMetadata,
    readonly layersModel: tfl.LayersModel | undefined,
    readonly graphModel: GraphModel | undefined,
    /** For an ONNX model: the layers model's origin (names, ONNX shapes, folded constants). */
    readonly onnx?: BuiltOnnxModel,
    /** For a TF.js graph model: its layers model of graph nodes, or why it supports predict only. */
    readonly tfgraph?: { readonly built: BuiltTfGraph } | { readonly predictOnly: string },
  ) {}

  /** The executor of the model (a graph model's runs its nodes); a graph model that needs executeAsync has none. */
  network(): Network {
    if (this.layersModel === undefined) {
      const reason = this.tfgraph !== undefined && 'predictOnly' in this.tfgraph ? this.tfgraph.predictOnly : 'this needs a TF.js layers model; graph models support predict only';
      throw new CamvizError(reason, { file: this.meta.modelJsonPath });
    }
    this.cachedNetwork ??= Network.of(this.layersModel, this.meta.scoreLayer);
    return this.cachedNetwork;
  }

  /**
   * What runs the model's forward and backward passes, chosen once by
   * `engineRequest`: ONNX Runtime or `network()`. Rejects as `network()`
   * throws, and with a usage error when `--engine onnxruntime` cannot be had.
   */
  async executor(): Promise<Executor> {
    return (await this.choice()).executor;
  }

  /** Which engine `executor()` runs on and why (choosing it if not yet done). */
  async engine(): Promise<EngineReport> {
    return (await this.choice()).report;
  }

  private choice(): Promise<ChosenEngine> {
    this.chosen ??= chooseEngine(this, this.engineRequest);
    return this.chosen;
  }

  /**
   * Frees the model's tensors and ends the executor's workers. The executor
   * holds no tensors of its own: the tfjs Network's go with the graph, and
   * ONNX Runtime's sessions are cached per process (at most 8, the least
   * recently used released: engine/onnxruntime.ts); its host workers (long
   * Score-CAM runs) end here rather than after their idle time. A second
   * call does nothing.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const chosen = this.chosen;
    this.chosen = undefined;
    void chosen
      ?.then(
        ({ executor }) => executor.dispose?.(),
        () => undefined,
      )
      // Ending workers is best effort: a failure must not become an unhandled rejection.
      .catch(() => undefined);
    this.cachedNetwork?.graph.dispose();
    this.layersModel?.dispose();
    this.graphModel?.dispose();
    this.onnx?.dispose();
  }
}

/** Whether `path` is a symbolic link itself (false when it cannot be looked at: missing, or through a file). */
function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/** Where a `--model` value points: a local model.json and any zoo metadata. */
export async function locateModel(spec: string, log?: FetchLog): Promise<{ modelJsonPath: string; zoo?: CamvizJson }> {
  if (/^https?:\/\//i.test(spec)) return { modelJsonPath: await urlModelJson(spec, log) };
  const entry = zooEntry(spec);
  if (entry !== undefined) return { modelJsonPath: await zooModelJson(entry, log), zoo: entry.metadata };
  if (existsSync(spec)) return { modelJsonPath: spec };
  if (isLink(spec)) throw new UsageError('the model is a symbolic link that leads nowhere (its target is missing, or links loop)', { file: spec });
  const names = ZOO.map((zoo) => zoo.name).join(', ');
  throw new UsageError(`model '${spec}' is neither a zoo name (${names}), a file or folder, nor an http(s) URL`);
}

export async function loadModel(spec: string = DEFAULT_MODEL, options: LoadOptions = {}): Promise<CamvizModel> {
  // Checked before the model loads: a wrong CAMVIZ_ENGINE is a usage error at once.
  const engineRequest: EngineRequest = {
    choice: requestedEngine(options.engine),
    ...(options.ortThreads === undefined ? {} : { threads: options.ortThreads }),
    ...(options.tfjsOnly === undefined ? {} : { tfjsOnly: options.tfjsOnly }),
    ...(options.log === undefined ? {} : { log: options.log }),
  };
  const model = await loadModelFiles(spec, options);
  model.engineRequest = engineRequest;
  return model;
}

/**
 * The ONNX file `spec` names, or undefined. The ONNX importer (its op
 * library and protobufjs: about 70 ms to import) loads only to load an
 * ONNX model: finding whether `spec` names one (onnx/file.ts) needs none of
 * it, so a zoo name or a TF.js model (its folder or its model.json) never
 * loads it.
 */
async function onnxPathOf(spec: string, log: FetchLog | undefined): Promise<string | undefined> {
  if (isOnnxUrl(spec)) {
    const { readCheckedOnnx } = await import('./onnx/load.js');
    return urlOnnxFile(spec, async (path) => void (await readCheckedOnnx(path)), log);
  }
  if (/^https?:\/\//i.test(spec) || zooEntry(spec) !== undefined) return undefined;
  return localOnnxPath(spec);
}

async function loadModelFiles(spec: string, options: LoadOptions): Promise<CamvizModel> {
  const onnxPath = await onnxPathOf(spec, options.log);
  if (onnxPath !== undefined) return loadOnnxModel(spec, onnxPath, options);
  const located = await locateModel(spec, options.log);
  const keras = await readKerasModel(located.modelJsonPath);
  const files = keras ?? (await readLocalModel(located.modelJsonPath));
  const known = located.zoo ?? knownModelBySha256(files.sha256)?.metadata ?? keras?.defaults;
  const isGraph = files.modelJson.format === 'graph-model' || Array.isArray(files.modelJson.modelTopology['node']);
  // A graph model's topology has no layers; a layers model's layers that tfjs-layers computes otherwise than Keras get classes that compute them as Keras does.
  const artifacts = isGraph ? files.artifacts : withLayerSubstitutes(files.artifacts, LAYER_SUBSTITUTES);
  const handler: tf.io.IOHandler = { load: async () => (keras === undefined ? withWeightViews(artifacts) : artifacts) };
  let layersModel: tfl.LayersModel | undefined;
  let graphModel: GraphModel | undefined;
  try {
    if (isGraph) {
      const converter = createRequire(import.meta.url)('@tensorflow/tfjs-converter') as typeof import('@tensorflow/tfjs-converter');
      graphModel = await converter.loadGraphModel(handler);
    } else {
      layersModel = await withWeightsBuiltOnCpu(() => tfl.sharedZerosLoad(() => tfl.loadLayersModel(handler)));
    }
  } catch (error) {
    const kind = isGraph ? 'graph' : 'layers';
    throw new CamvizError(`not a loadable TF.js ${kind} model: ${oneLine((error as Error).message)}`, { file: files.modelJsonPath });
  }
  // The graph importer loads only for graph models.
  const tfgraph = graphModel === undefined ? undefined : await import('./tfgraph/load.js');
  if (graphModel !== undefined && tfgraph !== undefined) checkGraphInput(graphModel, files.modelJsonPath, tfgraph.checkImageInput);
  const inputShape = layersModel ? layersModel.inputs[0]?.shape : graphModel?.inputs[0]?.shape;
  const camvizJson = await readCamvizJson(files.modelJsonPath);
  const meta = await resolveMetadata({
    source: spec,
    modelJsonPath: files.modelJsonPath,
    sha256: files.sha256,
    format: isGraph ? 'graph' : 'layers',
    ...(inputShape === undefined ? {} : { inputShape }),
    ...(known === undefined ? {} : { known }),
    ...(camvizJson === undefined ? {} : { camvizJson }),
    overrides: options,
  });
  if (graphModel !== undefined && tfgraph !== undefined) return withLabelsChecked(graphModelOf(meta, graphModel, files.modelJson.modelTopology, tfgraph.importTfGraph), options.labels);
  const model = new CamvizModel(meta, layersModel, graphModel);
  if (layersModel !== undefined && keras === undefined && files.identities !== undefined && files.usedPaths !== undefined) model.sourceFiles = sourceFilesOf(layersModel, files.identities, files.usedPaths);
  return withLabelsChecked(model, options.labels);
}

/** The files a layers model was read from, and its weights' tensors as loaded. */
function sourceFilesOf(layersModel: tfl.LayersModel, identities: readonly FileIdentity[], usedPaths: readonly string[]): ModelSourceFiles {
  return { identities, usedPaths, weightIds: layersModel.weights.map((weight) => weight.read().dataId) };
}

/**
 * The artifacts of a model read from its files, with their weights decoded
 * as views of the read buffers (engine/weight-views.ts: no copy of each
 * weight). Each load gets its own list, so each is marked on its own.
 */
function withWeightViews(artifacts: tf.io.ModelArtifacts): tf.io.ModelArtifacts {
  const { weightData } = artifacts;
  return Array.isArray(weightData) ? { ...artifacts, weightData: tfl.decodedAsViews([...weightData]) } : artifacts;
}

/** A graph model with no image input is refused before anything else (the graph model freed). */
function checkGraphInput(graphModel: GraphModel, file: string, checkImageInput: typeof import('./tfgraph/load.js').checkImageInput): void {
  try {
    checkImageInput(graphModel, file);
  } catch (error) {
    graphModel.dispose();
    throw error;
  }
}

/**
 * A TF.js graph model: built as a layers model of its nodes for the input
 * size in use, so that hooks, fmap and the CAM methods work on it; predict
 * only when it needs executeAsync. Scores are the final Softmax's input.
 */
function graphModelOf(
  meta: ModelMetadata,
  graphModel: GraphModel,
  topology: Readonly<Record<string, unknown>>,
  importTfGraph: typeof import('./tfgraph/load.js').importTfGraph,
): CamvizModel {
  let imported: ImportedTfGraph;
  try {
    imported = importTfGraph(graphModel, topology, meta.inputSize, meta.modelJsonPath);
  } catch (error) {
    graphModel.dispose();
    throw error;
  }
  if (!('built' in imported)) return new CamvizModel(meta, undefined, graphModel, undefined, imported);
  const { built } = imported;
  setLayerAliases(built.layersModel, built.layerNames);
  const withScore = meta.scoreLayer !== undefined || built.scoreLayer === undefined ? meta : { ...meta, scoreLayer: built.scoreLayer };
  return new CamvizModel(withScore, built.layersModel, graphModel, undefined, imported);
}

/**
 * An ONNX model: checked before anything is built, then built as a layers
 * model for the input size in use. ONNX models default to torch
 * preprocessing; the size comes from the graph's input when fixed.
 */
async function loadOnnxModel(spec: string, onnxPath: string, options: LoadOptions): Promise<CamvizModel> {
  const { buildChecked, checkInputFits, readCheckedOnnx } = await import('./onnx/load.js');
  const checked = await readCheckedOnnx(onnxPath);
  const { input } = checked;
  const camvizJson = await readCamvizJson(onnxPath);
  const meta = await resolveMetadata({
    source: spec,
    modelJsonPath: onnxPath,
    sha256: checked.sha256,
    format: 'onnx',
    // resolveMetadata reads the NHWC order camviz feeds.
    inputShape: [null, input.height ?? null, input.width ?? null, input.channels],
    defaults: { name: checked.name, preprocess: 'torch', inputSize: 224 },
    ...(camvizJson === undefined ? {} : { camvizJson }),
    overrides: options,
  });
  const given = options.size !== undefined ? 'option' : camvizJson?.inputSize !== undefined ? 'camviz.json' : undefined;
  if (given !== undefined) checkInputFits(input, meta.inputSize, onnxPath, given);
  const built = buildChecked(checked, meta.inputSize);
  setLayerAliases(built.layersModel, built.layerNames);
  const withTarget = meta.targetLayer !== undefined ? meta : built.defaultLayer !== undefined ? { ...meta, targetLayer: built.defaultLayer } : built.noDefaultLayer !== undefined ? { ...meta, noTargetLayer: built.noDefaultLayer } : meta;
  return withLabelsChecked(new CamvizModel(withTarget, built.layersModel, undefined, built), options.labels);
}

/** The model, once its labels fit its classes; disposed when they do not. */
function withLabelsChecked(model: CamvizModel, labelsOption: string | undefined): CamvizModel {
  try {
    checkLabelCount(model, labelsOption);
  } catch (error) {
    model.dispose();
    throw error;
  }
  return model;
}

/** Labels of another count than the model's classes would name every prediction wrongly. */
function checkLabelCount(model: CamvizModel, labelsOption: string | undefined): void {
  const outputs = model.layersModel?.outputs ?? model.graphModel?.outputs ?? [];
  const classes = outputs.length === 1 ? outputs[0]!.shape?.at(-1) : undefined;
  const labels = model.meta.labels;
  if (labels === undefined || typeof classes !== 'number' || classes <= 0 || labels.length === classes) return;
  const message = `the labels name ${labels.length} classes but the model has ${classes}`;
  if (labelsOption !== undefined) throw new UsageError(message, { file: labelsOption });
  throw new CamvizError(`${message} (labels from camviz.json or the zoo)`, { file: model.meta.modelJsonPath });
}
