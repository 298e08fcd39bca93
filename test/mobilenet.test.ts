/**
 * Real pretrained classifiers from the shared assets: MobileNet v1 0.75
 * (softmax behind a Reshape) and Darknet-tiny (no softmax, its own class
 * order). Expected classes come from the photographs' content and the
 * assets' README, not from camviz's output.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

import { type BackendKind, useBackend } from '../src/engine/backend.js';
import { LayerGraph } from '../src/executor/graph.js';
import { loadImage } from '../src/image/image.js';
import { shortLabel } from '../src/model/labels.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { disposeValues } from '../src/executor/network.js';
import { classProbabilities, inputTensor, topK } from '../src/model/predict.js';
import { locateScores } from '../src/executor/score.js';
import { asset, darknetDir, imagePath, mobilenetDir, skipWithoutSharedAssets } from './helpers/assets.js';
import { forEachBackend } from './helpers/backends.js';
import { maxAbsDifference } from './helpers/numeric.js';

const IMAGES = { 'both.png': 243, 'creative_commons_elephant.jpg': 386 } as const;
type ImageName = keyof typeof IMAGES;

function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** Softmax in float64 by a plain loop. */
function naiveSoftmax(logits: ArrayLike<number>): number[] {
  const values = Array.from(logits);
  const top = Math.max(...values);
  const exps = values.map((value) => Math.exp(value - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}

async function modelInput(model: CamvizModel, name: string): Promise<Uint8Array> {
  return (await loadImage(imagePath(name), { size: model.meta.inputSize })).input;
}

/** A layer's output computed by tfjs-layers itself (not camviz's executor). */
function layerOutputByTfjs(model: tfl.LayersModel, layerName: string, input: tf.Tensor): Float32Array {
  const probe = tfl.model({ inputs: model.inputs, outputs: model.getLayer(layerName).output as tfl.SymbolicTensor });
  return tf.tidy(() => (probe.predict(input) as tf.Tensor).dataSync() as Float32Array);
}

describe('MobileNet v1 0.75 (shared assets)', { skip: skipWithoutSharedAssets }, () => {
  const probabilitiesByBackend = new Map<BackendKind, Map<ImageName, Float32Array>>();

  forEachBackend((backend) => {
    test(`top-1: both.png -> 243 bull mastiff, creative_commons_elephant.jpg -> 386 African elephant`, async () => {
      const model = await loadModel(mobilenetDir);
      try {
        const results = new Map<ImageName, Float32Array>();
        for (const [name, expected] of Object.entries(IMAGES) as [ImageName, number][]) {
          const [probabilities] = await classProbabilities(model, [await modelInput(model, name)]);
          assert.equal(argmax(probabilities!), expected, `${name} on ${backend}`);
          const sum = probabilities!.reduce((a, b) => a + b, 0);
          assert.ok(Math.abs(sum - 1) < 1e-4, `probabilities sum to ${sum}`);
          results.set(name, probabilities!);
        }
        // The README's second class for both.png: the cat.
        assert.equal(topK(results.get('both.png')!, 2)[1]!.index, 282);
        probabilitiesByBackend.set(backend, results);
      } finally {
        model.dispose();
      }
    });
  });

  test('cpu and wasm give probabilities within 1e-4 of each other', () => {
    const cpu = probabilitiesByBackend.get('cpu');
    const wasm = probabilitiesByBackend.get('wasm');
    assert.ok(cpu !== undefined && wasm !== undefined, 'both backends ran');
    for (const name of Object.keys(IMAGES) as ImageName[]) {
      const difference = maxAbsDifference(cpu.get(name)!, wasm.get(name)!);
      assert.ok(difference <= 1e-4, `${name}: cpu and wasm differ by ${difference}`);
    }
  });

  describe('recognised by its model.json sha256 when loaded from a folder', () => {
    let model: CamvizModel;
    before(async () => {
      await useBackend('wasm');
      model = await loadModel(mobilenetDir);
    });
    after(() => model.dispose());

    test('metadata: preprocess tf, ImageNet labels, 224x224', () => {
      const bytes = readFileSync(join(mobilenetDir, 'model.json'));
      assert.equal(model.meta.sha256, createHash('sha256').update(bytes).digest('hex'));
      assert.equal(model.meta.sha256, 'a74c25424bd9939b1c245a58da417e35d1ca16f0b009490a1c44b43d982600d9');
      assert.equal(model.meta.preprocess, 'tf');
      assert.equal(model.meta.preprocessSource, 'zoo');
      assert.deepEqual(model.meta.inputSize, { width: 224, height: 224 });
      assert.equal(model.meta.labels?.length, 1000);
      assert.equal(model.meta.labels?.[281], 'tabby, tabby cat');
      const shared = JSON.parse(readFileSync(asset('imagenet', 'imagenet_classes.json'), 'utf8')) as string[];
      assert.deepEqual(model.meta.labels, shared);
    });

    test('options override the recognised metadata', async () => {
      const overridden = await loadModel(mobilenetDir, { preprocess: 'unit', size: '200x100' });
      try {
        assert.equal(overridden.meta.preprocess, 'unit');
        assert.equal(overridden.meta.preprocessSource, 'option');
        assert.deepEqual(overridden.meta.inputSize, { width: 200, height: 100 });
      } finally {
        overridden.dispose();
      }
    });

    test('score detection finds conv_preds behind act_softmax and reshape_2, without being told', () => {
      const graph = LayerGraph.fromModel(model.layersModel!);
      try {
        const found = locateScores(graph);
        assert.equal(found.scoreLayer, 'conv_preds');
        assert.equal(found.activation, 'softmax');
        assert.equal(graph.producer(found.outputKey)?.path, 'reshape_2');
      } finally {
        graph.dispose();
      }
      assert.equal(model.network().score.scoreLayer, 'conv_preds');
      assert.equal(model.network().score.activation, 'softmax');
    });

    test('softmax(scores) equals the model output to 1e-5, and the scores are conv_preds', async () => {
      const layersModel = model.layersModel!;
      const input = inputTensor(model, [await modelInput(model, 'both.png')]);
      const values = await model.network().forward(input);
      try {
        const scores = values.scores.dataSync();
        assert.equal(scores.length, 1000);
        const output = tf.tidy(() => (layersModel.predict(input) as tf.Tensor).dataSync());
        assert.ok(maxAbsDifference(naiveSoftmax(scores), output) <= 1e-5);
        assert.ok(maxAbsDifference(values.probabilities.dataSync(), output) <= 1e-5);
        // The scores are logits, not probabilities.
        assert.ok(Math.min(...scores) < 0 && Math.max(...scores) > 1);
        assert.ok(maxAbsDifference(scores, layerOutputByTfjs(layersModel, 'conv_preds', input)) <= 1e-4);
      } finally {
        disposeValues(values);
        input.dispose();
      }
    });
  });
});

describe('Darknet-tiny (shared assets)', { skip: skipWithoutSharedAssets }, () => {
  let model: CamvizModel;
  const toStandard = (): number[] => JSON.parse(readFileSync(join(darknetDir, 'darknet_to_imagenet_index.json'), 'utf8')) as number[];

  before(async () => {
    await useBackend('wasm');
    model = await loadModel(darknetDir, { preprocess: 'unit', labels: join(darknetDir, 'darknet_imagenet_classes.json') });
  });
  after(() => model?.dispose());

  test('its labels file and index map agree with the standard ImageNet order', () => {
    const standard = JSON.parse(readFileSync(asset('imagenet', 'imagenet_classes.json'), 'utf8')) as string[];
    const map = toStandard();
    assert.equal(model.meta.labels?.length, 1000);
    assert.equal(new Set(map).size, 1000);
    const agreeing = model.meta.labels!.filter((label, i) => shortLabel(standard[map[i]!]!) === label).length;
    assert.ok(agreeing >= 990, `${agreeing} of 1000 names agree`);
  });

  test('top-1 of both.png maps to a dog class in the standard order', async () => {
    assert.equal(model.meta.preprocess, 'unit');
    const [probabilities] = await classProbabilities(model, [await modelInput(model, 'both.png')]);
    const top = argmax(probabilities!);
    const standardIndex = toStandard()[top]!;
    // ImageNet's dogs: 151 (Chihuahua) to 268 (Mexican hairless).
    assert.ok(standardIndex >= 151 && standardIndex <= 268, `darknet ${top} "${model.meta.labels![top]}" -> standard ${standardIndex}`);
  });

  test('score detection: no softmax, the output is the score', async () => {
    const score = model.network().score;
    assert.equal(score.activation, 'none');
    assert.equal(score.scoreKey, score.outputKey);
    assert.equal(score.scoreLayer, 'global_average_pooling2d_1');
    // Probabilities are then the softmax of the raw output.
    const input = inputTensor(model, [await modelInput(model, 'both.png')]);
    const values = await model.network().forward(input);
    try {
      const output = tf.tidy(() => (model.layersModel!.predict(input) as tf.Tensor).dataSync());
      assert.ok(maxAbsDifference(values.scores.dataSync(), output) <= 1e-4);
      assert.ok(maxAbsDifference(values.probabilities.dataSync(), naiveSoftmax(output)) <= 1e-5);
    } finally {
      disposeValues(values);
      input.dispose();
    }
  });
});
