/** `camviz cam` / `camviz gradcam`: class activation maps over images. */
import { SCORE_KINDS, canonicalMethod, isScoreKind } from '../cam/names.js';
import { UsageError } from '../util/errors.js';
import { COLORMAPS, type ColormapName, isColormapName } from '../render/colormap.js';
import { CAM_DEFAULTS } from '../tasks/defaults.js';
import type { CamResultRecord, CamTaskOptions, InputRecord } from '../tasks/types.js';
import { type BatchCliOptions, baseTaskOptions, runImageCommand, withDisplayPaths } from './run-command.js';
import { checkImageCommandOptions, layerNames, parseCount, printWrittenFiles } from './common.js';
import { metricsFromFlags } from './metrics.js';

export interface CamCliOptions extends BatchCliOptions {
  method?: string;
  class?: string[];
  topK?: string;
  layer?: string[];
  score?: string;
  augSmooth?: boolean;
  eigenSmooth?: boolean;
  colormap?: string;
  alpha?: string;
  heatmapOnly?: boolean;
  raw?: boolean;
  metrics?: string | boolean;
  metricSteps?: string;
}

/** The task the flags ask for; an absent flag takes its value from CAM_DEFAULTS. */
export function camTaskFromFlags(options: CamCliOptions): CamTaskOptions {
  checkImageCommandOptions(options);
  const classes = classSpecs(options.class);
  if (classes.length > 0 && options.topK !== undefined) throw new UsageError('give --class or --top-k, not both');
  const alpha = options.alpha === undefined ? CAM_DEFAULTS.alpha : parseAlpha(options.alpha);
  const colormap = options.colormap ?? CAM_DEFAULTS.colormap;
  if (!isColormapName(colormap)) throw new UsageError(`unknown colormap '${colormap}': choose one of ${COLORMAPS.join(', ')}`);
  const score = options.score ?? CAM_DEFAULTS.score;
  if (!isScoreKind(score)) throw new UsageError(`--score ${score}: choose one of ${SCORE_KINDS.join(', ')}`);
  const method = canonicalMethod(options.method ?? CAM_DEFAULTS.method);
  const metrics = metricsFromFlags(options.metrics, options.metricSteps, method);
  return {
    command: 'cam',
    ...baseTaskOptions(options),
    method,
    layers: layerNames(options.layer),
    classes: [...new Set(classes)],
    topK: options.topK === undefined ? CAM_DEFAULTS.topK : parseCount(options.topK, '--top-k'),
    score,
    augSmooth: options.augSmooth === true,
    eigenSmooth: options.eigenSmooth === true,
    colormap: colormap as ColormapName,
    alpha,
    heatmapOnly: options.heatmapOnly === true,
    raw: options.raw === true,
    ...(metrics === undefined ? {} : { metrics }),
  };
}

/** A decimal fraction from 0 to 1 (Number() would read '' as 0 and '0x1' as 1). */
function parseAlpha(value: string): number {
  const text = value.trim();
  const alpha = /^(\d+\.?\d*|\.\d+)$/.test(text) ? Number(text) : Number.NaN;
  if (!(alpha >= 0 && alpha <= 1)) throw new UsageError(`--alpha '${value}' must be a number from 0 to 1`);
  return alpha;
}

/**
 * The `--class` values, trimmed. They are split on commas later, where the
 * labels are known (a whole ImageNet label holds commas: "tabby, tabby cat");
 * a value of blanks and commas only names no class: a usage error, not the
 * default (top 1) nor a run that fails every image.
 */
function classSpecs(values: readonly string[] | undefined): string[] {
  return (values ?? []).map((value) => {
    if (value.split(',').every((part) => part.trim() === '')) {
      throw new UsageError(`--class '${value}' names no class: give an index or a name, several separated by commas`);
    }
    return value.trim();
  });
}

export async function runCam(inputs: string[], options: CamCliOptions): Promise<number> {
  return runImageCommand(inputs, options, camTaskFromFlags(options), {
    writesFiles: true,
    printText: (records: InputRecord[]) => printWrittenFiles(records, options.out),
    printJson: (records: InputRecord[]) => records.flatMap((record) => (record.results ?? []).map((result) => withDisplayPaths(result as CamResultRecord, options.out))),
  });
}
