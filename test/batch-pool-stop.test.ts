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
 *   the main thread before it is written (watchOutputs), and whether its
 *   write failed;
 * - a batch whose task throws once its maps are written (a throw injected
 *   into the real worker; the stand-in): exactly that batch's maps are
 *   removed, and the thread goes on; an earlier run's map whose write
 *   failed, a user's file and other batches' maps stay; the same in this
 *   thread (InProcessExecutor, a --jobs 1 run); an image whose writing
 *   throws fails its batch only once the other images' writes have
 *   settled, so that none of their maps lands after the batch's removal.
 * The command line's second SIGINT is checked in batch-cli.test.ts.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import sharp from 'sharp';

import { type Executor, InProcessExecutor, WorkerPool, exitOrTerminate } from '../src/batch/pool.js';
import { camTaskOptions } from '../src/tasks/defaults.js';
import { type DecodedInput, OutputSet, watchOutputs } from '../src/tasks/common.js';
import { CamTask } from '../src/tasks/index.js';
import type { BatchOutcome, InputImage, TaskOptions } from '../src/tasks/types.js';
import { haveSharedAssets, mobilenetDir, repoRoot } from './helpers/assets.js';
import { noise } from './helpers/files.js';
import { INJECTED_THROW, injectBatchThrow } from './helpers/inject-batch-throw.js';

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
  test('each output is told before it is written, and once its write has settled, whether it was written', async () => {
    const out = join(workDir, 'out-told');
    await mkdir(out, { recursive: true });
    // A file where a folder goes: the second write fails (ENOTDIR), whatever it retries.
    await writeFile(join(out, 'file'), 'not a folder');
    const told: [string, string, boolean][] = [];
    watchOutputs({
      writing: (path) => told.push(['writing', path, existsSync(path)]),
      settled: (path, written) => told.push(['settled', path, written]),
    });
    const outputs = new OutputSet(out);
    try {
      await outputs.write(join(out, 'deep', 'a.gradcam.0.png'), 'png');
      await assert.rejects(outputs.write(join(out, 'file', 'b.gradcam.0.png'), 'png'));
    } finally {
      watchOutputs(undefined);
    }
    assert.deepEqual(told, [
      ['writing', join(out, 'deep', 'a.gradcam.0.png'), false],
      ['settled', join(out, 'deep', 'a.gradcam.0.png'), true],
      ['writing', join(out, 'file', 'b.gradcam.0.png'), false],
      ['settled', join(out, 'file', 'b.gradcam.0.png'), false],
    ]);
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

  test('a batch that threw (stand-in): its maps are removed; a failed write\'s earlier map, a user\'s file and other batches\' maps stay', async () => {
    const out = join(workDir, 'out-stand-in-throw');
    await mkdir(out, { recursive: true });
    // An earlier run's map where this run's write fails, and a user's file: neither is this run's to remove.
    await writeFile(join(out, 'unwritten.gradcam.0.png'), 'earlier run');
    await writeFile(join(out, 'notes.txt'), 'mine');
    const image = (relative: string): InputImage => ({ path: join(workDir, relative), relative });
    const pool = await WorkerPool.start(camTaskOptions(out), 1, false, new URL('./helpers/stand-in-batch-worker.js', import.meta.url));
    try {
      await pool.process([image('a.png')]);
      await assert.rejects(pool.process([image('b.png'), image('unwritten.png'), image('throw.png')]), /the task threw/);
      const after = await pool.process([image('c.png')]);
      assert.deepEqual(after.records.map((record) => record.outputs), [['c.gradcam.0.png']], 'the thread goes on');
    } finally {
      await pool.close();
    }
    assert.deepEqual((await readdir(out)).sort(), ['a.gradcam.0.png', 'c.gradcam.0.png', 'notes.txt', 'unwritten.gradcam.0.png']);
    assert.equal(await readFile(join(out, 'unwritten.gradcam.0.png'), 'utf8'), 'earlier run');
  });
});

/**
 * Images a, b, throw and c, and an --out holding a user's notes.txt, for
 * the executor `start` makes (the throw injected: inject-batch-throw.ts):
 * a's batch, then b's and throw's with c's in flight beside it, as the
 * runner keeps them. The batch that threw is failed, its maps removed
 * before it is; a's and c's maps and the user's file stay.
 */
