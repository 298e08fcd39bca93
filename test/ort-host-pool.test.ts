/**
 * ONNX Runtime's host workers (src/executor/ort-host-pool.ts): at 2+
 * threads, Score-CAM's masked inputs run on worker threads with one
 * single-threaded session each. Checked here:
 * - on the tiny ONNX model, Score-CAM through the workers equals Score-CAM
 *   computed by hand (masks from `maskedInputs`, which scorecam-masks.test.ts
 *   checks against tfjs; scores in float64), with the workers' sessions made
 *   from the saved optimised graph and from the model's bytes;
 * - a worker that dies mid-run rejects with one line naming the model, and
 *   the executor then runs in this thread; workers that cannot start leave
 *   every batch to this thread; `dispose` ends them and a later run starts
 *   new ones;
 * - an abort (a run stopping) starts no masked batch after it;
 * - on MobileNet v1 (the shared TF.js model through the ONNX writer), the
 *   map through two workers equals the map of the single-session path.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../src/engine/backend.js';
import { loadOnnxRuntime } from '../src/engine/onnxruntime.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { onnxTrunkOf } from '../src/model/onnx/trunk.js';
import { HOST_WORKER_BATCH, OrtExecutor, createOrtExecutor } from '../src/executor/ort.js';
import { ScoreCam, alignCornersWeights, maskedInputs } from '../src/cam/scorecam.js';
import { camTargets } from '../src/cam/request.js';
import { inputTensor } from '../src/model/predict.js';
import { loadImage } from '../src/image/image.js';
import { CamvizError, describeError } from '../src/util/errors.js';
import { imagePath, mobilenetDir, skipWithoutSharedAssets } from './helpers/assets.js';
import { maxAbsDifference } from './helpers/numeric.js';
import { onnxModelBytes } from './helpers/onnx.js';
import { CHANNELS, SIZE, randoms, tinyByHand, tinyModel } from './helpers/tiny-onnx.js';
import { withEnv } from './helpers/env.js';

const ort = loadOnnxRuntime();
const skipOrt: string | false = ort.available ? false : `onnxruntime-node does not load: ${ort.reason}`;

function closeTo(actual: ArrayLike<number>, expected: ArrayLike<number>, relative: number, what: string): void {
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  const difference = maxAbsDifference(actual, expected);
  assert.ok(difference <= relative * Math.max(scale, 1e-6), `${what}: differs by ${difference.toExponential(2)} (max |value| ${scale.toExponential(2)})`);
}

/** Runs `run` with CAMVIZ_ORT_MODULE set: a worker started meanwhile loads that module (the main thread keeps the one it loaded). */
function withWorkerModule<T>(specifier: string, run: () => Promise<T>): Promise<T> {
  return withEnv('CAMVIZ_ORT_MODULE', specifier, run);
}

/**
 * Score-CAM of layer 'conv' of the tiny model by hand, per image, for
 * class `classIndex`: each channel's masked input scored in float64, the
 * softmax of the scores weighs the channels, ReLU of the weighted sum.
 */
function tinyScoreCamByHand(input: Float32Array, batch: number, classIndex: number): Float64Array[] {
  const { conv } = tinyByHand(input, batch);
  const pixels = SIZE * SIZE;
  return Array.from({ length: batch }, (_, image) => {
    const maps = Float32Array.from(conv.subarray(image * pixels * CHANNELS, (image + 1) * pixels * CHANNELS));
    const masking = {
      maps: { data: maps, height: SIZE, width: SIZE, channels: CHANNELS },
      picture: { data: input.subarray(image * pixels * 3, (image + 1) * pixels * 3), height: SIZE, width: SIZE, channels: 3 },
      upsampling: { rows: alignCornersWeights(SIZE, SIZE), columns: alignCornersWeights(SIZE, SIZE) },
    };
    const scores = Array.from({ length: CHANNELS }, (_, channel) => tinyByHand(maskedInputs(masking, [channel]), 1).scores[classIndex]!);
    const largest = Math.max(...scores);
    const exponentials = scores.map((score) => Math.exp(score - largest));
    const total = exponentials.reduce((sum, value) => sum + value, 0);
    return Float64Array.from({ length: pixels }, (_, p) => Math.max(0, exponentials.reduce((sum, value, channel) => sum + (value / total) * maps[p * CHANNELS + channel]!, 0)));
  });
}

