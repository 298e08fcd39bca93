/**
 * Every target on a small network whose maps are computed by hand, in plain
 * arithmetic, in this file (captum's way of testing attributions).
 *
 * Trunk: input 4x4x2 -> `conv` (1x1, three filters F, no bias, linear), so
 * that the activations are A_k(p) = sum_i F[i][k] X_i(p) and the gradient of
 * any head at `conv` is the head's own derivative. Heads on it:
 * - a single-unit sigmoid (GAP -> Dense 1, sigmoid);
 * - two outputs (GAP -> Dense 2 softmax `probs`, and Dense 3 linear `value`);
 * - a 1x1-conv segmentation head `seg` (2 classes, softmax over channels);
 * - a pooled embedding `gap` before a Dense 2 softmax classifier.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import sharp from 'sharp';
import { type CamMethod, GradCam, HiResCam, ScoreCam } from '../src/cam/index.js';
import { ClassChooser, type ClassRequest } from '../src/cam/classes.js';
import { classRequestOf } from '../src/model/labels.js';
import { explainBatch } from '../src/cam/explain.js';
import {
  ClassTarget,
  FunctionTarget,
  OutputTarget,
  RegionTarget,
  SigmoidTarget,
  SimilarityTarget,
  type Target,
  defaultEmbedding,
  embeddingOf,
  loadRegionMask,
  regionCellWeights,
} from '../src/cam/targets/index.js';
import { computeGeometry } from '../src/image/image.js';
import { Network, disposeValues } from '../src/executor/network.js';
import { UsageError } from '../src/util/errors.js';
import { forEachBackend } from './helpers/backends.js';
import * as nets from './helpers/target-models.js';

const SIDE = 4;
const P = SIDE * SIDE;
/** An image: its two channels. */
type Picture = readonly [readonly number[], readonly number[]];
const X: Picture = [
  [1, -2, 3, 0.5, 4, -1, 2, -3, 1, 2, -0.5, 1.5, 0, 3, -2, 1],
  [0.5, 1, -1, 2, 0, 1.5, -2, 1, 3, -1, 0.5, 0, 2, -0.5, 1, -1],
];
const X2: Picture = [
  [2, 1, -1, 0, 3, 2, 1, -2, 0.5, 1, 2, 3, -1, 0, 1, 2],
  [-1, 0, 2, 1, 1, -2, 0.5, 3, 0, 1, -1, 2, 1.5, 1, 0, -0.5],
];
const F = [
  [1, -0.5, 2],
  [0.5, 1, -1],
]; // F[input channel][k]
const PIXELS = X[0];
/** The image as an NHWC tensor's values. */
const interleaved = (x: Picture): number[] => x[0].flatMap((v, p) => [v, x[1][p]!]);

const relu = (v: number): number => Math.max(0, v);
const sum = (values: readonly number[]): number => values.reduce((s, v) => s + v, 0);
const dot = (a: readonly number[], b: readonly number[]): number => sum(a.map((v, i) => v * b[i]!));
/** A_k(p) = sum_i F[i][k] x_i(p) */
const activations = (x: Picture): number[][] => F[0]!.map((_, k) => x[0].map((v, p) => F[0]![k]! * v + F[1]![k]! * x[1][p]!));
const A = activations(X);
/** Grad-CAM with dY/dA_k(p) = g_k(p): relu(sum_k mean_p(g_k) A_k(p)) */
const gradCam = (acts: number[][], grads: number[][]): number[] =>
  PIXELS.map((_, p) => relu(sum(acts.map((channel, k) => (sum(grads[k]!) / P) * channel[p]!))));
/** HiResCAM: relu(sum_k g_k(p) A_k(p)) */
const hiResCam = (acts: number[][], grads: number[][]): number[] => PIXELS.map((_, p) => relu(sum(acts.map((channel, k) => grads[k]![p]! * channel[p]!))));
const mean = (values: readonly number[]): number => sum(values) / values.length;
const pooled = (acts: number[][]): number[] => acts.map(mean);

const TRUNK: nets.TrunkSpec = { side: SIDE, kernel: F };

const SIGMOID_W = [0.5, -1, 0.25];

