/**
 * The default task options, in one place: the CLI's flags fall back to these
 * values, and library callers of runBatch (and the tests and the bench) build
 * their options from them, so that a default changed here changes everywhere.
 */
// Free of sharp and tfjs, so that the CLI's option definitions can read it without slowing `--help`.
import { DEFAULT_BACKGROUND, DEFAULT_MAX_OVERLAY_SIDE, DEFAULT_MAX_PIXELS } from '../image/geometry.js';
import type { CamTaskOptions, FmapTaskOptions, ImageSpec, PredictTaskOptions, TaskOptions } from './types.js';

/** What every task shares, and what the builders below fill in when not overridden. */
export const TASK_DEFAULTS: Readonly<{ image: Readonly<ImageSpec>; batchSize: number; pngCompression: number }> = {
  image: { resize: 'stretch', background: DEFAULT_BACKGROUND, maxPixels: DEFAULT_MAX_PIXELS, maxOverlaySide: DEFAULT_MAX_OVERLAY_SIDE },
  batchSize: 4,
  // zlib level 1: the fastest, and OpenCV's default.
  pngCompression: 1,
};

export const CAM_DEFAULTS: Readonly<Pick<CamTaskOptions, 'method' | 'topK' | 'score' | 'colormap' | 'alpha'>> = {
  method: 'gradcam',
  topK: 1,
  score: 'logit',
  colormap: 'jet',
  alpha: 0.5,
};

export const FMAP_DEFAULTS: Readonly<Pick<FmapTaskOptions, 'padding' | 'tileSize' | 'colormap'>> = {
  padding: 2,
  tileSize: 64,
  colormap: 'gray',
};

export const PREDICT_DEFAULTS: Readonly<Pick<PredictTaskOptions, 'top'>> = { top: 5 };

/**
 * Options to change from the defaults. Fields replace the default whole
 * (`image` too: give all three of its fields). The model defaults to `{}`:
 * the zoo's default model on the backend camviz picks.
 */
export type TaskOverrides<T extends TaskOptions> = Partial<Omit<T, 'command' | 'outDir'>>;

function sharedDefaults(outDir: string): Pick<TaskOptions, 'model' | 'image' | 'outDir' | 'batchSize' | 'pngCompression'> {
  return { model: {}, image: { ...TASK_DEFAULTS.image }, outDir, batchSize: TASK_DEFAULTS.batchSize, pngCompression: TASK_DEFAULTS.pngCompression };
}

/** `camviz cam`'s options with every flag at its default, writing under `outDir`. */
export function camTaskOptions(outDir: string, overrides: TaskOverrides<CamTaskOptions> = {}): CamTaskOptions {
  return {
    command: 'cam',
    ...sharedDefaults(outDir),
    ...CAM_DEFAULTS,
    layers: [],
    classes: [],
    augSmooth: false,
    eigenSmooth: false,
    heatmapOnly: false,
    raw: false,
    ...overrides,
  };
}

/** `camviz fmap`'s options with every flag at its default, writing under `outDir`; give `layers` or `allConv: true` (fmap has no default layer). */
export function fmapTaskOptions(outDir: string, overrides: TaskOverrides<FmapTaskOptions> = {}): FmapTaskOptions {
  return {
    command: 'fmap',
    ...sharedDefaults(outDir),
    ...FMAP_DEFAULTS,
    layers: [],
    allConv: false,
    raw: false,
    tensorboard: false,
    ...overrides,
  };
}

/** `camviz predict`'s options with every flag at its default; predict writes no files, so `outDir` is unused by it. */
export function predictTaskOptions(outDir: string, overrides: TaskOverrides<PredictTaskOptions> = {}): PredictTaskOptions {
  return { command: 'predict', ...sharedDefaults(outDir), ...PREDICT_DEFAULTS, ...overrides };
}
