/**
 * A run over many images: the CI use. Inputs are expanded and sorted,
 * optionally sharded, batched in a fixed way (so results do not depend on
 * --jobs), processed in this thread or a worker pool with decoding and
 * encoding overlapping model work, and recorded in manifest.json. One bad
 * image is reported and skipped; a signal stops the run cleanly.
 */
import { statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { extname, join, relative, resolve } from 'node:path';
import { isInsideFolder } from '../util/inside-folder.js';
import { CamvizError, describeError } from '../util/errors.js';
import { WriteError } from '../util/atomic-file.js';
import { errorRecord } from '../tasks/records.js';
import type { BatchOutcome, InputImage, InputRecord, TaskOptions } from '../tasks/types.js';
import type { EventWriter } from '../render/tensorboard.js';
import type { EngineReport } from '../model/engine.js';
import { VERSION } from '../util/version.js';
import { expandInputs, isOneFile, outputCollisions } from './inputs.js';
import { effectiveJobs, machineLimits, workerFootprint } from './jobs.js';
import { acquireRunLock, removeStaleTemporaries } from './lock.js';
import { ensureWritable, removeEmptyFolders } from './out-dir.js';
import { type FolderOutputs, compactFolderLedger, refuseForeignPage, replaceableOutputs, runFolderOutputs } from './own-outputs.js';
import { type EarlierOutputs, type WrittenVersion, createLedger } from '../util/outputs-ledger.js';
import { MANIFEST_NAME, type Manifest, REPORT_NAME, manifestOptions, manifestModel, summarise, writeManifest } from './manifest.js';
import { type Executor, InProcessExecutor, PlannedExecutor, WorkerPool } from './pool.js';
import { plannable, takeCamPlan } from '../tasks/cam-plan.js';
import { type Progress, createProgress, formatDuration } from './progress.js';
import { type Shard, selectShard } from './shard.js';
import { ortThreadsFromEnv, wholeProcessOrtThreads } from '../engine/ort-threads.js';

export interface BatchRunOptions {
  task: TaskOptions;
  inputs: readonly string[];
  glob?: string;
  /** Worker threads; 1 runs in this thread. */
  jobs: number;
  shard?: Shard;
  skipExisting?: boolean;
  failFast?: boolean;
  quiet?: boolean;
  /** Write manifest.json (commands that write files). */
  manifest: boolean;
  /** Write index.html in the output folder. */
  report?: boolean;
  tensorboard?: { logdir: string; step: number };
}

export interface BatchRunResult {
  exitCode: number;
  records: InputRecord[];
  manifestPath?: string;
  interrupted: boolean;
  /** Worker threads the run used (1: this thread), after --jobs was capped. */
  jobs: number;
}

/** Signals that stop a run cleanly (manifest written), with their exit codes (128 + the signal's number). */
const SIGNAL_EXIT: Record<string, number> = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 };
const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGHUP', 'SIGINT', 'SIGTERM'];
const MANIFEST_INTERVAL_MS = 10_000;

export async function runBatch(options: BatchRunOptions): Promise<BatchRunResult> {
  const startedAt = new Date();
  const started = performance.now();
  const { images, settled, madeOutDir, earlier, notes } = await planInputs(options);
  try {
    // A single image needs no progress line; its errors are still printed.
    const progress = createProgress({ quiet: options.quiet === true || images.length <= 1 });
    const log = (message: string): void => progress.log(`camviz: ${message}`);
    for (const note of notes) log(note);
    // A run that writes files holds its output folder: two runs there would lose each other's records.
    const lock = options.manifest ? await acquireRunLock(options.task.outDir, log) : undefined;
    const heap = growHeapForRun(images.length);
    try {
      if (lock !== undefined) {
        await removeStaleTemporaries(options.task.outDir);
        await compactFolderLedger(options.task.outDir);
      }
      return await runPlanned(options, images, settled, { startedAt, started, progress, log, earlier });
    } finally {
      heap.restore();
      await lock?.release();
    }
  } catch (error) {
    // A run that fails before writing anything (a usage error, a model refused) leaves no empty output folder behind.
    if (madeOutDir !== undefined) await removeEmptyFolders(options.task.outDir, madeOutDir);
    throw error;
  }
}

