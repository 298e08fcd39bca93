/**
 * The options every image command shares: inputs, output folder, folder-run
 * controls. Parsed here into the plain data the tasks and the batch runner take.
 */
import { tfjsOnlyMethodReason } from '../cam/names.js';
import { join, resolve } from 'node:path';
import { type BatchRunOptions, runBatch } from '../batch/runner.js';
import { parseShard } from '../batch/shard.js';
import { defaultJobs } from '../batch/jobs.js';
import { requestedEngine } from '../engine/engine-choices.js';
import { releaseBackend } from '../engine/release.js';
import { UsageError } from '../util/errors.js';
import { parseBackground } from '../image/colour.js';
import type { ResizeMode } from '../image/geometry.js';
import { TASK_DEFAULTS } from '../tasks/defaults.js';
import type { ImageSpec, InputRecord, ModelSpec, TaskOptions } from '../tasks/types.js';
import { outFolder, parseCount, printJson } from './common.js';
import { onnxCacheLimitBytes } from '../model/onnx-writer/cache-limit.js';

export interface BatchCliOptions {
  model?: string;
  backend?: string;
  engine?: string;
  preprocess?: string;
  labels?: string;
  size?: string;
  resize?: string;
  background?: string;
  maxPixels?: string;
  maxOverlaySide?: string;
  glob?: string;
  out?: string;
  jobs?: string;
  batchSize?: string;
  shard?: string;
  shardCount?: string;
  skipExisting?: boolean;
  failFast?: boolean;
  quiet?: boolean;
  report?: boolean;
  json?: boolean;
  pngCompression?: string;
}

export function modelSpec(options: BatchCliOptions): ModelSpec {
  return {
    ...(options.model === undefined ? {} : { model: options.model }),
    ...(options.backend === undefined ? {} : { backend: options.backend }),
    ...(options.preprocess === undefined ? {} : { preprocess: options.preprocess }),
    ...(options.labels === undefined ? {} : { labels: options.labels }),
    ...(options.size === undefined ? {} : { size: options.size }),
  };
}

export function imageSpec(options: BatchCliOptions): ImageSpec {
  const background = options.background ?? TASK_DEFAULTS.image.background;
  parseBackground(background);
  return {
    resize: (options.resize ?? TASK_DEFAULTS.image.resize) as ResizeMode,
    background,
    maxPixels: options.maxPixels === undefined ? TASK_DEFAULTS.image.maxPixels : parseCount(options.maxPixels, '--max-pixels', 0),
    maxOverlaySide:
      options.maxOverlaySide === undefined ? TASK_DEFAULTS.image.maxOverlaySide : parseCount(options.maxOverlaySide, '--max-overlay-side', 0),
  };
}

export function baseTaskOptions(options: BatchCliOptions): Pick<TaskOptions, 'model' | 'image' | 'outDir' | 'batchSize' | 'pngCompression'> {
  const pngCompression = options.pngCompression === undefined ? TASK_DEFAULTS.pngCompression : parseCount(options.pngCompression, '--png-compression', 0);
  if (pngCompression > 9) throw new UsageError(`--png-compression ${pngCompression} must be 0-9`);
  // Read here, so that a wrong CAMVIZ_ONNX_CACHE_MB is a usage error before any work, whatever the model and engine.
  onnxCacheLimitBytes();
  return {
    // The engine resolved here, so that a wrong CAMVIZ_ENGINE is a usage error before any work.
    model: { ...modelSpec(options), engine: requestedEngine(options.engine) },
    image: imageSpec(options),
    outDir: outFolder(options.out) ?? resolve('camviz-out'),
    batchSize: options.batchSize === undefined ? TASK_DEFAULTS.batchSize : parseCount(options.batchSize, '--batch-size'),
    pngCompression,
  };
}

/** A result's output paths as the user sees them: under --out as given, not the manifest's relative form. */
export function withDisplayPaths<T extends { png: string; npy?: string; json?: string }>(result: T, out: string | undefined): T {
  const show = (path: string): string => join(out ?? 'camviz-out', path);
  return {
    ...result,
    png: show(result.png),
    ...(result.npy === undefined ? {} : { npy: show(result.npy) }),
    ...(result.json === undefined ? {} : { json: show(result.json) }),
  };
}

/** Why a task runs wholly on tfjs, if it does (a method that needs gradients down to the input). */
function tfjsOnlyReason(task: TaskOptions): string | undefined {
  return task.command === 'cam' ? tfjsOnlyMethodReason(task.method) : undefined;
}

/** Runs a command's task over its inputs; prints JSON if asked; returns the exit code. */
export async function runImageCommand(
  inputs: readonly string[],
  options: BatchCliOptions,
  task: TaskOptions,
  extra: Partial<BatchRunOptions> & {
    writesFiles: boolean;
    /** What --json prints. */
    printJson: (records: InputRecord[]) => unknown;
    /** What is printed without --json. */
    printText?: (records: InputRecord[]) => void;
  },
): Promise<number> {
  const shardCount = options.shardCount === undefined ? undefined : parseCount(options.shardCount, '--shard-count');
  const tfjsOnly = tfjsOnlyReason(task);
  let result: Awaited<ReturnType<typeof runBatch>>;
  try {
    result = await runBatch({
      task: tfjsOnly === undefined ? task : { ...task, model: { ...task.model, tfjsOnly } },
      inputs,
      ...(options.glob === undefined ? {} : { glob: options.glob }),
      jobs: options.jobs === undefined ? defaultJobs(task.model.engine ?? 'auto', tfjsOnly !== undefined) : parseCount(options.jobs, '--jobs'),
      ...(options.shard === undefined ? {} : { shard: parseShard(options.shard, process.env, shardCount) }),
      skipExisting: options.skipExisting === true,
      failFast: options.failFast === true,
      quiet: options.quiet === true,
      manifest: extra.writesFiles,
      report: options.report === true,
      ...(extra.tensorboard === undefined ? {} : { tensorboard: extra.tensorboard }),
    });
  } finally {
    await releaseBackend();
  }
  if (options.json) printJson(extra.printJson(result.records));
  else extra.printText?.(result.records);
  return result.exitCode;
}
