/**
 * A worker thread of the ONNX Runtime host pool (ort-host-pool.ts): one
 * single-threaded session of the model, running the batches the main thread
 * posts, one at a time. It loads only ONNX Runtime (no tfjs): its start is
 * the thread, onnxruntime-node and the session, made from the optimised
 * graph the main thread's session saved when there is one.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { type OrtModule, type OrtSession, type OrtValueMetadata, loadOnnxRuntime, savedGraphPath, withSession } from '../engine/onnxruntime.js';
import { describeError } from '../util/errors.js';

/** What a host worker starts with. */
export interface HostWorkerData {
  /** Identifies the model and its outputs (OrtExecutor's session key): names the saved optimised graph. */
  readonly cacheKey: string;
  /** Where the optimised graph is kept (engine/onnxruntime.ts); none: made from `bytes`. */
  readonly optimizedFolder?: string;
  /** The ONNX model with its outputs; absent when the saved optimised graph is expected to load. */
  readonly bytes?: Uint8Array;
  readonly inputName: string;
  /** The session's outputs (all that a batch may fetch). */
  readonly outputNames: readonly string[];
  /** Intra-op threads (default 1: the pool's parallelism is its workers). */
  readonly threads?: number;
  /** ORT's memory pattern (default off: see below). */
  readonly memoryPattern?: boolean;
  /** Where `bytes`' external data is (engine/onnxruntime.ts SessionTuning). */
  readonly externalDataFolder?: string;
  /**
   * Run one pass of zeros before saying ready, so that the first real pass
   * does not pay the session's first-pass cost (its arena's allocations:
   * about 30 ms for MobileNet v1): a session made ahead (ort-session-ahead.ts)
   * pays it while the main thread is still loading.
   */
  readonly warmUp?: boolean;
}

/** The most values a warm-up pass's input may hold (64 MB): dims read from a session, bounded all the same. */
const MAX_WARM_UP_VALUES = 16 * 1024 * 1024;

/** A fetched value as plain data (ORT's tensor is released in the worker). */
export interface HostValue {
  readonly type: string;
  readonly dims: readonly number[];
  readonly data: Float32Array;
}

/** `fetches`: the outputs this batch needs, among the session's. `close`: release the session and end, after the batches before it. */
export type ToHostWorker =
  | { readonly type: 'run'; readonly id: number; readonly data: Float32Array; readonly dims: readonly number[]; readonly fetches: readonly string[] }
  | { readonly type: 'close' };

export type FromHostWorker =
  /** ONNX Runtime loaded in the worker (before its session is made). */
  | { readonly type: 'loaded'; readonly version: string }
  /**
   * `inputMetadata`: what the session says of its inputs; `savedGraph`: the
   * path of the saved optimised graph the session may have come from (a
   * session made ahead stands for one of the main thread's, which then
   * needs not load ONNX Runtime itself).
   */
  | { readonly type: 'ready'; readonly inputMetadata: readonly OrtValueMetadata[]; readonly savedGraph?: string }
  | { readonly type: 'failed'; readonly error: string }
  /** `input`: the batch's data, handed back (transferred) so that its buffer is used again. */
  | { readonly type: 'done'; readonly id: number; readonly outputs: Readonly<Record<string, HostValue>>; readonly input: Float32Array }
  | { readonly type: 'error'; readonly id: number; readonly error: string };