/**
 * How much V8's old generation may grow after a full collection, in a run
 * of this many images: V8 picks a factor below 2 for a small live heap (a
 * folder run's is about 18 MB), so each batch's short-lived objects reach
 * the limit every few images. Measured on 200 photos (MobileNet v1, ONNX
 * Runtime, --jobs 1): 34 to 41 full collections, about 7 ms of CPU an image
 * on the main thread and V8's helper threads (concurrent marking), against
 * 7 to 9 with 4x (the heap's limit about 72 MB). Runs too short to collect
 * often, and a user's own --heap-growing-percent, are left alone.
 */
export function heapGrowingPercentFor(images: number, nodeFlags: string): number | undefined {
  if (images < THREADED_RUN_IMAGES) return undefined;
  if (/heap[-_]growing[-_]percent/.test(nodeFlags)) return undefined;
  return FOLDER_RUN_HEAP_GROWING_PERCENT;
}

const FOLDER_RUN_HEAP_GROWING_PERCENT = 300;
/** Runs in this process now growing the heap: the flag is V8's (process-wide), put back when the last ends. */
let heapGrowingRuns = 0;

/** Sets the heap growth for this run (see heapGrowingPercentFor); `restore` puts back V8's own choice. */
function growHeapForRun(images: number): { restore(): void } {
  const percent = heapGrowingPercentFor(images, [...process.execArgv, process.env['NODE_OPTIONS'] ?? ''].join(' '));
  if (percent === undefined) return { restore: () => undefined };
  if (heapGrowingRuns++ === 0) setFlagsFromString(`--heap-growing-percent=${percent}`);
  let restored = false;
  return {
    restore: () => {
      if (restored) return;
      restored = true;
      // 0 is V8's default: the factor chosen from the collector's speed again.
      if (--heapGrowingRuns === 0) setFlagsFromString('--heap-growing-percent=0');
    },
  };
}

interface RunStart {
  startedAt: Date;
  started: number;
  progress: Progress;
  log: (message: string) => void;
  /** What earlier runs wrote in --out (runs that write files). */
  earlier: FolderOutputs | undefined;
}

