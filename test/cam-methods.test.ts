/**
 * Every CAM method on a tiny network whose maps are computed by hand, in
 * plain arithmetic, in this file (captum's way of testing attributions).
 *
 * Network: input 3x3x1 -> `conv` (1x1, two filters w = [1, -0.5], no bias)
 * -> `relu` -> global average pooling -> `logits` (Dense 2x2, no bias)
 * -> softmax. At `conv` the gradient of a class score varies spatially
 * (the ReLU after it gates it), which tells Grad-CAM and HiResCAM apart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { Cam, type CamMethod, EigenCam, GradCam, GradCamPlusPlus, HiResCam, LayerCam, ScoreCam, XGradCam } from '../src/cam/index.js';
import { Network } from '../src/executor/network.js';
import { forEachBackend } from './helpers/backends.js';

const X = [1, -2, 3, 0, 4, -1, 2, -3, 1];
const FILTERS = [1, -0.5];
const W = [
  [1, -1],
  [2, 0.5],
]; // W[k][c]
const CLASSES = 2;
const POSITIONS = 9;

function tinyModel(): tfl.LayersModel {
  const input = tfl.input({ shape: [3, 3, 1] });
  const conv = tfl.layers.conv2d({ filters: 2, kernelSize: 1, useBias: false, name: 'conv' });
  const relu = tfl.layers.reLU({ name: 'relu' });
  const logits = tfl.layers.dense({ units: CLASSES, useBias: false, name: 'logits' });
  const output = tfl.layers
    .activation({ activation: 'softmax', name: 'probs' })
    .apply(logits.apply(tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(relu.apply(conv.apply(input))))) as tfl.SymbolicTensor;
  const model = tfl.model({ inputs: input, outputs: output });
  conv.setWeights([tf.tensor4d(FILTERS, [1, 1, 1, 2])]);
  logits.setWeights([tf.tensor2d(W)]);
  return model;
}

// ---- the hand computation -------------------------------------------------

const relu = (v: number): number => Math.max(0, v);
/** Conv output A_k(p) and ReLU output R_k(p). */
const A = FILTERS.map((w) => X.map((x) => w * x));
const R = A.map((channel) => channel.map(relu));
/** Class score: sum_k W[k][c] * mean_p R_k(p). */
const classScore = (r: number[][], c: number): number => r.reduce((sum, channel, k) => sum + W[k]![c]! * (channel.reduce((s, v) => s + v, 0) / POSITIONS), 0);
/** dY_c/dA_k(p): W[k][c]/9 where A_k(p) > 0 (the ReLU's gate), else 0. */
const gradAtConv = (c: number): number[][] => A.map((channel, k) => channel.map((a) => (a > 0 ? W[k]![c]! / POSITIONS : 0)));
/** dY_c/dR_k(p): W[k][c]/9 everywhere. */
const gradAtRelu = (c: number): number[][] => R.map((channel, k) => channel.map(() => W[k]![c]! / POSITIONS));

const sum = (values: number[]): number => values.reduce((s, v) => s + v, 0);
const weighted = (acts: number[][], weights: number[]): number[] => X.map((_, p) => relu(sum(acts.map((channel, k) => weights[k]! * channel[p]!))));
const elementwise = (acts: number[][], grads: number[][], f: (g: number) => number = (g) => g): number[] =>
  X.map((_, p) => relu(sum(acts.map((channel, k) => f(grads[k]![p]!) * channel[p]!))));

function expectedGradCam(acts: number[][], grads: number[][]): number[] {
  return weighted(acts, grads.map((g) => sum(g) / POSITIONS));
}

function expectedGradCamPlusPlus(acts: number[][], grads: number[][]): number[] {
  const weights = grads.map((g, k) => {
    const activationSum = sum(acts[k]!);
    return sum(g.map((gi) => (gi === 0 ? 0 : relu(gi) * (gi * gi) / (2 * gi * gi + activationSum * gi ** 3 + 1e-6))));
  });
  return weighted(acts, weights);
}

function expectedXGradCam(acts: number[][], grads: number[][]): number[] {
  return weighted(acts, grads.map((g, k) => sum(g.map((gi, p) => gi * acts[k]![p]!)) / (sum(acts[k]!) + 1e-7)));
}

function expectedScoreCam(c: number): number[] {
  // Each conv channel, min-max normalised (no upsampling: the map is input-sized), masks the input.
  const scores = A.map((channel) => {
    const min = Math.min(...channel);
    const max = Math.max(...channel);
    const masked = X.map((x, p) => x * ((channel[p]! - min) / (max - min)));
    const r = FILTERS.map((w) => masked.map((x) => relu(w * x)));
    return classScore(r, c);
  });
  const exps = scores.map((s) => Math.exp(s - Math.max(...scores)));
  const weights = exps.map((e) => e / sum(exps));
  return weighted(A, weights);
}

// ---- the comparison -------------------------------------------------------

async function run(method: CamMethod, layer: 'conv' | 'relu', c: number): Promise<{ map: number[]; score: number }> {
  const model = tinyModel();
  const network = Network.of(model);
  const node = network.graph.findNodes(layer)[0]!;
  const input = tf.tensor4d(X, [1, 3, 3, 1]);
  try {
    const [result] = (await method.compute(network, { input, layers: [node], classes: { kind: 'explicit', classes: [c] } }))[0]!;
    return { map: Array.from(result!.map.data), score: result!.score };
  } finally {
    input.dispose();
    model.dispose();
  }
}

