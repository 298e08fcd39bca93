/** `camviz cam` / `camviz gradcam`: class activation maps over images. */
import { access, constants } from 'node:fs/promises';
import { SCORE_KINDS, TARGET_KINDS, canonicalMethod, isScoreKind, isTargetKind } from '../cam/names.js';
import { type TargetSpec, parseRegionBox } from '../cam/targets/spec.js';
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
  target?: string;
  output?: string;
  unit?: string;
  region?: string;
  mask?: string;
  reference?: string;
  embedding?: string;
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
    ...(targetSpecOf(options) ?? {}),
    augSmooth: options.augSmooth === true,
    eigenSmooth: options.eigenSmooth === true,
    colormap: colormap as ColormapName,
    alpha,
    heatmapOnly: options.heatmapOnly === true,
    raw: options.raw === true,
    ...(metrics === undefined ? {} : { metrics }),
  };
}

/**
 * The target flags as a spec; none: undefined, the model's kind. Whether
 * they fit the model (and each other) is checked when the model is loaded,
 * before any image.
 */
function targetSpecOf(options: CamCliOptions): { target: TargetSpec } | undefined {
  const { target: kind, output, unit, region, mask, reference, embedding } = options;
  if (kind !== undefined && !isTargetKind(kind)) throw new UsageError(`--target ${kind}: choose one of ${TARGET_KINDS.join(', ')}`);
  const spec: TargetSpec = {
    ...(kind === undefined ? {} : { kind }),
    ...(output === undefined ? {} : { output }),
    ...(unit === undefined ? {} : { unit: parseCount(unit, '--unit', 0) }),
    ...(region === undefined ? {} : { region: parseRegion(region) }),
    ...(mask === undefined ? {} : { mask }),
    ...(reference === undefined ? {} : { reference }),
    ...(embedding === undefined ? {} : { embedding }),
  };
  // Their unit is given (--unit) or single: there is no top k to take.
  if ((kind === 'output' || kind === 'similarity') && options.topK !== undefined) throw new UsageError(`--top-k does not apply to --target ${kind}`);
  return Object.keys(spec).length === 0 ? undefined : { target: spec };
}

function parseRegion(text: string): TargetSpec['region'] {
  const box = parseRegionBox(text);
  if (typeof box === 'string') throw new UsageError(`--region '${text}': ${box}`);
  return box;
}

/**
 * The files a target reads, checked before the model loads: a mask that
 * cannot be read or is empty, a reference that is not there.
 */
async function checkTargetFiles(spec: TargetSpec | undefined): Promise<void> {
  if (spec?.mask !== undefined) {
    const { loadRegionMask } = await import('../cam/targets/region.js');
    await loadRegionMask(spec.mask);
  }
  if (spec?.reference !== undefined) {
    try {
      await access(spec.reference, constants.R_OK);
    } catch {
      throw new UsageError('cannot read the --reference image', { file: spec.reference });
    }
  }
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
  const task = camTaskFromFlags(options);
  await checkTargetFiles(task.target);
  return runImageCommand(inputs, options, task, {
    writesFiles: true,
    printText: (records: InputRecord[]) => printWrittenFiles(records, options.out),
    printJson: (records: InputRecord[]) => records.flatMap((record) => (record.results ?? []).map((result) => withDisplayPaths(result as CamResultRecord, options.out))),
  });
}