async function runPlanned(options: BatchRunOptions, images: InputImage[], settled: Map<InputImage, InputRecord>, { startedAt, started, progress, log, earlier }: RunStart): Promise<BatchRunResult> {
  const previous = options.skipExisting ? previousManifest(options.task.outDir, earlier, log) : undefined;
  const resumable = previous === undefined ? new Map<InputImage, InputRecord>() : resumableRecords(options.task, previous, images, settled, log);
  for (const [image, record] of resumable) settled.set(image, record);
  let todo = images.filter((image) => !settled.has(image));
  let batches = chunk(todo, options.task.batchSize);
  const jobs = await workerCount(options, batches.length, log);
  const executor = await startExecutor(options.task, jobs, todo.length, todo.length === 1 && oneImageFile(options), log, options.failFast === true);
  announceFallback(executorInfo(executor).engine, log);
  let executorClosed = false;
  const closeExecutor = async (): Promise<void> => {
    if (executorClosed) return;
    executorClosed = true;
    await executor.close().catch(() => undefined);
  };
  let stopSignal: string | undefined;
  let stoppedEarly = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopSignal !== undefined) {
      progress.log('camviz: stopping now');
      // No new batch starts; worker threads end by themselves, or are
      // terminated after a short deadline (WorkerPool.stopNow says what
      // becomes of the images in flight). The manifest follows, as below.
      void executor.stopNow();
      return;
    }
    stopSignal = signal;
    executor.cancel();
    progress.log(`camviz: ${signal}: finishing the images in progress, then writing the manifest (again to stop at once)`);
  };
  // Until the manifest is written: a signal while the workers close or the
  // manifest is written would otherwise end the process at once, without it.
  for (const signal of STOP_SIGNALS) process.on(signal, onSignal);
  // Whatever fails from here on (a TensorBoard folder, a full disk under the
  // manifest), the workers stop and the spinner goes, so the process can exit.
  try {
    // The model is known only once loaded: outputs of another model are not kept.
    if (previous !== undefined && resumable.size > 0 && previous.model.sha256 !== executorInfo(executor).model.sha256) {
      log(`--skip-existing: ${MANIFEST_NAME} in ${displayPath(options.task.outDir)} was written with another model (sha256 of model.json differs); processing every input`);
      for (const image of resumable.keys()) settled.delete(image);
      todo = images.filter((image) => !settled.has(image));
      batches = chunk(todo, options.task.batchSize);
    }
    const tensorboard = options.tensorboard ? await createEventWriter(options.tensorboard.logdir) : undefined;

    const outcomes: (BatchOutcome | undefined)[] = new Array(batches.length);
    const counts = { done: settled.size, errors: [...settled.values()].filter((record) => record.status === 'error').length, total: images.length };
    let lastManifest = performance.now();
    const currentManifest = (finished: boolean): Manifest =>
      buildManifest(options, executor, startedAt, finished, images, settled, outcomes, stopSignal !== undefined || stoppedEarly);
    const summaries = new SummaryLog(tensorboard, options.tensorboard?.step ?? 0);

    // From here on the run writes its manifest; its outputs are recorded in the ledger as they are written (OutputSet).
    if (options.manifest && options.task.command !== 'predict') await createLedger(options.task.outDir);
    await progress.start(images.length);
    // Inputs refused before any work (output collisions) are reported like the others.
    for (const image of images) {
      const record = settled.get(image);
      if (record?.status === 'error') log(record.error ?? 'failed');
    }
    try {
      await dispatch(batches, executor.capacity, async (batch, index) => {
        if (stopSignal !== undefined || stoppedEarly) return false;
        let outcome: BatchOutcome;
        try {
          outcome = await executor.process(batch);
        } catch (error) {
          if (stopSignal !== undefined) return false;
          outcome = { records: batch.map((image) => failedRecord(image, error)), summaries: [] };
        }
        outcomes[index] = outcome;
        summaries.flush(outcomes);
        for (const record of outcome.records) {
          counts.done++;
          if (record.status === 'error') {
            counts.errors++;
            progress.log(`camviz: ${record.error}`);
            if (record.stack !== undefined) progress.log(record.stack);
            if (options.failFast && !stoppedEarly) {
              stoppedEarly = true;
              executor.cancel();
            }
          }
        }
        progress.update(counts);
        if (options.manifest && performance.now() - lastManifest > MANIFEST_INTERVAL_MS) {
          lastManifest = performance.now();
          // A manifest that cannot be written now is reported by the final write, which decides.
          await writeManifest(options.task.outDir, currentManifest(false)).catch(() => undefined);
        }
        return true;
      });
    } finally {
      await closeExecutor();
      await tensorboard?.close();
    }

    const manifest = currentManifest(true);
    const manifestPath = options.manifest ? await saveManifest(options.task.outDir, manifest, log) : undefined;
    const reportFailed = options.report === true && manifestPath !== undefined && !(await saveReport(options.task.outDir, manifest, log));
    const notWritten = options.manifest && manifestPath === undefined ? `${MANIFEST_NAME} not written` : reportFailed ? `${REPORT_NAME} not written` : undefined;
    const stopped = stopSignal ? (manifest.interrupted ? `stopped by ${stopSignal}` : `${stopSignal} came, but every input was done`) : stoppedEarly ? 'stopped at the first failure (--fail-fast)' : undefined;
    progress.finish(summaryLine(manifest, images.length, (performance.now() - started) / 1000, manifestPath, [notWritten, stopped]));
    const failed = manifest.summary.error > 0 || manifest.summary.inputs < images.length || notWritten !== undefined;
    const exitCode = stopSignal !== undefined ? SIGNAL_EXIT[stopSignal] ?? 1 : failed ? 1 : 0;
    return { exitCode, records: manifest.records, ...(manifestPath === undefined ? {} : { manifestPath }), interrupted: manifest.interrupted, jobs: executor.workers };
  } catch (error) {
    progress.abort();
    throw error;
  } finally {
    await closeExecutor();
    for (const signal of STOP_SIGNALS) process.off(signal, onSignal);
  }
}

