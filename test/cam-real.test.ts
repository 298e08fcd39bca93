/**
 * The CAM family on real pretrained models (MobileNet v1 0.75, Darknet-tiny)
 * and on a small residual network, each checked against a computation made
 * apart from camviz's executor and CAM code:
 *
 * - activations from tfjs-layers itself (a probe model on the same layer
 *   objects, not camviz's graph runner), and closed forms where the head
 *   after the target is linear (at MobileNet's conv_pw_13_relu the head is
 *   GAP + Dropout + 1x1 conv, so dScore_c/dA_k = W_conv_preds[k, c] / 49
 *   everywhere);
 * - numbers printed by an independent PyTorch implementation
 *   (../shared/tools/torch_ref), pasted below with how they were made;
 * - the other tfjs backend (cpu against wasm);
 * - gradients taken by hand with tf.grad on hand-chained layers (split
 *   residual head, guided ReLUs through tf.customGrad);
 * - a Jacobi eigen-solver written here for the principal component.
 *
 * Most tests run on wasm; cpu only where the backends are compared.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

import { GradCam, guidedGradCam } from '../src/cam/index.js';
import { type Explanation, type ExplainOptions, explain } from '../src/explain.js';
import { useBackend } from '../src/engine/backend.js';
import { type LoadedImage, loadImage } from '../src/image/image.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { Network } from '../src/executor/network.js';
import { renderExplanation } from '../src/render/explanation.js';
import { darknetDir, imagePath, mobilenetDir, repoRoot, skipWithoutSharedAssets } from './helpers/assets.js';
import { forEachBackend } from './helpers/backends.js';
import { maxAbsDifference, mulberry32, upsample } from './helpers/numeric.js';

// ---- the PyTorch reference ---------------------------------------------------
//
// Produced once (not in the tests: CI may lack torch) with torch 1.13.0a0
// (Debian python3-torch), numpy 1.24.2, Pillow 9.4.0:
//
//   node: loadImage(both.png, { size: 224x224 }).input (uint8 RGB) written as a float32
//         (224, 224, 3) .npy in [0, 255]                        -> /tmp/both_raw.npy
//   /usr/bin/python3 ../shared/tools/torch_ref/gradcam_ref.py \
//     --model ../shared/assets/models/mobilenet_v1_0.75_224 --resize-from /tmp/both_raw.npy \
//     --layer conv_pw_13_relu --class 243 --out ref243.json --threads 1 --repeat 1 --warmup 0
//   (and the same with --class 281)
//
// both.png is already 224x224, so neither tool resizes: the raw .npy of
// camviz's model-input pixels equals the `--save-resized` pixels of the
// reference's own PIL path (max abs difference 0), and its JSON is the same
// both ways. Values are cam_raw and gradcampp_raw (float64 maths on float32
// tensors), printed to 7 significant digits.

interface TorchReference {
  score: number;
  camMax: number;
  camPeak: [number, number];
  camRaw: number[][];
  gradCamPlusPlusRaw: number[][];
}

const TORCH: Record<243 | 281, TorchReference> = {
  243: {
    score: 16.938026,
    camMax: 1.242942,
    camPeak: [1, 2],
    camRaw: [
      [0.03090838, 0.7005753, 1.131753, 0.9978501, 0.9818353, 0.143615, 0],
      [0.02885689, 0.9124822, 1.242942, 1.192536, 1.144826, 0.6171921, 0.006931395],
      [0.04530155, 0.640639, 0.9743339, 0.9834502, 0.8869585, 0.5024792, 0.06418713],
      [0.01593879, 0.2749359, 0.561411, 0.3487006, 0.286078, 0.3635272, 0.1347122],
      [0.03980143, 0.2393091, 0.3195693, 0.137348, 0.180389, 0.1806338, 0.1473608],
      [0.03687749, 0.2157916, 0.1581726, 0, 0.02322953, 0.1092008, 0.1956498],
      [0.03426663, 0.1078382, 0.1524307, 0.100712, 0.08280441, 0.1662157, 0.1108275],
    ],
    gradCamPlusPlusRaw: [
      [1.669275, 19.75385, 27.31037, 25.75943, 24.80112, 4.550832, 0.5940265],
      [1.637886, 26.03299, 30.60007, 30.21178, 28.11087, 15.79107, 0.9024538],
      [1.317075, 16.71413, 26.2188, 25.82867, 21.42772, 12.59909, 1.424555],
      [1.187776, 8.391419, 17.02762, 12.58651, 12.01078, 11.57023, 3.174392],
      [2.170451, 8.570385, 12.46471, 9.697578, 9.7474, 9.751256, 4.27554],
      [2.196848, 9.952272, 10.18184, 7.61718, 8.5217, 10.92542, 5.346492],
      [1.49501, 6.501606, 8.06945, 7.747207, 7.775097, 8.106427, 2.663912],
    ],
  },
  281: {
    score: 12.256414,
    camMax: 0.7909423,
    camPeak: [5, 5],
    camRaw: [
      [0.02256004, 0.1150455, 0.08374003, 0.1392616, 0.09462419, 0.1156075, 0.02846357],
      [0.04935168, 0.1089947, 0.1499787, 0, 0.06458949, 0.1614771, 0.01425928],
      [0.02062133, 0.09589771, 0.06909503, 0, 0.03013689, 0.1175425, 0.003198742],
      [0.01406183, 0.1683016, 0.2456916, 0.0955335, 0.3208006, 0.3871065, 0.09765651],
      [0.009631646, 0.364854, 0.4921989, 0.5582599, 0.5625089, 0.6274185, 0.2176746],
      [0.04513777, 0.3895672, 0.5555802, 0.6780979, 0.7174301, 0.7909423, 0.2589431],
      [0, 0.3355982, 0.5449259, 0.6090943, 0.6357228, 0.5809049, 0.1185288],
    ],
    gradCamPlusPlusRaw: [
      [1.563985, 10.24077, 12.30735, 13.21216, 11.48844, 3.91113, 0.7896064],
      [1.585583, 13.74807, 14.79242, 11.1612, 12.07209, 8.998515, 0.6634525],
      [0.7539718, 8.964958, 12.77782, 10.02459, 8.949333, 6.893064, 0.8539295],
      [1.111782, 6.958963, 13.57622, 10.51581, 12.62833, 12.73123, 3.358686],
      [1.912437, 11.29332, 15.99962, 16.05772, 16.29874, 16.78944, 5.597831],
      [2.8151, 13.15014, 17.15357, 18.21926, 18.76829, 19.86737, 6.189928],
      [1.641997, 9.945093, 14.95786, 15.01492, 15.69708, 13.77159, 2.595853],
    ],
  },
};

/**
 * The same tool on Darknet-tiny: `gradcam_ref.py --model
 * ../shared/assets/models/darknet_tiny --resize-from /tmp/both_raw.npy
 * --preprocess unit --score-layer global_average_pooling2d_1 --layer
 * leaky_re_lu_15 --class 139` (139 = bull mastiff in Darknet's order):
 * score 14.744698, cam_raw max 1.1064396 at row 3, col 7 of the 14x14 map.
 */
