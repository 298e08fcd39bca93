/**
 * camviz as a library: the public API, listed name by name. The CLI is a
 * thin shell over these. Anything not exported here is internal and may
 * change without notice; the README's "Library" section documents each
 * group.
 */

// Errors and version
export { CamvizError, UsageError, describeError } from './util/errors.js';
export { VERSION } from './util/version.js';

// Backends
export { type BackendInfo, activeBackend, useBackend } from './engine/backend.js';
export { BACKEND_CHOICES, type BackendChoice } from './engine/backend-choices.js';
export { ENGINE_CHOICES, type EngineChoice } from './engine/engine-choices.js';

// Models: loading, metadata, labels, layers, predictions
export { CamvizModel, type LoadOptions, loadModel } from './model/load.js';
export type { EngineFallback, EngineKind, EngineReport } from './model/engine.js';
export type { CamvizJson, InputSize, ModelMetadata } from './model/metadata.js';
export { DEFAULT_MODEL, ZOO, type ZooEntry } from './model/zoo.js';
export { imagenetLabels, readLabelsFile, resolveClass, resolveClasses } from './model/labels.js';
export { type Prediction, classProbabilities, inputTensor, toInputTensor, topK } from './model/predict.js';
export { type LayerInfo, describeLayers } from './executor/layers.js';

// Images
export { type ImageLoadOptions, type LoadedImage, imageFromRgb, loadImage } from './image/image.js';
export type { Box, ImageGeometry, ResizeMode } from './image/geometry.js';
export { PREPROCESS_NAMES, type PreprocessName } from './image/preprocess-names.js';

// The executor and PyTorch-style hooks
export type { Executor } from './executor/executor.js';
export {
  type BackwardCallOptions,
  type BackwardResult,
  type ForwardValues,
  type LayerRef,
  type ModelInputs,
  type Objective,
  backward,
  disposeValues,
  forward,
} from './executor/backward.js';
export {
  type ForwardHookOptions,
  type HookHandle,
  type HookSpec,
  hookGradient,
  registerForwardHook,
  registerForwardPreHook,
  registerFullBackwardHook,
  registerGradientHook,
  withHooks,
  withHooksSync,
} from './hooks/hooks.js';
export type { ForwardHook, ForwardPreHook, FullBackwardHook, GradientHook, Layer, Tensors } from './hooks/registry.js';

// Class activation maps: the high-level call, the batch call, the methods
export { type ExplainOptions, type Explanation, explain } from './explain.js';
export { type ClassExplanation, type ExplainBatch, type ExplainRequest, explainBatch } from './cam/explain.js';
export type { ClassRequest, ScoreKind } from './cam/classes.js';
export { camTargets, classRequest } from './cam/request.js';
export { METHOD_NAMES, SCORE_KINDS, canonicalMethod } from './cam/names.js';
export { createMethod } from './cam/index.js';
export { ActivationCamMethod, type CamRequest, type CamResult, CamMethod, type Evidence, type GradientEvidence, GradientCamMethod, spatialMean, weighChannels } from './cam/base.js';
export { Cam } from './cam/cam.js';
export { EigenCam } from './cam/eigencam.js';
export { GradCam } from './cam/gradcam.js';
export { GradCamPlusPlus } from './cam/gradcampp.js';
export { HiResCam } from './cam/hirescam.js';
export { LayerCam } from './cam/layercam.js';
export { ScoreCam } from './cam/scorecam.js';
export { XGradCam } from './cam/xgradcam.js';
export { guidedBackprop } from './cam/guided.js';
export {
  ClassTarget,
  FunctionTarget,
  OutputTarget,
  ProbTarget,
  type Region,
  type RegionBox,
  type RegionImage,
  type RegionMask,
  RegionTarget,
  SigmoidTarget,
  SimilarityTarget,
  TARGET_KINDS,
  type Target,
  type TargetChoice,
  type TargetFunction,
  type TargetKind,
  type TargetLike,
  type TargetRecord,
  type TargetRequest,
  type TargetSpec,
  chooseTarget,
  defaultEmbedding,
  embeddingOf,
  loadRegionMask,
} from './cam/targets/index.js';

// Faithfulness metrics
export { METRIC_NAMES, type MetricName, type MetricsOptions, type MetricsRecord, type MetricValues } from './metrics/names.js';
export { type MetricsBatch, measureExplanations } from './metrics/runner.js';

// Pictures and files
export type { FeatureMap, GradientImage } from './render/maps.js';
export { type ExplanationImage, type ExplanationImageOptions, renderExplanation } from './render/explanation.js';
export { COLORMAPS, type ColormapName, applyColormap } from './render/colormap.js';
export { DEFAULT_OVERLAY_ALPHA, DEFAULT_OVERLAY_COLORMAP, type OverlayOptions, heatmapImage, overlayHeatmap } from './render/overlay.js';
export { mapToOriginal, resizeBilinear } from './render/resize.js';
export { minMaxNormalize } from './render/normalize.js';
export { type FeatureGrid, type FeatureGridOptions, makeFeatureGrid } from './render/grid.js';
export { type PngOptions, encodePng } from './render/png.js';
export { type NpyArray, decodeNpy, encodeNpy } from './render/npy.js';
export { EventWriter, type EventWriterOptions } from './render/tensorboard.js';

// Folder runs
export { type BatchRunOptions, type BatchRunResult, runBatch } from './batch/runner.js';
export { type Manifest, readManifest } from './batch/manifest.js';
export { type MergeOptions, type MergeResult, mergeRuns } from './batch/merge.js';
export { writeReport } from './batch/report.js';
export { type Shard, parseShard, selectShard } from './batch/shard.js';
export {
  type CompareResult,
  type CompareRunOptions,
  type CompareSummary,
  type CompareThresholds,
  type FailedInput,
  type Offender,
  type PairBy,
  type PairMaps,
  type PairMetrics,
  type PairSide,
  type Top1Change,
  type UnpairedMap,
  compareRuns,
  writeCompareJson,
} from './batch/compare.js';
export { writeCompareReport } from './batch/compare-report.js';
export type * from './tasks/types.js';
export { type TaskOverrides, camTaskOptions, fmapTaskOptions, predictTaskOptions } from './tasks/defaults.js';