/** --skip-existing: the earlier run's manifest; a run without one starts over, and says so. */
function previousManifest(outDir: string, earlier: FolderOutputs | undefined, log: (message: string) => void): Manifest | undefined {
  const previous = earlier?.manifest;
  if (earlier?.unreadManifest !== undefined) log(`--skip-existing: ${MANIFEST_NAME} in ${displayPath(outDir)} is not one this camviz reads (${earlier.unreadManifest}); processing every input`);
  else if (previous === undefined) log(`--skip-existing: no ${MANIFEST_NAME} in ${displayPath(outDir)}; processing every input`);
  return previous;
}

/**
 * Writes the manifest; when it cannot be written, says so in one line and
 * removes the earlier run's manifest, which would otherwise pass for this
 * run's. Returns its path, or undefined when it was not written.
 */
async function saveManifest(outDir: string, manifest: Manifest, log: (message: string) => void): Promise<string | undefined> {
  try {
    return await writeManifest(outDir, manifest);
  } catch (error) {
    const path = join(outDir, MANIFEST_NAME);
    const removed = await rm(path).then(
      () => true,
      () => false,
    );
    const reason = error instanceof WriteError ? error.reason : describeError(error);
    log(`${MANIFEST_NAME} not written: ${reason}${removed ? `; the earlier ${MANIFEST_NAME} was removed` : ''} (${displayPath(path)})`);
    return undefined;
  }
}

/** Writes index.html; false (and one line) when it cannot be written. */
async function saveReport(outDir: string, manifest: Manifest, log: (message: string) => void): Promise<boolean> {
  const { writeReport } = await import('./report.js');
  try {
    await writeReport(outDir, manifest);
    return true;
  } catch (error) {
    log(`${REPORT_NAME} not written: ${error instanceof WriteError ? `${error.reason} (${displayPath(error.file ?? outDir)})` : describeError(error)}`);
    return false;
  }
}

/**
 * The worker threads to start: --jobs, but no more than the batches, the
 * cores, and the workers free memory holds; a cap is said in one line.
 */
async function workerCount(options: BatchRunOptions, batchCount: number, log: (message: string) => void): Promise<number> {
  const wanted = Math.min(options.jobs, Math.max(1, batchCount));
  if (wanted <= 1) return 1;
  const limits = await machineLimits(wanted, options.task.model.model);
  const decision = effectiveJobs(limits);
  if (decision.cappedBy === 'cores') log(`--jobs ${options.jobs} capped at ${decision.jobs} (cores)`);
  if (decision.cappedBy === 'memory') {
    const mib = (bytes: number): string => `${Math.round(bytes / 2 ** 20)} MiB`;
    log(`--jobs ${options.jobs} capped at ${decision.jobs} (memory: ${mib(limits.freeBytes)} free, about ${mib(workerFootprint(limits.weightBytes ?? 0))} a worker)`);
  }
  return decision.jobs;
}

/** The run's last line: counts, time, rate, where the manifest is, what was not written and why it stopped early. */
function summaryLine(manifest: Manifest, total: number, seconds: number, manifestPath: string | undefined, notes: readonly (string | undefined)[]): string {
  const rate = seconds > 0 ? (manifest.summary.inputs / seconds).toFixed(2) : '?';
  return (
    `camviz: ${manifest.summary.inputs} of ${total} images, ${manifest.summary.ok} ok, ${manifest.summary.error} failed, in ${formatDuration(seconds)} (${rate}/s)` +
    (manifestPath ? `; ${displayPath(manifestPath)}` : '') +
    notes.map((note) => (note === undefined ? '' : `; ${note}`)).join('')
  );
}