const TORCH_DARKNET_MASTIFF = { classIndex: 139, score: 14.744698, camMax: 1.1064396, camPeak: [3, 7] as [number, number] };

const DOG = 243; // bull mastiff
const CATS = [281, 282]; // tabby cat, tiger cat
const HALF = 112; // both.png is 224 pixels high: the dog is above, the cat below

// ---- small helpers, in float64 -----------------------------------------------

function argmaxIndex(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** Sum of rows [first, last] of a row-major map. */
function rowMass(values: ArrayLike<number>, width: number, first: number, last: number): number {
  let total = 0;
  for (let y = first; y <= last; y++) for (let x = 0; x < width; x++) total += values[y * width + x]!;
  return total;
}

function normalised(values: ArrayLike<number>): number[] {
  const list = Array.from(values);
  const min = Math.min(...list);
  const range = Math.max(...list) - min;
  return list.map((value) => (range > 0 ? (value - min) / range : 0));
}

function maxAbs(values: ArrayLike<number>): number {
  let top = 0;
  for (let i = 0; i < values.length; i++) top = Math.max(top, Math.abs(values[i]!));
  return top;
}

/** |actual - expected| <= tolerance * max|expected|, element by element; returns the worst ratio, for the record. */
function assertCloseToScale(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number, what: string): string {
  const scale = Math.max(maxAbs(expected), 1e-12);
  const worst = maxAbsDifference(actual, expected);
  assert.ok(worst <= tolerance * scale, `${what}: max abs difference ${worst.toExponential(3)} > ${tolerance} x ${scale.toPrecision(5)}`);
  return `${what}: max abs difference ${(worst / scale).toExponential(2)} of the largest value`;
}

/** Mirrors each row of a row-major map (undoes a horizontal flip). */
function mirrorRows(values: ArrayLike<number>, width: number): number[] {
  return Array.from(values, (_, i) => values[i - (i % width) + width - 1 - (i % width)]!);
}

/**
 * All eigenpairs of a symmetric n x n matrix by cyclic Jacobi rotations
 * (a different algorithm from the power iteration in src/cam/projection.ts).
 * Returns the eigenvalues and the eigenvectors as columns of `vectors`.
 * Checked once against NumPy 1.24.2: `firstComponentProjection` below on a
 * random 49 x 30 matrix (plus a rank-one part) agreed with
 * `Xc @ np.linalg.svd(Xc)[2][0]` (same sign rule) to 3e-13 of its largest value.
 */
function jacobiEigen(matrix: ArrayLike<number>, n: number): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(matrix);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  let total = 0;
  for (const entry of a) total += entry * entry;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q]! ** 2;
    if (off <= 1e-30 * total) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (apq === 0) continue;
        const theta = (a[q * n + q]! - a[p * n + p]!) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p]!;
          const akq = a[k * n + q]!;
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k]!;
          const aqk = a[q * n + k]!;
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p]!;
          const vkq = v[k * n + q]!;
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  return { values: Float64Array.from({ length: n }, (_, i) => a[i * n + i]!), vectors: v };
}

/**
 * pytorch-grad-cam's get_2d_projection of a positions x channels matrix:
 * centre each channel, project on the first right singular vector. Here
 * X v1 = s1 u1 with (s1^2, u1) the top eigenpair of the Gram matrix X X^T;
 * the sign is camviz's documented choice (agree with the channel sum).
 */
