/** `camviz fmap`: feature-map grids of chosen layers. */
import { resolve } from 'node:path';
import { UsageError } from '../util/errors.js';
import { COLORMAPS, type ColormapName, isColormapName } from '../render/colormap.js';
import { FMAP_DEFAULTS } from '../tasks/defaults.js';
import type { FmapResultRecord, FmapTaskOptions, InputRecord } from '../tasks/types.js';
import { type BatchCliOptions, baseTaskOptions, runImageCommand, withDisplayPaths } from './run-command.js';
import { checkImageCommandOptions, layerNames, parseCount, printWrittenFiles } from './common.js';
import { OPTION_LIMITS } from './options.js';

export interface FmapCliOptions extends BatchCliOptions {
  layer?: string[];
  allConv?: boolean;
  maxChannels?: string;
  nrow?: string;
  padding?: string;
  tileSize?: string;
  colormap?: string;
  raw?: boolean;
  tensorboard?: string;
  step?: string;
}

/** The task the flags ask for; an absent flag takes its value from FMAP_DEFAULTS. */
export function fmapTaskFromFlags(options: FmapCliOptions): FmapTaskOptions {
  checkImageCommandOptions(options);
  const colormap = options.colormap ?? FMAP_DEFAULTS.colormap;
  if (!isColormapName(colormap)) throw new UsageError(`unknown colormap '${colormap}': choose one of ${COLORMAPS.join(', ')}`);
  return {
    command: 'fmap',
    ...baseTaskOptions(options),
    layers: layerNames(options.layer),
    allConv: options.allConv === true,
    ...(options.maxChannels === undefined ? {} : { maxChannels: parseCount(options.maxChannels, '--max-channels') }),
    ...(options.nrow === undefined ? {} : { nrow: parseCount(options.nrow, '--nrow') }),
    padding: options.padding === undefined ? FMAP_DEFAULTS.padding : parseCount(options.padding, '--padding', 0, OPTION_LIMITS.padding.max),
    tileSize: options.tileSize === undefined ? FMAP_DEFAULTS.tileSize : parseCount(options.tileSize, '--tile-size', 1, OPTION_LIMITS.tileSize.max),
    colormap: colormap as ColormapName,
    raw: options.raw === true,
    tensorboard: options.tensorboard !== undefined,
  };
}

export async function runFmap(inputs: string[], options: FmapCliOptions): Promise<number> {
  return runImageCommand(inputs, options, fmapTaskFromFlags(options), {
    writesFiles: true,
    printText: (records: InputRecord[]) => printWrittenFiles(records, options.out),
    ...(options.tensorboard === undefined
      ? {}
      : { tensorboard: { logdir: resolve(options.tensorboard), step: parseCount(options.step ?? '0', '--step', 0) } }),
    printJson: (records: InputRecord[]) => records.flatMap((record) => (record.results ?? []).map((result) => withDisplayPaths(result as FmapResultRecord, options.out))),
  });
}
