/**
 * Where batches run: in this thread, or in a pool of worker threads, each
 * with its own backend and model. Either way a batch's outcome does not
 * depend on where it ran, so outputs are identical for any --jobs.
 */
import { workerExecArgv } from '../util/worker-args.js';
import { bundleIsCurrent } from '../util/bundle-choice.js';
import { optOutOfOrtTelemetry } from '../engine/onnxruntime.js';
import { rm } from 'node:fs/promises';
import { resolve as resolvePath } from 'node:path';
import { Worker } from 'node:worker_threads';
import { CamvizError, UsageError } from '../util/errors.js';
import type { Task } from '../tasks/index.js';
import type { BatchOutcome, CamTaskOptions, InputImage, TaskOptions } from '../tasks/types.js';
import { type TaskContext, failureSeen, requestStop } from '../tasks/common.js';
import type { CamPlan } from '../tasks/cam-plan.js';
import type { PlannedCamTask } from '../tasks/planned-cam.js';
import type { EngineReport } from '../model/engine.js';
import type { ManifestModel } from './manifest.js';
import { BatchWrites, batchWriteWatcher, batchWrites } from './batch-writes.js';

/**
 * The worker threads' entry: its bundle (scripts/bundle-cli.ts) while
 * current, which each thread loads as one file instead of some 150 ES
 * modules (a 60-image `--jobs 2` run: 0.95x wall), else the modules.
 * Written from dist/src/: the URLs resolve from the CLI's bundle in
 * dist/src/cli/ too.
 */
function workerEntry(): URL {
  const bundle = new URL('../batch/worker.cjs', import.meta.url);
  const modules = new URL('../batch/worker.js', import.meta.url);
  return bundleIsCurrent(bundle, modules) ? bundle : modules;
}

/** What a worker thread starts with. */
export interface WorkerData {
  options: TaskOptions;
  failFast: boolean;
}

export type ToWorker = { type: 'batch'; id: number; inputs: InputImage[] } | { type: 'cancel' } | { type: 'stop' };
export type FromWorker =
  | { type: 'ready'; model: RunModelInfo; backend: RunBackendInfo; engine?: EngineReport }
  | { type: 'failed'; error: string; exitCode: number }
  | { type: 'done'; id: number; outcome: BatchOutcome }
  /** An output file is about to be written for batch `batch` (tasks/common.ts watchOutputs). */
  | { type: 'writing'; path: string; batch?: number }
  /** A write told of failed: what is at `path` is not this run's (an earlier run's map, perhaps), and stays. */
  | { type: 'not-written'; path: string }
  /** --fail-fast: an image failed in this worker, which has stopped; the others should too. */
  | { type: 'stopping' }
  | { type: 'error'; id: number; error: string };

/** The model a worker loaded, as the manifest records it. */
export type RunModelInfo = ManifestModel;

export interface RunBackendInfo {
  kind: string;
  package: string;
}

export interface Executor {
  /** Batches that may be in flight at once. */
  readonly capacity: number;
  /** Worker threads (1: batches run in this thread). */
  readonly workers: number;
  process(batch: readonly InputImage[]): Promise<BatchOutcome>;
  /** The run is stopping: batches not yet computing come back empty. */
  cancel(): void;
  close(): Promise<void>;
  /**
   * Stops at once (second signal): no batch is taken from now on. Batches
   * under way end as the executor can end them safely (see each one's).
   * Resolves with how each worker thread ended (none when in this thread).
   */
  stopNow(): Promise<readonly WorkerEnd[]>;
}

/**
 * Runs batches in this thread; three in flight: one decoding and one being
 * written while one is in model work, which runs a batch at a time
 * (tasks/common.ts, ModelWork).
 */
export class InProcessExecutor implements Executor {
  readonly capacity = 3;
  readonly workers = 1;

  private constructor(
    readonly context: TaskContext,
    private readonly task: Task,
    private readonly tasks: Pick<typeof import('../tasks/index.js'), 'processStopping' | 'requestStop'>,
  ) {}

  private nextBatch = 0;

  static async start(options: TaskOptions, log?: (message: string) => void, failFast = false): Promise<InProcessExecutor> {
    // Loaded here, not at the top: a worker run's main thread never needs TensorFlow.js.
    const tasks = await import('../tasks/index.js');
    const { context, task } = await tasks.startTask(options, log, failFast);
    tasks.watchOutputs(batchWriteWatcher());
    return new InProcessExecutor(context, task, tasks);
  }

