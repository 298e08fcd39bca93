/**
 * ONNX Runtime's host pool: worker threads, each with a single-threaded
 * session of the same model, for long runs of batches given as plain data
 * (Score-CAM's masked inputs). onnxruntime-node runs a session
 * synchronously on the main thread; here the main thread only builds and
 * posts batches while the workers run them, and workers that never wait
 * for each other replace intra-op threads that meet at every op. Measured
 * on MobileNet v1 0.75, 2 cores (interleaved, under load): two 1-thread
 * workers run a batch of 8 in 0.77x the time of one 2-thread session at
 * best, for 0.85x its CPU time (README, Performance).
 *
 * A batch's input buffer is transferred to its worker and back (no copy)
 * when the caller gives it up (OrtExecutor's `hostInputBuffer` buffers),
 * copied otherwise. A worker that fails or exits rejects its batches with
 * one line and takes no more; once none is left the pool says it is not
 * usable, so that callers run in this thread.
 */
import { Worker } from 'node:worker_threads';
import { CamvizError, describeError } from '../util/errors.js';
import { bundleIsCurrent } from '../util/bundle-choice.js';
import { workerExecArgv } from '../util/worker-args.js';
import { type OrtValueMetadata, optOutOfOrtTelemetry } from '../engine/onnxruntime.js';
import type { FromHostWorker, HostValue, HostWorkerData, ToHostWorker } from './ort-host-worker.js';

export type { HostValue } from './ort-host-worker.js';

/** Batches queued on a worker: one running, the next waiting, so that it never waits for the main thread. */
const QUEUE_PER_WORKER = 2;

interface HostWorker {
  readonly worker: Worker;
  ready: boolean;
  /** Its thread has ended. */
  exited: boolean;
  /** Why it stopped taking batches; undefined while it may. */
  stopped: string | undefined;
  readonly pending: Map<number, Pending>;
}

interface Pending {
  resolve(result: { outputs: Readonly<Record<string, HostValue>>; input: Float32Array }): void;
  reject(error: Error): void;
}

/**
 * A host worker's entry: its CommonJS bundle (scripts/bundle-cli.ts) while
 * current, else the module. A worker whose entry is an ES module starts
 * about 12 ms later (its first message after 58-65 ms against 47-52 for
 * CommonJS, bare workers): for the session made ahead of a cold run, whose
 * worker can be its critical path, that is the run's time. Written from
 * dist/src/: the URLs resolve from the CLI's bundle in dist/src/cli/ too.
 */
function hostWorkerEntry(): URL {
  const bundle = new URL('../executor/ort-host-worker.cjs', import.meta.url);
  const module = new URL('../executor/ort-host-worker.js', import.meta.url);
  return bundleIsCurrent(bundle, module) ? bundle : module;
}

export class OrtHostPool {
  private readonly workers: HostWorker[];
  /** The outputs every worker's session holds (a batch fetches some of them). */
  readonly outputNames: readonly string[];
  /** What the first worker ready said of its session's inputs (empty until then). */
  inputMetadata: readonly OrtValueMetadata[] = [];
  /** ONNX Runtime's version, once a worker has loaded it. */
  loadedVersion: string | undefined;
  /** Set once the first worker is ready (with its input metadata). */
  private sawReady = false;
  /** What the first worker ready said of the saved graph its session may have come from. */
  savedGraph: string | undefined;
  private nextId = 0;
  private closed = false;
  /** Called when a worker becomes ready or stops. */
  private readonly waiters = new Set<() => void>();

  /** Starts `count` workers at once; batches go to them as each is ready (`usable` says whether any may ever be). */
  constructor(
    count: number,
    data: HostWorkerData,
    /** The model file, named in errors. */
    private readonly file: string | undefined,
  ) {
    this.outputNames = data.outputNames;
    this.workers = Array.from({ length: count }, () => this.startWorker(data));
  }

  /** Batches worth keeping in flight to keep every worker that may run them busy. */
  get lanes(): number {
    return this.workers.filter((entry) => entry.stopped === undefined).length * QUEUE_PER_WORKER;
  }

  /** Whether a worker is ready for batches now. */
  get ready(): boolean {
    return this.workers.some((entry) => entry.ready && entry.stopped === undefined);
  }

  /** ONNX Runtime's version once a worker has loaded it; undefined once none ever will. */
  async whenLoaded(): Promise<string | undefined> {
    while (this.loadedVersion === undefined && this.usable) await new Promise<void>((resolve) => this.waiters.add(resolve));
    return this.loadedVersion;
  }

  /** Resolves true once a worker is ready, false once none ever will be. */
  async whenReady(): Promise<boolean> {
    while (!this.ready && this.usable) await new Promise<void>((resolve) => this.waiters.add(resolve));
    return this.ready;
  }

  /** Whether a batch is in flight. */
  get busy(): boolean {
    return this.workers.some((entry) => entry.pending.size > 0);
  }