describe('ONNX Runtime host workers on the tiny model, against Score-CAM by hand', { skip: skipOrt }, () => {
  let folder: string;
  let path: string;
  let model: CamvizModel;
  const batch = 2;
  const classIndex = 1;
  let input: tf.Tensor4D;
  let expected: Float64Array[];

  before(async () => {
    await useBackend('wasm');
    folder = await mkdtemp(join(tmpdir(), 'camviz-ort-host-'));
    path = join(folder, 'tiny.onnx');
    await writeFile(path, onnxModelBytes(tinyModel()));
    model = await loadModel(path, { preprocess: 'none' });
    input = tf.tensor4d(randoms(batch * SIZE * SIZE * 3, 21), [batch, SIZE, SIZE, 3]);
    expected = tinyScoreCamByHand(input.dataSync() as Float32Array, batch, classIndex);
  });
  after(async () => {
    input?.dispose();
    model?.dispose();
    await rm(folder, { recursive: true, force: true });
  });

  /** A 2-thread executor whose host workers start for any run; `saved`: its first session's optimised graph is kept, and the workers load it. */
  async function executorOf(saved: boolean): Promise<OrtExecutor> {
    const network = model.network();
    const trunk = await onnxTrunkOf(path, model.meta.sha256, network.graph, model.meta.inputSize);
    return createOrtExecutor(network, trunk, { file: path, threads: 2, hostWorkerMinImages: 1, ...(saved ? { optimizedFolder: join(folder, 'optimized') } : {}) });
  }

  /** Score-CAM of layer 'conv', one masked input per batch (4 channels: 4 batches an image). */
  async function scoreCam(executor: OrtExecutor): Promise<Float32Array[]> {
    const method = new ScoreCam();
    method.batchSize = 1;
    const results = await method.compute(executor, { input, layers: [executor.graph.findNodes('conv').at(-1)!], classes: { kind: 'explicit', classes: [classIndex] } });
    return results.map((perImage) => perImage[0]!.map.data);
  }

  function equalsHand(maps: readonly Float32Array[], what: string): void {
    assert.equal(maps.length, batch);
    maps.forEach((map, image) => closeTo(map, expected[image]!, 1e-5, `${what}, image ${image}`));
    assert.ok(expected.some((map) => map.some((value) => value > 0)), 'the maps by hand are not all zero');
  }

  for (const saved of [true, false]) {
    test(`the workers' sessions made ${saved ? 'from the saved optimised graph' : "from the model's bytes"}: the maps equal the hand's; every masked batch ran on a worker`, async () => {
      const executor = await executorOf(saved);
      try {
        assert.deepEqual(executor.hostRunPlan(CHANNELS, SIZE, SIZE), { inFlight: 4, batchSize: HOST_WORKER_BATCH }, 'two workers, two batches each');
        equalsHand(await scoreCam(executor), 'through the workers');
        assert.equal(executor.hostWorkerBatches, batch * CHANNELS);
      } finally {
        await executor.dispose();
      }
    });
  }

  test('an abort after two masked batches (a run stopping): no batch starts after it; the call rejects with its reason once those two have ended', async () => {
    const executor = await executorOf(false);
    try {
      const controller = new AbortController();
      const reason = new Error('stopped');
      const forwardHost = executor.forwardHost.bind(executor);
      let calls = 0;
      executor.forwardHost = (...args) => {
        const values = forwardHost(...args);
        if (++calls === 2) controller.abort(reason);
        return values;
      };
      const method = new ScoreCam();
      method.batchSize = 1;
      const request = { input, layers: [executor.graph.findNodes('conv').at(-1)!], classes: { kind: 'explicit', classes: [classIndex] } as const, signal: controller.signal };
      await assert.rejects(method.compute(executor, request), (error: unknown) => error === reason);
      assert.equal(calls, 2, `no batch after the abort, of ${batch * CHANNELS}`);
      assert.equal(executor.hostWorkerBatches, 2, 'the two batches in flight ended before the call did');
    } finally {
      await executor.dispose();
    }
  });

  test('at one thread, or a run shorter than the minimum, no worker starts', async () => {
    const network = model.network();
    const trunk = await onnxTrunkOf(path, model.meta.sha256, network.graph, model.meta.inputSize);
    const oneThread = await createOrtExecutor(network, trunk, { file: path, threads: 1, hostWorkerMinImages: 1 });
    const shortRun = await createOrtExecutor(network, trunk, { file: path, threads: 2, hostWorkerMinImages: 1000 });
    for (const executor of [oneThread, shortRun]) {
      assert.equal(executor.hostRunPlan(CHANNELS, SIZE, SIZE).inFlight, 1);
      equalsHand(await scoreCam(executor), 'in this thread');
      assert.equal(executor.hostWorkerBatches, 0);
    }
  });

  test('a worker that dies mid-run: one line naming the model, no hang; dispose lets new workers start', { timeout: 60_000 }, async () => {
    const require = createRequire(import.meta.url);
    const dying = join(folder, 'dying-ort.cjs');
    // onnxruntime-node whose sessions end their thread when they run.
    await writeFile(
      dying,
      [
        `const ort = require(${JSON.stringify(require.resolve('onnxruntime-node'))});`,
        'const create = async (...args) => Object.assign(await ort.InferenceSession.create(...args), { run: async () => process.exit(7) });',
        'module.exports = { Tensor: ort.Tensor, env: ort.env, InferenceSession: { create } };',
        '',
      ].join('\n'),
    );
    const executor = await executorOf(false);
    try {
      const failed = await withWorkerModule(dying, () => scoreCam(executor).then(() => undefined, (error: unknown) => error));
      assert.ok(failed instanceof CamvizError, `a CamvizError, not ${String(failed)}`);
      assert.equal(describeError(failed), `an ONNX Runtime worker exited (code 7) (${path})`);
      await executor.dispose();
      assert.equal(executor.hostRunPlan(CHANNELS, SIZE, SIZE).inFlight, 4, 'new workers after dispose');
      equalsHand(await scoreCam(executor), 'through new workers');
      assert.equal(executor.hostWorkerBatches, batch * CHANNELS);
    } finally {
      await executor.dispose();
    }
  });

  test("work pending when the workers are closed (a run stopped at once) fails saying the run stopped, naming no model", { timeout: 60_000 }, async () => {
    const require = createRequire(import.meta.url);
    const stuck = join(folder, 'stuck-ort.cjs');
    // onnxruntime-node whose runs take 2 s (a long pass): the work is pending when the pool closes. (A worker
    // ends after the pass it is in: never terminated inside ONNX Runtime.)
    await writeFile(
      stuck,
      [
        `const ort = require(${JSON.stringify(require.resolve('onnxruntime-node'))});`,
        // Each run says it was called (a file).
        `const marker = ${JSON.stringify(join(folder, 'stuck-run-called'))};`,
        "const slowRun = () => { require('node:fs').writeFileSync(marker, ''); return new Promise((_, reject) => setTimeout(() => reject(new Error('a late pass')), 2000)); };",
        'const create = async (...args) => Object.assign(await ort.InferenceSession.create(...args), { run: slowRun });',
        'module.exports = { Tensor: ort.Tensor, env: ort.env, InferenceSession: { create } };',
        '',
      ].join('\n'),
    );
    const executor = await executorOf(false);
    try {
      const outcome = await withWorkerModule(stuck, async () => {
        const pending = scoreCam(executor).then(() => undefined, (error: unknown) => error);
        // Closed once a worker is inside a pass.
        while (!existsSync(join(folder, 'stuck-run-called'))) await new Promise((resolve) => setTimeout(resolve, 20));
        await executor.dispose();
        return pending;
      });
      assert.ok(outcome instanceof CamvizError, `a CamvizError, not ${String(outcome)}`);
      assert.equal(describeError(outcome), "the run stopped before this image's ONNX Runtime passes were done");
    } finally {
      await executor.dispose();
    }
  });

  test('workers that cannot start (ONNX Runtime missing in them): every batch runs in this thread', { timeout: 60_000 }, async () => {
    const executor = await executorOf(false);
    try {
      equalsHand(await withWorkerModule('/nonexistent', () => scoreCam(executor)), 'in this thread');
      assert.equal(executor.hostWorkerBatches, 0);
      assert.equal(executor.hostRunPlan(CHANNELS, SIZE, SIZE).inFlight, 1);
    } finally {
      await executor.dispose();
    }
  });
});

