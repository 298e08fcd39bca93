/**
 * The faithfulness metrics on inputs small enough to compute by hand.
 *
 * The "model" is a tfjs layers model built here: a 2x2x1 input, flattened,
 * a Dense(2) without bias whose second column is zero, then softmax. So
 * p(class 0 | x) = sigmoid(a . x) exactly, with a the first column, and
 * every perturbed image's probability can be written down.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { useBackend } from '../src/engine/backend.js';
import { Network } from '../src/executor/network.js';
import { movedCount, trapezoidAuc } from '../src/metrics/curve.js';
import { noisyLinearImputation } from '../src/metrics/imputer.js';
import { blurImage, riseKernel1d } from '../src/metrics/insertion.js';
import { ROAD_PERCENTILES, percentiles, road, roadKeepMask } from '../src/metrics/road.js';
import { perturbedProbabilities, measureExplanations } from '../src/metrics/runner.js';
import { inputSaliency, relevanceOrder } from '../src/metrics/saliency.js';
import { uniformMap } from '../src/metrics/random.js';
import type { MetricName } from '../src/metrics/names.js';
import { UsageError } from '../src/util/errors.js';
import type { PreprocessedImage } from '../src/metrics/types.js';
import { groupMetrics, summaryLines } from '../src/batch/metrics-summary.js';
import type { CamResultRecord } from '../src/tasks/types.js';
import { findPython } from './helpers/python.js';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const close = (actual: number, expected: number, tolerance: number, what: string): void =>
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} vs ${expected}`);

// ---- pieces by hand ---------------------------------------------------------

test('trapezoid AUC over [0, 1]: hand values', () => {
  // Two points: the mean of the ends.
  assert.equal(trapezoidAuc([1, 0]), 0.5);
  // [1, 0.5, 0] at x = 0, 0.5, 1: 0.5 * (1 + 0.5) / 2 + 0.5 * (0.5 + 0) / 2 = 0.5.
  assert.equal(trapezoidAuc([1, 0.5, 0]), 0.5);
  // [0, 1, 1, 1] at thirds: (0 + 1) / 2 / 3 + 1 / 3 + 1 / 3 = 5 / 6.
  close(trapezoidAuc([0, 1, 1, 1]), 5 / 6, 1e-12, 'auc');
  assert.throws(() => trapezoidAuc([1]), /two points/);
});

test('pixels moved after each step: round(k / steps x pixels)', () => {
  assert.deepEqual([0, 1, 2, 3, 4].map((k) => movedCount(k, 4, 4)), [0, 1, 2, 3, 4]);
  assert.deepEqual([0, 1, 2, 3].map((k) => movedCount(k, 3, 4)), [0, 1, 3, 4]);
  assert.deepEqual([0, 1, 2].map((k) => movedCount(k, 2, 50176)), [0, 25088, 50176]);
});

test('relevance order: most relevant first, ties in reading order', () => {
  assert.deepEqual([...relevanceOrder(Float32Array.from([0.5, 1, 0.5, 1, 0]))], [1, 3, 0, 2, 4]);
});

test('the map the metrics read: min-max normalised, then bilinear to the input size', () => {
  assert.deepEqual([...inputSaliency({ width: 2, height: 2, data: Float32Array.from([0, 2, 3, 1]) }, 2, 2)], [0, 2 / 3, 1, 1 / 3].map(Math.fround));
  // 1x2 -> 4x2: half-pixel centres put 0.25 and 0.75 of the way between the two values, clamped at the ends.
  const up = inputSaliency({ width: 2, height: 1, data: Float32Array.from([5, 9]) }, 4, 1);
  assert.deepEqual([...up], [0, 0.25, 0.75, 1]);
  // A constant map has no order: all zeros.
  assert.deepEqual([...inputSaliency({ width: 2, height: 1, data: Float32Array.from([3, 3]) }, 2, 1)], [0, 0]);
});

test('percentiles as numpy.percentile (linear interpolation)', () => {
  // [0, 1/3, 2/3, 1]: position p/100 * 3.
  const values = Float32Array.from([1, 0, 2, 3]);
  const expected = [0, 0.3, 1.5, 2.7, 3];
  percentiles(values, [0, 10, 50, 90, 100]).forEach((value, i) => close(value, expected[i]!, 1e-12, `percentile ${i}`));
});

const image = (width: number, height: number, pixels: number[], channels = 1): PreprocessedImage => ({ width, height, channels, pixels: Float32Array.from(pixels) });

test('imputer by hand: the removed centre of 3x3 is the weighted mean of its 8 neighbours (axial 1/6, diagonal 1/12)', () => {
  const pixels = [1, 2, 3, 4, 99, 6, 7, 8, 9];
  const keep = Uint8Array.from([1, 1, 1, 1, 0, 1, 1, 1, 1]);
  const out = noisyLinearImputation(image(3, 3, pixels), keep, 0, () => 0.5);
  const expected = (2 + 4 + 6 + 8) / 6 + (1 + 3 + 7 + 9) / 12;
  close(out[4]!, expected, 1e-5, 'centre');
  assert.deepEqual([...out].filter((_, i) => i !== 4), pixels.filter((_, i) => i !== 4), 'kept pixels unchanged');
});

test('imputer by hand: a 1x4 row with the middle two removed is the linear interpolation of its ends', () => {
  // (1/3) x1 = (v0 + x2) / 6 and (1/3) x2 = (x1 + v3) / 6 give x1 = (2 v0 + v3) / 3, x2 = (v0 + 2 v3) / 3.
  const out = noisyLinearImputation(image(4, 1, [3, 0, 0, 9]), Uint8Array.from([1, 0, 0, 1]), 0, () => 0.5);
  close(out[1]!, 5, 1e-5, 'x1');
  close(out[2]!, 7, 1e-5, 'x2');
});

test('imputer by hand: 2x2 corners, per channel; weights renormalised at the border', () => {
  // Kept (0,0) = p and (1,1) = q; each unknown sees p and q (axial, 1/6) and the other unknown (diagonal, 1/12):
  // (5/12) a = (p + q) / 6 + b / 12, and b likewise, so a = b = (p + q) / 2.
  const out = noisyLinearImputation(image(2, 2, [2, 10, 0, 0, 0, 0, 6, 20], 2), Uint8Array.from([1, 0, 0, 1]), 0, () => 0.5);
  for (const pixel of [1, 2]) {
    close(out[pixel * 2]!, 4, 1e-5, `pixel ${pixel} channel 0`);
    close(out[pixel * 2 + 1]!, 15, 1e-5, `pixel ${pixel} channel 1`);
  }
  // One unknown corner: (2 a1 + 2 a2 + d) / 5 with a1, a2 its axial neighbours, d the diagonal one.
  const one = noisyLinearImputation(image(2, 2, [0, 1, 2, 4]), Uint8Array.from([0, 1, 1, 1]), 0, () => 0.5);
  close(one[0]!, (2 * 1 + 2 * 2 + 4) / 5, 1e-5, 'corner');
});

test('imputer: everything removed has no information (0), and the noise is seeded Gaussian on the removed pixels only', () => {
  const none = noisyLinearImputation(image(2, 2, [5, 6, 7, 8]), new Uint8Array(4), 0, () => 0.5);
  assert.deepEqual([...none], [0, 0, 0, 0]);
  const big = image(40, 40, Array.from({ length: 1600 }, (_, i) => i % 7));
  const keep = Uint8Array.from({ length: 1600 }, (_, i) => (i % 3 === 0 ? 0 : 1));
  const clean = noisyLinearImputation(big, keep, 0, () => 0.5);
  let seed = 1;
  const uniform = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
  const noisy = noisyLinearImputation(big, keep, 0.5, uniform);
  const differences = [...noisy].map((value, i) => value - clean[i]!);
  const removed = differences.filter((_, i) => keep[i] === 0);
  assert.ok(differences.every((d, i) => keep[i] === 1 ? d === 0 : true), 'kept pixels get no noise');
  const mean = removed.reduce((s, d) => s + d, 0) / removed.length;
  const sd = Math.sqrt(removed.reduce((s, d) => s + (d - mean) ** 2, 0) / removed.length);
  close(mean, 0, 0.06, 'noise mean');
  close(sd, 0.5, 0.05, 'noise sd');
});

test('imputer on a wide hole (the multigrid-preconditioned solve): every removed pixel is the weighted mean of its neighbours', () => {
  const [width, height] = [96, 80];
  const picture = image(width, height, Array.from({ length: width * height }, (_, i) => Math.sin(i / 7) + (i % width) / width));
  // A 60 x 50 block and every 5th pixel elsewhere.
  const keep = Uint8Array.from({ length: width * height }, (_, i) => {
    const [x, y] = [i % width, Math.floor(i / width)];
    return (x >= 20 && x < 80 && y >= 15 && y < 65) || i % 5 === 0 ? 0 : 1;
  });
  const out = noisyLinearImputation(picture, keep, 0, () => 0.5);
  const weights: [number, number, number][] = [[1, 1, 1 / 12], [0, 1, 1 / 6], [-1, 1, 1 / 12], [1, -1, 1 / 12], [0, -1, 1 / 6], [-1, -1, 1 / 12], [1, 0, 1 / 6], [-1, 0, 1 / 6]];
  let worst = 0;
  keep.forEach((kept, i) => {
    if (kept) return;
    const [x, y] = [i % width, Math.floor(i / width)];
    let sum = 0;
    let total = 0;
    for (const [dy, dx, w] of weights) {
      if (x + dx < 0 || y + dy < 0 || x + dx >= width || y + dy >= height) continue;
      sum += w * out[(y + dy) * width + x + dx]!;
      total += w;
    }
    worst = Math.max(worst, Math.abs(out[i]! - sum / total));
  });
  assert.ok(worst < 1e-4, `largest departure from the neighbours' mean: ${worst}`);
});

const scipy = findPython('scipy');

test('RISE blur kernel: scipy gaussian_filter(sigma=5) of an 11x11 impulse', { skip: scipy === null ? 'no Python with scipy' : false }, () => {
  const run = spawnSync(scipy!, ['-c', 'import numpy as np, json\nfrom scipy.ndimage import gaussian_filter\ni=np.zeros((11,11)); i[5,5]=1\nprint(json.dumps(gaussian_filter(i,5).tolist()))'], { encoding: 'utf8' });
  const reference = JSON.parse(run.stdout) as number[][];
  const k = riseKernel1d();
  reference.forEach((row, y) => row.forEach((value, x) => close(k[y]! * k[x]!, value, 1e-12, `kernel ${y},${x}`)));
});

/**
 * pytorch-grad-cam's NoisyLinearImputer.setup_sparse_system (its sign
 * convention: -D on the diagonal, the weights off it, minus the kept
 * neighbours' values on the right) and scipy's spsolve, noise off: masks
 * read from keep.u8 (count x H x W), the image from pixels.f32 (H x W x C);
 * writes the imputed images, [mask][pixel][channel], to out.f64.
 */