function firstComponentProjection(matrix: ArrayLike<number>, positions: number, channels: number): { projection: number[]; gap: number } {
  const centred = Float64Array.from(matrix);
  for (let k = 0; k < channels; k++) {
    let mean = 0;
    for (let p = 0; p < positions; p++) mean += centred[p * channels + k]!;
    mean /= positions;
    for (let p = 0; p < positions; p++) centred[p * channels + k]! -= mean;
  }
  const gram = new Float64Array(positions * positions);
  for (let i = 0; i < positions; i++) {
    for (let j = i; j < positions; j++) {
      let dot = 0;
      for (let k = 0; k < channels; k++) dot += centred[i * channels + k]! * centred[j * channels + k]!;
      gram[i * positions + j] = dot;
      gram[j * positions + i] = dot;
    }
  }
  const { values, vectors } = jacobiEigen(gram, positions);
  const order = Array.from(values.keys()).sort((a, b) => values[b]! - values[a]!);
  const top = order[0]!;
  const scale = Math.sqrt(Math.max(0, values[top]!));
  const projection = Array.from({ length: positions }, (_, p) => vectors[p * positions + top]! * scale);
  let agreement = 0;
  for (let p = 0; p < positions; p++) {
    let channelSum = 0;
    for (let k = 0; k < channels; k++) channelSum += matrix[p * channels + k]!;
    agreement += projection[p]! * channelSum;
  }
  return { projection: agreement < 0 ? projection.map((value) => -value) : projection, gap: values[top]! / values[order[1]!]! };
}

/** relu(sum_k weight_k * A[p, k]) for a positions x channels activation. */
function weightedChannelSum(activations: ArrayLike<number>, weights: ArrayLike<number>, positions: number): number[] {
  const channels = weights.length;
  return Array.from({ length: positions }, (_, p) => {
    let total = 0;
    for (let k = 0; k < channels; k++) total += weights[k]! * activations[p * channels + k]!;
    return Math.max(0, total);
  });
}

/** A layer's output computed by tfjs-layers itself, not by camviz's graph runner. */
function tfjsLayerOutput(model: tfl.LayersModel, layerName: string, input: tf.Tensor): Float32Array {
  const probe = tfl.model({ inputs: model.inputs, outputs: model.getLayer(layerName).output as tfl.SymbolicTensor });
  // The probe shares the model's layers: it is not disposed (that would release their weights).
  return tf.tidy(() => (probe.predict(input) as tf.Tensor).dataSync() as Float32Array);
}

/** The pixels of a loaded image preprocessed by hand ('tf': x/127.5 - 1, 'unit': x/255). */
function preprocessedByHand(image: LoadedImage, size: number, kind: 'tf' | 'unit'): tf.Tensor4D {
  const scale = kind === 'tf' ? (x: number): number => x / 127.5 - 1 : (x: number): number => x / 255;
  return tf.tensor4d(Float32Array.from(image.input, scale), [1, size, size, 3]);
}

function mapOf(explanation: Explanation): Float32Array {
  assert.ok(explanation.map !== undefined, 'the explanation has a map');
  return explanation.map.data;
}

// ---- MobileNet v1 0.75 on both.png -------------------------------------------