  /** A batch that throws gets no records (the runner fails its images), so the outputs it wrote go first: no map on disk without its record. */
  async process(batch: readonly InputImage[]): Promise<BatchOutcome> {
    const writes = new BatchWrites(this.nextBatch++);
    try {
      return await batchWrites.run(writes, () => this.tasks.processStopping(this.task, this.context, batch));
    } catch (error) {
      await writes.removeWritten();
      throw error;
    }
  }

  cancel(): void {
    this.tasks.requestStop(this.context);
  }

  async close(): Promise<void> {
    this.context.model.dispose();
  }

  /** The model is released at once; a batch under way ends when its synchronous model work does. */
  async stopNow(): Promise<readonly WorkerEnd[]> {
    await this.close();
    return [];
  }
}

/**
 * A planned run in this thread (tasks/cam-plan.ts): the plan's task, with
 * neither the model nor tfjs loaded. One image, hence one batch in flight.
 */
export class PlannedExecutor implements Executor {
  readonly capacity = 1;
  readonly workers = 1;

  private constructor(readonly task: PlannedCamTask) {}

  /** The planned run, or undefined when the plan cannot run here (said to `unusable`): the run then loads the model. */
  static async start(options: CamTaskOptions, plan: CamPlan, failFast: boolean, unusable: (why: string) => void): Promise<PlannedExecutor | undefined> {
    // Loaded here, not at the top: the command line's other runs never need it.
    const { PlannedCamTask, PlanUnusableError } = await import('../tasks/planned-cam.js');
    try {
      const task = await PlannedCamTask.open(plan, options);
      task.context.stop = { requested: false, onFailure: failFast };
      return new PlannedExecutor(task);
    } catch (error) {
      if (!(error instanceof PlanUnusableError)) throw error;
      unusable(error.message);
      return undefined;
    }
  }

  async process(batch: readonly InputImage[]): Promise<BatchOutcome> {
    const outcome = await this.task.process(batch);
    if (outcome.records.some((record) => record.status === 'error')) failureSeen(this.task.context);
    return outcome;
  }

  cancel(): void {
    requestStop(this.task.context);
  }

  async close(): Promise<void> {}

  async stopNow(): Promise<readonly WorkerEnd[]> {
    return [];
  }
}

interface PoolWorker {
  worker: Worker;
  inFlight: number;
  /** Set once the thread has exited: it gets no batches and is not waited for. */
  exited: boolean;
  /** Settles when the thread exits; made when the thread starts, so that an early exit is not missed. */
  exit: Promise<void>;
  /** Set once it has been sent 'stop' (it is sent once). */
  stopSent: boolean;
  /** Output files it said it writes whose records have not come back (absolute paths), with the batch each was written for. */
  unrecorded: Map<string, number | undefined>;
}

/**
 * How long a worker asked to stop at once (second signal) may take to exit
 * by itself before it is terminated. A worker finishes the batch it is
 * computing first: one ONNX Runtime pass or one sharp call ends well within
 * this; tfjs work on a large model may not, and is terminated safely.
 */
export const STOP_DEADLINE_MS = 2_000;

/** How a thread asked to stop ended. */
export type WorkerEnd = 'exited' | 'terminated';

/**
 * Waits up to `deadlineMs` for a thread that was asked to stop to exit by
 * itself (`exit` settles when it has), and terminates it only then.
 * Terminating is the last resort: a thread terminated while inside a native
 * addon's callback (sharp, onnxruntime-node: node-addon-api with C++
 * exceptions) throws out of the addon during its teardown, and
 * std::terminate aborts the whole process, with no exit code and no
 * manifest. A thread still running after the deadline is in JavaScript or
 * WebAssembly (tfjs computes synchronously), which terminates cleanly.
 */
export async function exitOrTerminate(worker: Worker, exit: Promise<unknown>, deadlineMs: number): Promise<WorkerEnd> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'deadline'>((resolve) => {
    timer = setTimeout(() => resolve('deadline'), deadlineMs);
  });
  const first = await Promise.race([exit.then(() => 'exited' as const), deadline]);
  clearTimeout(timer);
  if (first === 'exited') return 'exited';
  await worker.terminate();
  return 'terminated';
}