  /** Whether a worker is ready or still starting. */
  get usable(): boolean {
    return !this.closed && this.workers.some((entry) => entry.stopped === undefined);
  }

  /**
   * Runs one batch on the ready worker with the fewest batches queued,
   * fetching `fetches` (among `outputNames`).
   * `transfer`: `data`'s buffer moves to the worker (detached here) and
   * comes back as `input`.
   */
  run(data: Float32Array, dims: readonly number[], fetches: readonly string[], transfer: boolean): Promise<{ outputs: Readonly<Record<string, HostValue>>; input: Float32Array }> {
    const candidates = this.workers.filter((entry) => entry.ready && entry.stopped === undefined);
    if (candidates.length === 0) return Promise.reject(new CamvizError('no ONNX Runtime worker is ready', this.errorOptions()));
    const entry = candidates.reduce((best, candidate) => (candidate.pending.size < best.pending.size ? candidate : best));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (entry.pending.size === 0) entry.worker.ref();
      entry.pending.set(id, { resolve, reject });
      const message: ToHostWorker = { type: 'run', id, data, dims, fetches };
      entry.worker.postMessage(message, transfer ? [data.buffer as ArrayBuffer] : []);
    });
  }

  /**
   * Ends every worker; batches not yet answered are rejected. A worker is
   * asked to release its session and end (one still starting, once it is
   * ready), never terminated: terminating a thread while it is inside
   * onnxruntime-node (making a session, running one) can abort the process.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.wake();
    await Promise.all(
      this.workers.map(async (entry) => {
        const ended = new Promise<void>((resolve) => entry.worker.once('exit', () => resolve()));
        if (entry.exited) return;
        // Waited for: the thread keeps the process alive until it has ended.
        entry.worker.ref();
        // Work still waiting is an image's, stopped with the run (a second signal): the error names the image, not the model.
        this.stop(entry, "the run stopped before this image's ONNX Runtime passes were done", false);
        if (entry.ready) entry.worker.postMessage({ type: 'close' } satisfies ToHostWorker);
        await ended;
      }),
    );
  }

  private startWorker(data: HostWorkerData): HostWorker {
    // The worker loads ORT; the opt-out must be in the process's environment before (not in the worker's copy).
    optOutOfOrtTelemetry();
    const worker = new Worker(hostWorkerEntry(), { workerData: data, execArgv: workerExecArgv() });
    // Idle workers do not keep the process alive; one with batches in flight does (see run).
    worker.unref();
    const entry: HostWorker = { worker, ready: false, exited: false, stopped: undefined, pending: new Map() };
    worker.on('message', (message: FromHostWorker) => this.receive(entry, message));
    worker.on('error', (error) => this.stop(entry, `an ONNX Runtime worker failed: ${describeError(error)}`));
    worker.on('exit', (code) => {
      entry.exited = true;
      this.stop(entry, `an ONNX Runtime worker exited (code ${code})`);
    });
    return entry;
  }

  private receive(entry: HostWorker, message: FromHostWorker): void {
    switch (message.type) {
      case 'loaded':
        this.loadedVersion ??= message.version;
        this.wake();
        return;
      case 'ready':
        entry.ready = true;
        if (!this.sawReady) {
          this.sawReady = true;
          this.inputMetadata = message.inputMetadata;
          this.savedGraph = message.savedGraph;
        }
        if (this.closed) entry.worker.postMessage({ type: 'close' } satisfies ToHostWorker);
        this.wake();
        return;
      case 'failed':
        // The worker's thread ends by itself (it holds nothing).
        this.stop(entry, `an ONNX Runtime worker could not start: ${message.error}`);
        return;
      case 'done':
      case 'error': {
        const waiting = entry.pending.get(message.id);
        if (waiting === undefined) return;
        entry.pending.delete(message.id);
        if (entry.pending.size === 0) entry.worker.unref();
        if (message.type === 'done') waiting.resolve({ outputs: message.outputs, input: message.input });
        else waiting.reject(new CamvizError(`ONNX Runtime failed in a worker: ${message.error}`, this.errorOptions()));
      }
    }
  }

  /** The worker takes no more batches; those it holds are rejected with `reason`, naming the model file when `aboutModel` (a worker that failed). */
  private stop(entry: HostWorker, reason: string, aboutModel = true): void {
    entry.stopped ??= reason;
    this.wake();
    const pending = [...entry.pending.values()];
    entry.pending.clear();
    for (const waiting of pending) waiting.reject(new CamvizError(entry.stopped, aboutModel ? this.errorOptions() : {}));
  }

  private wake(): void {
    const waiting = [...this.waiters];
    this.waiters.clear();
    for (const resolve of waiting) resolve();
  }

  private errorOptions(): { file?: string } {
    return this.file === undefined ? {} : { file: this.file };
  }
}