describe('MobileNet v1 0.75: CAM methods on both.png (shared assets)', { skip: skipWithoutSharedAssets }, () => {
  const SIZE = 224;
  const CELLS = 49; // 7 x 7 at conv_pw_13_relu
  const CHANNELS = 768;
  let model: CamvizModel;
  let image: LoadedImage;
  let input: tf.Tensor4D;
  /** conv_pw_13_relu activations [49, 768] from tfjs-layers. */
  let lastActivations: Float32Array;
  /** conv_preds kernel [768, 1000]. */
  let kernel: Float32Array;
  const column = (classIndex: number): Float64Array => Float64Array.from({ length: CHANNELS }, (_, k) => kernel[k * 1000 + classIndex]!);
  /** Grad-CAM at conv_pw_13_relu in closed form: the gradient is W[:, c] / 49 at every cell. */
  const closedFormGradCam = (activations: ArrayLike<number>, classIndex: number): number[] =>
    weightedChannelSum(activations, column(classIndex).map((w) => w / CELLS), CELLS);
  const run = async (options: ExplainOptions): Promise<Explanation[]> => (await explain(model, [image], options))[0]!;

  before(async () => {
    await useBackend('wasm');
    model = await loadModel(mobilenetDir);
    image = await loadImage(imagePath('both.png'), { size: model.meta.inputSize });
    input = preprocessedByHand(image, SIZE, 'tf');
    lastActivations = tfjsLayerOutput(model.layersModel!, 'conv_pw_13_relu', input);
    kernel = model.layersModel!.getLayer('conv_preds').getWeights()[0]!.dataSync() as Float32Array;
    assert.equal(kernel.length, CHANNELS * 1000);
  });
  after(() => {
    input?.dispose();
    model?.dispose();
  });

  test('every gradient and weight method peaks on the dog for 243 and on the cat for 281 and 282', async () => {
    for (const method of ['gradcam', 'gradcampp', 'xgradcam', 'hirescam', 'layercam', 'cam']) {
      const explanations = await run({ method, classes: [DOG, ...CATS] });
      assert.deepEqual(explanations.map((e) => e.classIndex), [DOG, ...CATS]);
      for (const explanation of explanations) {
        const map = mapOf(explanation);
        const upper = rowMass(map, 7, 0, 2);
        const lower = rowMass(map, 7, 4, 6);
        const what = `${method} class ${explanation.classIndex}: peak ${JSON.stringify(explanation.picture.peak)}, rows 0-2 ${upper.toFixed(3)}, rows 4-6 ${lower.toFixed(3)}`;
        if (explanation.classIndex === DOG) {
          assert.ok(explanation.picture.peak.y < HALF && upper > lower, what);
        } else {
          assert.ok(explanation.picture.peak.y >= HALF && lower > upper, what);
        }
      }
    }
  });

  test('at conv_pw_13_relu (linear head) each method equals its closed form on tfjs-layers activations', async (t) => {
    for (const classIndex of [DOG, 281]) {
      const g = column(classIndex).map((w) => w / CELLS); // dScore/dA_k, the same at every cell
      const gradCam = closedFormGradCam(lastActivations, classIndex);
      const activationSums = Array.from({ length: CHANNELS }, (_, k) => {
        let total = 0;
        for (let p = 0; p < CELLS; p++) total += lastActivations[p * CHANNELS + k]!;
        return total;
      });
      // Grad-CAM++ with a uniform gradient: w_k = 49 relu(g) g^2 / (2 g^2 + S_k g^3 + 1e-6), 0 where g = 0.
      const plusPlusWeights = g.map((gk, k) => (gk === 0 ? 0 : (CELLS * Math.max(0, gk) * gk * gk) / (2 * gk * gk + activationSums[k]! * gk ** 3 + 1e-6)));
      const expected: Record<string, number[]> = {
        gradcam: gradCam,
        // A uniform gradient makes the element-wise and the A-weighted means equal the plain mean.
        hirescam: gradCam,
        xgradcam: gradCam,
        layercam: weightedChannelSum(lastActivations, g.map((gk) => Math.max(0, gk)), CELLS),
        cam: weightedChannelSum(lastActivations, column(classIndex), CELLS),
        gradcampp: weightedChannelSum(lastActivations, plusPlusWeights, CELLS),
      };
      for (const [method, values] of Object.entries(expected)) {
        const [explanation] = await run({ method, classes: [classIndex] });
        t.diagnostic(assertCloseToScale(mapOf(explanation!), values, 1e-4, `${method} class ${classIndex}`));
      }
    }
  });

  test('Grad-CAM and Grad-CAM++ raw maps and scores equal the PyTorch reference', async (t) => {
    for (const classIndex of [243, 281] as const) {
      const reference = TORCH[classIndex];
      const [gradCam] = await run({ method: 'gradcam', layers: ['conv_pw_13_relu'], classes: [classIndex] });
      const [plusPlus] = await run({ method: 'gradcampp', layers: ['conv_pw_13_relu'], classes: [classIndex] });
      assert.ok(Math.abs(gradCam!.score - reference.score) < 1e-4, `score ${gradCam!.score} vs torch ${reference.score}`);
      const cam = mapOf(gradCam!);
      const top = argmaxIndex(cam);
      assert.deepEqual([Math.floor(top / 7), top % 7], reference.camPeak);
      assert.ok(Math.abs(cam[top]! - reference.camMax) < 1e-3 * reference.camMax, `max ${cam[top]} vs torch ${reference.camMax}`);
      // 1e-3 relative to each reference value; cells the ReLU zeroed get 1e-3 of the map's maximum.
      for (const [name, actual, expected] of [
        ['cam_raw', cam, reference.camRaw.flat()],
        ['gradcampp_raw', mapOf(plusPlus!), reference.gradCamPlusPlusRaw.flat()],
      ] as const) {
        const top = maxAbs(expected);
        let worst = 0;
        expected.forEach((value, i) => {
          const relative = Math.abs(actual[i]! - value) / Math.max(Math.abs(value), 1e-3 * top);
          assert.ok(relative <= 1e-3, `${name} class ${classIndex} cell ${i}: ${actual[i]} vs torch ${value}`);
          worst = Math.max(worst, relative);
        });
        t.diagnostic(`${name} class ${classIndex}: worst relative difference to torch ${worst.toExponential(2)}`);
      }
    }
  });

  test('the torch_ref README values: scores 16.9380 and 12.2564, cam_raw max 1.2429 at (1,2) and 0.7909 at (5,5)', async () => {
    const readme = { 243: { score: 16.938, max: 1.2429, cell: [1, 2] }, 281: { score: 12.2564, max: 0.7909, cell: [5, 5] } } as const;
    for (const classIndex of [243, 281] as const) {
      const [explanation] = await run({ method: 'gradcam', classes: [classIndex] });
      const map = mapOf(explanation!);
      const top = argmaxIndex(map);
      assert.equal(explanation!.score.toFixed(4), readme[classIndex].score.toFixed(4));
      assert.equal(map[top]!.toFixed(4), readme[classIndex].max.toFixed(4));
      assert.deepEqual([Math.floor(top / 7), top % 7], readme[classIndex].cell);
    }
  });

  test('aug-smooth is the mean of the six normalised maps of the flipped and scaled inputs', async (t) => {
    // By hand: each augmented input through tfjs-layers, Grad-CAM in closed
    // form, min-max normalised, flipped maps mirrored back, averaged.
    const perAugmentation: number[][] = [];
    for (const flip of [false, true]) {
      for (const factor of [0.9, 1, 1.1]) {
        const augmented = tf.tidy(() => tf.mul(flip ? tf.reverse(input, 2) : input, factor));
        const activations = tfjsLayerOutput(model.layersModel!, 'conv_pw_13_relu', augmented);
        augmented.dispose();
        const map = normalised(closedFormGradCam(activations, DOG));
        perAugmentation.push(flip ? mirrorRows(map, 7) : map);
      }
    }
    const expected = perAugmentation[0]!.map((_, i) => perAugmentation.reduce((total, map) => total + map[i]!, 0) / perAugmentation.length);
    const [smoothed] = await run({ method: 'gradcam', classes: [DOG], augSmooth: true });
    const difference = maxAbsDifference(mapOf(smoothed!), expected);
    assert.ok(difference <= 1e-4, `aug-smooth differs by ${difference}`);
    t.diagnostic(`aug-smooth: max abs difference ${difference.toExponential(2)}`);
    // The augmentations matter: the smoothed map is not the plain normalised one.
    assert.ok(maxAbsDifference(expected, normalised(closedFormGradCam(lastActivations, DOG))) > 1e-2);
  });

  test('eigen-smooth is ReLU of the first principal component of the weighted activations', async (t) => {
    const weights = column(DOG).map((w) => w / CELLS);
    const weighted = Float64Array.from(lastActivations, (value, i) => value * weights[i % CHANNELS]!);
    const { projection, gap } = firstComponentProjection(weighted, CELLS, CHANNELS);
    assert.ok(gap > 1.05, `the first two components are distinct (ratio ${gap})`);
    const [smoothed] = await run({ method: 'gradcam', classes: [DOG], eigenSmooth: true });
    t.diagnostic(assertCloseToScale(mapOf(smoothed!), projection.map((value) => Math.max(0, value)), 1e-3, 'eigen-smooth'));
  });

  test('guided backprop equals a by-hand guided chain; guided Grad-CAM is its product with the upsampled normalised Grad-CAM', async (t) => {
    const layersModel = model.layersModel!;
    const expected = guidedGradientByHand(layersModel, input, DOG);
    const [guided] = await run({ method: 'guidedbackprop', classes: [DOG] });
    assert.ok(guided!.gradient !== undefined);
    assert.equal(guided!.map, undefined);
    const gradient = guided!.gradient!.data;
    t.diagnostic(assertCloseToScale(gradient, expected, 1e-4, 'guided gradient'));
    // The gating matters here: the plain input gradient is far from it.
    const plain = tf.tidy(() => tf.grad((x: tf.Tensor) => classLogit(layersModel, x, DOG, false))(input).dataSync());
    assert.ok(maxAbsDifference(plain, expected) > 0.1 * maxAbs(expected));

    const [guidedCam] = await run({ method: 'guidedgradcam', classes: [DOG] });
    const camAtInput = normalised(upsample(closedFormGradCam(lastActivations, DOG), 7, 7, SIZE, SIZE));
    const product = Array.from(expected, (value, i) => value * camAtInput[Math.floor(i / 3)]!);
    t.diagnostic(assertCloseToScale(guidedCam!.gradient!.data, product, 1e-4, 'guided gradient x normalised Grad-CAM'));
    const picture = deprocessByHand(product);
    const rgb = guidedCam!.picture.rgb;
    assert.equal(rgb.length, picture.length);
    let worst = 0;
    for (let i = 0; i < rgb.length; i++) worst = Math.max(worst, Math.abs(rgb[i]! - picture[i]!));
    assert.ok(worst <= 1, `guided Grad-CAM picture differs by ${worst} levels`);
    t.diagnostic(`guided Grad-CAM picture: at most ${worst} levels from the by-hand bytes`);
    // And it is not the guided backprop picture alone.
    assert.ok(maxAbsDifference(guided!.picture.rgb, rgb) > 50);
    // Grad-CAM maps here have a zero cell, so normalising only rescales them,
    // which deprocessing hides; a map raised off zero must give the same picture.
    const raised = { ...guidedCam!.map!, data: guidedCam!.map!.data.map((value) => value + 0.5) };
    const raisedPicture = renderExplanation(raised, guidedGradCam(guided!.gradient!, raised), image, { preprocess: model.meta.preprocess });
    assert.ok(maxAbsDifference(raisedPicture.rgb, rgb) <= 1, 'the Grad-CAM factor is min-max normalised');
  });

  test('Score-CAM (wasm, one class) peaks on the dog for 243', async () => {
    const [explanation] = await run({ method: 'scorecam', classes: [DOG] });
    const map = mapOf(explanation!);
    const what = `peak ${JSON.stringify(explanation!.picture.peak)}, rows 0-2 ${rowMass(map, 7, 0, 2)}, rows 4-6 ${rowMass(map, 7, 4, 6)}`;
    assert.ok(explanation!.picture.peak.y < HALF, what);
    assert.ok(rowMass(map, 7, 0, 2) > rowMass(map, 7, 4, 6), what);
  });

  test('cpu and wasm give the same normalised Grad-CAM and Grad-CAM++ maps at conv_pw_13_relu and conv_pw_11_relu', async (t) => {
    // conv_pw_11_relu on cpu takes ~10 s a map (the taped depthwise blocks), so one class there.
    const cases = [
      { layer: 'conv_pw_13_relu', classes: [DOG, 281] },
      { layer: 'conv_pw_11_relu', classes: [DOG] },
    ];
    const methods = ['gradcam', 'gradcampp'];
    const compute = async (on: CamvizModel): Promise<Map<string, number[]>> => {
      const maps = new Map<string, number[]>();
      for (const { layer, classes } of cases) {
        for (const method of methods) {
          (await explain(on, [image], { method, layers: [layer], classes }))[0]!.forEach((e) => maps.set(`${method} ${layer} ${e.classIndex}`, normalised(mapOf(e))));
        }
      }
      return maps;
    };
    const onWasm = await compute(model);
    await useBackend('cpu');
    const cpuModel = await loadModel(mobilenetDir);
    try {
      const onCpu = await compute(cpuModel);
      assert.equal(onCpu.size, 6);
      for (const [key, map] of onCpu) {
        const difference = maxAbsDifference(map, onWasm.get(key)!);
        assert.ok(difference <= 1e-4, `${key}: cpu and wasm differ by ${difference}`);
        t.diagnostic(`${key}: cpu vs wasm ${difference.toExponential(2)}`);
      }
    } finally {
      cpuModel.dispose();
      await useBackend('wasm');
    }
  });
});