const ROAD_SPSOLVE = `
import sys, numpy as np
from scipy.sparse import lil_matrix, csc_matrix
from scipy.sparse.linalg import spsolve
folder, H, W, C = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
img = np.fromfile(folder + '/pixels.f32', dtype=np.float32).reshape(H, W, C).transpose(2, 0, 1).astype(np.float64)
imgflat = img.reshape((C, -1))
masks = np.fromfile(folder + '/keep.u8', dtype=np.uint8).reshape(-1, H * W).astype(np.float64)
weights = [((1, 1), 1/12), ((0, 1), 1/6), ((-1, 1), 1/12), ((1, -1), 1/12), ((0, -1), 1/6), ((-1, -1), 1/12), ((1, 0), 1/6), ((-1, 0), 1/6)]
outs = []
for maskflt in masks:
    indices = np.argwhere(maskflt == 0).flatten()
    vidx = np.zeros(len(maskflt), dtype=int); vidx[indices] = np.arange(len(indices))
    n = len(indices)
    A = lil_matrix((n, n)); b = np.zeros((n, C)); total = np.ones(n)
    for (o0, o1), w in weights:
        c0 = indices // W + o0; c1 = indices % W + o1
        valid = ~((c0 < 0) | (c1 < 0) | (c0 >= H) | (c1 >= W))
        coords = (indices + o0 * W + o1)[valid]; ids = np.argwhere(valid).flatten()
        known = maskflt[coords] > 0.5
        b[ids[known], :] -= w * imgflat[:, coords[known]].T
        A[ids[~known], vidx[coords[~known]]] = w
        total[np.argwhere(~valid).flatten()] -= w
    A[np.arange(n), np.arange(n)] = -total
    out = imgflat.copy(); out[:, indices] = spsolve(csc_matrix(A), b).reshape(n, C).T
    outs.append(out.T.reshape(-1))
np.concatenate(outs).astype(np.float64).tofile(folder + '/out.f64')
`;

