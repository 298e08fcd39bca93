/**
 * The ONNX writer's cache takes a TF.js model's recorded fingerprint by the
 * identity of the files it was read from (src/model/onnx-writer/cache.ts,
 * fingerprintOf): a second load hashes nothing; a weight file rewritten in
 * place with its size and mtime kept, a copied folder, weights written after
 * the load, and a cache from before the index are hashed. The rewritten
 * model's ONNX Runtime outputs are the new weights' (skipped without ORT).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { loadOnnxRuntime } from '../src/engine/onnxruntime.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { hashedFingerprintCount, onnxTrunkOfModel } from '../src/model/onnx-writer/cache.js';
import { FILE_FINGERPRINTS_NAME } from '../src/model/file-fingerprints.js';
import { assertScoresAsOnTfjs, recordedFingerprints, setWholeSecond, untilSettled, useCacheRoot } from './helpers/fingerprints.js';
import { saveLayersModel } from './helpers/layers-model-file.js';

const ort = loadOnnxRuntime();
const SIZE = 6;
const CLASSES = 4;

function tinyModel(seed: number): tfl.LayersModel {
  const input = tfl.input({ shape: [SIZE, SIZE, 3] });
  const conv = tfl.layers.conv2d({ filters: 5, kernelSize: 3, padding: 'same', activation: 'relu', name: 'conv' }).apply(input) as tfl.SymbolicTensor;
  const pooled = tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(conv) as tfl.SymbolicTensor;
  const logits = tfl.layers.dense({ units: CLASSES, name: 'logits' }).apply(pooled) as tfl.SymbolicTensor;
  const model = tfl.model({ inputs: input, outputs: tfl.layers.activation({ activation: 'softmax', name: 'probs' }).apply(logits) as tfl.SymbolicTensor });
  model.setWeights(model.weights.map((weight, i) => tf.randomUniform(weight.shape as number[], -1, 1, 'float32', seed * 100 + i)));
  return model;
}

let root: string;
let cache: string;
let original: string;
let other: string;
let restoreCacheRoot: () => void;

/** Loads `folder` and writes (or finds) its ONNX model: the hashes it took and its cache key. */
async function trunkOf(folder: string): Promise<{ hashed: number; cacheKey: string; origin: string; model: CamvizModel }> {
  const model = await loadModel(folder, { engine: 'tfjs' });
  const before = hashedFingerprintCount();
  const trunk = await onnxTrunkOfModel(model);
  return { hashed: hashedFingerprintCount() - before, cacheKey: trunk.cacheKey, origin: trunk.origin, model };
}

async function keyOf(folder: string): Promise<{ hashed: number; cacheKey: string; origin: string }> {
  const { model, ...result } = await trunkOf(folder);
  model.dispose();
  return result;
}

describe('fingerprints by file identity', () => {
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'camviz-file-fingerprint-'));
    cache = join(root, 'cache');
    restoreCacheRoot = useCacheRoot(cache);
    original = join(root, 'original');
    other = join(root, 'other');
    for (const [folder, seed] of [[original, 1], [other, 2]] as const) {
      const model = tinyModel(seed);
      await saveLayersModel(model, folder);
      model.dispose();
      await setWholeSecond(['model.json', 'weights.bin'].map((name) => join(folder, name)));
    }
    await untilSettled();
  });

  after(async () => {
    restoreCacheRoot();
    await rm(root, { recursive: true, force: true });
  });

  test('a second load takes the recorded fingerprint without hashing; a cache from before the index still works', async () => {
    const first = await keyOf(original);
    assert.equal(first.hashed, 1);
    assert.equal(first.origin, 'written');
    assert.deepEqual(Object.values(await recordedFingerprints(cache)).map((entry) => entry.fingerprint), [first.cacheKey.split('-')[0]]);
    const second = await keyOf(original);
    assert.deepEqual(second, { hashed: 0, cacheKey: first.cacheKey, origin: 'cache' });
    // The cache entry as an earlier build left it: no index. The entry is used, the fingerprint hashed once and recorded.
    await rm(join(cache, 'onnx', FILE_FINGERPRINTS_NAME));
    assert.deepEqual(await keyOf(original), { hashed: 1, cacheKey: first.cacheKey, origin: 'cache' });
    assert.deepEqual(await keyOf(original), { hashed: 0, cacheKey: first.cacheKey, origin: 'cache' });
  });

  test('a copied folder is hashed again (new inodes), and gives the same fingerprint', async () => {
    const expected = await keyOf(original);
    const copy = join(root, 'copy');
    await cp(original, copy, { recursive: true, preserveTimestamps: true });
    const copied = await keyOf(copy);
    assert.equal(copied.hashed, 1);
    assert.equal(copied.cacheKey, expected.cacheKey);
  });

  test('weights written after the load are hashed', async () => {
    const loaded = await trunkOf(original);
    assert.equal(loaded.hashed, 0);
    const model = loaded.model;
    try {
      const layersModel = model.layersModel!;
      layersModel.setWeights(layersModel.weights.map((weight) => tf.onesLike(weight.read())));
      const before = hashedFingerprintCount();
      const trunk = await onnxTrunkOfModel(model);
      assert.equal(hashedFingerprintCount() - before, 1);
      assert.notEqual(trunk.cacheKey, loaded.cacheKey);
    } finally {
      model.dispose();
    }
  });

  test('a weight file rewritten in place, its size and mtime kept, is hashed again and runs as the new weights', async () => {
    const recorded = await keyOf(original);
    assert.equal(recorded.hashed, 0);
    const weightsPath = join(original, 'weights.bin');
    const was = await stat(weightsPath, { bigint: true });
    // The other model's weights: the same layers, so the same size.
    await writeFile(weightsPath, await readFile(join(other, 'weights.bin')));
    await setWholeSecond([weightsPath]);
    const now = await stat(weightsPath, { bigint: true });
    assert.deepEqual([now.dev, now.ino, now.size, now.mtimeNs], [was.dev, was.ino, was.size, was.mtimeNs], 'same device, inode, size and mtime');
    assert.notEqual(now.ctimeNs, was.ctimeNs, 'the kernel set a new ctime');
    const rewritten = await keyOf(original);
    assert.equal(rewritten.hashed, 1);
    assert.notEqual(rewritten.cacheKey, recorded.cacheKey);
    assert.equal(rewritten.cacheKey, (await keyOf(other)).cacheKey, "the other model's fingerprint");
  });

  test('the rewritten model runs on ONNX Runtime as its new weights', { skip: ort.available ? false : `onnxruntime-node does not load: ${ort.available ? '' : ort.reason}` }, async () => {
    const onOrt = await loadModel(original, { engine: 'onnxruntime' });
    const onTfjs = await loadModel(other, { engine: 'tfjs' });
    assert.equal(await assertScoresAsOnTfjs(onOrt, onTfjs, SIZE), CLASSES);
  });
});