/** The class logit through a by-hand chain of MobileNet's layers up to conv_preds. */
function classLogit(model: tfl.LayersModel, input: tf.Tensor, classIndex: number, guided: boolean): tf.Scalar {
  const last = model.layers.findIndex((layer) => layer.name === 'conv_preds');
  let x = input;
  for (const layer of model.layers.slice(1, last + 1)) {
    const activation = (layer.getConfig() as { activation?: string }).activation;
    x = guided && (activation === 'relu' || activation === 'relu6') ? guidedActivation(layer, x, activation === 'relu6') : (layer.apply(x) as tf.Tensor);
  }
  return tf.sum(tf.slice(tf.reshape(x, [1, -1]), [0, classIndex], [1, 1]));
}

/**
 * A ReLU/ReLU6 layer whose backward pass is replaced (Springenberg et al.):
 * the incoming gradient's positive part, where the layer's input was in the
 * active range (0, 6) for ReLU6, (0, inf) for ReLU.
 */
function guidedActivation(layer: tfl.layers.Layer, x: tf.Tensor, isRelu6: boolean): tf.Tensor {
  const guided = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, save] = args as [tf.Tensor, tf.GradSaveFunc];
    save([input]);
    return {
      value: layer.apply(input) as tf.Tensor,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const before = saved[0]!;
        const active = isRelu6 ? tf.logicalAnd(tf.greater(before, 0), tf.less(before, 6)) : tf.greater(before, 0);
        return tf.mul(tf.relu(dy), tf.cast(active, 'float32'));
      },
    };
  });
  return guided(x);
}