/** A started thread with its exit watched from the start. */
function poolWorker(worker: Worker): PoolWorker {
  const entry: PoolWorker = { worker, inFlight: 0, exited: false, exit: Promise.resolve(), stopSent: false, unrecorded: new Map() };
  entry.exit = new Promise<void>((resolve) =>
    worker.once('exit', () => {
      entry.exited = true;
      resolve();
    }),
  );
  return entry;
}

/** A pool of worker threads; each takes up to three batches so its own decode/encode overlap its model work. */
export class WorkerPool implements Executor {
  readonly capacity: number;
  readonly workers: number;
  private readonly pending = new Map<number, { resolve: (outcome: BatchOutcome) => void; reject: (error: Error) => void; worker: PoolWorker }>();
  private nextId = 0;
  /** Set by stopNow: how the threads ended; no batch is taken once it is. */
  private stopping: Promise<WorkerEnd[]> | undefined;
  /** Removals of the outputs of batches never answered (removeUnrecorded), waited for by close and stopNow. */
  private readonly removals: Promise<void>[] = [];

  private constructor(
    private readonly threads: PoolWorker[],
    /** The run's output folder, which records' outputs are relative to. */
    private readonly outDir: string,
    readonly modelInfo: RunModelInfo,
    readonly backendInfo: RunBackendInfo,
    /** The first worker's engine: every worker loads the same model with the same request. */
    readonly engineInfo: EngineReport | undefined,
  ) {
    // Three batches a worker: one computing (one at a time: tasks/common.ts, ModelWork) while the next decodes and the last encodes.
    this.capacity = threads.length * 3;
    this.workers = threads.length;
    for (const entry of threads) {
      entry.worker.on('message', (message: FromWorker) => this.receive(entry, message));
      entry.worker.on('error', (error) => this.failWorker(entry, error));
      entry.worker.on('exit', (code) => this.failWorker(entry, new Error(`worker exited with code ${code}`)));
    }
  }

  /** Starts `jobs` threads of the batch worker (`entry`: a stand-in, in tests). */
  static async start(options: TaskOptions, jobs: number, failFast = false, entry: URL = workerEntry()): Promise<WorkerPool> {
    // Workers may load ORT; the opt-out must be in the process's environment before (not in a worker's copy).
    optOutOfOrtTelemetry();
    const entries = Array.from({ length: jobs }, () =>
      poolWorker(new Worker(entry, { workerData: { options, failFast } satisfies WorkerData, execArgv: workerExecArgv() })),
    );
    const ready = entries.map(
      ({ worker }) =>
        new Promise<Extract<FromWorker, { type: 'ready' }>>((resolve, reject) => {
          const onMessage = (message: FromWorker): void => {
            worker.off('message', onMessage);
            if (message.type === 'ready') resolve(message);
            else if (message.type === 'failed') reject(message.exitCode === 2 ? new UsageError(message.error) : new CamvizError(message.error));
            else reject(new Error(`worker sent ${message.type} before ready`));
          };
          worker.on('message', onMessage);
          worker.once('error', reject);
        }),
    );
    let first: Extract<FromWorker, { type: 'ready' }>;
    try {
      [first] = (await Promise.all(ready)) as [Extract<FromWorker, { type: 'ready' }>];
    } catch (error) {
      // As at a second signal: each thread is asked to stop and exits by itself (one still loading reads the
      // request once ready; one that failed has ended), and is terminated only past the deadline (exitOrTerminate).
      await Promise.all(
        entries.map((entry) => {
          entry.worker.postMessage({ type: 'stop' } satisfies ToWorker);
          return exitOrTerminate(entry.worker, entry.exit, STOP_DEADLINE_MS);
        }),
      );
      throw reviveError(error);
    }
    return new WorkerPool(entries, options.outDir, first.model, first.backend, first.engine);
  }

