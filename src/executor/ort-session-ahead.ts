/**
 * A session made ahead: ONNX Runtime's first session of a model, made in a
 * worker thread while the main thread is still loading (tfjs, sharp, the
 * model), for a one-image run's cold start. onnxruntime-node makes and
 * runs sessions synchronously on the calling thread: loading it, its
 * environment, the saved optimised graph and the first pass cost the main
 * thread of a cold start about 0.1 s (MobileNet v1, README Performance),
 * which the worker pays on the other core instead.
 *
 * Whoever knows which session a model's executor will make first (the
 * command line, from a note the previous run left: model/session-ahead.ts)
 * starts it here by its session key; the executor takes it if, and only
 * if, its own first session has exactly that key, thread count, input and
 * outputs (the key names the model's fingerprint and the session's outputs,
 * so a changed model never takes a stale session), and then runs its passes
 * on it through messages (`RemoteSession`). Its memory pattern is off (see
 * startSessionAhead), which changes where ORT puts a pass's buffers, not
 * what it computes. A session nobody takes is
 * closed by `closeSessionsAhead`, which the command line awaits before it
 * ends: a worker must not be terminated inside onnxruntime-node.
 */
import type { OrtSession, OrtTensor, OrtValueMetadata } from '../engine/onnxruntime.js';
import { OrtHostPool } from './ort-host-pool.js';
import { SpareBuffers } from './spare-buffers.js';

/** What identifies a session made ahead, and how to make it. */
export interface SessionAheadSpec {
  /** The session's key (OrtExecutor's: the trunk's cache key and the sorted output names); names its saved optimised graph. */
  readonly sessionKey: string;
  /** Where the saved optimised graph is (the session is made from it, or not at all). */
  readonly optimizedFolder: string;
  readonly inputName: string;
  readonly outputNames: readonly string[];
  readonly threads: number;
}

interface Started {
  readonly spec: SessionAheadSpec;
  readonly pool: OrtHostPool;
}

/** Sessions started and not yet taken. */
const started: Started[] = [];

/** How many sessions made ahead were taken (tests). */
let taken = 0;

/** Starts making the session `spec` describes, in a worker. */
export function startSessionAhead(spec: SessionAheadSpec): void {
  if (started.some((entry) => sameSpec(entry.spec, spec))) return;
  const pool = new OrtHostPool(
    1,
    {
      cacheKey: spec.sessionKey,
      optimizedFolder: spec.optimizedFolder,
      inputName: spec.inputName,
      outputNames: spec.outputNames,
      threads: spec.threads,
      // Off, as for the host workers: with it, the first pass after the warm-up would allocate the planned block anew.
      memoryPattern: false,
      warmUp: true,
    },
    undefined,
  );
  started.push({ spec, pool });
}

/**
 * The session made ahead exactly as `wanted` describes it (key, thread
 * count, saved graph's folder, input and output names: a note that names
 * another input or other outputs is not taken), once its worker is ready;
 * undefined when none was started or it could not be made (the caller then
 * makes its own). Taken once.
 */
export async function takeSessionAhead(wanted: SessionAheadSpec): Promise<RemoteSession | undefined> {
  const index = started.findIndex((entry) => sameSpec(entry.spec, wanted));
  if (index < 0) return undefined;
  const [entry] = started.splice(index, 1);
  const { spec, pool } = entry!;
  if (!(await pool.whenReady())) {
    await pool.close();
    return undefined;
  }
  taken++;
  return new RemoteSession(pool, spec);
}

function sameSpec(a: SessionAheadSpec, b: SessionAheadSpec): boolean {
  return (
    a.sessionKey === b.sessionKey &&
    a.threads === b.threads &&
    a.optimizedFolder === b.optimizedFolder &&
    a.inputName === b.inputName &&
    a.outputNames.length === b.outputNames.length &&
    a.outputNames.every((name, i) => name === b.outputNames[i])
  );
}

/** How many sessions made ahead this process took. */
export function sessionsAheadTaken(): number {
  return taken;
}

/** Whether a session is being made ahead (not yet taken nor closed). */
export function sessionAheadPending(): boolean {
  return started.length > 0;
}

/**
 * ONNX Runtime's version, once the worker making the first session ahead
 * has loaded it (before its session is made, so that the main thread's own
 * work goes on meanwhile): ONNX Runtime loads in this process, so this
 * thread may defer loading it until it needs it. Undefined when none is
 * being made or its worker failed first.
 */
export async function sessionAheadVersion(): Promise<string | undefined> {
  return started[0]?.pool.whenLoaded();
}

/** Ends the sessions made ahead that nobody took (their workers finish what they are doing in ONNX Runtime first). */
export async function closeSessionsAhead(): Promise<void> {
  const left = started.splice(0, started.length);
  await Promise.all(left.map((entry) => entry.pool.close()));
}

/**
 * A session that lives in a worker (a session made ahead), seen as a
 * session of this thread: each run posts its input and gets the fetched
 * values back as plain data.
 */
export class RemoteSession implements OrtSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /**
   * Input buffers that went to the worker and came back, for the next runs
   * (a folder run's batches then take no fresh 2.4 MB buffer each, MobileNet
   * v1 at batch 4); a few, as runs of other sizes come.
   */
  private readonly spareInputs = new SpareBuffers();

  constructor(
    private readonly pool: OrtHostPool,
    spec: SessionAheadSpec,
  ) {
    this.inputNames = [spec.inputName];
    this.outputNames = spec.outputNames;
  }

  get inputMetadata(): readonly OrtValueMetadata[] {
    return this.pool.inputMetadata;
  }

  /** The saved optimised graph the session came from, if it did. */
  get savedGraph(): string | undefined {
    return this.pool.savedGraph;
  }

  /** An input for `run`: plain data (an ORT tensor would need ONNX Runtime loaded in this thread). */
  static feed(data: Float32Array, dims: readonly number[]): OrtTensor {
    return { type: 'float32', dims, data, dispose: () => undefined };
  }

  /** Whether its worker still takes runs (one that failed or ended does not: the caller makes a session of its own). */
  get usable(): boolean {
    return this.pool.usable;
  }

  async run(feeds: Record<string, OrtTensor>, fetches: readonly string[]): Promise<Record<string, OrtTensor>> {
    const feed = feeds[this.inputNames[0]!];
    if (feed === undefined || !(feed.data instanceof Float32Array)) throw new Error(`a session made ahead takes one float32 input '${this.inputNames[0]}'`);
    // A copy of the values alone (a view's whole buffer would be cloned), moved to the worker without another copy.
    const input = this.spareInputs.take(feed.data.length);
    input.set(feed.data);
    const { outputs, input: returned } = await this.pool.run(input, feed.dims, fetches, true);
    this.spareInputs.keep(returned);
    const results: Record<string, OrtTensor> = {};
    for (const name of fetches) {
      const value = outputs[name]!;
      results[name] = { type: value.type, dims: value.dims, data: value.data, dispose: () => undefined };
    }
    return results;
  }

  release(): Promise<void> {
    return this.pool.close();
  }
}
