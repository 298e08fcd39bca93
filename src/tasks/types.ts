/**
 * The records and options of the per-image tasks. Options are plain data so
 * that worker threads can receive them; records are what `--json` prints and
 * what `manifest.json` holds.
 */
import type { ScoreKind } from '../cam/names.js';
import type { EngineChoice } from '../engine/engine-choices.js';
import type { TargetRecord, TargetSpec } from '../cam/targets/spec.js';
import type { ColormapName } from '../render/colormap.js';
import type { ResizeMode } from '../image/geometry.js';
import type { Prediction } from '../model/predict.js';
import type { MetricsOptions, MetricsRecord } from '../metrics/names.js';
import type { EarlierOutputs } from '../util/outputs-ledger.js';

export interface ModelSpec {
  model?: string;
  backend?: string;
  /** WebAssembly threads for this process's model (the runner's choice). */
  wasmThreads?: number;
  /**
   * WebAssembly threads for when tfjs turns out to run the model's passes
   * although ONNX Runtime was expected (auto's per-model fallback, known once
   * the model is loaded): the wasm backend is restarted with them then.
   */
  wasmThreadsIfTfjs?: number;
  /** `--engine` (or CAMVIZ_ENGINE) as the command line resolved it; default auto. */
  engine?: EngineChoice;
  /** ONNX Runtime intra-op threads for this process's model (the runner's choice; CAMVIZ_ORT_THREADS overrides). */
  ortThreads?: number;
  /** Why the task runs wholly on tfjs (guided backprop): under auto no ONNX Runtime session is made (LoadOptions.tfjsOnly). */
  tfjsOnly?: string;
  preprocess?: string;
  labels?: string;
  size?: string;
}

export interface ImageSpec {
  resize: ResizeMode;
  background: string;
  maxPixels: number;
  /** Longer images are shrunk on decoding to this long side (0 = full resolution). */
  maxOverlaySide: number;
}

interface BaseTaskOptions {
  model: ModelSpec;
  image: ImageSpec;
  /** Where outputs go; outputs mirror each input's relative path. */
  outDir: string;
  /** Images per forward pass. */
  batchSize: number;
  /** PNG zlib level (0-9). */
  pngCompression: number;
}

export interface CamTaskOptions extends BaseTaskOptions {
  command: 'cam';
  method: string;
  /** Target layer names; empty = the model's default target. */
  layers: string[];
  /** `--class` specs (index or name); empty = top-k. */
  classes: string[];
  topK: number;
  score: ScoreKind;
  /** What Y is (`--target` and its flags); absent: the model's kind (sigmoid for a sigmoid head, else class). */
  target?: TargetSpec;
  augSmooth: boolean;
  eigenSmooth: boolean;
  colormap: ColormapName;
  alpha: number;
  heatmapOnly: boolean;
  raw: boolean;
  /** Faithfulness metrics per map (--metrics); absent: none. */
  metrics?: MetricsOptions;
}

export interface FmapTaskOptions extends BaseTaskOptions {
  command: 'fmap';
  layers: string[];
  allConv: boolean;
  maxChannels?: number;
  nrow?: number;
  padding: number;
  tileSize: number;
  colormap: ColormapName;
  raw: boolean;
  /** Return the PNGs so the main thread can add them to a TensorBoard log. */
  tensorboard: boolean;
}

export interface PredictTaskOptions extends BaseTaskOptions {
  command: 'predict';
  top: number;
}

export type TaskOptions = CamTaskOptions | FmapTaskOptions | PredictTaskOptions;

/** One input image, as found on the command line. */
export interface InputImage {
  /** The path as given or found. */
  path: string;
  /** Where its outputs go under --out, without extension change: `sub/dir/cat.jpg`. */
  relative: string;
  /**
   * Set by folder runs: the files under --out (paths inside it, with `/`)
   * that camviz wrote before and this input's outputs may replace, with
   * the versions it wrote of each. Any other file in the way of an output
   * (a user's, or one of those names edited or replaced since) is then left
   * alone and the input fails, naming it; unset, outputs replace what is
   * there.
   */
  replaceable?: EarlierOutputs;
}

/** What `camviz cam --json` prints per output. */
export interface CamResultRecord {
  input: string;
  method: string;
  layer: string;
  /** The explained unit: a class, an output unit (output), a segmentation class (region), 0 (similarity). */
  class: { index: number; label: string | null };
  /** What Y is, and which unit (the class again, an output's unit, a region...); absent in manifests of camviz before targets. */
  target?: TargetRecord;
  /** The target's Y. */
  score: number;
  /** The probability that goes with Y; null for targets without one: output, region, similarity. */
  probability: number | null;
  /** The maximum of the upsampled map, in the written picture's pixels (the original image's, unless --max-overlay-side shrank it). */
  peak: { x: number; y: number };
  /** Output paths are relative to the output folder (the manifest's folder). */
  png: string;
  npy?: string;
  /** With --metrics: the requested metrics of this map and of a seeded random map. */
  metrics?: MetricsRecord;
}

/** What `camviz fmap --json` prints per output. */
export interface FmapResultRecord {
  input: string;
  layer: string;
  shape: number[];
  png: string;
  json: string;
  npy?: string;
}

export type ResultRecord = CamResultRecord | FmapResultRecord;

export interface Timings {
  decode?: number;
  forward?: number;
  backward?: number;
  render?: number;
  encode?: number;
  total?: number;
}

/**
 * A class an input was explained or predicted as. Its probability is null
 * where a cam run's target has none (output, region, similarity); predict
 * always gives one.
 */
export interface RecordPrediction extends Omit<Prediction, 'probability'> {
  probability: number | null;
}

/** One input's outcome; the manifest holds one per input. */
export interface InputRecord {
  input: string;
  relative: string;
  status: 'ok' | 'error';
  /** Files written, relative to the output folder. */
  outputs: string[];
  predictions?: RecordPrediction[];
  results?: ResultRecord[];
  timings: Timings;
  error?: string;
  /** With --verbose (CAMVIZ_VERBOSE=1): where the error was thrown. */
  stack?: string;
  /** Set when --skip-existing kept the outputs of an earlier run. */
  resumed?: boolean;
}

/** An image for the TensorBoard log (fmap --tensorboard). */
export interface SummaryImage {
  /** The input it belongs to (one TensorBoard step per input). */
  input: string;
  tag: string;
  png: Uint8Array;
  width: number;
  height: number;
}

export interface BatchOutcome {
  records: InputRecord[];
  summaries: SummaryImage[];
}