/**
 * The guided input gradient by hand. It runs on the same backend, so it
 * shares the backend's gradient kernels with camviz: a wrong kernel would
 * show in the cpu-against-wasm test, not here. The whole 224x224x3
 * gradient is compared, not a crop.
 */
function guidedGradientByHand(model: tfl.LayersModel, input: tf.Tensor4D, classIndex: number): Float32Array {
  return tf.tidy(() => tf.grad((x: tf.Tensor) => classLogit(model, x, classIndex, true))(input).dataSync() as Float32Array);
}

/** pytorch-grad-cam's deprocess_image, as bytes. */
function deprocessByHand(values: readonly number[]): Uint8Array {
  const mean = values.reduce((total, value) => total + value, 0) / values.length;
  const std = Math.sqrt(values.reduce((total, value) => total + (value - mean) ** 2, 0) / values.length);
  return Uint8Array.from(values, (value) => Math.round(Math.min(1, Math.max(0, ((value - mean) / (std + 1e-5)) * 0.1 + 0.5)) * 255));
}

// ---- Darknet-tiny --------------------------------------------------------------

const skipWithoutDarknet: string | false =
  skipWithoutSharedAssets || (existsSync(join(darknetDir, 'model.json')) ? false : `Darknet-tiny not found at ${darknetDir}`);

describe('Darknet-tiny: Grad-CAM on both.png in its own class order (shared assets)', { skip: skipWithoutDarknet }, () => {
  let model: CamvizModel;
  let image: LoadedImage;
  /** Darknet index -> standard ImageNet index. */
  let toStandard: number[];
  const darknetIndex = (standard: number): number => {
    const index = toStandard.indexOf(standard);
    assert.ok(index >= 0, `standard class ${standard} is in the map`);
    return index;
  };

  before(async () => {
    await useBackend('wasm');
    model = await loadModel(darknetDir, { preprocess: 'unit', labels: join(darknetDir, 'darknet_imagenet_classes.json') });
    image = await loadImage(imagePath('both.png'), { size: model.meta.inputSize });
    toStandard = JSON.parse(readFileSync(join(darknetDir, 'darknet_to_imagenet_index.json'), 'utf8')) as number[];
  });
  after(() => model?.dispose());

  test('the dog for bull mastiff, the cat for tabby and tiger cat, at the default target and at leaky_re_lu_15', async () => {
    const mastiff = darknetIndex(DOG);
    const cats = CATS.map(darknetIndex);
    assert.equal(model.meta.labels![mastiff], 'bull mastiff');
    assert.deepEqual(cats.map((index) => model.meta.labels![index]), ['tabby', 'tiger cat']);
    for (const layers of [[], ['leaky_re_lu_15']]) {
      const explanations = (await explain(model, [image], { method: 'gradcam', layers, classes: [mastiff, ...cats] }))[0]!;
      for (const explanation of explanations) {
        const map = mapOf(explanation);
        const { width, height } = explanation.map!;
        assert.equal(height, 14);
        const upper = rowMass(map, width, 0, height / 2 - 1);
        const lower = rowMass(map, width, height / 2, height - 1);
        const what = `${explanation.layers[0]} class ${explanation.classIndex} (${explanation.label}): peak ${JSON.stringify(explanation.picture.peak)}, upper ${upper}, lower ${lower}`;
        if (explanation.classIndex === mastiff) assert.ok(explanation.picture.peak.y < HALF && upper > lower, what);
        else assert.ok(explanation.picture.peak.y >= HALF && lower > upper, what);
      }
    }
  });

  test('at the default target (the classifier conv, then GAP only) Grad-CAM is the class channel / 196; at leaky_re_lu_15 it matches PyTorch', async (t) => {
    const mastiff = darknetIndex(DOG);
    const [atDefault] = (await explain(model, [image], { method: 'gradcam', classes: [mastiff] }))[0]!;
    assert.deepEqual(atDefault!.layers, ['conv2d_16']);
    const input = preprocessedByHand(image, 224, 'unit');
    const logits = tfjsLayerOutput(model.layersModel!, 'conv2d_16', input);
    input.dispose();
    const expected = Array.from({ length: 196 }, (_, p) => Math.max(0, logits[p * 1000 + mastiff]! / 196));
    t.diagnostic(assertCloseToScale(mapOf(atDefault!), expected, 1e-4, 'Grad-CAM at conv2d_16'));

    assert.equal(mastiff, TORCH_DARKNET_MASTIFF.classIndex);
    const [atLeaky] = (await explain(model, [image], { method: 'gradcam', layers: ['leaky_re_lu_15'], classes: [mastiff] }))[0]!;
    assert.ok(Math.abs(atLeaky!.score - TORCH_DARKNET_MASTIFF.score) < 1e-3, `score ${atLeaky!.score}`);
    const map = mapOf(atLeaky!);
    const top = argmaxIndex(map);
    assert.deepEqual([Math.floor(top / 14), top % 14], TORCH_DARKNET_MASTIFF.camPeak);
    assert.ok(Math.abs(map[top]! - TORCH_DARKNET_MASTIFF.camMax) < 1e-3 * TORCH_DARKNET_MASTIFF.camMax, `max ${map[top]}`);
  });
});

