/**
 * Keras' CenterCrop in the models camviz loads: a slice at Keras' offsets
 * (half the excess, rounded down), which can be differentiated. tfjs-layers
 * 4.22 computes it with cropAndResize, which tfjs cannot differentiate (no
 * gradient CAM, input gradient or guided backprop below the layer), and
 * starts a crop one column narrower than its input at the second column.
 * The second path: the same network with Keras' Cropping2D at the offsets
 * Keras' CenterCrop documents, a slice tfjs-layers differentiates. Values,
 * the input gradient and Grad-CAM before the crop agree, on cpu and wasm,
 * and through ONNX Runtime (the ONNX writer slices at the same offsets).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { Network, disposeValues } from '../src/executor/network.js';
import { loadOnnxRuntime } from '../src/engine/onnxruntime.js';
import { loadModel } from '../src/index.js';
import { forEachBackend } from './helpers/backends.js';
import { mulberry32 } from './helpers/numeric.js';
import { saveLayersModel } from './helpers/layers-model-file.js';
import { assertCloseTo, classInputGradient, gradcamMaps } from './helpers/torch-parity.js';

const ort = loadOnnxRuntime();
const skipOrt: string | false = ort.available ? false : `onnxruntime-node does not load: ${ort.reason}`;
const [HEIGHT, WIDTH] = [9, 8];
const CLASSES = [1, 2];
/** Crops [height, width]: one column narrower than the input (tfjs-layers started it at the second), and an odd and even excess. */
const CROPS: readonly [number, number][] = [
  [6, 7],
  [5, 4],
];

function randomValues(count: number, seed: number): number[] {
  const random = mulberry32(seed);
  return Array.from({ length: count }, () => random() * 2 - 1);
}

/** Keras' CenterCrop as a Cropping2D: the excess halved, rounded down, before; the rest after. */
function keras2dCropping([height, width]: [number, number]): [[number, number], [number, number]] {
  const [rows, columns] = [HEIGHT - height, WIDTH - width];
  return [
    [Math.floor(rows / 2), rows - Math.floor(rows / 2)],
    [Math.floor(columns / 2), columns - Math.floor(columns / 2)],
  ];
}

/** input -> stem (3x3 conv, ReLU) -> the crop -> after (3x3 conv, ReLU) -> global mean -> logits (3); the crop a CenterCrop or Keras' Cropping2D. */
function buildModel(crop: [number, number], asCropping: boolean): tfl.LayersModel {
  const input = tfl.input({ shape: [HEIGHT, WIDTH, 3] });
  const stem = tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'stem' });
  const cropping = asCropping ? tfl.layers.cropping2D({ cropping: keras2dCropping(crop), name: 'crop' }) : tfl.layers.centerCrop({ height: crop[0], width: crop[1], name: 'crop' });
  const after = tfl.layers.conv2d({ filters: 3, kernelSize: 3, padding: 'same', activation: 'relu', name: 'after' });
  const logits = tfl.layers.dense({ units: 3, name: 'logits' });
  const pooled = tfl.layers.globalAveragePooling2d({}).apply(after.apply(cropping.apply(stem.apply(input))));
  const model = tfl.model({ inputs: input, outputs: logits.apply(pooled) as tfl.SymbolicTensor });
  stem.setWeights([tf.tensor4d(randomValues(27 * 4, 1), [3, 3, 3, 4]), tf.tensor1d(randomValues(4, 2))]);
  after.setWeights([tf.tensor4d(randomValues(36 * 3, 3), [3, 3, 4, 3]), tf.tensor1d(randomValues(3, 4))]);
  logits.setWeights([tf.tensor2d(randomValues(9, 5), [3, 3]), tf.tensor1d(randomValues(3, 6))]);
  return model;
}

let folder: string;
const folderOf = (crop: [number, number], asCropping: boolean): string => join(folder, `${crop.join('x')}-${asCropping ? 'cropping' : 'center'}`);
before(async () => {
  folder = await mkdtemp(join(tmpdir(), 'camviz-center-crop-'));
  for (const crop of CROPS) {
    for (const asCropping of [false, true]) {
      const model = buildModel(crop, asCropping);
      await saveLayersModel(model, folderOf(crop, asCropping));
      model.dispose();
    }
  }
});
after(async () => {
  await rm(folder, { recursive: true, force: true });
});

const input = (): tf.Tensor4D => tf.tensor4d(randomValues(2 * HEIGHT * WIDTH * 3, 30), [2, HEIGHT, WIDTH, 3]);

forEachBackend(() => {
  for (const crop of CROPS) {
    test(`CenterCrop to ${crop.join('x')} of ${HEIGHT}x${WIDTH}: values, the input gradient and Grad-CAM before it are Keras' Cropping2D's`, async () => {
      const loaded = await loadModel(folderOf(crop, false), { engine: 'tfjs' });
      const cropping = await loadModel(folderOf(crop, true), { engine: 'tfjs' });
      const x = input();
      try {
        const expected = tf.tidy(() => (cropping.layersModel!.predict(x) as tf.Tensor).dataSync());
        assertCloseTo(tf.tidy(() => (loaded.layersModel!.predict(x) as tf.Tensor).dataSync()), expected, 1e-5, 'predict');
        assertCloseTo(await classInputGradient(loaded, x, CLASSES), await classInputGradient(cropping, x, CLASSES), 1e-4, 'input gradient');
        const maps = await gradcamMaps(cropping, x, CLASSES, 'stem');
        assert.ok(maps.some((map) => map.some((value) => value > 0)), 'the maps must not be empty');
        (await gradcamMaps(loaded, x, CLASSES, 'stem')).forEach((map, i) => assertCloseTo(map, maps[i]!, 1e-4, `Grad-CAM at stem, image ${i}`));
      } finally {
        x.dispose();
        loaded.dispose();
        cropping.dispose();
      }
    });
  }
});

for (const crop of CROPS) {
  test(`CenterCrop to ${crop.join('x')} through ONNX Runtime: logits and Grad-CAM before it are Keras' Cropping2D's on tfjs`, { skip: skipOrt }, async () => {
    const loaded = await loadModel(folderOf(crop, false), { engine: 'onnxruntime' });
    const cropping = await loadModel(folderOf(crop, true), { engine: 'tfjs' });
    const x = input();
    try {
      const executor = await loaded.executor();
      assert.ok(!(executor instanceof Network), 'ONNX Runtime runs the model');
      const values = await executor.forward(x);
      assertCloseTo(values.output.dataSync(), tf.tidy(() => (cropping.layersModel!.predict(x) as tf.Tensor).dataSync()), 1e-4, 'logits');
      disposeValues(values);
      const maps = await gradcamMaps(cropping, x, CLASSES, 'stem');
      (await gradcamMaps(loaded, x, CLASSES, 'stem')).forEach((map, i) => assertCloseTo(map, maps[i]!, 1e-4, `Grad-CAM at stem, image ${i}`));
    } finally {
      x.dispose();
      loaded.dispose();
      cropping.dispose();
    }
  });
}
