/**
 * The batch worker (src/batch/worker.ts) with a throw injected: a batch
 * holding an image named `throw*` has its maps written and recorded, then
 * its task throws, as an unexpected failure that ends a batch (not an
 * image's error, which is recorded) would (batch-pool-stop.test.ts).
 */
import { parentPort } from 'node:worker_threads';
import { CamTask } from '../../src/tasks/index.js';
import type { BatchOutcome, InputImage } from '../../src/tasks/types.js';

// `node --test dist/test/` runs every file under it, this one too, outside a worker thread: it then does nothing.
if (parentPort !== null) {
  const process = CamTask.prototype.process;
  CamTask.prototype.process = async function (this: CamTask, batch: readonly InputImage[]): Promise<BatchOutcome> {
    const outcome = await process.call(this, batch);
    if (batch.some((input) => input.relative.startsWith('throw'))) throw new Error('injected: the task threw after writing its maps');
    return outcome;
  };
  await import('../../src/batch/worker.js');
}