// ---- a residual network ------------------------------------------------------

/** Deterministic numbers in [-1, 1) (mulberry32). */
function seededRandom(seed: number): () => number {
  const unit = mulberry32(seed);
  return () => unit() * 2 - 1;
}

interface ResidualNet {
  model: tfl.LayersModel;
  layer: (name: string) => tfl.layers.Layer;
}

/**
 * input 8x8x3 -> stem (3x3 conv, ReLU) -> inner (3x3 conv) -> add(stem, inner)
 * -> post (ReLU) -> head (3x3 conv, ReLU) -> GAP -> logits (Dense 4) -> softmax.
 * `inner`'s output meets the bypassing `stem` output in the Add; `stem`'s
 * output fans out to both. The head is non-linear, so gradients vary in space.
 */
function residualNet(): ResidualNet {
  const input = tfl.input({ shape: [8, 8, 3] });
  const stem = tfl.layers.conv2d({ filters: 6, kernelSize: 3, padding: 'same', activation: 'relu', name: 'stem' });
  const inner = tfl.layers.conv2d({ filters: 6, kernelSize: 3, padding: 'same', name: 'inner' });
  const add = tfl.layers.add({ name: 'add' });
  const post = tfl.layers.reLU({ name: 'post' });
  const head = tfl.layers.conv2d({ filters: 5, kernelSize: 3, padding: 'same', activation: 'relu', name: 'head' });
  const gap = tfl.layers.globalAveragePooling2d({ name: 'gap' });
  const logits = tfl.layers.dense({ units: 4, name: 'logits' });
  const probs = tfl.layers.activation({ activation: 'softmax', name: 'probs' });
  const stemOut = stem.apply(input) as tfl.SymbolicTensor;
  const output = probs.apply(logits.apply(gap.apply(head.apply(post.apply(add.apply([stemOut, inner.apply(stemOut) as tfl.SymbolicTensor])))))) as tfl.SymbolicTensor;
  const model = tfl.model({ inputs: input, outputs: output });
  const random = seededRandom(20240607);
  for (const layer of [stem, inner, head, logits]) {
    layer.setWeights(layer.getWeights().map((weight) => tf.tensor(Float32Array.from({ length: weight.size }, () => 0.5 * random()), weight.shape)));
  }
  return { model, layer: (name) => model.getLayer(name) };
}

const RESIDUAL_INPUT = (() => {
  const random = seededRandom(7);
  return Float32Array.from({ length: 8 * 8 * 3 }, () => random());
})();