/** What planInputs makes ready. */
interface PlannedInputs {
  /** This run's images (sorted, this shard's), each with the files it may replace under --out (runs that write files). */
  images: InputImage[];
  /** The records of inputs refused before any work: those that would overwrite an earlier input's outputs. */
  settled: Map<InputImage, InputRecord>;
  /** The first folder made for --out, if any. */
  madeOutDir: string | undefined;
  /** What earlier runs wrote in --out (runs that write files). */
  earlier: FolderOutputs | undefined;
  /** What the input walk left out: camviz's outputs in an input folder (unless --quiet), files met twice (--verbose). */
  notes: string[];
}

/**
 * This run's images and what was found of --out. A run that writes files
 * replaces only files camviz wrote there: a manifest.json there that is
 * not camviz's stops it before any work (it would be replaced), and each
 * image is given the earlier outputs it may replace (see OutputSet).
 */
async function planInputs(options: BatchRunOptions): Promise<PlannedInputs> {
  const notes: string[] = [];
  const verbose = process.env['CAMVIZ_VERBOSE'] === '1';
  const everyImage = await expandInputs(options.inputs, {
    ...(options.glob === undefined ? {} : { glob: options.glob }),
    // A run's outputs are never its inputs, even when --out lies inside an input folder.
    ...(options.manifest ? { exclude: options.task.outDir } : {}),
    // Inputs a run leaves out as an earlier run's outputs are said in any run (a CI gate must not pass with images unseen); the same file met twice only with --verbose.
    note: (message: string, kind: 'outputs' | 'same-file') => {
      if (verbose || (kind === 'outputs' && options.quiet !== true)) notes.push(message);
    },
  });
  // Collisions are found in the whole list, not in this shard's part: two
  // colliding inputs in different shards would otherwise both be written.
  // Commands that write no files (predict) have nothing to collide.
  const collisions = options.manifest && options.task.command !== 'predict' ? outputCollisions(everyImage) : new Map<InputImage, string>();
  const earlier = options.manifest || options.skipExisting === true ? await runFolderOutputs(options.task.outDir) : undefined;
  if (options.manifest && options.report === true) await refuseForeignPage(options.task.outDir, REPORT_NAME, earlier?.files);
  const madeOutDir = options.manifest ? await ensureWritable(options.task.outDir) : undefined;
  const replaceable = earlier === undefined || !options.manifest ? undefined : await replaceableFiles(options.task.outDir, earlier.files);
  const images: InputImage[] = [];
  const settled = new Map<InputImage, InputRecord>();
  for (const found of selectShard(everyImage, options.shard)) {
    const image = replaceable === undefined ? found : { ...found, replaceable: replaceable(found.relative) };
    images.push(image);
    const earlierInput = collisions.get(found);
    if (earlierInput !== undefined) settled.set(image, collisionRecord(image, earlierInput));
  }
  return { images, settled, madeOutDir, earlier, notes };
}

/**
 * The earlier outputs an input (by its relative path) may replace: those
 * named `<its stem>.<...>`, where all its outputs are named (outputStem).
 * Others cannot be in its way; passing only these keeps what goes to the
 * worker threads small.
 */
async function replaceableFiles(outDir: string, files: ReadonlyMap<string, readonly WrittenVersion[]>): Promise<(relative: string) => EarlierOutputs> {
  const startingWith = await replaceableOutputs(outDir, files);
  return (relativePath) => startingWith(`${relativePath.slice(0, relativePath.length - extname(relativePath).length)}.`);
}

/** Images from which a single-process run starts WebAssembly threads (their start-up costs about 0.5 s). */
const THREADED_RUN_IMAGES = 8;

/**
 * Workers use the cores in a folder run; a run in this thread (--jobs 1)
 * gives its one model the cores: as ONNX Runtime's threads, or as
 * WebAssembly threads (see wasmThreadsFor).
 */