async function main(): Promise<void> {
  const port = parentPort;
  if (port === null) throw new Error('ort-host-worker runs as a worker thread');
  const data = workerData as HostWorkerData;
  const status = loadOnnxRuntime();
  let ort: OrtModule;
  let session: OrtSession;
  try {
    if (!status.available) throw new Error(`ONNX Runtime is unavailable: ${status.reason}`);
    ort = status.module;
    // Said at once: the main thread may go on without loading ONNX Runtime itself while the session is made.
    port.postMessage({ type: 'loaded', version: status.version } satisfies FromHostWorker);
    const bytes = (): Uint8Array => {
      if (data.bytes === undefined) throw new Error('the saved optimised graph did not load');
      return data.bytes;
    };
    // One intra-op thread by default: the pool's parallelism is its workers. No memory pattern by default: a fresh session's second pass then costs no more than the next ones.
    session = await withSession(ort, data.cacheKey, bytes, data.threads ?? 1, async (made) => made, data.optimizedFolder, {
      memoryPattern: data.memoryPattern ?? false,
      ...(data.externalDataFolder === undefined ? {} : { externalDataFolder: data.externalDataFolder }),
    });
    if (data.warmUp === true) await warmUp(ort, session, data);
  } catch (error) {
    port.postMessage({ type: 'failed', error: describeError(error) } satisfies FromHostWorker);
    return;
  }
  let queue: Promise<unknown> = Promise.resolve();
  port.on('message', (message: ToHostWorker) => {
    if (message.type === 'close') {
      // The thread ends once its session is released and the port closed: never terminated mid-call into ORT.
      queue = queue
        .then(() => session.release())
        .catch(() => undefined)
        .finally(() => port.close());
      return;
    }
    queue = queue.then(() => run(ort, session, data, message)).then(
      ({ outputs, transfer }) => port.postMessage({ type: 'done', id: message.id, outputs, input: message.data } satisfies FromHostWorker, [message.data.buffer as ArrayBuffer, ...transfer]),
      (error: unknown) => port.postMessage({ type: 'error', id: message.id, error: describeError(error) } satisfies FromHostWorker),
    );
  });
  port.postMessage(
    {
      type: 'ready',
      inputMetadata: session.inputMetadata.map(plainMetadata),
      ...(data.optimizedFolder === undefined ? {} : { savedGraph: savedGraphPath(ort, data.cacheKey, data.optimizedFolder) }),
    } satisfies FromHostWorker,
  );
}

/** The metadata as plain data (what a message can carry). */
function plainMetadata(metadata: OrtValueMetadata): OrtValueMetadata {
  return metadata.isTensor ? { name: metadata.name, isTensor: true, shape: [...metadata.shape] } : { name: metadata.name, isTensor: false };
}

/**
 * One pass of zeros through the session, of its declared input shape (a
 * batch of one where the batch is free); none when another dimension is
 * free or the input would be unreasonably large.
 */
async function warmUp(ort: OrtModule, session: OrtSession, data: HostWorkerData): Promise<void> {
  const metadata = session.inputMetadata.find((input) => input.name === data.inputName);
  if (metadata?.isTensor !== true) return;
  const dims = metadata.shape.map((dim, axis) => (typeof dim === 'number' && dim > 0 ? dim : axis === 0 ? 1 : undefined));
  if (dims.some((dim) => dim === undefined)) return;
  const size = (dims as number[]).reduce((product, dim) => product * dim, 1);
  if (size > MAX_WARM_UP_VALUES) return;
  const results = await session.run({ [data.inputName]: new ort.Tensor('float32', new Float32Array(size), dims as number[]) }, data.outputNames);
  for (const result of Object.values(results)) result.dispose();
}

/**
 * One batch: the fetched values, with the buffers to transfer. A value is
 * handed over in the buffer ONNX Runtime returned it in: onnxruntime-node
 * gives its output memory to that ArrayBuffer, released only when a
 * garbage collection finds it unreachable. Kept here, those buffers lived
 * until this thread's rare collections (it allocates little) and ORT's
 * arena grew around them (glibc's thread arenas +17-25 MiB over a
 * 1,000-image folder run); moved to the main thread, whose collections
 * are frequent, they go back within a few batches (+2-11 MiB), and no
 * copy is made. A value that is a view into a larger buffer is copied.
 */
async function run(ort: OrtModule, session: OrtSession, data: HostWorkerData, message: Extract<ToHostWorker, { type: 'run' }>): Promise<{ outputs: Record<string, HostValue>; transfer: ArrayBuffer[] }> {
  const results = await session.run({ [data.inputName]: new ort.Tensor('float32', message.data, message.dims) }, message.fetches);
  const outputs: Record<string, HostValue> = {};
  const transfer: ArrayBuffer[] = [];
  for (const name of message.fetches) {
    const result = results[name]!;
    // Another type is reported by the main thread, as for its own runs.
    const values = result.type === 'float32' ? handedOver(result.data as Float32Array) : new Float32Array(0);
    outputs[name] = { type: result.type, dims: [...result.dims], data: values };
    transfer.push(values.buffer as ArrayBuffer);
  }
  return { outputs, transfer };
}

/** `values` in a buffer of their own: theirs when they span it, else a copy. */
function handedOver(values: Float32Array): Float32Array {
  return values.byteOffset === 0 && values.byteLength === values.buffer.byteLength ? values : values.slice();
}

// Not awaited at the top: the build bundles this module as CommonJS (ort-host-worker.cjs), which has no top-level await. A failure is
// an unhandled rejection, which ends the thread with an 'error' event, as a throw at the top did.
void main();
