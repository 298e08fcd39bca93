/**
 * Stopping a folder run's worker threads at once (a second signal) without
 * terminating a thread that may be inside a native addon: terminating a
 * thread inside sharp's or onnxruntime-node's callback aborts the whole
 * process (std::terminate on a Napi::Error). Checked here:
 * - exitOrTerminate: a thread that exits when asked is never terminated
 *   (its exit code is 0; a terminated thread's is 1); one that ignores the
 *   request is terminated once the deadline has passed;
 * - WorkerPool.stopNow on the real batch worker, with batches in flight:
 *   every thread ends by itself, the batches it answered are complete (every
 *   record ok, every output on disk), and no batch is taken afterwards;
 * - a thread terminated with a batch unanswered (a stand-in worker that
 *   writes its map, then computes forever): the map goes with the batch,
 *   so that no map is on disk without its record; each output is told to
 *   the main thread before it is written (watchOutputs).
 * The command line's second SIGINT is checked in batch-cli.test.ts.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import sharp from 'sharp';

import { WorkerPool, exitOrTerminate } from '../src/batch/pool.js';
import { camTaskOptions } from '../src/tasks/defaults.js';
import { OutputSet, watchOutputs } from '../src/tasks/common.js';
import type { BatchOutcome, InputImage } from '../src/tasks/types.js';
import { haveSharedAssets, mobilenetDir, repoRoot } from './helpers/assets.js';
import { noise } from './helpers/files.js';

const shapesJson = join(repoRoot, 'models', 'shapes', 'model.json');
/** The embedded shapes model (small inputs, fast), else the shared MobileNet. */
const modelSpec = existsSync(shapesJson) ? 'shapes' : haveSharedAssets ? mobilenetDir : undefined;
const skipWithoutModel: string | false = modelSpec === undefined ? 'neither models/shapes/model.json nor the shared MobileNet is present' : false;

const workDir = await mkdtemp(join(tmpdir(), 'camviz-pool-stop-test-'));
after(() => rm(workDir, { recursive: true, force: true }));

/** A thread from `source` (CommonJS), with a promise of its exit code made before it can exit. */
function thread(source: string): { worker: Worker; exit: Promise<number> } {
  const worker = new Worker(source, { eval: true });
  const exit = new Promise<number>((resolve) => worker.once('exit', resolve));
  return { worker, exit };
}

/** Waits for the thread's first message: it is running and listening. */
function started(worker: Worker): Promise<void> {
  return new Promise((resolve) => worker.once('message', () => resolve()));
}

describe('exitOrTerminate', () => {
  test('a thread that ends when asked is not terminated', async () => {
    const { worker, exit } = thread(`
      const { parentPort } = require('node:worker_threads');
      parentPort.on('message', (message) => { if (message.type === 'stop') parentPort.close(); });
      parentPort.postMessage('listening');
    `);
    await started(worker);
    worker.postMessage({ type: 'stop' });
    // A deadline far beyond any wait: only the thread's own exit can end this.
    assert.equal(await exitOrTerminate(worker, exit, 600_000), 'exited');
    assert.equal(await exit, 0, 'exit code 0: the thread ended by itself (terminate() gives 1)');
  });

  test('a thread that ignores the request is terminated after the deadline', async () => {
    const { worker, exit } = thread(`
      const { parentPort } = require('node:worker_threads');
      // Listens, so its port keeps it alive, and does nothing with 'stop'.
      parentPort.on('message', () => undefined);
      parentPort.postMessage('listening');
    `);
    await started(worker);
    worker.postMessage({ type: 'stop' });
    assert.equal(await exitOrTerminate(worker, exit, 100), 'terminated');
    assert.equal(await exit, 1, 'exit code 1: terminated');
  });
});