forEachBackend((backend) => {
  describe(`Grad-CAM inside a residual block (${backend})`, () => {
    let net: ResidualNet;
    let input: tf.Tensor4D;
    before(() => {
      net = residualNet();
      input = tf.tensor4d(RESIDUAL_INPUT, [1, 8, 8, 3]);
    });
    after(() => {
      input?.dispose();
      net?.model.dispose();
    });

    /** The class logit from the head applied by hand to a tensor standing for `target`'s output. */
    const headFrom = (target: 'inner' | 'stem', value: tf.Tensor, classIndex: number): tf.Scalar => {
      const apply = (name: string, x: tf.Tensor | tf.Tensor[]): tf.Tensor => net.layer(name).apply(x) as tf.Tensor;
      const stemOut = target === 'stem' ? value : apply('stem', input);
      const innerOut = target === 'stem' ? apply('inner', value) : value;
      const logits = apply('logits', apply('gap', apply('head', apply('post', apply('add', [stemOut, innerOut])))));
      return tf.sum(tf.slice(logits, [0, classIndex], [1, 1]));
    };

    /** Split-model Grad-CAM: tf.grad of the hand-applied head, channel means, ReLU of the weighted sum. */
    const splitGradCam = (target: 'inner' | 'stem', classIndex: number): { map: number[]; activations: Float32Array; weights: Float64Array; spatiallyVarying: boolean } => {
      const activation = tf.tensor4d(tfjsLayerOutput(net.model, target, input), [1, 8, 8, 6]);
      try {
        const gradient = tf.tidy(() => tf.grad((a: tf.Tensor) => headFrom(target, a, classIndex))(activation).dataSync() as Float32Array);
        const activations = activation.dataSync() as Float32Array;
        const weights = new Float64Array(6);
        for (let i = 0; i < gradient.length; i++) weights[i % 6]! += gradient[i]! / 64;
        const spatiallyVarying = gradient.some((value, i) => Math.abs(value - gradient[i % 6]!) > 1e-6);
        return { map: weightedChannelSum(activations, weights, 64), activations, weights, spatiallyVarying };
      } finally {
        activation.dispose();
      }
    };

    const camviz = async (target: string, classIndex: number, eigenSmooth = false): Promise<Float32Array> => {
      const network = Network.of(net.model);
      const node = network.graph.findNodes(target)[0]!;
      const result = (await new GradCam().compute(network, { input, layers: [node], classes: { kind: 'explicit', classes: [classIndex] }, eigenSmooth }))[0]?.[0];
      assert.ok(result !== undefined, `${target}: one result for class ${classIndex}`);
      return result.map.data;
    };

    test('at the branch conv whose output meets the bypass in an Add, and at the conv that fans out to both', async (t) => {
      for (const target of ['inner', 'stem'] as const) {
        for (const classIndex of [0, 3]) {
          const expected = splitGradCam(target, classIndex);
          assert.ok(expected.spatiallyVarying, 'the head is non-linear: the gradient varies in space');
          assert.ok(maxAbs(expected.map) > 0, `${target} class ${classIndex}: a non-empty map`);
          t.diagnostic(assertCloseToScale(await camviz(target, classIndex), expected.map, 1e-5, `${target} class ${classIndex}`));
        }
      }
    });

    test('eigen-smooth on this small case: ReLU of the first principal component (Jacobi)', async (t) => {
      const { activations, weights } = splitGradCam('inner', 3);
      const weighted = Float64Array.from(activations, (value, i) => value * weights[i % 6]!);
      const { projection, gap } = firstComponentProjection(weighted, 64, 6);
      assert.ok(gap > 1.05, `distinct first component (ratio ${gap})`);
      t.diagnostic(assertCloseToScale(await camviz('inner', 3, true), projection.map((value) => Math.max(0, value)), 1e-4, 'eigen-smooth'));
    });
  });
});

test('the Jacobi solver used above recovers a known eigen-decomposition', () => {
  // Q diag(5, 2, 1) Q^T with Q a rotation: the solver must return 5 and Q's first column (up to sign).
  const c = Math.cos(0.7);
  const s = Math.sin(0.7);
  const q = [
    [c, -s, 0],
    [s * 0.6, c * 0.6, -0.8],
    [s * 0.8, c * 0.8, 0.6],
  ];
  const d = [5, 2, 1];
  const matrix = Array.from({ length: 9 }, (_, i) => d.reduce((total, value, k) => total + q[Math.floor(i / 3)]![k]! * value * q[i % 3]![k]!, 0));
  const { values, vectors } = jacobiEigen(matrix, 3);
  const top = argmaxIndex(values);
  assert.ok(Math.abs(values[top]! - 5) < 1e-12);
  const sign = Math.sign(vectors[top]!) * Math.sign(q[0]![0]!);
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(sign * vectors[i * 3 + top]! - q[i]![0]!) < 1e-12);
});

// ---- every method, cpu against wasm, on the embedded model ------------------

test('every method gives the same normalised map on cpu and wasm (embedded shapes model, two-shape fixture)', async (t) => {
  const methods = ['gradcam', 'gradcampp', 'xgradcam', 'hirescam', 'layercam', 'cam', 'scorecam', 'eigencam'];
  const fixture = join(repoRoot, 'fixtures', 'shapes', 'circle-star.png');
  const compute = async (backend: 'cpu' | 'wasm'): Promise<Map<string, number[]>> => {
    await useBackend(backend);
    const model = await loadModel('shapes');
    try {
      const image = await loadImage(fixture, { size: model.meta.inputSize });
      const maps = new Map<string, number[]>();
      for (const method of methods) {
        for (const explanation of (await explain(model, [image], { method, classes: ['circle', 'star'] }))[0]!) maps.set(`${method} ${explanation.classIndex}`, normalised(mapOf(explanation)));
      }
      // Guided backprop has no map: its gradient image is compared instead.
      const [guided] = (await explain(model, [image], { method: 'guidedbackprop', classes: ['star'] }))[0]!;
      maps.set('guidedbackprop 3', normalised(guided!.gradient!.data));
      return maps;
    } finally {
      model.dispose();
    }
  };
  try {
    const onWasm = await compute('wasm');
    const onCpu = await compute('cpu');
    assert.equal(onCpu.size, methods.length * 2 + 1);
    for (const [key, map] of onCpu) {
      const other = onWasm.get(key)!;
      const difference = maxAbsDifference(map, other);
      const off = map.filter((value, i) => Math.abs(value - other[i]!) > 1e-4).length;
      t.diagnostic(`${key}: cpu vs wasm ${difference.toExponential(2)}, ${off} of ${map.length} values beyond 1e-4`);
      if (key.startsWith('guidedbackprop')) {
        // Guided backprop gates every ReLU on the sign of its input and of its
        // gradient: a value within rounding of zero may gate differently on the
        // two backends, which moves the pixels of that unit's receptive field a
        // little (measured: 1% of values, by at most 0.75% of the range), not
        // the picture. Its exact values are checked by hand on wasm above.
        assert.ok(off <= map.length / 50 && difference <= 0.02, `${key}: ${off} values differ, by up to ${difference}`);
      } else {
        assert.ok(difference <= 1e-4, `${key}: cpu and wasm differ by ${difference}`);
      }
    }
  } finally {
    await useBackend('wasm');
  }
});