const PROBS_W = [
  [1, -1],
  [0.5, 2],
  [-1, 0.5],
];
const VALUE_W = [
  [0.3, -1, 2],
  [1, 0.5, -0.25],
  [-0.5, 1, 0.75],
]; // VALUE_W[k][unit]

const SEG_K = [
  [1, -0.5],
  [-2, 1],
  [0.5, 0.25],
]; // SEG_K[k][class]

const sigmoidModel = (): tfl.LayersModel => nets.sigmoidModel(TRUNK, SIGMOID_W);
const twoOutputModel = (): tfl.LayersModel => nets.twoOutputModel(TRUNK, PROBS_W, VALUE_W);
const segmentationModel = (): tfl.LayersModel => nets.segmentationModel(TRUNK, SEG_K);
const embeddingModel = (): tfl.LayersModel => nets.embeddingModel(TRUNK, PROBS_W);

interface Computed {
  map: number[];
  score: number;
  probability: number | null;
}

async function camOf(build: () => tfl.LayersModel, method: CamMethod, target: Target | ((network: Network) => Promise<Target>), unit: number, x: Picture = X): Promise<Computed> {
  const model = build();
  const network = Network.of(model);
  const input = tf.tensor4d(interleaved(x), [1, SIDE, SIDE, 2]);
  try {
    const resolved = typeof target === 'function' ? await target(network) : target;
    const node = network.graph.findNodes('conv')[0]!;
    const [result] = (await method.compute(network, { input, layers: [node], classes: { kind: 'explicit', classes: [unit] }, target: resolved }))[0]!;
    return { map: Array.from(result!.map.data), score: result!.score, probability: result!.probability };
  } finally {
    input.dispose();
    model.dispose();
  }
}

function assertClose(actual: readonly number[], expected: readonly number[], what: string, tolerance = 1e-5): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const scale = Math.max(1e-6, ...expected.map(Math.abs));
  actual.forEach((value, i) => {
    assert.ok(Math.abs(value - expected[i]!) <= tolerance * scale, `${what}[${i}]: ${value} vs ${expected[i]} (expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)})`);
  });
}

function assertNear(actual: number, expected: number, what: string, tolerance = 1e-5): void {
  assert.ok(Math.abs(actual - expected) <= tolerance * Math.max(1, Math.abs(expected)), `${what}: ${actual} vs ${expected}`);
}

const sigmoid = (z: number): number => 1 / (1 + Math.exp(-z));

// ---- region geometry (no model) ---------------------------------------------