describe('WorkerPool.stopNow', { skip: skipWithoutModel }, () => {
  test('with batches in flight, every thread ends by itself; answered batches are complete; no batch is taken afterwards', async () => {
    const folder = join(workDir, 'in');
    await mkdir(folder, { recursive: true });
    const images: InputImage[] = [];
    for (let i = 0; i < 12; i++) {
      const relative = `img${String(i).padStart(2, '0')}.png`;
      await sharp(noise(320, 240, i + 1), { raw: { width: 320, height: 240, channels: 3 } }).png().toFile(join(folder, relative));
      images.push({ path: join(folder, relative), relative });
    }
    const out = join(workDir, 'out');
    const pool = await WorkerPool.start(camTaskOptions(out, { model: { model: modelSpec ?? 'shapes', backend: 'wasm' }, topK: 5 }), 2);
    const batches = Array.from({ length: 6 }, (_, i) => pool.process(images.slice(2 * i, 2 * i + 2)));
    const settled = Promise.allSettled(batches);
    // Some model work is done (a batch answered) and the rest may still be under way.
    await Promise.race(batches);
    const ends = await pool.stopNow();
    assert.deepEqual(ends, ['exited', 'exited'], 'no thread was terminated');
    await assert.rejects(pool.process(images.slice(0, 2)), /the run is stopping/);
    await pool.close();

    const answered = (await settled).flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    const records = answered.flatMap((outcome: BatchOutcome) => outcome.records);
    assert.ok(records.length > 0, 'the first batch answered was recorded');
    for (const record of records) {
      assert.equal(record.status, 'ok', `${record.relative}: ${record.error ?? ''}`);
      assert.equal(record.outputs.length, 5, record.relative);
      for (const output of record.outputs) await sharp(join(out, output)).raw().toBuffer();
    }
  });
});

describe('WorkerPool.start with a model its threads cannot load', { skip: skipWithoutModel }, () => {
  test('rejects with the threads\' own error once each thread, asked to stop, has ended', { timeout: 60_000 }, async () => {
    // The embedded model with its weight file cut short: every thread's load fails, naming the file.
    const broken = join(workDir, 'broken-model');
    await mkdir(broken, { recursive: true });
    for (const name of ['model.json', 'camviz.json']) await copyFile(join(repoRoot, 'models', 'shapes', name), join(broken, name));
    const weights = await readFile(join(repoRoot, 'models', 'shapes', 'shapes.weights.bin'));
    await writeFile(join(broken, 'shapes.weights.bin'), weights.subarray(0, 100));
    await assert.rejects(WorkerPool.start(camTaskOptions(join(workDir, 'out-broken'), { model: { model: broken, backend: 'wasm' } }), 2), (error: Error) =>
      /weight file is short/.test(error.message) && error.message.includes(join(broken, 'shapes.weights.bin')),
    );
  });
});

describe('outputs of a batch never answered', () => {
  test('each output is told before it is written', async () => {
    const out = join(workDir, 'out-told');
    const told: [string, boolean][] = [];
    watchOutputs((path) => told.push([path, existsSync(path)]));
    try {
      await new OutputSet(out).write(join(out, 'deep', 'a.gradcam.0.png'), 'png');
    } finally {
      watchOutputs(undefined);
    }
    assert.deepEqual(told, [[join(out, 'deep', 'a.gradcam.0.png'), false]]);
  });

  test('a thread terminated with a batch unanswered: the maps it wrote for that batch are removed, an answered batch keeps its own', async () => {
    const out = join(workDir, 'out-stand-in');
    await mkdir(out, { recursive: true });
    const image = (relative: string): InputImage => ({ path: join(workDir, relative), relative });
    const pool = await WorkerPool.start(camTaskOptions(out), 1, false, new URL('./helpers/stand-in-batch-worker.js', import.meta.url));
    try {
      const answered = await pool.process([image('a.png')]);
      assert.deepEqual(answered.records.map((record) => record.outputs), [['a.gradcam.0.png']]);
      const hung = pool.process([image('b.png'), image('hang.png')]).then(
        () => 'answered',
        (error: unknown) => error,
      );
      // The thread has written the batch's maps and is computing forever: it will not answer, nor hear 'stop'.
      while (!existsSync(join(out, 'hang.gradcam.0.png'))) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.deepEqual(await pool.stopNow(100), ['terminated']);
      assert.ok((await hung) instanceof Error, 'the unanswered batch is rejected: the runner records none of it');
      assert.deepEqual((await readdir(out)).sort(), ['a.gradcam.0.png'], 'only the answered batch\'s map is left');
    } finally {
      await pool.close();
    }
  });
});