describe('ONNX Runtime host workers on MobileNet v1 (TF.js model through the writer)', { skip: skipOrt || skipWithoutSharedAssets }, () => {
  test('Score-CAM through two workers equals the single-session map within 1e-5 of its maximum', { timeout: 300_000 }, async () => {
    await useBackend('wasm');
    const maps: Float32Array[] = [];
    const workerBatches: number[] = [];
    for (const threads of [1, 2]) {
      const model = await loadModel(mobilenetDir, { engine: 'onnxruntime', ortThreads: threads });
      const image = await loadImage(imagePath('both.png'), { size: model.meta.inputSize });
      const input = inputTensor(model, [image.input]);
      try {
        const executor = await model.executor();
        assert.ok(executor instanceof OrtExecutor);
        const results = await new ScoreCam().compute(executor, { input, layers: camTargets(model, []), classes: { kind: 'explicit', classes: [281] } });
        maps.push(results[0]![0]!.map.data);
        workerBatches.push(executor.hostWorkerBatches);
        await executor.dispose();
      } finally {
        input.dispose();
        model.dispose();
      }
    }
    assert.equal(workerBatches[0], 0, 'one thread: one session in this thread');
    assert.ok(workerBatches[1]! > 80, `two threads: the masked batches ran on the workers (${workerBatches[1]})`);
    closeTo(maps[1]!, maps[0]!, 1e-5, 'Score-CAM, workers vs one session');
    assert.ok(maps[0]!.some((value) => value > 0));
  });
});
