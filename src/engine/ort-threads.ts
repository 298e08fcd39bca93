/**
 * CAMVIZ_ORT_THREADS, ONNX Runtime's intra-op threads as the user sets
 * them: read by the batch runner (which otherwise chooses them) and by
 * engine/onnxruntime.ts, without loading ONNX Runtime's module.
 */
import { availableParallelism } from 'node:os';
import { UsageError } from '../util/errors.js';

export const ORT_THREADS_VARIABLE = 'CAMVIZ_ORT_THREADS';

/**
 * The most intra-op threads camviz asks ONNX Runtime for: past a thread a
 * core they only cost memory and start time (5,000 took 6 s and 488 MB).
 */
export const MAX_ORT_THREADS = 256;

/**
 * CAMVIZ_ORT_THREADS as a thread count; undefined when it is unset or
 * empty. Anything but a whole number from 1 to MAX_ORT_THREADS is a usage
 * error (it was taken silently for 1).
 */
export function ortThreadsFromEnv(): number | undefined {
  const text = process.env[ORT_THREADS_VARIABLE]?.trim() ?? '';
  if (text === '') return undefined;
  const threads = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!(threads >= 1 && threads <= MAX_ORT_THREADS)) throw new UsageError(`${ORT_THREADS_VARIABLE} must be a whole number of threads from 1 to ${MAX_ORT_THREADS}, not "${text}"`);
  return threads;
}

/**
 * The intra-op threads of a session that has the process to itself (a run
 * in this thread, and the session a planned run makes ahead of it): the
 * user's CAMVIZ_ORT_THREADS, else every core. One choice, so that the
 * session made ahead is the one the run asks for.
 */
export function wholeProcessOrtThreads(): number {
  return ortThreadsFromEnv() ?? availableParallelism();
}