async function startExecutor(task: TaskOptions, jobs: number, images: number, planFits: boolean, log: (message: string) => void, failFast: boolean): Promise<Executor> {
  if (jobs > 1) return WorkerPool.start(withOrtThreads(task, 1), jobs, failFast);
  const planned = planFits ? await plannedExecutor(withOrtThreads(task, wholeProcessOrtThreads()), log, failFast) : undefined;
  if (planned !== undefined) return planned;
  const wasmThreads = await wasmThreadsFor(task, images);
  // Under auto, ONNX Runtime may refuse the model once it is loaded: tfjs then gets the threads of a tfjs run.
  const wasmThreadsIfTfjs = tfjsWasmThreads(images);
  const inProcess = withOrtThreads(task, wholeProcessOrtThreads());
  const model = { ...inProcess.model, wasmThreads, ...(wasmThreadsIfTfjs > wasmThreads ? { wasmThreadsIfTfjs } : {}) };
  return InProcessExecutor.start({ ...inProcess, model }, log, failFast);
}

/**
 * Whether the run is of one image file given by itself, the runs a plan
 * serves (tasks/cam-plan.ts): a plan is for the cold start of one file. A
 * folder's runs never are, even of one image or one shard's.
 */
function oneImageFile(options: BatchRunOptions): boolean {
  return options.shard === undefined && isOneFile(options.inputs);
}

/**
 * The planned run of a one-image request that its model's plan serves
 * (tasks/cam-plan.ts), or undefined: no plan holds, or it cannot run here
 * (its saved graph gone, ONNX Runtime absent), and the model is loaded.
 */
async function plannedExecutor(task: TaskOptions, log: (message: string) => void, failFast: boolean): Promise<PlannedExecutor | undefined> {
  if (task.command !== 'cam' || !plannable(task)) return undefined;
  const { plan, why } = await takeCamPlan(task.model);
  const verbose = process.env['CAMVIZ_VERBOSE'] === '1';
  if (plan === undefined) {
    if (verbose && why !== undefined) log(`the model's plan does not hold (${why}): loading the model`);
    return undefined;
  }
  const planned = await PlannedExecutor.start(task, plan, failFast, (why) => {
    if (verbose) log(`the model's plan does not run here (${why}): loading the model`);
  });
  if (planned !== undefined && verbose) log("running from the model's plan: neither tfjs nor the model's layers are loaded");
  return planned;
}

/** WebAssembly threads when tfjs runs the model's passes: the cores, for a run with enough images to repay their start-up. */
function tfjsWasmThreads(images: number): number {
  return images < THREADED_RUN_IMAGES ? 1 : availableParallelism();
}

/**
 * WebAssembly threads for a run in this thread: the cores when tfjs runs
 * the model's passes and the run has enough images to repay the threads'
 * start-up (about 0.6 s of CPU and 1 s before the first image on 2 cores);
 * one when ONNX Runtime runs them (--engine onnxruntime, or auto where it
 * loads), since tfjs then does only the CAM arithmetic on small maps —
 * unless the task runs wholly on tfjs (guided backprop: `tfjsOnly`).
 * These are the threads the backend starts with, before the model is
 * loaded; under auto, a model ONNX Runtime refuses gets a tfjs run's threads
 * once that is known (ModelSpec.wasmThreadsIfTfjs).
 */
export async function wasmThreadsFor(task: TaskOptions, images: number): Promise<number> {
  if (images < THREADED_RUN_IMAGES) return 1;
  if (task.model.tfjsOnly !== undefined) return tfjsWasmThreads(images);
  const engine = task.model.engine ?? 'auto';
  if (engine === 'onnxruntime') return 1;
  if (engine === 'auto') {
    const { loadOnnxRuntime } = await import('../engine/onnxruntime.js');
    if (loadOnnxRuntime().available) return 1;
  }
  return tfjsWasmThreads(images);
}

/**
 * ONNX Runtime's intra-op threads: workers share the cores, one thread each;
 * a run in this thread gives its one session the cores (its thread pool
 * starts at no cost worth counting). CAMVIZ_ORT_THREADS overrides both.
 */
function withOrtThreads(task: TaskOptions, threads: number): TaskOptions {
  if (ortThreadsFromEnv() !== undefined) return task;
  return { ...task, model: { ...task.model, ortThreads: threads } };
}

