/**
 * Gradients through a Keras LayerNormalization without gamma (scale=False)
 * or beta (center=False) in the models camviz loads. tfjs-layers 4.22 hands
 * tfjs' batchNorm a null scale or offset, and tfjs' tape fails on the
 * missing input of the op it recorded, so Grad-CAM before such a layer and
 * the input gradient failed. The second path: the same network with the
 * missing weights given explicitly (gamma 1, beta 0), which tfjs-layers'
 * own LayerNormalization differentiates; values, the input gradient and
 * Grad-CAM before, between and after the layers agree, on cpu and wasm.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { type CamvizModel, loadModel } from '../src/index.js';
import { forEachBackend } from './helpers/backends.js';
import { mulberry32 } from './helpers/numeric.js';
import { saveLayersModel } from './helpers/layers-model-file.js';
import { assertCloseTo, classInputGradient, gradcamMaps } from './helpers/torch-parity.js';

const [HEIGHT, WIDTH] = [6, 5];
const FEATURES = 4;
const UNITS = 3;
const CLASSES = [2, 0];

/** The LayerNormalization layers: which weights each has, over which axes. */
const NORMS = [
  { name: 'no_gamma', scale: false, center: true, axis: -1 },
  { name: 'no_beta', scale: true, center: false, axis: [1, 2, 3] },
  { name: 'neither', scale: false, center: false, axis: [3, 1] },
] as const;

function randomValues(count: number, seed: number): number[] {
  const random = mulberry32(seed);
  return Array.from({ length: count }, () => random() * 2 - 1);
}

/**
 * input -> conv (3x3, 'same') -> the NORMS in turn (each followed by a
 * ReLU, so that Grad-CAM maps after them are not cancelled by the
 * normalisation's zero mean) -> global mean -> logits. `explicit`: every
 * norm has gamma and beta, the missing ones set to 1 and 0.
 */
function buildModel(explicit: boolean): tfl.LayersModel {
  const input = tfl.input({ shape: [HEIGHT, WIDTH, 3] });
  const conv = tfl.layers.conv2d({ filters: FEATURES, kernelSize: 3, padding: 'same', name: 'conv' });
  let x = conv.apply(input) as tfl.SymbolicTensor;
  const norms = NORMS.map((norm) => tfl.layers.layerNormalization({ name: norm.name, axis: [...[norm.axis].flat()], scale: explicit || norm.scale, center: explicit || norm.center }));
  norms.forEach((layer, i) => {
    x = tfl.layers.reLU({ name: `relu_${i}` }).apply(layer.apply(x)) as tfl.SymbolicTensor;
  });
  const logits = tfl.layers.dense({ units: UNITS, name: 'logits' });
  const model = tfl.model({ inputs: input, outputs: logits.apply(tfl.layers.globalAveragePooling2d({}).apply(x)) as tfl.SymbolicTensor });
  conv.setWeights([tf.tensor4d(randomValues(27 * FEATURES, 1), [3, 3, 3, FEATURES]), tf.tensor1d(randomValues(FEATURES, 2))]);
  logits.setWeights([tf.tensor2d(randomValues(FEATURES * UNITS, 3), [FEATURES, UNITS]), tf.tensor1d(randomValues(UNITS, 4))]);
  norms.forEach((layer, i) => {
    const norm = NORMS[i]!;
    const shape = layer.getWeights()[0]?.shape ?? [];
    const size = shape.reduce((a, b) => a * b, 1);
    const gamma = norm.scale ? tf.tensor(randomValues(size, 10 + i).map((v) => 1 + v / 2), shape) : tf.ones(shape);
    const beta = norm.center ? tf.tensor(randomValues(size, 20 + i), shape) : tf.zeros(shape);
    layer.setWeights(explicit ? [gamma, beta] : [...(norm.scale ? [gamma] : []), ...(norm.center ? [beta] : [])]);
  });
  return model;
}

let folder: string;
before(async () => {
  folder = await mkdtemp(join(tmpdir(), 'camviz-layer-norm-'));
  for (const explicit of [false, true]) {
    const model = buildModel(explicit);
    await saveLayersModel(model, join(folder, explicit ? 'explicit' : 'missing'));
    model.dispose();
  }
});
after(async () => {
  await rm(folder, { recursive: true, force: true });
});

forEachBackend(() => {
  test('without gamma or beta, the input gradient and Grad-CAM before, between and after are those with gamma 1 and beta 0', async () => {
    const loaded: CamvizModel = await loadModel(join(folder, 'missing'), { engine: 'tfjs' });
    const explicit: CamvizModel = await loadModel(join(folder, 'explicit'), { engine: 'tfjs' });
    const x = tf.tensor4d(randomValues(2 * HEIGHT * WIDTH * 3, 30), [2, HEIGHT, WIDTH, 3]);
    try {
      assert.deepEqual(loaded.layersModel!.getLayer('no_gamma').getWeights().map((w) => w.shape), [[FEATURES]], 'the layer has no gamma');
      const scores = tf.tidy(() => (explicit.layersModel!.predict(x) as tf.Tensor).dataSync());
      assertCloseTo(tf.tidy(() => (loaded.layersModel!.predict(x) as tf.Tensor).dataSync()), scores, 1e-5, 'predict');
      assertCloseTo(await classInputGradient(loaded, x, CLASSES), await classInputGradient(explicit, x, CLASSES), 1e-4, 'input gradient');
      for (const layer of ['conv', 'relu_0', 'relu_1', 'relu_2']) {
        const expected = await gradcamMaps(explicit, x, CLASSES, layer);
        assert.ok(expected.some((map) => map.some((value) => value > 0)), `the maps at ${layer} must not be empty`);
        (await gradcamMaps(loaded, x, CLASSES, layer)).forEach((map, i) => assertCloseTo(map, expected[i]!, 1e-4, `Grad-CAM at ${layer}, image ${i}`));
      }
    } finally {
      x.dispose();
      loaded.dispose();
      explicit.dispose();
    }
  });
});