function assertClose(actual: number[], expected: number[], what: string, tolerance = 1e-5): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const scale = Math.max(1e-6, ...expected.map(Math.abs));
  actual.forEach((value, i) => {
    assert.ok(Math.abs(value - expected[i]!) <= tolerance * scale, `${what}[${i}]: ${value} vs ${expected[i]} (expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)})`);
  });
}

forEachBackend((backend) => {
  for (const c of [0, 1]) {
    test(`${backend}: class scores are the hand-computed logits (class ${c})`, async () => {
      assert.ok(Math.abs((await run(new GradCam(), 'conv', c)).score - classScore(R, c)) < 1e-5);
    });

    test(`${backend}: Grad-CAM equals the hand computation at conv and at relu (class ${c})`, async () => {
      assertClose((await run(new GradCam(), 'conv', c)).map, expectedGradCam(A, gradAtConv(c)), 'Grad-CAM at conv');
      assertClose((await run(new GradCam(), 'relu', c)).map, expectedGradCam(R, gradAtRelu(c)), 'Grad-CAM at relu');
    });

    test(`${backend}: Grad-CAM++ equals pytorch-grad-cam's closed form by hand (class ${c})`, async () => {
      assertClose((await run(new GradCamPlusPlus(), 'conv', c)).map, expectedGradCamPlusPlus(A, gradAtConv(c)), 'Grad-CAM++', 1e-4);
    });

    test(`${backend}: HiResCAM weighs elements, not channel means (class ${c})`, async () => {
      const hires = (await run(new HiResCam(), 'conv', c)).map;
      assertClose(hires, elementwise(A, gradAtConv(c)), 'HiResCAM');
      // The gated gradient varies in space, so HiResCAM and Grad-CAM differ here.
      assert.notDeepEqual(hires.map((v) => v.toFixed(4)), expectedGradCam(A, gradAtConv(c)).map((v) => v.toFixed(4)));
    });

    test(`${backend}: XGrad-CAM and LayerCAM equal the hand computation (class ${c})`, async () => {
      assertClose((await run(new XGradCam(), 'conv', c)).map, expectedXGradCam(A, gradAtConv(c)), 'XGrad-CAM', 1e-4);
      assertClose((await run(new LayerCam(), 'conv', c)).map, elementwise(A, gradAtConv(c), relu), 'LayerCAM');
    });

    test(`${backend}: CAM uses the classifier weights (class ${c})`, async () => {
      assertClose((await run(new Cam(), 'relu', c)).map, weighted(R, W.map((row) => row[c]!)), 'CAM');
    });

    test(`${backend}: Score-CAM masks the input with each normalised channel (class ${c})`, async () => {
      assertClose((await run(new ScoreCam(), 'conv', c)).map, expectedScoreCam(c), 'Score-CAM', 1e-4);
    });
  }

  test(`${backend}: CAM refuses a head it cannot read`, async () => {
    await assert.rejects(() => run(new Cam(), 'conv', 0), /CAM needs global average pooling.*relu/);
  });

  test(`${backend}: CAM on a network-in-network head (class maps, then pooling alone) is each class's own map`, async () => {
    // conv's two channels are the class maps: score_c = mean_p A_c(p), so CAM_c = ReLU(A_c).
    const input = tfl.input({ shape: [3, 3, 1] });
    const classMaps = tfl.layers.conv2d({ filters: CLASSES, kernelSize: 1, useBias: false, name: 'classmaps' });
    const output = tfl.layers
      .activation({ activation: 'softmax', name: 'probs' })
      .apply(tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(classMaps.apply(input))) as tfl.SymbolicTensor;
    const model = tfl.model({ inputs: input, outputs: output });
    classMaps.setWeights([tf.tensor4d(FILTERS, [1, 1, 1, 2])]);
    const network = Network.of(model);
    const pixels = tf.tensor4d(X, [1, 3, 3, 1]);
    try {
      for (let c = 0; c < CLASSES; c++) {
        const [result] = (await new Cam().compute(network, { input: pixels, layers: [network.graph.findNodes('classmaps')[0]!], classes: { kind: 'explicit', classes: [c] } }))[0]!;
        assertClose(Array.from(result!.map.data), A[c]!.map(relu), `CAM of class ${c}`);
        assertClose([result!.score], [sum(A[c]!) / POSITIONS], `score of class ${c}`);
      }
    } finally {
      pixels.dispose();
      model.dispose();
    }
  });

  test(`${backend}: Eigen-CAM is the first principal component, signed like the channel sum`, () => {
    // A rank-one activation plus per-channel offsets: after centring, the
    // first component is (p - mean p) * |q|; the offsets must not matter.
    const p = [3, 1, 0, 2, 5, 1, 0, 4, 2];
    const q = [2, -1, 0.5];
    const offsets = [10, -3, 7];
    const data = p.flatMap((pi) => q.map((qk, k) => pi * qk + offsets[k]!));
    const activations = tf.tensor4d(data, [1, 3, 3, 3]);
    const projection = Array.from((tf.tidy(() => EigenCamProbe.project(activations)) as tf.Tensor).dataSync());
    activations.dispose();
    const meanP = sum(p) / p.length;
    const norm = Math.sqrt(sum(q.map((v) => v * v)));
    // Channel sum = p * sum(q) + const with sum(q) > 0: the sign stays positive.
    assertClose(projection, p.map((pi) => (pi - meanP) * norm), 'projection', 1e-4);
  });
});

/** Reaches the projection Eigen-CAM uses through its public class. */
class EigenCamProbe extends EigenCam {
  static project(activations: tf.Tensor4D): tf.Tensor3D {
    return new EigenCamProbe().classMap({ activations } as Parameters<EigenCam['classMap']>[0], false);
  }
}