/**
 * Says once for the run (not once a worker) when an ONNX model runs on
 * tfjs under auto: always when ONNX Runtime refused the model (a per-model
 * fallback), with --verbose when ONNX Runtime is absent or broken.
 */
function announceFallback(engine: EngineReport | undefined, log: (message: string) => void): void {
  if (engine?.fallback === 'rejected') log(`running on tfjs: ${engine.reason ?? 'ONNX Runtime refused the model'}`);
  if (engine?.fallback === 'unavailable' && process.env['CAMVIZ_VERBOSE'] === '1') log(`engine: tfjs (${engine.reason ?? 'ONNX Runtime is unavailable'})`);
}

/**
 * Runs `fn` over the items with up to `capacity` in flight, starting them
 * in order; stops starting new ones once `fn` returns false.
 */
async function dispatch<T>(items: readonly T[], capacity: number, fn: (item: T, index: number) => Promise<boolean>): Promise<void> {
  let next = 0;
  let stop = false;
  const lanes = Array.from({ length: Math.max(1, Math.min(capacity, items.length)) }, async () => {
    while (!stop && next < items.length) {
      const index = next++;
      if (!(await fn(items[index]!, index))) stop = true;
    }
  });
  await Promise.all(lanes);
}

function buildManifest(
  options: BatchRunOptions,
  executor: Executor,
  startedAt: Date,
  finished: boolean,
  images: readonly InputImage[],
  settled: ReadonlyMap<InputImage, InputRecord>,
  outcomes: readonly (BatchOutcome | undefined)[],
  stopRequested: boolean,
): Manifest {
  const processed = new Map<string, InputRecord>();
  for (const outcome of outcomes) for (const record of outcome?.records ?? []) processed.set(keyOf(record), record);
  const records = images.flatMap((image) => {
    const record = settled.get(image) ?? processed.get(keyOf(image));
    return record === undefined ? [] : [record];
  });
  const info = executorInfo(executor);
  return {
    camviz: VERSION,
    command: options.task.command,
    model: info.model,
    backend: info.backend,
    ...(info.engine === undefined ? {} : { engine: info.engine }),
    options: manifestOptions(options.task),
    shard: options.shard ? [{ index: options.shard.index, count: options.shard.count }] : null,
    startedAt: startedAt.toISOString(),
    finishedAt: finished ? new Date().toISOString() : null,
    // A stop that left no input undone lost nothing: the run is whole.
    interrupted: stopRequested && records.length < images.length,
    workingDirectory: process.cwd(),
    summary: summarise(records),
    records,
  };
}

function executorInfo(executor: Executor): Pick<Manifest, 'model' | 'backend' | 'engine'> {
  if (executor instanceof PlannedExecutor) {
    const { plan, engine } = executor.task;
    return { model: manifestModel(plan.meta), backend: plan.backend, engine };
  }
  if (executor instanceof InProcessExecutor) {
    const { meta } = executor.context.model;
    return {
      model: manifestModel(meta),
      backend: { kind: executor.context.backend.kind, package: executor.context.backend.packageName },
      ...(executor.context.engine === undefined ? {} : { engine: executor.context.engine }),
    };
  }
  const pool = executor as WorkerPool;
  return { model: pool.modelInfo, backend: pool.backendInfo, ...(pool.engineInfo === undefined ? {} : { engine: pool.engineInfo }) };
}

function keyOf(item: { relative: string; input?: string; path?: string }): string {
  return `${item.relative}\u0000${item.input ?? item.path}`;
}

function chunk<T>(items: readonly T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let i = 0; i < items.length; i += Math.max(1, size)) chunks.push(items.slice(i, i + Math.max(1, size)));
  return chunks;
}

function collisionRecord(image: InputImage, earlier: string): InputRecord {
  return errorRecord(image, new CamvizError(`two inputs would write the same outputs: this one and ${earlier}`, { file: image.path }));
}

/** A batch that failed as a whole (a worker died): each of its images gets the error. */
function failedRecord(image: InputImage, error: unknown): InputRecord {
  return errorRecord(image, new CamvizError(error instanceof Error ? error.message : String(error), { file: image.path, cause: error }));
}

