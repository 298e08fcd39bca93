/**
 * Memory on ONNX Runtime (issue 12: memory flat over 1,000 images): the
 * session options that keep ORT's buffers in its arena, and folder runs on
 * ORT that leave no tensor, ArrayBuffer or resident memory behind from one
 * run to the next. The 1,000-image measurement itself is the bench's
 * (scripts/bench-memory.ts); the bounds here are loose enough for glibc's
 * allocator, and tight enough for a leak of one input or output a photo.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';

import { runBatch } from '../src/batch/runner.js';
import { loadOnnxRuntime, sessionOptions } from '../src/engine/onnxruntime.js';
import { releaseBackend } from '../src/engine/release.js';
import { camTaskOptions } from '../src/tasks/defaults.js';
import { repoRoot } from './helpers/assets.js';
import { noise, readManifest } from './helpers/files.js';

const ortStatus = loadOnnxRuntime();
const shapesJson = join(repoRoot, 'models', 'shapes', 'model.json');
const skipRun: string | false = !ortStatus.available
  ? `onnxruntime-node does not load here: ${ortStatus.reason}`
  : existsSync(shapesJson)
    ? false
    : 'models/shapes/model.json is not present';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-ort-memory-'));
after(() => rm(workDir, { recursive: true, force: true }));
// A folder run starts the wasm backend's threads, which would keep this process alive.
after(releaseBackend);

const MIB = 2 ** 20;

describe('ONNX Runtime session options', () => {
  test('keep the CPU memory arena and the memory pattern on, at every thread count', () => {
    for (const threads of [1, 2, 4]) {
      const options = sessionOptions(threads);
      assert.equal(options.enableCpuMemArena, true, `${threads} thread(s): the arena`);
      assert.equal(options.enableMemPattern, true, `${threads} thread(s): the memory pattern`);
      assert.equal(options.intraOpNumThreads, threads);
    }
  });
});

/**
 * A full collection without a command-line flag, twice around a turn of the
 * event loop: a Buffer that sharp filled is freed by a callback that runs
 * after the collection that found it dead.
 */
function collector(): () => Promise<void> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  return async () => {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
    gc();
  };
}

describe('folder runs on ONNX Runtime', { skip: skipRun }, () => {
  test('120 photos of varying sizes, run after run: no tensor, ArrayBuffer or resident memory left behind', async () => {
    const gc = collector();
    const folder = join(workDir, 'photos');
    await mkdir(folder, { recursive: true });
    // Varying sizes, as in the bench: each photo's buffers (decoded, overlay, PNG) differ in size.
    for (let i = 0; i < 120; i++) {
      const [width, height] = [160 + ((i * 37) % 256), 120 + ((i * 53) % 192)];
      await sharp(noise(width, height, i + 1), { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toFile(join(folder, `p${String(i).padStart(3, '0')}.jpg`));
    }
    const once = async (name: string): Promise<{ tensors: number; arrayBuffers: number; rss: number }> => {
      const outDir = join(workDir, name);
      const model = { model: 'shapes', backend: 'wasm' as const, engine: 'onnxruntime' as const };
      const result = await runBatch({ task: camTaskOptions(outDir, { model }), inputs: [folder], jobs: 1, quiet: true, manifest: true });
      assert.equal(result.exitCode, 0);
      assert.equal(result.records.filter((record) => record.status === 'ok').length, 120);
      assert.equal((await readManifest(outDir)).engine?.kind, 'onnxruntime', 'ONNX Runtime ran the passes');
      await rm(outDir, { recursive: true, force: true });
      await gc();
      const { arrayBuffers, rss } = process.memoryUsage();
      return { tensors: tf.memory().numTensors, arrayBuffers, rss };
    };
    await once('warm-up'); // the wasm heap, ORT's session and arena, sharp and V8 settle
    const first = await once('first');
    const second = await once('second');
    const third = await once('third');
    for (const [name, run] of Object.entries({ second, third })) {
      assert.equal(run.tensors, first.tensors, `${name} run: no tensors left`);
      // One input kept a photo is 120 x 48 KiB here (the shapes model's 64x64 input), 0.6 MB a photo on MobileNet.
      const buffers = (run.arrayBuffers - first.arrayBuffers) / MIB;
      assert.ok(buffers < 4, `${name} run: ArrayBuffers grew ${buffers.toFixed(1)} MiB over the first run's`);
    }
    // glibc keeps what it freed for reuse: resident memory may step up, not climb by a photo's buffers per photo.
    const growth = (third.rss - first.rss) / MIB;
    assert.ok(growth < 24, `RSS grew ${growth.toFixed(1)} MiB over two 120-photo runs`);
  });
});
