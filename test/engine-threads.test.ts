/**
 * WebAssembly threads of a folder run in this thread under --engine auto:
 * none when ONNX Runtime serves the model, and a tfjs run's threads when
 * ONNX Runtime refuses it (the per-model fallback, known only once the model
 * is loaded). Runs are in this process, so the backend they leave is the one
 * observed; the ONNX Runtime run comes first, since a restarted backend stays.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import sharp from 'sharp';

import { runBatch, wasmThreadsFor } from '../src/batch/runner.js';
import { activeBackend, releaseBackend } from '../src/engine/backend.js';
import { loadOnnxRuntime } from '../src/engine/onnxruntime.js';
import type { EngineChoice } from '../src/engine/engine-choices.js';
import { predictTaskOptions } from '../src/tasks/defaults.js';
import type { PredictTaskOptions } from '../src/tasks/types.js';
import { noise } from './helpers/files.js';
import { saveLayersModel } from './helpers/layers-model-file.js';
import { unwritableLayer } from './helpers/unwritable-layer.js';

const ortStatus = loadOnnxRuntime();
const skip: string | false = !ortStatus.available
  ? `onnxruntime-node is not available: ${ortStatus.reason}`
  : availableParallelism() < 2
    ? 'one core: a tfjs run starts no threads either, so the two cannot be told apart'
    : false;

const workDir = await mkdtemp(join(tmpdir(), 'camviz-engine-threads-'));
after(async () => {
  await releaseBackend();
  await rm(workDir, { recursive: true, force: true });
});

/** Enough images for a run in this thread to start threads (THREADED_RUN_IMAGES). */
const IMAGES = 8;

async function imageFolder(): Promise<string> {
  const folder = join(workDir, 'images');
  await mkdir(folder, { recursive: true });
  for (let i = 0; i < IMAGES; i++) {
    await sharp(noise(12, 10, i + 1), { raw: { width: 12, height: 10, channels: 3 } }).png().toFile(join(folder, `${i}.png`));
  }
  return folder;
}

/** A small layers model whose middle layer is `middle`. */
async function modelWith(name: string, middle: tfl.layers.Layer): Promise<string> {
  const folder = join(workDir, name);
  const input = tfl.input({ shape: [8, 8, 3] });
  const pooled = tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(middle.apply(input)) as tfl.SymbolicTensor;
  const scores = tfl.layers.dense({ units: 2, activation: 'softmax', name: 'scores' }).apply(pooled) as tfl.SymbolicTensor;
  const built = tfl.model({ inputs: input, outputs: scores });
  await saveLayersModel(built, folder);
  built.dispose();
  return folder;
}

function predictTask(model: string, engine: EngineChoice): PredictTaskOptions {
  return predictTaskOptions(join(workDir, 'unused'), { model: { model, backend: 'wasm', engine, preprocess: 'unit' }, top: 1 });
}

async function wasmThreadsAfterRun(task: PredictTaskOptions, images: string): Promise<number | undefined> {
  const result = await runBatch({ task, inputs: [images], jobs: 1, manifest: false, quiet: true });
  assert.equal(result.exitCode, 0);
  assert.equal(result.records.length, IMAGES);
  assert.equal(activeBackend()?.kind, 'wasm');
  return activeBackend()?.threads;
}

describe('wasm threads of a folder run in this thread under --engine auto', { skip }, () => {
  test('ONNX Runtime serves the model: no threads; it refuses the model: the threads a --engine tfjs run gets', async () => {
    const images = await imageFolder();
    const served = await modelWith('served', tfl.layers.conv2d({ filters: 2, kernelSize: 3, padding: 'same', name: 'conv' }));
    const refused = await modelWith('refused', unwritableLayer('up'));

    assert.equal(await wasmThreadsAfterRun(predictTask(served, 'auto'), images), 1);

    const tfjsRunThreads = await wasmThreadsFor(predictTask(refused, 'tfjs'), IMAGES);
    assert.ok(tfjsRunThreads > 1, 'a tfjs run of this many images starts threads');
    assert.equal(await wasmThreadsAfterRun(predictTask(refused, 'auto'), images), tfjsRunThreads);
  });
});
