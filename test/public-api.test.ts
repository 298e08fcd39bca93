/**
 * The package entry exports a deliberate set of names. A name added to or
 * dropped from the public API must be added to or dropped from this list
 * (and from the README's Library section) on purpose.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';

const PUBLIC_API = [
  // errors and version
  'CamvizError', 'UsageError', 'describeError', 'VERSION',
  // backends
  'BACKEND_CHOICES', 'activeBackend', 'useBackend',
  // engines
  'ENGINE_CHOICES',
  // models
  'CamvizModel', 'DEFAULT_MODEL', 'ZOO', 'loadModel', 'describeLayers',
  'imagenetLabels', 'readLabelsFile', 'resolveClass', 'resolveClasses',
  'classProbabilities', 'inputTensor', 'topK',
  // images
  'PREPROCESS_NAMES', 'imageFromRgb', 'loadImage', 'toInputTensor',
  // executor and hooks
  'backward', 'disposeValues', 'forward',
  'hookGradient', 'registerForwardHook', 'registerForwardPreHook', 'registerFullBackwardHook', 'registerGradientHook', 'withHooks', 'withHooksSync',
  // CAM
  'explain', 'explainBatch', 'camTargets', 'classRequest', 'METHOD_NAMES', 'SCORE_KINDS', 'canonicalMethod', 'createMethod',
  'CamMethod', 'ActivationCamMethod', 'GradientCamMethod', 'spatialMean', 'weighChannels',
  'Cam', 'EigenCam', 'GradCam', 'GradCamPlusPlus', 'HiResCam', 'LayerCam', 'ScoreCam', 'XGradCam', 'guidedBackprop',
  // targets
  'ClassTarget', 'FunctionTarget', 'OutputTarget', 'ProbTarget', 'RegionTarget', 'SigmoidTarget', 'SimilarityTarget', 'TARGET_KINDS',
  'chooseTarget', 'defaultEmbedding', 'embeddingOf', 'loadRegionMask',
  // faithfulness metrics
  'METRIC_NAMES', 'measureExplanations',
  // pictures and files
  'renderExplanation', 'COLORMAPS', 'applyColormap', 'DEFAULT_OVERLAY_ALPHA', 'DEFAULT_OVERLAY_COLORMAP', 'heatmapImage', 'overlayHeatmap',
  'mapToOriginal', 'resizeBilinear', 'minMaxNormalize', 'makeFeatureGrid', 'encodePng', 'decodeNpy', 'encodeNpy', 'EventWriter',
  // folder runs
  'runBatch', 'readManifest', 'mergeRuns', 'writeReport', 'parseShard', 'selectShard', 'compareRuns', 'writeCompareJson', 'writeCompareReport', 'camTaskOptions', 'fmapTaskOptions', 'predictTaskOptions',
];

test('the package entry exports exactly the public API', async () => {
  const entry = (await import('../src/index.js')) as Record<string, unknown>;
  assert.deepEqual(Object.keys(entry).sort(), [...PUBLIC_API].sort());
  for (const name of PUBLIC_API) assert.notEqual(entry[name], undefined, `${name} is defined`);
});