/**
 * --skip-existing: inputs whose earlier record is ok and whose outputs all
 * exist and are not empty, if the earlier run used the same command and
 * options (outputs of other options, e.g. another --class, must not pass for
 * this run's). Outputs are not flushed to disk one by one (see OutputSet):
 * after a power cut an output may be an empty file, which is made again.
 */
function resumableRecords(
  task: TaskOptions,
  previous: Manifest,
  images: readonly InputImage[],
  settled: ReadonlyMap<InputImage, InputRecord>,
  log: (message: string) => void,
): Map<InputImage, InputRecord> {
  const resumable = new Map<InputImage, InputRecord>();
  if (previous.command !== task.command || canonicalJson(previous.options) !== canonicalJson(manifestOptions(task))) {
    log(`--skip-existing: ${MANIFEST_NAME} in ${displayPath(task.outDir)} was written by a run with other options; processing every input`);
    return resumable;
  }
  const byKey = new Map(previous.records.map((record) => [keyOf(record), record]));
  const outDir = resolve(task.outDir);
  for (const image of images) {
    if (settled.has(image)) continue;
    const record = byKey.get(keyOf(image));
    if (record?.status !== 'ok' || record.outputs.length === 0) continue;
    // An output the manifest places outside the folder (a hand-edited ../../x) is not this run's to vouch for.
    if (!record.outputs.every((path) => isInsideFolder(outDir, resolve(outDir, path)))) continue;
    const written = record.outputs.map((path) => nonEmptyFileTime(join(outDir, path)));
    // An input changed after its outputs were written (a new picture under the same name) is explained again, as make would.
    const changed = modifiedAt(image.path);
    if (written.every((time) => time !== undefined && changed <= time)) resumable.set(image, { ...record, resumed: true });
  }
  return resumable;
}

/** A file's modification time (ms), NaN when it cannot be looked at (its run reports why). */
function modifiedAt(path: string): number {
  try {
    return statSync(path, { throwIfNoEntry: false })?.mtimeMs ?? Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** The modification time of a file (not a folder) of at least one byte; undefined for anything else. */
function nonEmptyFileTime(path: string): number | undefined {
  const info = statSync(path, { throwIfNoEntry: false });
  return info !== undefined && info.isFile() && info.size > 0 ? info.mtimeMs : undefined;
}

/** JSON with object keys sorted, so that equal options compare equal whatever their key order. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) =>
    item !== null && typeof item === 'object' && !Array.isArray(item)
      ? Object.fromEntries(Object.entries(item as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : item,
  );
}

/**
 * Writes batches' TensorBoard images in input order, whatever order the
 * batches finish in: one step per input that has images.
 */
class SummaryLog {
  private nextBatch = 0;

  constructor(
    private readonly writer: EventWriter | undefined,
    private step: number,
  ) {}

  /** Logs the finished batches from the next one on, and drops their images from memory. */
  flush(outcomes: (BatchOutcome | undefined)[]): void {
    while (this.nextBatch < outcomes.length && outcomes[this.nextBatch] !== undefined) {
      const outcome = outcomes[this.nextBatch]!;
      for (const record of outcome.records) {
        const images = outcome.summaries.filter((summary) => summary.input === record.input);
        for (const image of images) this.writer?.addImage(image.tag, image.png, image.width, image.height, this.step);
        if (images.length > 0) this.step++;
      }
      outcomes[this.nextBatch] = { records: outcome.records, summaries: [] };
      this.nextBatch++;
    }
  }
}

/** protobufjs loads only for runs that write a TensorBoard log. */
async function createEventWriter(logdir: string): Promise<EventWriter> {
  const { EventWriter } = await import('../render/tensorboard.js');
  try {
    return await EventWriter.create(logdir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new CamvizError(`TensorBoard log folder is not writable (${code ?? (error as Error).message})`, { file: logdir });
  }
}

/** A path relative to the working folder when it lies inside it. */
function displayPath(path: string): string {
  const inside = relative(process.cwd(), path);
  return inside === '' || inside.startsWith('..') ? path : inside;
}