test('a box in original pixels covers the output cells it maps to through stretch and letterbox', () => {
  const stretch = computeGeometry({ width: 8, height: 8 }, { width: SIDE, height: SIDE }, 'stretch');
  const cells = Array.from(regionCellWeights({ box: [2, 2, 6, 6] }, { geometry: stretch }, SIDE, SIDE));
  // Original 2..6 is input 1..3: cells 1 and 2 of each axis.
  assert.deepEqual(cells, [0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0]);
  // An 8x4 original letterboxed into 4x4 lands on input rows 1..3; its left half is input columns 0..2.
  const pad = computeGeometry({ width: 8, height: 4 }, { width: SIDE, height: SIDE }, 'pad');
  assert.deepEqual(pad.inputBox, { x: 0, y: 1, width: 4, height: 2 });
  const padded = Array.from(regionCellWeights({ box: [0, 0, 4, 4] }, { geometry: pad }, SIDE, SIDE));
  assert.deepEqual(padded, [0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0]);
  // A box covering half a cell weighs it by half; coordinates in the image's own pixels when it was shrunk on decoding.
  const half = Array.from(regionCellWeights({ box: [0, 0, 3, 2] }, { geometry: stretch }, SIDE, SIDE));
  assert.deepEqual(half, [1, 0.5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  const shrunk = Array.from(regionCellWeights({ box: [4, 4, 12, 12] }, { geometry: stretch, sourceSize: { width: 16, height: 16 } }, SIDE, SIDE));
  assert.deepEqual(shrunk, cells);
});

test('a mask of another size than the image is rescaled to it; an empty mask is refused', async () => {
  const folder = await mkdtemp(join(tmpdir(), 'camviz-targets-'));
  try {
    // 16x16 mask, white on rows and columns 4..12: the box 2..6 of an 8x8 image.
    const pixels = Buffer.alloc(16 * 16, 0);
    for (let y = 4; y < 12; y++) for (let x = 4; x < 12; x++) pixels[y * 16 + x] = 255;
    const maskPath = join(folder, 'mask.png');
    await sharp(pixels, { raw: { width: 16, height: 16, channels: 1 } }).png().toFile(maskPath);
    const mask = await loadRegionMask(maskPath);
    const stretch = computeGeometry({ width: 8, height: 8 }, { width: SIDE, height: SIDE }, 'stretch');
    assert.deepEqual(Array.from(regionCellWeights({ mask }, { geometry: stretch }, SIDE, SIDE)), Array.from(regionCellWeights({ box: [2, 2, 6, 6] }, { geometry: stretch }, SIDE, SIDE)));
    const emptyPath = join(folder, 'empty.png');
    await sharp(Buffer.alloc(8 * 8, 0), { raw: { width: 8, height: 8, channels: 1 } }).png().toFile(emptyPath);
    await assert.rejects(loadRegionMask(emptyPath), (error: unknown) => error instanceof UsageError && /mask is empty/.test(error.message) && error.file === emptyPath);
    await writeFile(join(folder, 'junk.png'), 'not a png');
    await assert.rejects(loadRegionMask(join(folder, 'junk.png')), UsageError);
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});

forEachBackend((backend) => {
  // ---- sigmoid ---------------------------------------------------------------

  const logit = dot(SIGMOID_W, pooled(A));
  /** dz/dA_k(p) = W_k / P */
  const sigmoidGrads = (sign: number): number[][] => SIGMOID_W.map((w) => PIXELS.map(() => (sign * w) / P));

  test(`${backend}: sigmoid target, positive class: Y is the logit and Grad-CAM its hand computation`, async () => {
    const result = await camOf(sigmoidModel, new GradCam(), new SigmoidTarget(), 0);
    assertNear(result.score, logit, 'score');
    assertNear(result.probability ?? Number.NaN, sigmoid(logit), 'probability');
    assertClose(result.map, gradCam(A, sigmoidGrads(1)), 'Grad-CAM');
  });

  test(`${backend}: sigmoid target, negative class (--class neg): Y is the negated logit and the map explains it`, async () => {
    const result = await camOf(sigmoidModel, new GradCam(), new SigmoidTarget(true), 0);
    assertNear(result.score, -logit, 'score');
    assertNear(result.probability ?? Number.NaN, 1 - sigmoid(logit), 'probability');
    const expected = gradCam(A, sigmoidGrads(-1));
    assertClose(result.map, expected, 'Grad-CAM');
    // The positive and negative maps are not the same picture.
    assert.notDeepEqual(expected.map((v) => v.toFixed(4)), gradCam(A, sigmoidGrads(1)).map((v) => v.toFixed(4)));
  });

  test(`${backend}: objectives linear in the class scores carry score terms (class, sigmoid +-1); the others none`, () => {
    const chooser = new ClassChooser({ kind: 'explicit', classes: [0] }, 2);
    const terms = (target: Target): unknown => chooser.objectives(target)[0]!.scoreTerms?.({} as never);
    assert.deepEqual(terms(new SigmoidTarget(true)), [
      { image: 0, classIndex: 0, weight: -1 },
      { image: 1, classIndex: 0, weight: -1 },
    ]);
    assert.deepEqual(terms(new ClassTarget()), [
      { image: 0, classIndex: 0, weight: 1 },
      { image: 1, classIndex: 0, weight: 1 },
    ]);
    for (const target of [new OutputTarget(1, 'value'), new RegionTarget({ box: [0, 0, 1, 1] }), new FunctionTarget(() => tf.scalar(0))]) {
      assert.equal(terms(target), undefined, target.kind);
    }
  });

  // ---- output ----------------------------------------------------------------

  for (const unit of [0, 2]) {
    const value = dot(VALUE_W.map((row) => row[unit]!), pooled(A));
    const grads = VALUE_W.map((row) => PIXELS.map(() => row[unit]! / P));

    test(`${backend}: output target picks the second output's unit ${unit}: Grad-CAM and Score-CAM by hand`, async () => {
      const result = await camOf(twoOutputModel, new GradCam(), new OutputTarget(1, 'value'), unit);
      assertNear(result.score, value, 'score');
      assert.equal(result.probability, null, 'an output has no probability');
      assertClose(result.map, gradCam(A, grads), 'Grad-CAM');
      // Score-CAM: each channel, min-max normalised, masks the input; the unit's value of each masked input, softmaxed, weighs it.
      const scores = A.map((channel) => {
        const min = Math.min(...channel);
        const max = Math.max(...channel);
        const mask = channel.map((a) => (a - min) / (max - min));
        const masked: Picture = [X[0].map((x, p) => x * mask[p]!), X[1].map((x, p) => x * mask[p]!)];
        return dot(VALUE_W.map((row) => row[unit]!), pooled(activations(masked)));
      });
      const exps = scores.map((s) => Math.exp(s - Math.max(...scores)));
      const weights = exps.map((e) => e / sum(exps));
      const scoreCam = (await camOf(twoOutputModel, new ScoreCam(), new OutputTarget(1, 'value'), unit)).map;
      assertClose(scoreCam, PIXELS.map((_, p) => relu(sum(A.map((channel, k) => weights[k]! * channel[p]!)))), 'Score-CAM', 1e-4);
    });
  }

  test(`${backend}: the forward values hold every model output`, async () => {
    const model = twoOutputModel();
    const network = Network.of(model);
    const input = tf.tensor4d(interleaved(X), [1, SIDE, SIDE, 2]);
    const values = await network.forward(input);
    try {
      assert.deepEqual(values.outputs.map((output) => output.shape), [
        [1, 2],
        [1, 3],
      ]);
      assertClose(Array.from(values.outputs[1]!.dataSync()), [0, 1, 2].map((unit) => dot(VALUE_W.map((row) => row[unit]!), pooled(A))), 'value output');
    } finally {
      disposeValues(values);
      input.dispose();
      model.dispose();
    }
  });

  // ---- region ----------------------------------------------------------------

  const original = { width: 8, height: 8 };
  const geometry = computeGeometry(original, { width: SIDE, height: SIDE }, 'stretch');
  /** Original box 2..6 is cells (1..2, 1..2). */
  const M = [0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0];
  const region = (): RegionTarget => new RegionTarget({ box: [2, 2, 6, 6] }).forImages([{ geometry }]);

  for (const c of [0, 1]) {
    /** Y_c = sum_p M(p) sum_k K[k][c] A_k(p); dY/dA_k(p) = K[k][c] M(p). */
    const regionScore = sum(PIXELS.map((_, p) => M[p]! * sum(A.map((channel, k) => SEG_K[k]![c]! * channel[p]!))));
    const grads = SEG_K.map((row) => M.map((m) => row[c]! * m));

    test(`${backend}: region target sums class ${c}'s pre-softmax score over the box; HiResCAM and Grad-CAM by hand`, async () => {
      const hires = await camOf(segmentationModel, new HiResCam(), region(), c);
      assertNear(hires.score, regionScore, 'score');
      assertClose(hires.map, hiResCam(A, grads), 'HiResCAM');
      // Outside the region the gradient is 0: HiResCAM shows nothing there.
      hires.map.forEach((value, p) => {
        if (M[p] === 0) assert.equal(value, 0, `cell ${p}`);
      });
      assertClose((await camOf(segmentationModel, new GradCam(), region(), c)).map, gradCam(A, grads), 'Grad-CAM');
    });
  }

  test(`${backend}: a region target over a batch reads each image's own geometry`, async () => {
    const model = segmentationModel();
    const network = Network.of(model);
    const input = tf.tensor4d([...interleaved(X), ...interleaved(X)], [2, SIDE, SIDE, 2]);
    const letterbox = computeGeometry({ width: 8, height: 4 }, { width: SIDE, height: SIDE }, 'pad');
    try {
      const target = new RegionTarget({ box: [0, 0, 4, 4] }).forImages([{ geometry }, { geometry: letterbox }]);
      const node = network.graph.findNodes('conv')[0]!;
      const results = await new HiResCam().compute(network, { input, layers: [node], classes: { kind: 'explicit', classes: [0] }, target });
      const masks = [
        [1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0],
      ];
      masks.forEach((mask, image) => {
        const grads = SEG_K.map((row) => mask.map((m) => row[0]! * m));
        assertClose(Array.from(results[image]![0]!.map.data), hiResCam(A, grads), `image ${image}`);
      });
    } finally {
      input.dispose();
      model.dispose();
    }
  });

  // ---- similarity ------------------------------------------------------------

  const similarityTarget = (reference: Picture) => async (network: Network): Promise<Target> => {
    const embedding = defaultEmbedding(network);
    const input = tf.tensor4d(interleaved(reference), [1, SIDE, SIDE, 2]);
    try {
      return new SimilarityTarget(embedding, await embeddingOf(network, input, embedding), 'ref');
    } finally {
      input.dispose();
    }
  };

  test(`${backend}: similarity's default embedding is the score layer's input (the pooled features)`, () => {
    const model = embeddingModel();
    try {
      assert.equal(defaultEmbedding(Network.of(model)).path, 'gap');
    } finally {
      model.dispose();
    }
  });

  test(`${backend}: similarity to the image itself is 1`, async () => {
    const result = await camOf(embeddingModel, new GradCam(), similarityTarget(X), 0);
    assertNear(result.score, 1, 'cosine similarity');
  });

  test(`${backend}: similarity to another image: the cosine and its gradient by hand`, async () => {
    const e = pooled(A);
    const r = pooled(activations(X2));
    const norm = (v: number[]): number => Math.sqrt(dot(v, v));
    const cosine = dot(e, r) / (norm(e) * norm(r));
    // d cos / d e_k = r_k / (|e||r|) - cos e_k / |e|^2; dY/dA_k(p) = that / P.
    const grads = e.map((ek, k) => PIXELS.map(() => (r[k]! / (norm(e) * norm(r)) - (cosine * ek) / norm(e) ** 2) / P));
    const result = await camOf(embeddingModel, new GradCam(), similarityTarget(X2), 0);
    assertNear(result.score, cosine, 'cosine similarity');
    const expected = gradCam(A, grads);
    assert.ok(expected.some((value) => value > 1e-3), 'the hand-computed map is not blank');
    assertClose(result.map, expected, 'Grad-CAM');
  });

  // ---- memory -----------------------------------------------------------------

  test(`${backend}: a target leaves no more tensors behind than the class target (Grad-CAM, Score-CAM, Guided Grad-CAM)`, async () => {
    // Compared with the class target on the same model, not with zero: the
    // executor keeps one tensor per backward pass through a split activation
    // (graph.ts splitActivationStep's kept pre-activation), whatever the target.
    const cases: [() => tfl.LayersModel, (network: Network) => Promise<Target>][] = [
      [sigmoidModel, async () => new SigmoidTarget(true)],
      [twoOutputModel, async () => new OutputTarget(1, 'value')],
      [segmentationModel, async () => region()],
      [embeddingModel, similarityTarget(X2)],
      [twoOutputModel, async () => new FunctionTarget((values, row) => tf.squeeze(tf.slice(values.outputs[1]!, [row, 0], [1, 1])))],
    ];
    for (const [build, makeTarget] of cases) {
      const model = build();
      const network = Network.of(model);
      const input = tf.tensor4d(interleaved(X), [1, SIDE, SIDE, 2]);
      const node = network.graph.findNodes('conv')[0]!;
      const left = async (target: Target): Promise<number> => {
        const before = tf.memory().numTensors;
        for (const method of ['gradcam', 'scorecam', 'guidedgradcam']) {
          await explainBatch(network, { method, input, layers: [node], classes: { kind: 'explicit', classes: [0] }, target });
        }
        return tf.memory().numTensors - before;
      };
      const target = await makeTarget(network);
      const first = await left(target);
      assert.equal(await left(target), 0, `${target.kind}: tensors left by a second round`);
      assert.equal(await left(new ClassTarget()), 0, `${target.kind} model, class target: tensors left`);
      assert.ok(first >= 0);
      input.dispose();
      model.dispose();
    }
  });

  // ---- any objective function -----------------------------------------------

  test(`${backend}: a function of the forward values per row is a target: the same maps as the class target it restates`, async () => {
    const restated = new FunctionTarget((values, row) => tf.squeeze(tf.slice(values.scores, [row, 1], [1, 1])));
    const byFunction = await camOf(twoOutputModel, new GradCam(), restated, 0);
    const byClass = await camOf(twoOutputModel, new GradCam(), new ClassTarget(), 1);
    assertNear(byFunction.score, byClass.score, 'score');
    assertClose(byFunction.map, byClass.map, 'Grad-CAM');
    const grads = PROBS_W.map((row) => PIXELS.map(() => row[1]! / P));
    assertClose(byClass.map, gradCam(A, grads), 'Grad-CAM by hand');
  });

  // ---- what library callers give unchecked ------------------------------------

  test(`${backend}: classes that are no class index, a top-k of 0 or beyond the units: UsageErrors, not a null score or "needs an objective"`, async () => {
    const model = twoOutputModel();
    const network = Network.of(model);
    const input = tf.tensor4d(interleaved(X), [1, SIDE, SIDE, 2]);
    const node = network.graph.findNodes('conv')[0]!;
    try {
      const refused: [string, ClassRequest, RegExp][] = [
        ['gradcam', { kind: 'top', k: 0 }, /^top-k 0 must be a whole number of at least 1$/],
        ['gradcam', { kind: 'top', k: 2.5 }, /^top-k 2\.5 must be a whole number of at least 1$/],
        ['gradcam', { kind: 'explicit', classes: [1.5] }, /^class 1\.5 is not a class index/],
        ['scorecam', { kind: 'explicit', classes: [-1] }, /^class -1 is not a class index/],
        ['gradcam', { kind: 'explicit', classes: [] }, /^no class to explain/],
        // Score-CAM read class 5 of 2 as undefined: a map whose score was null.
        ['scorecam', { kind: 'explicit', classes: [5] }, /^class 5 is out of range: the target has 2 units \(0-1\)$/],
        ['gradcam', { kind: 'top', k: 3 }, /^top-k 3 is more than the target's 2 units$/],
      ];
      for (const [method, classes, said] of refused) {
        const before = tf.memory().numTensors;
        await assert.rejects(explainBatch(network, { method, input, layers: [node], classes }), (error: unknown) => {
          assert.ok(error instanceof UsageError, `${method} ${JSON.stringify(classes)}: ${String(error)}`);
          assert.match(error.message, said);
          return true;
        });
        assert.equal(tf.memory().numTensors, before, `${method} ${JSON.stringify(classes)}: tensors left`);
      }
      assert.throws(() => classRequestOf([], 0, undefined, 2), /^UsageError: top-k 0 must be a whole number of at least 1$/);
      assert.deepEqual(classRequestOf([], 5, undefined, 2), { kind: 'top', k: 2 }, 'more than the classes gives them all');
    } finally {
      input.dispose();
      model.dispose();
    }
  });

  test(`${backend}: a target function that throws leaves no tensor behind (the tape's saved tensors were)`, async () => {
    const model = twoOutputModel();
    const network = Network.of(model);
    const input = tf.tensor4d(interleaved(X), [1, SIDE, SIDE, 2]);
    const node = network.graph.findNodes('conv')[0]!;
    const failing = new FunctionTarget(() => {
      throw new Error('the target failed');
    });
    try {
      for (const method of ['gradcam', 'hirescam', 'scorecam']) {
        const before = tf.memory().numTensors;
        await assert.rejects(explainBatch(network, { method, input, layers: [node], classes: { kind: 'explicit', classes: [0] }, target: failing }), /the target failed/);
        assert.equal(tf.memory().numTensors, before, `${method}: tensors left`);
      }
    } finally {
      input.dispose();
      model.dispose();
    }
  });
});