  process(batch: readonly InputImage[]): Promise<BatchOutcome> {
    if (this.stopping !== undefined) return Promise.reject(new Error('the run is stopping'));
    const alive = this.threads.filter((candidate) => !candidate.exited);
    // A batch posted to an exited thread would never be answered.
    if (alive.length === 0) return Promise.reject(new Error('every worker thread has stopped'));
    const entry = alive.reduce((best, candidate) => (candidate.inFlight < best.inFlight ? candidate : best));
    const id = this.nextId++;
    entry.inFlight++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, worker: entry });
      entry.worker.postMessage({ type: 'batch', id, inputs: [...batch] } satisfies ToWorker);
    });
  }

  cancel(): void {
    for (const entry of this.threads) if (!entry.exited) entry.worker.postMessage({ type: 'cancel' } satisfies ToWorker);
  }

  private receive(entry: PoolWorker, message: FromWorker): void {
    if (message.type === 'stopping') {
      this.cancel();
      return;
    }
    if (message.type === 'writing') {
      entry.unrecorded.set(resolvePath(message.path), message.batch);
      return;
    }
    if (message.type === 'not-written') {
      entry.unrecorded.delete(resolvePath(message.path));
      return;
    }
    if (message.type !== 'done' && message.type !== 'error') return;
    const waiting = this.pending.get(message.id);
    if (waiting === undefined) return;
    this.pending.delete(message.id);
    entry.inFlight--;
    if (message.type === 'done') {
      for (const record of message.outcome.records) for (const output of record.outputs) entry.unrecorded.delete(resolvePath(this.outDir, output));
      // Transferred PNG bytes arrive as plain Uint8Arrays: nothing to revive.
      waiting.resolve(message.outcome);
    } else {
      // The batch threw: no record comes of it, so the outputs its thread wrote for it go (its writes have settled: worker.ts), then it is failed.
      const removal = this.removeUnrecorded(entry, message.id);
      this.removals.push(removal);
      void removal.then(() => waiting.reject(new Error(message.error)));
    }
  }

  private failWorker(entry: PoolWorker, error: Error): void {
    let unanswered = false;
    for (const [id, waiting] of this.pending) {
      if (waiting.worker !== entry) continue;
      this.pending.delete(id);
      entry.inFlight--;
      waiting.reject(error);
      unanswered = true;
    }
    if (unanswered) this.removals.push(this.removeUnrecorded(entry));
  }

  /**
   * Removes the outputs the thread said it writes whose records never came
   * back: those of batch `batch`, which threw (told once its writes had
   * settled), or, without `batch`, those of every batch once the thread has
   * ended: a batch unanswered when its thread was terminated (second
   * signal) or died gets no record, so its maps go too (no map on disk
   * without its record). Node settles a thread's file operations before its
   * exit, so none lands after this. Only files this run told of are
   * removed, never one whose write failed (`not-written`).
   */
  private async removeUnrecorded(entry: PoolWorker, batch?: number): Promise<void> {
    if (batch === undefined) await entry.exit;
    const paths = [...entry.unrecorded].flatMap(([path, writtenFor]) => (batch === undefined || writtenFor === batch ? [path] : []));
    for (const path of paths) entry.unrecorded.delete(path);
    await Promise.all(paths.map((path) => rm(path, { force: true }).catch(() => undefined)));
  }

  /** Asks a thread to release its model and exit by itself (worker.ts), once. */
  private sendStop(entry: PoolWorker): void {
    if (entry.stopSent || entry.exited) return;
    entry.stopSent = true;
    entry.worker.postMessage({ type: 'stop' } satisfies ToWorker);
  }

  /** Ends the threads after the run's last batch; after stopNow, when they have exited or been terminated. */
  async close(): Promise<void> {
    for (const entry of this.threads) this.sendStop(entry);
    // Threads already gone (crashed, or terminated) resolved their exit then: none is waited for in vain.
    await Promise.all(this.threads.map((entry) => entry.exit));
    await Promise.all(this.removals);
  }

  /**
   * Second signal: no batch is taken from now on, and every thread is asked
   * to stop (worker.ts: its batches not yet computing come back empty, the
   * one computing finishes and is answered, then it releases its model and
   * exits). A batch answered meanwhile is complete, outputs written and
   * record made, so it is recorded like any other; a batch still unanswered
   * when its thread exits or is terminated after STOP_DEADLINE_MS is
   * rejected, and the runner drops it without a record; the maps its thread
   * wrote for it are removed (removeUnrecorded) before this resolves.
   * Resolves with how each thread ended.
   */
  stopNow(deadlineMs = STOP_DEADLINE_MS): Promise<readonly WorkerEnd[]> {
    this.stopping ??= this.endThreads(deadlineMs);
    return this.stopping;
  }

  private async endThreads(deadlineMs: number): Promise<WorkerEnd[]> {
    const ends = await Promise.all(
      this.threads.map((entry) => {
        this.sendStop(entry);
        return entry.exited ? Promise.resolve<WorkerEnd>('exited') : exitOrTerminate(entry.worker, entry.exit, deadlineMs);
      }),
    );
    await Promise.all(this.removals);
    return ends;
  }
}

function reviveError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
