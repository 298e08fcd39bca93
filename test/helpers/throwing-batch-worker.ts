/**
 * The batch worker (src/batch/worker.ts) with a throw injected
 * (inject-batch-throw.ts): a batch holding an image named `throw*` has its
 * maps written and recorded, then its task throws (batch-pool-stop.test.ts).
 */
import { parentPort } from 'node:worker_threads';
import { injectBatchThrow } from './inject-batch-throw.js';

// `node --test dist/test/` runs every file under it, this one too, outside a worker thread: it then does nothing.
if (parentPort !== null) {
  injectBatchThrow();
  await import('../../src/batch/worker.js');
}
