/**
 * A worker thread of a folder run: its own backend and model, processing
 * the batches the main thread sends. (wasm runs single-threaded under Node,
 * so workers are how a run uses every core.)
 */
import { parentPort, workerData } from 'node:worker_threads';
import { describeError, exitCodeOf } from '../util/errors.js';
import { releaseBackend } from '../engine/release.js';
import { type Task, type TaskContext, processStopping, requestStop, startTask, watchOutputs } from '../tasks/index.js';
import type { InputImage } from '../tasks/types.js';
import type { FromWorker, ToWorker, WorkerData } from './pool.js';
import { manifestModel } from './manifest.js';
import { BatchWrites, batchWriteWatcher, batchWrites } from './batch-writes.js';

if (parentPort === null) throw new Error('batch/worker.js runs only in a worker thread');
const port = parentPort;
const post = (message: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer);

async function main(): Promise<void> {
  const { options, failFast } = workerData as WorkerData;
  let started: Awaited<ReturnType<typeof startTask>>;
  try {
    started = await startTask(options, undefined, failFast);
  } catch (error) {
    post({ type: 'failed', error: describeError(error), exitCode: exitCodeOf(error) });
    return;
  }
  if (started.context.stop !== undefined) started.context.stop.onFailureStop = () => post({ type: 'stopping' });
  // Each write is told with its batch: the main thread removes the outputs of a batch it gets no record of (a batch that threw, a thread terminated).
  watchOutputs(
    batchWriteWatcher({
      writing(path) {
        const batch = batchWrites.getStore();
        post({ type: 'writing', path, ...(batch === undefined ? {} : { batch: batch.id }) });
      },
      settled(path, written) {
        if (!written) post({ type: 'not-written', path });
      },
    }),
  );
  const { meta } = started.context.model;
  const { backend, engine } = started.context;
  post({
    type: 'ready',
    model: manifestModel(meta),
    backend: { kind: backend.kind, package: backend.packageName },
    // Said by the main thread, once for the run rather than once a worker.
    ...(engine === undefined ? {} : { engine }),
  });
  /** Batches not yet answered: a stop waits for them (see stopWhenIdle). */
  const inFlight = new Set<Promise<void>>();
  let stopping = false;
  port.on('message', (message: ToWorker) => {
    if (message.type === 'cancel') {
      requestStop(started.context);
      return;
    }
    if (message.type === 'stop') {
      if (stopping) return;
      stopping = true;
      void stopWhenIdle(started.context, inFlight);
      return;
    }
    const batch = processBatch(started, message.id, message.inputs);
    inFlight.add(batch);
    void batch.finally(() => inFlight.delete(batch));
  });
}

/**
 * Ends this thread by itself: batches not yet computing come back empty,
 * the batch computing finishes and is answered, then the model and backend
 * are released and the port closed, so the thread exits once its event loop
 * is empty. It is never disposed under a batch still computing, whose ONNX
 * Runtime pass or sharp call would then fail or run on a released session;
 * and the main thread terminates it only if this takes too long (see
 * exitOrTerminate in pool.ts).
 */
async function stopWhenIdle(context: TaskContext, inFlight: ReadonlySet<Promise<void>>): Promise<void> {
  requestStop(context);
  // processBatch never rejects: each batch ends answered, done or error.
  await Promise.all(inFlight);
  context.model.dispose();
  await releaseBackend().finally(() => port.close());
}

async function processBatch(started: { task: Task; context: TaskContext }, id: number, inputs: InputImage[]): Promise<void> {
  const writes = new BatchWrites(id);
  try {
    const outcome = await batchWrites.run(writes, () => processStopping(started.task, started.context, inputs));
    post({ type: 'done', id, outcome }, outcome.summaries.map((summary) => summary.png.buffer as ArrayBuffer));
  } catch (error) {
    // The main thread removes the batch's outputs when told of its error: an image's write still under way would land after.
    await writes.settled();
    post({ type: 'error', id, error: describeError(error) });
  }
}

void main();