async function assertThrownBatchRemoved(name: string, start: (out: string) => Promise<Executor>): Promise<void> {
  const folder = join(workDir, `in-${name}`);
  await mkdir(folder, { recursive: true });
  const images = new Map<string, InputImage>();
  for (const [i, stem] of ['a', 'b', 'throw', 'c'].entries()) {
    const relative = `${stem}.png`;
    await sharp(noise(96, 80, i + 1), { raw: { width: 96, height: 80, channels: 3 } }).png().toFile(join(folder, relative));
    images.set(stem, { path: join(folder, relative), relative });
  }
  const of = (...stems: string[]): InputImage[] => stems.map((stem) => images.get(stem)!);
  const out = join(workDir, `out-${name}`);
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'notes.txt'), 'mine');
  const executor = await start(out);
  let kept: string[];
  try {
    const first = await executor.process(of('a'));
    const [thrown, beside] = await Promise.allSettled([executor.process(of('b', 'throw')), executor.process(of('c'))]);
    assert.equal(thrown.status, 'rejected');
    assert.match(String((thrown as PromiseRejectedResult).reason), new RegExp(INJECTED_THROW));
    assert.equal(beside.status, 'fulfilled');
    kept = [first, (beside as PromiseFulfilledResult<BatchOutcome>).value].flatMap((outcome) => outcome.records.flatMap((record) => record.outputs));
    assert.equal(kept.length, 4, 'two maps each for a and c');
    // Removed before the batch is failed: the runner's record of the failure never sits beside its maps.
    assert.deepEqual((await readdir(out)).sort(), [...kept, 'notes.txt'].sort());
  } finally {
    await executor.close();
  }
  assert.deepEqual((await readdir(out)).sort(), [...kept, 'notes.txt'].sort());
}

const skipWithoutShapes: string | false = existsSync(shapesJson) ? false : 'the embedded shapes model (models/shapes) is absent';
const shapesOptions = (out: string): TaskOptions => camTaskOptions(out, { model: { model: 'shapes', backend: 'wasm' }, topK: 2 });

describe('a batch whose task throws', { skip: skipWithoutShapes }, () => {
  test('in the real worker: the maps it wrote are removed before it is failed; answered batches keep theirs; the thread goes on', { timeout: 120_000 }, async () => {
    await assertThrownBatchRemoved('worker', (out) => WorkerPool.start(shapesOptions(out), 1, false, new URL('./helpers/throwing-batch-worker.js', import.meta.url)));
  });

  test('in this thread (--jobs 1): the same', { timeout: 120_000 }, async () => {
    const restore = injectBatchThrow();
    try {
      await assertThrownBatchRemoved('here', (out) => InProcessExecutor.start(shapesOptions(out)));
    } finally {
      restore();
    }
  });

  test('in this thread, an image whose writing throws: the batch fails only once its other images\' writes have settled, and none of their maps is left', { timeout: 120_000 }, async () => {
    const folder = join(workDir, 'in-late-write');
    await mkdir(folder, { recursive: true });
    const images: InputImage[] = [];
    for (const [i, stem] of ['b', 'throw'].entries()) {
      await sharp(noise(96, 80, i + 1), { raw: { width: 96, height: 80, channels: 3 } }).png().toFile(join(folder, `${stem}.png`));
      images.push({ path: join(folder, `${stem}.png`), relative: `${stem}.png` });
    }
    const out = join(workDir, 'out-late-write');
    await mkdir(out, { recursive: true });
    // b's maps are written a while after throw's writing has thrown: a write still to come when the batch fails.
    const prototype = CamTask.prototype as unknown as { writeOutputs: (this: CamTask, item: DecodedInput, ...rest: unknown[]) => Promise<unknown> };
    const writeOutputs = prototype.writeOutputs;
    prototype.writeOutputs = async function (item, ...rest) {
      if (item.input.relative.startsWith('throw')) throw new Error(INJECTED_THROW);
      await sleep(300);
      return writeOutputs.call(this, item, ...rest);
    };
    try {
      const executor = await InProcessExecutor.start(shapesOptions(out));
      try {
        await assert.rejects(executor.process(images), new RegExp(INJECTED_THROW));
        await sleep(600);
      } finally {
        await executor.close();
      }
    } finally {
      prototype.writeOutputs = writeOutputs;
    }
    assert.deepEqual((await readdir(out)).filter((name) => name.endsWith('.png')), []);
  });
});
