/**
 * A throw injected into the cam task: a batch holding an image named
 * `throw*` has its maps written and recorded, then its task throws, as an
 * unexpected failure that ends a batch (not an image's error, which is
 * recorded) would. Used in a worker thread (throwing-batch-worker.ts) and
 * in this thread (batch-pool-stop.test.ts).
 */
import { CamTask } from '../../src/tasks/index.js';
import type { BatchOutcome, InputImage } from '../../src/tasks/types.js';

export const INJECTED_THROW = 'injected: the task threw after writing its maps';

/** Injects the throw; returns what takes it out again. */
export function injectBatchThrow(): () => void {
  const process = CamTask.prototype.process;
  CamTask.prototype.process = async function (this: CamTask, batch: readonly InputImage[]): Promise<BatchOutcome> {
    const outcome = await process.call(this, batch);
    if (batch.some((input) => input.relative.startsWith('throw'))) throw new Error(INJECTED_THROW);
    return outcome;
  };
  return () => {
    CamTask.prototype.process = process;
  };
}
