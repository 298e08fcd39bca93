/**
 * What the stop tests (scorecam-stop, long-work-stop) share: the model's
 * passes counted, so that what follows a stop is counted, not timed; the
 * runner's batches in flight in this thread; the maps on disk.
 */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import type { InProcessExecutor } from '../../src/batch/pool.js';
import type { BatchOutcome, InputImage } from '../../src/tasks/types.js';

/** The runner's batches in flight in this thread (InProcessExecutor.capacity). */
export const IN_FLIGHT = 3;

/** The calls that run the model: a forward pass, or a backward pass (with the forward it needs). */
const PASSES: ReadonlySet<PropertyKey> = new Set(['forward', 'backward']);

/** The model's executor, counting its passes (forward and backward); `onPass` hears each count, as the pass ends. */
export function countingPasses(executor: InProcessExecutor, onPass: (passes: number) => void): { passes(): number } {
  const { model } = executor.context;
  const original = model.executor.bind(model);
  let passes = 0;
  model.executor = async () => {
    const network = await original();
    return new Proxy(network, {
      get(target, key) {
        const value: unknown = Reflect.get(target, key);
        if (PASSES.has(key)) {
          return async (...args: unknown[]) => {
            const values: unknown = await (value as (...args: unknown[]) => Promise<unknown>).apply(target, args);
            onPass(++passes);
            return values;
          };
        }
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
  };
  return { passes: () => passes };
}

/** `--batch-size 1` batches, all in flight at once as the runner keeps them. */
export function processAll(executor: InProcessExecutor, images: readonly InputImage[]): Promise<BatchOutcome[]> {
  return Promise.all(images.map((image) => executor.process([image])));
}

export async function pngsIn(folder: string): Promise<string[]> {
  return existsSync(folder) ? (await readdir(folder, { recursive: true })).filter((name) => name.endsWith('.png')) : [];
}