test('imputer against scipy spsolve (ROAD\'s own solve), on ROAD\'s masks of a smooth and a random map, 3 channels', { skip: scipy === null ? 'no Python with scipy' : false }, () => {
  const [width, height, channels] = [150, 110, 3];
  const picture = image(width, height, Array.from({ length: width * height * channels }, (_, i) => {
    const [pixel, c] = [Math.floor(i / channels), i % channels];
    const [x, y] = [pixel % width, Math.floor(pixel / width)];
    return Math.sin(x / (9 + 4 * c)) * Math.cos(y / 13) + 0.3 * Math.sin(pixel * 1.7 + c);
  }), channels);
  const smooth = Float32Array.from({ length: 35 }, (_, i) => Math.exp(-(((i % 7) - 2) ** 2 + (Math.floor(i / 7) - 3) ** 2) / 4));
  const masks = [smooth, uniformMap(7, 5, 3)].flatMap((data) => {
    const saliency = inputSaliency({ width: 7, height: 5, data }, width, height);
    const thresholds = percentiles(saliency, ROAD_PERCENTILES);
    return (['morf', 'lerf'] as const).flatMap((order) => [0, 4, 8].map((i) => roadKeepMask(saliency, thresholds[i]!, order)));
  });
  const folder = mkdtempSync(join(tmpdir(), 'camviz-road-'));
  try {
    writeFileSync(join(folder, 'pixels.f32'), picture.pixels);
    writeFileSync(join(folder, 'keep.u8'), Buffer.concat(masks));
    const run = spawnSync(scipy!, ['-c', ROAD_SPSOLVE, folder, String(height), String(width), String(channels)], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const reference = new Float64Array(readFileSync(join(folder, 'out.f64')).buffer.slice(0));
    const size = width * height * channels;
    masks.forEach((keep, m) => {
      const out = noisyLinearImputation(picture, keep, 0, () => 0.5);
      let worst = 0;
      out.forEach((value, i) => (worst = Math.max(worst, Math.abs(value - reference[m * size + i]!))));
      // A relative residual of 1e-6 leaves errors of a few 1e-6 on values of about 1 (float32 output: 6e-8).
      assert.ok(worst < 2e-5, `mask ${m}: largest difference from spsolve ${worst}`);
    });
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
});

test('blur by hand on 2x2: each output sums kernel x pixel over the taps inside the image (zeros beyond)', () => {
  const k = riseKernel1d();
  const [c, n] = [k[5]!, k[6]!];
  const x = [1, 2, 3, 4];
  const blurred = blurImage(image(2, 2, x));
  // Output (0,0): itself c*c, its axial neighbours c*n, its diagonal n*n.
  close(blurred[0]!, c * c * 1 + c * n * (2 + 3) + n * n * 4, 1e-6, 'b00');
  close(blurred[3]!, c * c * 4 + c * n * (2 + 3) + n * n * 1, 1e-6, 'b11');
});

// ---- the metrics through a model --------------------------------------------

/** a: the weights of class 0 (class 1's are zero), so p0 = sigmoid(a . x). */
const A = [1, -1.5, 2, 0.5];
const X = [0.8, -0.4, 1.2, 0.6];
const X0 = X;
/** Raw map at input size; normalised [0, 2/3, 1, 1/3]: pixel 2 most relevant, then 1, 3, 0. */
const MAP = [0, 2, 3, 1];

const sigmoid = (z: number): number => 1 / (1 + Math.exp(-z));
const pClass0 = (x: readonly number[]): number => sigmoid(x.reduce((s, v, i) => s + v * A[i]!, 0));
const p0 = pClass0;

function tinyModel(): tfl.LayersModel {
  const input = tfl.input({ shape: [2, 2, 1] });
  const dense = tfl.layers.dense({ units: 2, useBias: false, name: 'logits' });
  const output = tfl.layers.activation({ activation: 'softmax', name: 'probs' }).apply(dense.apply(tfl.layers.flatten().apply(input))) as tfl.SymbolicTensor;
  const model = tfl.model({ inputs: input, outputs: output });
  dense.setWeights([tf.tensor2d(A.map((a) => [a, 0]))]);
  return model;
}

/** Deletion, insertion and confidence change of a map over image x for class 0 (or 1: 1 - p0), by hand. */
function byHand(map: readonly number[], steps: number, X: readonly number[] = X0, classIndex = 0): { deletion: number; insertion: number; confidence: number } {
  const p0 = (x: readonly number[]): number => (classIndex === 0 ? pClass0(x) : 1 - pClass0(x));
  const lo = Math.min(...map);
  const span = Math.max(...map) - lo;
  const s = map.map((v) => (span > 0 ? (v - lo) / span : 0));
  const order = [0, 1, 2, 3].sort((i, j) => s[j]! - s[i]! || i - j);
  const k = riseKernel1d();
  const [c, n] = [k[5]!, k[6]!];
  // 2x2 blur: itself c^2, the two axial neighbours c n, the diagonal n^2 (pixel i's diagonal is 3 - i).
  const axial = (i: number): number[] => [[1, 2], [0, 3], [0, 3], [1, 2]][i]!;
  const blurred = X.map((v, i) => c * c * v + c * n * axial(i).reduce((t, j) => t + X[j]!, 0) + n * n * X[3 - i]!);
  const curve = (start: readonly number[], finish: readonly number[]): number[] =>
    Array.from({ length: steps + 1 }, (_, step) => {
      const moved = new Set(order.slice(0, Math.round((step * 4) / steps)));
      return p0(start.map((v, i) => (moved.has(i) ? finish[i]! : v)));
    });
  const auc = (values: number[]): number => values.slice(1).reduce((t, v, i) => t + (v + values[i]!) / 2, 0) / steps;
  return {
    deletion: auc(curve(X, [0, 0, 0, 0])),
    insertion: auc(curve(blurred, X)),
    confidence: p0(X.map((v, i) => v * s[i]!)) - p0(X),
  };
}

let network: Network;
before(async () => {
  await useBackend('cpu');
  network = Network.of(tinyModel());
});

test('the tiny model is what the hand computation assumes: p0 = sigmoid(a . x)', async () => {
  const [row] = await perturbedProbabilities(network, [(out) => out.set(X)], [2, 2, 1]);
  close(row![0]!, p0(X), 1e-6, 'p0');
});

test('confidence change, deletion and insertion AUC of a known map and of the random map, by hand', async () => {
  const input = tf.tensor4d(X, [1, 2, 2, 1]);
  try {
    for (const steps of [4, 3, 1]) {
      const explanation = { image: 0, classIndex: 0, score: 0, probability: p0(X), map: { width: 2, height: 2, data: Float32Array.from(MAP) } };
      const metrics = (await measureExplanations(network, { input, explanations: [[explanation]], seeds: [7] }, { names: ['confidence', 'deletion', 'insertion'], steps }))[0]?.[0];
      const expected = byHand(MAP, steps);
      close(metrics!.confidenceChange!, expected.confidence, 1e-6, `confidence (${steps} steps)`);
      close(metrics!.deletionAuc!, expected.deletion, 1e-6, `deletion (${steps} steps)`);
      close(metrics!.insertionAuc!, expected.insertion, 1e-6, `insertion (${steps} steps)`);
      // The random baseline: a seeded uniform map of the map's size, through the same code.
      const random = byHand([...uniformMap(2, 2, 7)], steps);
      close(metrics!.random.confidenceChange!, random.confidence, 1e-6, 'random confidence');
      close(metrics!.random.deletionAuc!, random.deletion, 1e-6, 'random deletion');
      close(metrics!.random.insertionAuc!, random.insertion, 1e-6, 'random insertion');
      assert.deepEqual(Object.keys(metrics!), ['confidenceChange', 'deletionAuc', 'insertionAuc', 'random'], 'no road keys when road was not asked for');
    }
  } finally {
    input.dispose();
  }
});

test('what the library is given unchecked: steps out of range or not whole, an unknown metric, a seed short, a class beyond the model: UsageErrors', async () => {
  const input = tf.tensor4d(X, [1, 2, 2, 1]);
  const explanation = { image: 0, classIndex: 0, score: 0, probability: 0, map: { width: 2, height: 2, data: Float32Array.from(MAP) } };
  const measure = (options: { names?: string[]; steps?: number; seeds?: number[]; classIndex?: number }): Promise<unknown> =>
    measureExplanations(
      network,
      { input, explanations: [[{ ...explanation, classIndex: options.classIndex ?? 0 }]], seeds: options.seeds ?? [7] },
      { names: (options.names ?? ['deletion']) as MetricName[], steps: options.steps ?? 4 },
    );
  try {
    const cases: [string, Parameters<typeof measure>[0], RegExp][] = [
      // Steps of 0 measured a two-point curve unsaid, and 2.5 one of two steps.
      ['steps 0', { steps: 0 }, /^metric steps 0 must be a whole number from 1 to 1000$/],
      ['steps 2.5', { steps: 2.5 }, /^metric steps 2\.5 must be a whole number/],
      ['unknown metric', { names: ['auc'] }, /^unknown metric 'auc'/],
      ['no seed', { seeds: [] }, /give one of each per image$/],
      // A class beyond the model gave metrics of null.
      ['class 9', { classIndex: 9, names: ['confidence'] }, /^class 9 is out of range: the model gives \d+ probabilities$/],
    ];
    for (const [what, options, said] of cases) {
      await assert.rejects(measure(options), (error: unknown) => {
        assert.ok(error instanceof UsageError, `${what}: ${String(error)}`);
        assert.match(error.message, said, what);
        return true;
      });
    }
  } finally {
    input.dispose();
  }
});

test('a batch of two images with two classes each: every record gets its own image\'s and class\'s values', async () => {
  const second = [-0.5, 1, 0.3, -1.2];
  const input = tf.tensor4d([...X, ...second], [2, 2, 2, 1]);
  const maps = [[0, 2, 3, 1], [4, 1, 0, 2], [1, 1, 5, 0], [2, 3, 1, 0]];
  try {
    const explanations = [0, 1].map((image) =>
      [0, 1].map((classIndex) => ({ image, classIndex, score: 0, probability: 0, map: { width: 2, height: 2, data: Float32Array.from(maps[image * 2 + classIndex]!) } })),
    );
    const measured = await measureExplanations(network, { input, explanations, seeds: [11, 12] }, { names: ['confidence', 'deletion', 'insertion'], steps: 4 });
    for (const image of [0, 1]) {
      for (const classIndex of [0, 1]) {
        const metrics = measured[image]![classIndex]!;
        const x = image === 0 ? X : second;
        const expected = byHand(maps[image * 2 + classIndex]!, 4, x, classIndex);
        const random = byHand([...uniformMap(2, 2, [11, 12][image]!)], 4, x, classIndex);
        const where = `image ${image}, class ${classIndex}`;
        close(metrics.confidenceChange!, expected.confidence, 1e-6, `${where}: confidence`);
        close(metrics.deletionAuc!, expected.deletion, 1e-6, `${where}: deletion`);
        close(metrics.insertionAuc!, expected.insertion, 1e-6, `${where}: insertion`);
        close(metrics.random.deletionAuc!, random.deletion, 1e-6, `${where}: random deletion`);
        close(metrics.random.insertionAuc!, random.insertion, 1e-6, `${where}: random insertion`);
      }
    }
  } finally {
    input.dispose();
  }
});

test('a constant map (all zeros, all one value, none finite) is marked constantMap; a map that ranks its pixels is not', async () => {
  const input = tf.tensor4d(X, [1, 2, 2, 1]);
  const cases: [string, number[], boolean][] = [
    ['all zeros', [0, 0, 0, 0], true],
    ['one value', [0.25, 0.25, 0.25, 0.25], true],
    ['none finite', [Number.NaN, Number.NaN, Number.NaN, Number.NaN], true],
    ['one value and a NaN', [2, Number.NaN, 2, 2], true],
    ['two values', [0, 0, 0, 1e-6], false],
  ];
  try {
    for (const [what, data, constant] of cases) {
      const explanation = { image: 0, classIndex: 0, score: 0, probability: 0, map: { width: 2, height: 2, data: Float32Array.from(data) } };
      const metrics = (await measureExplanations(network, { input, explanations: [[explanation]], seeds: [7] }, { names: ['deletion'], steps: 4 }))[0]![0]!;
      assert.equal(metrics.constantMap === true, constant, what);
      assert.ok(Number.isFinite(metrics.deletionAuc), `${what}: still measured`);
    }
  } finally {
    input.dispose();
  }
});

/**
 * ROAD by hand on the 2x2 image: the normalised map [0, 2/3, 1, 1/3] puts
 * the order statistics s0 < s1 < s2 < s3 at pixels 0, 3, 1, 2; the
 * percentile thresholds are 0.1 ... 0.9. MoRF keeps s < t: {s0} for
 * t <= 0.3 (one kept pixel: every removed one becomes its value), {s0, s1}
 * for 0.4 ... 0.6 (a diagonal pair: the other two become their mean),
 * {s0, s1, s2} for 0.7 ... 0.9 (one removed corner: (2 a1 + 2 a2 + d) / 5).
 * LeRF keeps s > t: {s1, s2, s3}, {s2, s3} (also diagonal), {s3}.
 */
function roadByHand(): { morf: number; lerf: number } {
  const corner = (x: number[], i: number): number[] => {
    const axial = [[1, 2], [0, 3], [0, 3], [1, 2]][i]!;
    return x.map((v, j) => (j === i ? (2 * x[axial[0]!]! + 2 * x[axial[1]!]! + x[3 - i]!) / 5 : v));
  };
  const keepOne = (i: number): number[] => X.map(() => X[i]!);
  const keepDiagonal = (i: number, j: number): number[] => X.map((v, k) => (k === i || k === j ? v : (X[i]! + X[j]!) / 2));
  const morfImages = [keepOne(0), keepDiagonal(0, 3), corner(X, 2)];
  const lerfImages = [corner(X, 0), keepDiagonal(1, 2), keepOne(2)];
  const mean = (images: number[][]): number => images.reduce((s, x) => s + 3 * (p0(x) - p0(X)), 0) / 9;
  return { morf: mean(morfImages), lerf: mean(lerfImages) };
}

test('ROAD by hand (noise off): MoRF, LeRF and their combination over the percentiles 10 ... 90', async () => {
  assert.deepEqual(ROAD_PERCENTILES, [10, 20, 30, 40, 50, 60, 70, 80, 90]);
  const saliency = inputSaliency({ width: 2, height: 2, data: Float32Array.from(MAP) }, 2, 2);
  const measurement = road(image(2, 2, X), saliency, 1, p0(X), 0);
  const rows = await perturbedProbabilities(network, measurement.images, [2, 2, 1]);
  const values = measurement.finish(rows.map((row) => row[0]!));
  const expected = roadByHand();
  close(values.roadMorf!, expected.morf, 1e-6, 'MoRF');
  close(values.roadLerf!, expected.lerf, 1e-6, 'LeRF');
  close(values.roadCombined!, (expected.lerf - expected.morf) / 2, 1e-6, 'combined');
});

test('ROAD through the runner: ROAD noise (0.01) moves the values only slightly, and a rerun gives the same values', async () => {
  const input = tf.tensor4d(X, [1, 2, 2, 1]);
  try {
    const explanation = { image: 0, classIndex: 0, score: 0, probability: p0(X), map: { width: 2, height: 2, data: Float32Array.from(MAP) } };
    const run = async () => (await measureExplanations(network, { input, explanations: [[explanation]], seeds: [7] }, { names: ['road'], steps: 20 }))[0]![0]!;
    const first = await run();
    const expected = roadByHand();
    close(first.roadMorf!, expected.morf, 0.01, 'MoRF with noise');
    close(first.roadLerf!, expected.lerf, 0.01, 'LeRF with noise');
    assert.notEqual(first.roadMorf, expected.morf, 'the noise is there');
    assert.deepEqual(await run(), first);
    assert.deepEqual(Object.keys(first), ['roadMorf', 'roadLerf', 'roadCombined', 'random']);
    assert.deepEqual(Object.keys(first.random), ['roadMorf', 'roadLerf', 'roadCombined']);
  } finally {
    input.dispose();
  }
});

test('camviz metrics leaves constant maps out of both columns\' means, and says how many', () => {
  const result = (deletionAuc: number, randomDeletion: number, constant: boolean): CamResultRecord => ({
    input: 'x.png',
    method: 'gradcam',
    layer: 'conv',
    class: { index: 3, label: 'star' },
    score: 1,
    probability: 0.5,
    peak: { x: 0, y: 0 },
    png: 'x.gradcam.3.png',
    metrics: { deletionAuc, random: { deletionAuc: randomDeletion }, ...(constant ? { constantMap: true as const } : {}) },
  });
  const [group] = groupMetrics([result(0.2, 0.5, false), result(0.4, 0.7, false), result(0.9, 0.1, true)]);
  assert.equal(group?.maps, 3);
  assert.equal(group?.constantMaps, 1);
  close(group!.metrics.deletionAuc!.mean, 0.3, 1e-12, 'mean of the two ranked maps');
  close(group!.random.deletionAuc!.mean, 0.6, 1e-12, 'their random maps alone');
  assert.equal(group!.metrics.deletionAuc!.n, 2);
  const lines = summaryLines({ manifest: 'm', groups: [group!] });
  assert.equal(lines[0], 'gradcam, class 3 (star): 3 maps (1 constant, left out: they rank no pixel above another)');
  const [allConstant] = groupMetrics([result(0.9, 0.1, true)]);
  assert.deepEqual(summaryLines({ manifest: 'm', groups: [allConstant!] }), ['gradcam, class 3 (star): 1 map (1 constant, left out: they rank no pixel above another)']);
});
