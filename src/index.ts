/**
 * camviz as a library. The CLI is a thin shell over these.
 */
export { CamvizError, UsageError, describeError } from './util/errors.js';
export { VERSION } from './util/version.js';

// Backends and models
export { type BackendChoice, type BackendInfo, type BackendKind, activeBackend, requestedBackend, useBackend } from './engine/backend.js';
export { CamvizModel, type LoadOptions, loadModel } from './model/load.js';
export type { CamvizJson, InputSize, ModelMetadata } from './model/metadata.js';
export { DEFAULT_MODEL, ZOO, type ZooEntry, cacheRoot } from './model/zoo.js';
export { type ImageLoadOptions, type LoadedImage, loadImage } from './image/image.js';
export type { Box, ImageGeometry, ResizeMode } from './image/geometry.js';
export { PREPROCESS_NAMES, type PreprocessName, toInputTensor } from './image/preprocess.js';
export { imagenetLabels, readLabelsFile, resolveClass, resolveClasses, shortLabel } from './model/labels.js';
export { type LayerInfo, defaultTarget, describeLayers, isCamTarget, isFeatureMap } from './executor/layers.js';
export { type Prediction, classProbabilities, inputTensor, topK } from './model/predict.js';
export { type GraphNode, LayerGraph } from './executor/graph.js';
export { Network } from './executor/network.js';
export type { Executor } from './executor/executor.js';

// Hooks
export * from './hooks/index.js';
export { backward, forward, disposeValues, type BackwardCallOptions, type LayerRef } from './executor/backward.js';
export type { BackwardResult, ForwardValues, ModelInputs, Objective } from './executor/backward.js';

// Class activation maps
export * from './cam/index.js';
export { type ClassExplanation, type ExplainBatch, type ExplainRequest, explainBatch } from './cam/explain.js';
export { camTargets, classCount, classRequest } from './cam/request.js';
export { type ExplainOptions, type Explanation, explain } from './explain.js';

// Pictures and files
export * from './render/index.js';
export { type ExplanationImage, type ExplanationImageOptions, renderExplanation } from './render/explanation.js';
export { deprocessGradient } from './render/gradient.js';
export type { GradientImage } from './render/maps.js';

// Folder runs
export { type BatchRunOptions, type BatchRunResult, runBatch } from './batch/runner.js';
export { type Manifest, readManifest } from './batch/manifest.js';
export { mergeRuns } from './batch/merge.js';
export { writeReport } from './batch/report.js';
export { type Shard, parseShard, selectShard } from './batch/shard.js';
export type * from './tasks/types.js';
export { CAM_DEFAULTS, FMAP_DEFAULTS, PREDICT_DEFAULTS, TASK_DEFAULTS, type TaskOverrides, camTaskOptions, fmapTaskOptions, predictTaskOptions } from './tasks/defaults.js';
