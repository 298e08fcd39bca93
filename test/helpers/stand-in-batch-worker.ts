/**
 * A stand-in for the batch worker (src/batch/worker.ts) that speaks its
 * protocol with no model: each image of a batch is announced (with its
 * batch) and written as `<stem>.gradcam.0.png` (a few bytes) under the
 * run's --out, then the batch is answered with its records. Images named
 * for what they do:
 * - `hang*`: the batch is never answered: the thread computes forever
 *   after writing it, deaf to 'stop', as a thread in a long synchronous
 *   model pass, and is terminated by the pool;
 * - `throw*`: the batch's task throws once its maps are written: it is
 *   answered with an error, as the worker answers a batch that threw;
 * - `unwritten*`: its write is announced, then fails: nothing is written
 *   and the pool is told so (batch-pool-stop.test.ts).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import type { FromWorker, ToWorker, WorkerData } from '../../src/batch/pool.js';
import type { InputRecord } from '../../src/tasks/types.js';

// `node --test dist/test/` runs every file under it, this one too, outside a worker thread: it then serves nothing.
if (parentPort !== null) serve(parentPort, (workerData as WorkerData).options.outDir);

function serve(port: MessagePort, outDir: string): void {
  const post = (message: FromWorker): void => port.postMessage(message);
  post({ type: 'ready', model: { name: 'stand-in', source: 'test', sha256: '0' }, backend: { kind: 'none', package: 'none' } });
  port.on('message', (message: ToWorker) => {
    if (message.type === 'stop') {
      port.close();
      return;
    }
    if (message.type !== 'batch') return;
    const records: InputRecord[] = message.inputs.map((input) => {
      const output = `${input.relative.replace(/\.png$/, '')}.gradcam.0.png`;
      const path = join(outDir, output);
      post({ type: 'writing', path, batch: message.id });
      if (input.relative.startsWith('unwritten')) {
        post({ type: 'not-written', path });
        return { input: input.path, relative: input.relative, status: 'error', error: 'the write failed', outputs: [], timings: {} };
      }
      writeFileSync(path, 'png');
      return { input: input.path, relative: input.relative, status: 'ok', outputs: [output], timings: {} };
    });
    if (message.inputs.some((input) => input.relative.startsWith('hang'))) for (;;);
    if (message.inputs.some((input) => input.relative.startsWith('throw'))) {
      post({ type: 'error', id: message.id, error: 'the task threw' });
      return;
    }
    post({ type: 'done', id: message.id, outcome: { records, summaries: [] } });
  });
}
