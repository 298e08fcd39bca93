/**
 * The ONNX Runtime executor (src/executor/ort.ts) against values computed
 * by hand and against the tfjs Network of the same model:
 * - a tiny Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm graph whose
 *   scores and gradients are written out here in float64;
 * - the closed-form head against the tfjs tape (the same objectives without
 *   `scoreTerms`) and the Network;
 * - the shared ONNX models (../shared/assets/onnx): scores, default-layer
 *   activations, Grad-CAM, Grad-CAM++ and Score-CAM maps against the Network
 *   and the PyTorch references;
 * - what it refuses (a model ORT rejects, a missing or broken ORT) and what
 *   it leaves to the Network (hooks), and tensor counts over repeated calls.
 * Skips with a reason when onnxruntime-node does not load.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../src/engine/backend.js';
import { MAX_CACHED_SESSIONS, cachedSessionCount, loadOnnxRuntime, releaseOrtSessions } from '../src/engine/onnxruntime.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { onnxTrunkOf } from '../src/model/onnx/trunk.js';
import type { OnnxTrunk } from '../src/executor/onnx-trunk.js';
import { OrtExecutor, OrtModelRejectedError, OrtUnavailableError, createOrtExecutor } from '../src/executor/ort.js';
import { linearHeadsOf } from '../src/executor/linear-head.js';
import { type ForwardValues, type Objective, type ScoreTerm, disposeValues } from '../src/executor/network.js';
import type { GraphNode } from '../src/executor/graph.js';
import { registerForwardHook } from '../src/hooks/index.js';
import { explainBatch } from '../src/cam/explain.js';
import { ScoreCam } from '../src/cam/scorecam.js';
import type { Executor } from '../src/executor/executor.js';
import { camTargets } from '../src/cam/request.js';
import { inputTensor } from '../src/model/predict.js';
import { loadImage } from '../src/image/image.js';
import { asset } from './helpers/assets.js';
import { maxAbsDifference } from './helpers/numeric.js';
import { type TestModel, onnxModelBytes } from './helpers/onnx.js';
import { CHANNELS, CLASSES, SIZE, fcBias, fcWeights, randoms, tinyByHand, tinyModel } from './helpers/tiny-onnx.js';
import { withEnvSync } from './helpers/env.js';

const ort = loadOnnxRuntime();
const skipOrt: string | false = ort.available ? false : `onnxruntime-node does not load: ${ort.reason}`;
const onnxDir = asset('onnx');
const referenceDir = join(onnxDir, 'reference');
const skipShared: string | false = skipOrt || (existsSync(join(referenceDir, 'index.json')) ? false : `the shared ONNX assets are absent (${onnxDir})`);

/** input -> conv -> relu -> conv2 -> add (conv2 + conv: a skip from before relu) -> pool -> flatten -> fc. */
function residualModel(): TestModel {
  const base = tinyModel();
  return {
    ...base,
    nodes: [
      ...base.nodes.slice(0, 2),
      { name: 'conv2', opType: 'Conv', inputs: ['relu_out', 'conv2.weight'], outputs: ['conv2_out'], attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }] },
      { name: 'add', opType: 'Add', inputs: ['conv2_out', 'conv_out'], outputs: ['add_out'] },
      { ...base.nodes[2]!, inputs: ['add_out'] },
      ...base.nodes.slice(3),
    ],
    initializers: [...base.initializers!, { name: 'conv2.weight', dims: [CHANNELS, CHANNELS, 3, 3], values: randoms(CHANNELS * CHANNELS * 9, 10) }],
  };
}

/** The tiny model with a 1x1 Conv as its classifier (the fc weights as [classes, channels, 1, 1]) after the pooling: the same scores. */
function convHeadModel(): TestModel {
  const base = tinyModel();
  return {
    ...base,
    nodes: [
      ...base.nodes.slice(0, 3),
      { name: 'classifier', opType: 'Conv', inputs: ['pool_out', 'classifier.weight', 'fc.bias'], outputs: ['classifier_out'] },
      { name: 'flatten', opType: 'Flatten', inputs: ['classifier_out'], outputs: ['logits'] },
    ],
    initializers: [...base.initializers!.filter((tensor) => tensor.name !== 'fc.weight'), { name: 'classifier.weight', dims: [CLASSES, CHANNELS, 1, 1], values: fcWeights }],
  };
}

/** The tiny model without its classifier: the pooled relu output is the scores (one per channel), as Darknet's classifier conv is pooled into its scores. */
function poolHeadModel(): TestModel {
  const base = tinyModel();
  return {
    ...base,
    nodes: [...base.nodes.slice(0, 3), { name: 'flatten', opType: 'Flatten', inputs: ['pool_out'], outputs: ['logits'] }],
    outputs: [{ name: 'logits', shape: ['N', CHANNELS] }],
    initializers: base.initializers!.filter((tensor) => !tensor.name.startsWith('fc.')),
  };
}

/** The tiny model with SqueezeNet's head: a 1x1 Conv classifier (the fc weights and bias) on the relu output, a second Relu, then the pooling: the scores. */
function rectifiedHeadModel(): TestModel {
  const base = tinyModel();
  return {
    ...base,
    nodes: [
      ...base.nodes.slice(0, 2),
      { name: 'classifier', opType: 'Conv', inputs: ['relu_out', 'classifier.weight', 'fc.bias'], outputs: ['classifier_out'] },
      { name: 'relu2', opType: 'Relu', inputs: ['classifier_out'], outputs: ['relu2_out'] },
      { name: 'pool', opType: 'GlobalAveragePool', inputs: ['relu2_out'], outputs: ['pool_out'] },
      { name: 'flatten', opType: 'Flatten', inputs: ['pool_out'], outputs: ['logits'] },
    ],
    initializers: [...base.initializers!.filter((tensor) => tensor.name !== 'fc.weight'), { name: 'classifier.weight', dims: [CLASSES, CHANNELS, 1, 1], values: fcWeights }],
  };
}

const RECTIFIED_TERMS: readonly ScoreTerm[] = [{ image: 0, classIndex: 1, weight: 2 }, { image: 1, classIndex: 2, weight: -1 }, { image: 1, classIndex: 0, weight: 0.5 }];

/**
 * The gradient of the terms' scores at the rectified head's source (the
 * first relu), by hand: d score_c / d relu[p, m] = W[c, m] · [z[p, c] > 0] / (H·W);
 * and the gate of each position and term.
 */
function rectifiedGradientByHand(terms: readonly ScoreTerm[], z: Float64Array, batch: number): { expected: Float64Array; gates: boolean[] } {
  const expected = new Float64Array(batch * SIZE * SIZE * CHANNELS);
  const gates: boolean[] = [];
  for (const { image, classIndex, weight } of terms) {
    for (let p = 0; p < SIZE * SIZE; p++) {
      const open = z[(image * SIZE * SIZE + p) * CLASSES + classIndex]! > 0;
      gates.push(open);
      if (!open) continue;
      for (let m = 0; m < CHANNELS; m++) expected[(image * SIZE * SIZE + p) * CHANNELS + m]! += (weight * fcWeights[classIndex * CHANNELS + m]!) / (SIZE * SIZE);
    }
  }
  return { expected, gates };
}

/** The rectified head's classifier output z[image, p, class] = bias + Σ W · relu(conv), by hand in float64. */
function rectifiedByHand(conv: Float64Array, batch: number): Float64Array {
  const z = new Float64Array(batch * SIZE * SIZE * CLASSES);
  for (let i = 0; i < batch * SIZE * SIZE; i++) {
    for (let c = 0; c < CLASSES; c++) {
      let sum = fcBias[c]!;
      for (let m = 0; m < CHANNELS; m++) sum += fcWeights[c * CHANNELS + m]! * Math.max(conv[i * CHANNELS + m]!, 0);
      z[i * CLASSES + c] = sum;
    }
  }
  return z;
}

/** d(Σ weight · score)/d(relu output) by hand; `throughRelu`: d/d(conv output) instead. */
function gradientByHand(terms: readonly ScoreTerm[], conv: Float64Array, batch: number, throughRelu: boolean): Float64Array {
  const gradient = new Float64Array(batch * SIZE * SIZE * CHANNELS);
  for (const { image, classIndex, weight } of terms) {
    for (let p = 0; p < SIZE * SIZE; p++) {
      for (let m = 0; m < CHANNELS; m++) {
        const i = (image * SIZE * SIZE + p) * CHANNELS + m;
        const gate = throughRelu ? (conv[i]! > 0 ? 1 : 0) : 1;
        gradient[i]! += (weight * fcWeights[classIndex * CHANNELS + m]! * gate) / (SIZE * SIZE);
      }
    }
  }
  return gradient;
}

/** Σ weight · scores[image][class] as an objective; with `linear`, it says so through scoreTerms. */
function objectiveOf(terms: readonly ScoreTerm[], linear = true): Objective {
  const objective = (values: ForwardValues): tf.Scalar =>
    tf.tidy(() => {
      const mask = tf.buffer(values.scores.shape);
      for (const term of terms) mask.set(mask.get(term.image, term.classIndex) + term.weight, term.image, term.classIndex);
      return tf.sum(tf.mul(values.scores, mask.toTensor()));
    });
  return linear ? Object.assign(objective, { scoreTerms: () => terms }) : objective;
}

/** The objective of `terms` for the closed form alone: taping it (calling it) fails the test. */
function closedFormOnly(terms: readonly ScoreTerm[]): Objective {
  return Object.assign(
    (): tf.Scalar => {
      throw new Error('the tfjs tape ran where the closed form should have');
    },
    { scoreTerms: () => terms },
  );
}

interface Loaded {
  model: CamvizModel;
  executor: OrtExecutor;
  path: string;
}

async function loadWithOrt(path: string, options: { preprocess?: string } = {}): Promise<Loaded> {
  const model = await loadModel(path, options);
  const network = model.network();
  const trunk = await onnxTrunkOf(path, model.meta.sha256, network.graph, model.meta.inputSize);
  return { model, executor: await createOrtExecutor(network, trunk, { file: path }), path };
}

function closeTo(actual: ArrayLike<number>, expected: ArrayLike<number>, relative: number, what: string): void {
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  const difference = maxAbsDifference(actual, expected);
  assert.ok(difference <= relative * Math.max(scale, 1e-6), `${what}: differs by ${difference.toExponential(2)} (max |value| ${scale.toExponential(2)})`);
}

const node = (loaded: Loaded, name: string): GraphNode => loaded.executor.graph.findNodes(name).at(-1)!;

describe('the ORT executor on a tiny Conv/Relu/GAP/Gemm graph, against hand values and the Network', { skip: skipOrt }, () => {
  let folder: string;
  const loaded = new Map<string, Loaded>();
  before(async () => {
    await useBackend('wasm');
    folder = await mkdtemp(join(tmpdir(), 'camviz-ort-'));
    for (const [name, model] of [['dynamic', tinyModel()], ['fixed', tinyModel(1)], ['residual', residualModel()], ['conv head', convHeadModel()], ['pool head', poolHeadModel()], ['rectified head', rectifiedHeadModel()]] as const) {
      const path = join(folder, `${name}.onnx`);
      await writeFile(path, onnxModelBytes(model));
      loaded.set(name, await loadWithOrt(path, { preprocess: 'none' }));
    }
  });
  after(async () => {
    for (const { model } of loaded.values()) model.dispose();
    await rm(folder, { recursive: true, force: true });
  });

  for (const variant of ['dynamic', 'fixed'] as const) {
    test(`batch ${variant === 'dynamic' ? 'dynamic' : 'fixed at 1 (one run per image)'}: scores, layers and both gradient paths equal the hand values and the Network`, async () => {
      const tiny = loaded.get(variant)!;
      const batch = 2;
      const input = tf.tensor4d(randoms(batch * SIZE * SIZE * 3, 5), [batch, SIZE, SIZE, 3]);
      const hand = tinyByHand(input.dataSync() as Float32Array, batch);
      const [conv, relu] = [node(tiny, 'conv'), node(tiny, 'relu')];
      const layers = [conv, relu];
      const terms: ScoreTerm[] = [
        { image: 0, classIndex: 2, weight: 1 },
        { image: 1, classIndex: 0, weight: 0.5 },
        { image: 1, classIndex: 1, weight: -2 },
      ];
      const expectedObjective = terms.reduce((sum, term) => sum + term.weight * hand.scores[term.image * CLASSES + term.classIndex]!, 0);
      const network = tiny.executor.network;

      const forward = await tiny.executor.forward(input, { layers });
      const reference = await network.forward(input, { layers });
      closeTo(forward.scores.dataSync(), hand.scores, 1e-5, 'scores vs hand');
      closeTo(forward.layers.get(conv.path)!.dataSync(), hand.conv, 1e-5, 'conv output vs hand');
      assert.deepEqual(forward.layers.get(relu.path)!.shape, [batch, SIZE, SIZE, CHANNELS]);
      closeTo(forward.probabilities.dataSync(), reference.probabilities.dataSync(), 1e-5, 'probabilities vs Network');
      closeTo(forward.output.dataSync(), reference.output.dataSync(), 1e-5, 'output vs Network');
      disposeValues(forward);
      disposeValues(reference);

      // Relu output: the linear head, in closed form; conv output: the relu is in the way, so the tfjs tape.
      for (const [source, throughRelu] of [[relu, false], [conv, true]] as const) {
        const result = await tiny.executor.backward(input, [objectiveOf(terms)], { sources: [source], layers });
        const fromNetwork = await network.backward(input, [objectiveOf(terms)], { sources: [source], layers });
        const expected = gradientByHand(terms, hand.conv, batch, throughRelu);
        assert.deepEqual(result.gradients[0]![0]!.shape, [batch, SIZE, SIZE, CHANNELS]);
        closeTo(result.gradients[0]![0]!.dataSync(), expected, 1e-5, `gradient at ${source.path} vs hand`);
        closeTo(result.gradients[0]![0]!.dataSync(), fromNetwork.gradients[0]![0]!.dataSync(), 1e-5, `gradient at ${source.path} vs Network`);
        assert.ok(Math.abs(result.objectives[0]! - expectedObjective) <= 1e-5 * Math.abs(expectedObjective), `objective ${result.objectives[0]} vs ${expectedObjective}`);
        closeTo(result.values.layers.get(conv.path)!.dataSync(), hand.conv, 1e-5, 'backward values: conv output vs hand');
        closeTo(result.values.scores.dataSync(), hand.scores, 1e-5, 'backward values: scores vs hand');
        for (const outcome of [result, fromNetwork]) {
          disposeValues(outcome.values);
          tf.dispose(outcome.gradients.flat());
        }
      }
      input.dispose();
    });
  }

  test('passes in flight together, and passes one after another, each feed and join their own values (the executor reuses its buffers)', async () => {
    const tiny = loaded.get('dynamic')!;
    const conv = node(tiny, 'conv');
    const inputs = [1, 2, 3, 4].map((seed) => tf.tensor4d(randoms(2 * SIZE * SIZE * 3, 20 + seed), [2, SIZE, SIZE, 3]));
    const check = (values: ForwardValues, input: tf.Tensor4D, what: string): void => {
      const hand = tinyByHand(input.dataSync() as Float32Array, 2);
      closeTo(values.scores.dataSync(), hand.scores, 1e-5, `${what}: scores vs hand`);
      closeTo(values.layers.get(conv.path)!.dataSync(), hand.conv, 1e-5, `${what}: conv output vs hand`);
      disposeValues(values);
    };
    // Two at once (each takes its own input and output buffers), then two in turn (the buffers given back are taken again).
    const together = await Promise.all(inputs.slice(0, 2).map((input) => tiny.executor.forward(input, { layers: [conv] })));
    together.forEach((values, i) => check(values, inputs[i]!, `together ${i}`));
    for (const [i, input] of inputs.slice(2).entries()) check(await tiny.executor.forward(input, { layers: [conv] }), input, `in turn ${i}`);
    tf.dispose(inputs);
  });

  test('the closed-form head equals the tfjs tape from the same ORT values (objectives without scoreTerms) and the Network', async () => {
    const tiny = loaded.get('dynamic')!;
    const relu = node(tiny, 'relu');
    assert.ok(linearHeadsOf(tiny.executor.graph, relu.outputs[0]!, tiny.executor.score) !== undefined, 'the relu output has a linear head');
    assert.equal(linearHeadsOf(tiny.executor.graph, node(tiny, 'conv').outputs[0]!, tiny.executor.score), undefined, 'the relu is in the way of the conv output');
    const input = tf.tensor4d(randoms(3 * SIZE * SIZE * 3, 6), [3, SIZE, SIZE, 3]);
    const termSets: ScoreTerm[][] = [[{ image: 0, classIndex: 1, weight: 1 }], [{ image: 2, classIndex: 0, weight: 3 }, { image: 1, classIndex: 2, weight: 1 }]];
    const closed = await tiny.executor.backward(input, termSets.map((terms) => objectiveOf(terms)), { sources: [relu] });
    const taped = await tiny.executor.backward(input, termSets.map((terms) => objectiveOf(terms, false)), { sources: [relu] });
    const fromNetwork = await tiny.executor.network.backward(input, termSets.map((terms) => objectiveOf(terms)), { sources: [relu] });
    termSets.forEach((_, i) => {
      closeTo(closed.gradients[i]![0]!.dataSync(), taped.gradients[i]![0]!.dataSync(), 1e-5, `objective ${i}: closed form vs tape`);
      closeTo(closed.gradients[i]![0]!.dataSync(), fromNetwork.gradients[i]![0]!.dataSync(), 1e-5, `objective ${i}: closed form vs Network`);
      assert.ok(Math.abs(closed.objectives[i]! - taped.objectives[i]!) <= 1e-5 * Math.max(1, Math.abs(taped.objectives[i]!)));
    });
    for (const outcome of [closed, taped, fromNetwork]) {
      disposeValues(outcome.values);
      tf.dispose(outcome.gradients.flat());
    }
    input.dispose();
  });

  test('no classifier (the pooled relu output is the scores): the identity head, in closed form, gives the hand gradient and the Network\'s', async () => {
    const tiny = loaded.get('pool head')!;
    const relu = node(tiny, 'relu');
    const head = linearHeadsOf(tiny.executor.graph, relu.outputs[0]!, tiny.executor.score);
    assert.ok(head !== undefined, 'relu -> pool -> flatten is a linear head');
    assert.equal(head.kernel, undefined, 'the identity');
    assert.deepEqual([head.channels, head.classes], [CHANNELS, CHANNELS]);
    const input = tf.tensor4d(randoms(2 * SIZE * SIZE * 3, 13), [2, SIZE, SIZE, 3]);
    const hand = tinyByHand(input.dataSync() as Float32Array, 2);
    const terms: ScoreTerm[] = [{ image: 0, classIndex: 3, weight: 2 }, { image: 1, classIndex: 0, weight: -1 }, { image: 1, classIndex: 2, weight: 0.5 }];
    // d score_c / d relu[p, k] = [k = c] / (H·W).
    const expected = new Float64Array(2 * SIZE * SIZE * CHANNELS);
    for (const { image, classIndex, weight } of terms) for (let p = 0; p < SIZE * SIZE; p++) expected[(image * SIZE * SIZE + p) * CHANNELS + classIndex]! += weight / (SIZE * SIZE);
    const closed = await tiny.executor.backward(input, [objectiveOf(terms)], { sources: [relu] });
    const taped = await tiny.executor.backward(input, [objectiveOf(terms, false)], { sources: [relu] });
    const fromNetwork = await tiny.executor.network.backward(input, [objectiveOf(terms)], { sources: [relu] });
    closeTo(closed.gradients[0]![0]!.dataSync(), expected, 1e-6, 'closed form vs hand');
    closeTo(taped.gradients[0]![0]!.dataSync(), expected, 1e-5, 'tfjs tape from the ORT values vs hand');
    closeTo(fromNetwork.gradients[0]![0]!.dataSync(), expected, 1e-5, 'the Network vs hand');
    // The scores are the pooled relu: by hand, before the classifier the tiny model's hand values apply.
    const pooled = new Float64Array(2 * CHANNELS);
    for (let i = 0; i < hand.conv.length; i++) pooled[Math.floor(i / (SIZE * SIZE * CHANNELS)) * CHANNELS + (i % CHANNELS)]! += Math.max(hand.conv[i]!, 0) / (SIZE * SIZE);
    closeTo(closed.values.scores.dataSync(), pooled, 1e-5, 'scores vs hand');
    const objective = terms.reduce((sum, term) => sum + term.weight * pooled[term.image * CHANNELS + term.classIndex]!, 0);
    assert.ok(Math.abs(closed.objectives[0]! - objective) <= 1e-5 * Math.max(1, Math.abs(objective)), `objective ${closed.objectives[0]} vs ${objective}`);
    for (const outcome of [closed, taped, fromNetwork]) {
      disposeValues(outcome.values);
      tf.dispose(outcome.gradients.flat());
    }
    input.dispose();
  });

  test('a 1x1 Conv classifier rectified before the pooling (SqueezeNet\'s head): the closed form masks by its output, and gives the hand gradient, the tape\'s and the Network\'s', async () => {
    const tiny = loaded.get('rectified head')!;
    const relu = node(tiny, 'relu');
    const head = linearHeadsOf(tiny.executor.graph, relu.outputs[0]!, tiny.executor.score);
    assert.ok(head?.gate !== undefined, 'relu -> 1x1 conv -> relu -> pool -> flatten is a rectified head');
    assert.equal(head.gate.key, node(tiny, 'relu2').outputs[0]);
    assert.equal(linearHeadsOf(tiny.executor.graph, node(tiny, 'conv').outputs[0]!, tiny.executor.score), undefined, 'the first relu is in the way of the conv output');
    const batch = 2;
    const input = tf.tensor4d(randoms(batch * SIZE * SIZE * 3, 14), [batch, SIZE, SIZE, 3]);
    const hand = tinyByHand(input.dataSync() as Float32Array, batch);
    const z = rectifiedByHand(hand.conv, batch);
    const terms = RECTIFIED_TERMS;
    const { expected, gates } = rectifiedGradientByHand(terms, z, batch);
    assert.ok(gates.includes(true) && gates.includes(false), 'the classifier output is positive at some positions and not at others');
    const scores = new Float64Array(batch * CLASSES);
    for (let i = 0; i < z.length; i++) scores[Math.floor(i / (SIZE * SIZE * CLASSES)) * CLASSES + (i % CLASSES)]! += Math.max(z[i]!, 0) / (SIZE * SIZE);
    const closed = await tiny.executor.backward(input, [closedFormOnly(terms)], { sources: [relu] });
    const taped = await tiny.executor.backward(input, [objectiveOf(terms, false)], { sources: [relu] });
    const fromNetwork = await tiny.executor.network.backward(input, [objectiveOf(terms)], { sources: [relu] });
    closeTo(closed.values.scores.dataSync(), scores, 1e-5, 'scores vs hand');
    closeTo(closed.gradients[0]![0]!.dataSync(), expected, 1e-6, 'closed form vs hand');
    closeTo(taped.gradients[0]![0]!.dataSync(), expected, 1e-5, 'tfjs tape from the ORT values vs hand');
    closeTo(fromNetwork.gradients[0]![0]!.dataSync(), expected, 1e-5, 'the Network vs hand');
    const objective = terms.reduce((sum, term) => sum + term.weight * scores[term.image * CLASSES + term.classIndex]!, 0);
    assert.ok(Math.abs(closed.objectives[0]! - objective) <= 1e-5 * Math.max(1, Math.abs(objective)), `objective ${closed.objectives[0]} vs ${objective}`);
    for (const outcome of [closed, taped, fromNetwork]) {
      disposeValues(outcome.values);
      tf.dispose(outcome.gradients.flat());
    }
    input.dispose();
  });

  test('a rectified head whose gate ONNX does not hold: no closed form, the tfjs tape gives the hand gradient', async () => {
    const tiny = loaded.get('rectified head')!;
    const relu = node(tiny, 'relu');
    const gateKey = node(tiny, 'relu2').outputs[0]!;
    const network = tiny.executor.network;
    const trunk = await onnxTrunkOf(tiny.path, tiny.model.meta.sha256, network.graph, tiny.model.meta.inputSize);
    // As when an exporter fused the rectifier away: ONNX has no value for the gate.
    const withoutGate: OnnxTrunk = {
      cacheKey: `${trunk.cacheKey}|without its gate`,
      input: trunk.input,
      inputSize: trunk.inputSize,
      valueOf: (key) => (key === gateKey ? undefined : trunk.valueOf(key)),
      withOutputs: (names) => trunk.withOutputs(names),
    };
    assert.ok(trunk.valueOf(gateKey) !== undefined && withoutGate.valueOf(relu.outputs[0]!) !== undefined);
    const executor = await createOrtExecutor(network, withoutGate, { file: tiny.path });
    const batch = 2;
    const input = tf.tensor4d(randoms(batch * SIZE * SIZE * 3, 15), [batch, SIZE, SIZE, 3]);
    const hand = tinyByHand(input.dataSync() as Float32Array, batch);
    const { expected, gates } = rectifiedGradientByHand(RECTIFIED_TERMS, rectifiedByHand(hand.conv, batch), batch);
    assert.ok(gates.includes(true) && gates.includes(false), 'both gates');
    let taped = 0;
    const counted = Object.assign(
      (values: ForwardValues): tf.Scalar => {
        taped++;
        return objectiveOf(RECTIFIED_TERMS, false)(values);
      },
      { scoreTerms: () => RECTIFIED_TERMS },
    );
    try {
      const result = await executor.backward(input, [counted], { sources: [relu] });
      assert.ok(taped > 0, 'the tape ran: without its gate the closed form cannot');
      closeTo(result.gradients[0]![0]!.dataSync(), expected, 1e-5, 'the tape vs hand');
      disposeValues(result.values);
      tf.dispose(result.gradients.flat());
    } finally {
      input.dispose();
      await executor.dispose();
    }
  });

  test('a 1x1 Conv classifier: the closed-form head reads its ONNX weights as stored ([classes, channels]) before tfjs made its kernel, and the kernel after; both give the hand gradient', async () => {
    const tiny = loaded.get('conv head')!;
    const relu = node(tiny, 'relu');
    const input = tf.tensor4d(randoms(2 * SIZE * SIZE * 3, 12), [2, SIZE, SIZE, 3]);
    const hand = tinyByHand(input.dataSync() as Float32Array, 2);
    const terms: ScoreTerm[] = [{ image: 0, classIndex: 1, weight: 2 }, { image: 1, classIndex: 2, weight: -1 }];
    const asStored = linearHeadsOf(tiny.executor.graph, relu.outputs[0]!, tiny.executor.score);
    assert.ok(asStored !== undefined, 'relu -> pool -> 1x1 conv -> flatten is a linear head');
    assert.deepEqual([asStored.channelStride, asStored.classStride], [1, CHANNELS], 'read as ONNX stores it, before any kernel is made');
    const fromOrt = await tiny.executor.backward(input, [objectiveOf(terms)], { sources: [relu] });
    closeTo(fromOrt.gradients[0]![0]!.dataSync(), gradientByHand(terms, hand.conv, 2, false), 1e-5, 'closed form from the stored weights vs hand');
    closeTo(fromOrt.values.scores.dataSync(), hand.scores, 1e-5, 'scores vs hand');
    // A tfjs pass makes the classifier's kernel (tfjs' layout), which frees the stored weights.
    const fromNetwork = await tiny.executor.network.backward(input, [objectiveOf(terms)], { sources: [relu] });
    closeTo(fromNetwork.gradients[0]![0]!.dataSync(), gradientByHand(terms, hand.conv, 2, false), 1e-5, 'the Network vs hand');
    const fromKernel = linearHeadsOf(tiny.executor.graph, relu.outputs[0]!, tiny.executor.score)!;
    assert.deepEqual([fromKernel.channelStride, fromKernel.classStride], [CLASSES, 1], 'read from the kernel once it is made');
    assert.ok(asStored.kernel !== undefined && fromKernel.kernel !== undefined, 'a classifier has a kernel');
    for (let k = 0; k < CHANNELS; k++) {
      for (let c = 0; c < CLASSES; c++) {
        const expected = Math.fround(fcWeights[c * CHANNELS + k]!);
        assert.equal(asStored.kernel[k * asStored.channelStride + c * asStored.classStride], expected, `W[${k}, ${c}] as stored`);
        assert.equal(fromKernel.kernel[k * fromKernel.channelStride + c * fromKernel.classStride], expected, `W[${k}, ${c}] from the kernel`);
      }
    }
    for (const outcome of [fromOrt, fromNetwork]) {
      disposeValues(outcome.values);
      tf.dispose(outcome.gradients.flat());
    }
    input.dispose();
  });

  test('a source whose downstream part also reads a value from before it (a skip: the frontier) gets it from ORT', async () => {
    const residual = loaded.get('residual')!;
    const source = node(residual, 'relu');
    const plan = residual.executor.network.backwardPlan({ sources: [source] });
    assert.deepEqual(plan.frontier, [node(residual, 'conv').outputs[0]]);
    const input = tf.tensor4d(randoms(2 * SIZE * SIZE * 3, 11), [2, SIZE, SIZE, 3]);
    const terms: ScoreTerm[] = [{ image: 1, classIndex: 2, weight: 1 }, { image: 0, classIndex: 1, weight: -1 }];
    const layers = [node(residual, 'add')];
    const fromOrt = await residual.executor.backward(input, [objectiveOf(terms)], { sources: [source], layers });
    const fromNetwork = await residual.executor.network.backward(input, [objectiveOf(terms)], { sources: [source], layers });
    closeTo(fromOrt.gradients[0]![0]!.dataSync(), fromNetwork.gradients[0]![0]!.dataSync(), 1e-5, 'gradient');
    closeTo(fromOrt.values.layers.get(layers[0]!.path)!.dataSync(), fromNetwork.values.layers.get(layers[0]!.path)!.dataSync(), 1e-5, 'add output');
    closeTo(fromOrt.values.scores.dataSync(), fromNetwork.values.scores.dataSync(), 1e-5, 'scores');
    assert.ok(Math.abs(fromOrt.objectives[0]! - fromNetwork.objectives[0]!) <= 1e-5 * Math.max(1, Math.abs(fromNetwork.objectives[0]!)));
    for (const outcome of [fromOrt, fromNetwork]) {
      disposeValues(outcome.values);
      tf.dispose(outcome.gradients.flat());
    }
    input.dispose();
  });

  for (const variant of ['dynamic', 'fixed'] as const) {
    test(`batch ${variant}: forwardHost of NCHW data equals forward of the NHWC tensor; hooks, another size and other layouts are served through the tensor`, async () => {
      const tiny = loaded.get(variant)!;
      const batch = 3;
      const input = tf.tensor4d(randoms(batch * SIZE * SIZE * 3, 12), [batch, SIZE, SIZE, 3]);
      const nhwc = input.dataSync() as Float32Array;
      const nchw = tf.tidy(() => tf.transpose(input, [0, 3, 1, 2]).dataSync() as Float32Array);
      const layers = [node(tiny, 'relu')];
      const shape = [batch, SIZE, SIZE, 3] as const;
      assert.equal(tiny.executor.hostInputLayout(SIZE, SIZE, layers), 'nchw');
      assert.equal(tiny.executor.hostInputLayout(SIZE + 1, SIZE, layers), undefined, 'another input size');
      const fromTensor = await tiny.executor.forward(input, { layers });
      const expected = [fromTensor.scores, fromTensor.probabilities, fromTensor.output, fromTensor.layers.get(layers[0]!.path)!].map((tensor) => Array.from(tensor.dataSync()));
      disposeValues(fromTensor);
      const same = async (values: Promise<ForwardValues>, what: string): Promise<void> => {
        const got = await values;
        const actual = [got.scores, got.probabilities, got.output, got.layers.get(layers[0]!.path)!].map((tensor) => Array.from(tensor.dataSync()));
        disposeValues(got);
        actual.forEach((values, i) => closeTo(values, expected[i]!, 1e-5, `${what}: value ${i}`));
      };
      const round = async (): Promise<void> => {
        await same(tiny.executor.forwardHost(nchw, 'nchw', shape, { layers }), 'NCHW data straight to ORT');
        await same(tiny.executor.forwardHost(nhwc, 'same', shape, { layers }), 'NHWC data, through a tensor');
        const handle = registerForwardHook(node(tiny, 'conv').layer, () => undefined);
        try {
          assert.equal(tiny.executor.hostInputLayout(SIZE, SIZE, layers), undefined, 'a hooked model');
          await same(tiny.executor.forwardHost(nchw, 'nchw', shape, { layers }), 'a hooked model, on the Network');
        } finally {
          handle.remove();
        }
        await assert.rejects(tiny.executor.forwardHost(nchw.subarray(1), 'nchw', shape), /forwardHost: .* values for a batch of \[3, 8, 8, 3\]/);
      };
      await round(); // the Network's first hooked pass keeps what it caches
      const tensorsBefore = tf.memory().numTensors;
      await round();
      assert.equal(tf.memory().numTensors, tensorsBefore);
      input.dispose();
    });

    test(`batch ${variant}: Score-CAM through ORT's host input (masks built as NCHW data) equals Score-CAM through tensors, exactly`, async () => {
      const tiny = loaded.get(variant)!;
      const input = tf.tensor4d(randoms(2 * SIZE * SIZE * 3, 13), [2, SIZE, SIZE, 3]);
      const executor = tiny.executor;
      // The same ORT executor seen only through the Executor interface: Score-CAM then passes tensors.
      const throughTensors: Executor = {
        graph: executor.graph,
        score: executor.score,
        lastBackwardTimings: executor.lastBackwardTimings,
        forward: (inputs, options) => executor.forward(inputs, options),
        backward: (inputs, objectives, options) => executor.backward(inputs, objectives, options),
      };
      const maps = async (on: Executor): Promise<number[][]> => {
        const method = new ScoreCam();
        method.batchSize = 3; // 4 channels: a full chunk, then a short one
        const results = await method.compute(on, { input, layers: [node(tiny, 'conv')], classes: { kind: 'explicit', classes: [1, 2] } });
        return results.flatMap((perImage) => perImage.map((result) => Array.from(result.map.data)));
      };
      try {
        const fromHost = await maps(executor);
        assert.deepEqual(fromHost, await maps(throughTensors));
        assert.ok(fromHost.some((map) => map.some((value) => value > 0)), 'the maps are not all zero');
      } finally {
        input.dispose();
      }
    });
  }

  test('backward to the input (guided backprop) and hooked models run on the Network', async () => {
    const tiny = loaded.get('dynamic')!;
    const input = tf.tensor4d(randoms(SIZE * SIZE * 3, 7), [1, SIZE, SIZE, 3]);
    const toInput = await tiny.executor.backward(input, [objectiveOf([{ image: 0, classIndex: 0, weight: 1 }])], { sources: 'input' });
    const networkToInput = await tiny.executor.network.backward(input, [objectiveOf([{ image: 0, classIndex: 0, weight: 1 }])], { sources: 'input' });
    assert.deepEqual(toInput.gradients[0]![0]!.shape, [1, SIZE, SIZE, 3]);
    closeTo(toInput.gradients[0]![0]!.dataSync(), networkToInput.gradients[0]![0]!.dataSync(), 1e-6, 'input gradient');
    for (const outcome of [toInput, networkToInput]) {
      disposeValues(outcome.values);
      tf.dispose(outcome.gradients.flat());
    }
    // A forward hook that doubles the classifier's output: ORT cannot fire it, the Network does.
    const plain = await tiny.executor.forward(input);
    const handle = registerForwardHook(node(tiny, 'fc').layer, (_layer, _inputs, output) => tf.mul(output as tf.Tensor, 2));
    try {
      const hooked = await tiny.executor.forward(input);
      closeTo(hooked.scores.dataSync(), Array.from(plain.scores.dataSync(), (score) => score * 2), 1e-6, 'hooked scores');
      disposeValues(hooked);
    } finally {
      handle.remove();
    }
    const unhooked = await tiny.executor.forward(input);
    closeTo(unhooked.scores.dataSync(), plain.scores.dataSync(), 1e-6, 'scores once the hook is removed');
    disposeValues(unhooked);
    disposeValues(plain);
    input.dispose();
  });

  test('the tensor count stays flat over 20 forward, closed-form and taped backward calls', async () => {
    const tiny = loaded.get('fixed')!;
    const [conv, relu] = [node(tiny, 'conv'), node(tiny, 'relu')];
    const input = tf.tensor4d(randoms(2 * SIZE * SIZE * 3, 8), [2, SIZE, SIZE, 3]);
    const round = async (): Promise<void> => {
      disposeValues(await tiny.executor.forward(input, { layers: [relu] }));
      for (const source of [relu, conv]) {
        const result = await tiny.executor.backward(input, [objectiveOf([{ image: 1, classIndex: 1, weight: 1 }])], { sources: [source], layers: [relu] });
        disposeValues(result.values);
        tf.dispose(result.gradients.flat());
      }
    };
    await round();
    const count = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) await round();
    assert.equal(tf.memory().numTensors, count);
    input.dispose();
  });

  test(`sessions (one per set of fetched layers) stay at most ${MAX_CACHED_SESSIONS}, and evicted ones are made again`, async () => {
    const tiny = loaded.get('dynamic')!;
    const names = ['conv', 'relu', 'pool', 'flatten', 'fc'];
    // Every non-empty subset of the five layers: 31 sets, most of them a session of their own (a set a session made before holds runs on it).
    const sets = Array.from({ length: 31 }, (_, mask) => names.filter((_, i) => ((mask + 1) >> i) & 1).map((name) => node(tiny, name)));
    const input = tf.tensor4d(randoms(SIZE * SIZE * 3, 9), [1, SIZE, SIZE, 3]);
    const hand = tinyByHand(input.dataSync() as Float32Array, 1);
    for (const layers of [...sets, ...sets.slice(0, 3)]) {
      const values = await tiny.executor.forward(input, { layers });
      closeTo(values.scores.dataSync(), hand.scores, 1e-5, `scores fetching ${layers.map((layer) => layer.path).join(', ')}`);
      disposeValues(values);
      assert.ok(cachedSessionCount() <= MAX_CACHED_SESSIONS, `${cachedSessionCount()} sessions cached`);
    }
    input.dispose();
  });

  test('a model ONNX Runtime refuses (an op of an unknown domain) is an OrtModelRejectedError naming the file', async () => {
    const tiny = loaded.get('dynamic')!;
    const unknown: TestModel = {
      ...tinyModel(),
      nodes: [...tinyModel().nodes.slice(0, -1), { name: 'fc', opType: 'Frobnicate', domain: 'com.example.camviz', inputs: ['flat_out'], outputs: ['logits'] }],
      opsets: { 'com.example.camviz': 1 },
    };
    const trunk = await onnxTrunkOf(tiny.path, tiny.model.meta.sha256, tiny.executor.graph, tiny.model.meta.inputSize);
    const rejected = { ...trunk, cacheKey: `${trunk.cacheKey}:unknown-op`, withOutputs: () => onnxModelBytes(unknown) };
    await assert.rejects(createOrtExecutor(tiny.executor.network, rejected, { file: '/models/frobnicate.onnx' }), (error: unknown) => {
      assert.ok(error instanceof OrtModelRejectedError);
      assert.match(error.describe(), /^ONNX Runtime refuses the model: .*Frobnicate.* \(\/models\/frobnicate\.onnx\)$/);
      assert.doesNotMatch(error.describe(), /\n/);
      return true;
    });
  });

  test('the trunk maps graph values to the ONNX values (NCHW for NHWC feature maps), and adds outputs once', async () => {
    const tiny = loaded.get('dynamic')!;
    const trunk = tiny.executor.trunk;
    assert.deepEqual(trunk.input, { name: 'input', layout: 'nchw' });
    assert.deepEqual(trunk.valueOf(node(tiny, 'relu').outputs[0]!), { name: 'relu_out', layout: 'nchw' });
    assert.deepEqual(trunk.valueOf(node(tiny, 'fc').outputs[0]!), { name: 'logits', layout: 'same' });
    const outputs = await tiny.executor.withSession([{ name: 'logits', layout: 'same' }, { name: 'relu_out', layout: 'nchw' }], async (session) => [...session.outputNames]);
    // The session may be one made before that holds more (an earlier test fetched conv_out too).
    assert.ok(['logits', 'relu_out'].every((name) => outputs.includes(name)), `session outputs: ${outputs.join(', ')}`);
  });

  test('the first session\'s optimised graph is kept in optimizedFolder and loaded by the next process\'s session; a damaged one is made again', async () => {
    const path = join(folder, 'optimised.onnx');
    await writeFile(path, onnxModelBytes(tinyModel()));
    const kept = join(folder, 'optimised-cache');
    const model = await loadModel(path, { preprocess: 'none' });
    const network = model.network();
    const trunk = await onnxTrunkOf(path, model.meta.sha256, network.graph, model.meta.inputSize);
    const input = tf.tensor4d(randoms(SIZE * SIZE * 3, 8), [1, SIZE, SIZE, 3]);
    const hand = tinyByHand(input.dataSync() as Float32Array, 1);
    /** A new executor with no session cached (as in a new process): its scores, and the folder's files. */
    const fresh = async (): Promise<string[]> => {
      releaseOrtSessions();
      const executor = await createOrtExecutor(network, trunk, { file: path, optimizedFolder: kept });
      const values = await executor.forward(input);
      closeTo(values.scores.dataSync(), hand.scores, 1e-5, 'scores vs hand');
      disposeValues(values);
      return readdir(kept);
    };
    try {
      const files = await fresh();
      assert.equal(files.length, 1, `one file, no temporary left: ${files.join(', ')}`);
      assert.match(files[0]!, /^[0-9a-f]{64}\.[0-9a-f]{32}\.ort$/, 'named <the model sha256>.<hash>.ort');
      const saved = join(kept, files[0]!);
      // A saved graph is renamed over its name (a new inode); a read only touches its mtime (the cache's last use).
      const written = (await stat(saved)).ino;
      assert.deepEqual(await fresh(), files);
      assert.equal((await stat(saved)).ino, written, 'loaded, not written again');
      await writeFile(saved, 'not an ONNX model');
      assert.deepEqual(await fresh(), files);
      assert.ok((await stat(saved)).size > 100, 'the damaged file is replaced by the optimised graph');
    } finally {
      input.dispose();
      model.dispose();
    }
  });

  test('one session serves the output, the scores and the expected layers; a request that a session holds makes no other', async () => {
    // A model file of its own, and no session cached (an earlier test fills the cache): sessions are counted from none.
    releaseOrtSessions();
    const path = join(folder, 'sessions.onnx');
    await writeFile(path, onnxModelBytes(tinyModel()));
    const model = await loadModel(path, { preprocess: 'none' });
    const network = model.network();
    const [conv, relu] = [network.graph.findNodes('conv').at(-1)!, network.graph.findNodes('relu').at(-1)!];
    const trunk = await onnxTrunkOf(path, model.meta.sha256, network.graph, model.meta.inputSize);
    const before = cachedSessionCount();
    assert.equal(before, 0);
    const executor = await createOrtExecutor(network, trunk, { file: path, expectedLayers: [relu] });
    const input = tf.tensor4d(randoms(2 * SIZE * SIZE * 3, 7), [2, SIZE, SIZE, 3]);
    const hand = tinyByHand(input.dataSync() as Float32Array, 2);
    const terms: ScoreTerm[] = [{ image: 1, classIndex: 2, weight: 1 }];
    try {
      assert.equal(cachedSessionCount() - before, 1, 'createOrtExecutor makes one session');
      // Grad-CAM at the expected layer (closed form), a forward pass with it, one without: all on that session.
      const grad = await executor.backward(input, [objectiveOf(terms)], { sources: [relu] });
      closeTo(grad.gradients[0]![0]!.dataSync(), gradientByHand(terms, hand.conv, 2, false), 1e-5, 'gradient at relu vs hand');
      const withLayer = await executor.forward(input, { layers: [relu] });
      const plain = await executor.forward(input);
      closeTo(plain.scores.dataSync(), hand.scores, 1e-5, 'scores vs hand');
      assert.equal(cachedSessionCount() - before, 1, 'requests the first session holds make no other session');
      // A layer it does not hold gets a session of its own, once; the first one still serves what it holds.
      const withConv = await executor.forward(input, { layers: [conv] });
      closeTo(withConv.layers.get(conv.path)!.dataSync(), hand.conv, 1e-5, 'conv output vs hand');
      const again = await executor.forward(input, { layers: [conv] });
      const plainAgain = await executor.forward(input, { layers: [relu] });
      assert.equal(cachedSessionCount() - before, 2, 'one more session, for the layer the first does not hold');
      for (const values of [grad.values, withLayer, plain, withConv, again, plainAgain]) disposeValues(values);
      tf.dispose(grad.gradients.flat());
    } finally {
      input.dispose();
      model.dispose();
    }
  });
  test('a rectified head: the first session holds its gate too, and the closed form at the expected layer makes no other session', async () => {
    releaseOrtSessions();
    const path = join(folder, 'rectified-sessions.onnx');
    await writeFile(path, onnxModelBytes(rectifiedHeadModel()));
    const model = await loadModel(path, { preprocess: 'none' });
    const network = model.network();
    const relu = network.graph.findNodes('relu').at(-1)!;
    const trunk = await onnxTrunkOf(path, model.meta.sha256, network.graph, model.meta.inputSize);
    const executor = await createOrtExecutor(network, trunk, { file: path, expectedLayers: [relu] });
    const input = tf.tensor4d(randoms(2 * SIZE * SIZE * 3, 15), [2, SIZE, SIZE, 3]);
    try {
      assert.equal(cachedSessionCount(), 1, 'createOrtExecutor makes one session');
      const grad = await executor.backward(input, [closedFormOnly([{ image: 0, classIndex: 1, weight: 1 }])], { sources: [relu] });
      assert.equal(cachedSessionCount(), 1, 'the closed form ran on it');
      disposeValues(grad.values);
      tf.dispose(grad.gradients.flat());
    } finally {
      input.dispose();
      model.dispose();
    }
  });
});

describe('loading ONNX Runtime', () => {
  const withModule = <T>(specifier: string, run: () => T): T => withEnvSync('CAMVIZ_ORT_MODULE', specifier, run);

  test('CAMVIZ_ORT_MODULE=/nonexistent: unavailable, saying it is not installed; createOrtExecutor throws OrtUnavailableError', async () => {
    const status = withModule('/nonexistent', () => loadOnnxRuntime());
    assert.equal(status.available, false);
    assert.match(!status.available ? status.reason : '', /^\/nonexistent is not installed$/);
    const saved = process.env['CAMVIZ_ORT_MODULE'];
    process.env['CAMVIZ_ORT_MODULE'] = '/nonexistent';
    try {
      await assert.rejects(createOrtExecutor(undefined as never, undefined as never), OrtUnavailableError);
    } finally {
      if (saved === undefined) delete process.env['CAMVIZ_ORT_MODULE'];
      else process.env['CAMVIZ_ORT_MODULE'] = saved;
    }
  });

  test('a broken install (throws when loaded, or is not ONNX Runtime) is unavailable with its reason', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'camviz-ort-broken-'));
    try {
      const throwing = join(folder, 'throwing.cjs');
      const empty = join(folder, 'empty.cjs');
      await writeFile(throwing, "throw new Error('libonnxruntime.so.1: cannot open shared object file');\n");
      await writeFile(empty, 'module.exports = {};\n');
      const broken = withModule(throwing, () => loadOnnxRuntime());
      assert.deepEqual(broken, { available: false, reason: `${throwing} does not load: libonnxruntime.so.1: cannot open shared object file` });
      const notOrt = withModule(empty, () => loadOnnxRuntime());
      assert.deepEqual(notOrt, { available: false, reason: `${empty} is not ONNX Runtime (no InferenceSession)` });
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });

  test('onnxruntime-node loads with its version', { skip: skipOrt }, () => {
    const status = loadOnnxRuntime();
    assert.ok(status.available);
    assert.match(status.available ? status.version : '', /^\d+\.\d+\.\d+$/);
  });
});

interface CamReference {
  class: number;
  cam_raw: number[][];
  cam_max: number;
}

const MODELS = ['mobilenet_v1_0.75_224', 'resnet18', 'mobilenet_v2', 'efficientnet_b0', 'squeezenet1_1'] as const;
/** MobileNet v1's sidecar says x = pixel / 127.5 - 1 (camviz's 'tf'); the others take torchvision's (camviz's ONNX default). */
const PREPROCESS: Record<string, string> = { 'mobilenet_v1_0.75_224': 'tf' };
/** Whose default layer reaches the scores through a rectified head (conv -> relu -> pool); the others' heads are linear. */
const RECTIFIED_HEAD = new Set(['squeezenet1_1']);

function readReference(model: string, layer: string, classIndex: number, method: string): CamReference | undefined {
  const file = join(referenceDir, `${model}__both_224__${layer}__c${classIndex}__${method}.json`);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as CamReference) : undefined;
}

for (const name of MODELS) {
  describe(`${name}: the ORT executor against the tfjs Network and PyTorch (both_224, wasm)`, { skip: skipShared }, () => {
    let loaded: Loaded;
    let input: tf.Tensor4D;
    let target: GraphNode;
    before(async () => {
      await useBackend('wasm');
      const preprocess = PREPROCESS[name];
      loaded = await loadWithOrt(join(onnxDir, `${name}.onnx`), preprocess === undefined ? {} : { preprocess });
      const image = await loadImage(join(onnxDir, 'images', 'both_224.png'), { size: loaded.model.meta.inputSize });
      input = inputTensor(loaded.model, [image.input]);
      target = camTargets(loaded.model, [])[0]!;
    });
    after(() => {
      input?.dispose();
      loaded?.model.dispose();
    });

    test('scores and the default layer\'s activations equal the Network (1e-4 of the maximum)', async () => {
      const fromOrt = await loaded.executor.forward(input, { layers: [target] });
      const fromNetwork = await loaded.executor.network.forward(input, { layers: [target] });
      closeTo(fromOrt.scores.dataSync(), fromNetwork.scores.dataSync(), 1e-4, 'scores');
      assert.deepEqual(fromOrt.layers.get(target.path)!.shape, fromNetwork.layers.get(target.path)!.shape);
      closeTo(fromOrt.layers.get(target.path)!.dataSync(), fromNetwork.layers.get(target.path)!.dataSync(), 1e-4, 'activations');
      disposeValues(fromOrt);
      disposeValues(fromNetwork);
    });

    test(`the default layer has a ${RECTIFIED_HEAD.has(name) ? 'rectified' : 'linear'} head (closed form used)`, () => {
      const head = linearHeadsOf(loaded.executor.graph, target.outputs[0]!, loaded.executor.score);
      assert.ok(head !== undefined);
      assert.equal(head.gate !== undefined, RECTIFIED_HEAD.has(name));
    });

    if (name === 'resnet18') {
      test('inside a residual block (its skip input read downstream: the frontier), the tape from ORT values equals the Network', async () => {
        const source = loaded.executor.graph.findNodes('/layer4/layer4.0/relu/Relu').at(-1)!;
        const plan = loaded.executor.network.backwardPlan({ sources: [source] });
        assert.ok(plan.frontier.length > 0, 'the skip input is read downstream of the source');
        const terms: ScoreTerm[] = [{ image: 0, classIndex: 590, weight: 1 }];
        const fromOrt = await loaded.executor.backward(input, [objectiveOf(terms)], { sources: [source], layers: [target] });
        const fromNetwork = await loaded.executor.network.backward(input, [objectiveOf(terms)], { sources: [source], layers: [target] });
        // The gradient is piecewise constant in the values (ReLU gates downstream): ORT's values differ from
        // tfjs' by up to 3e-5, enough to flip one gate, which moves the gradient by 1.1% of its maximum
        // (measured; tfjs' own values plus 1e-4 noise flip the same gate). A layout or feed error moves it by far more.
        closeTo(fromOrt.gradients[0]![0]!.dataSync(), fromNetwork.gradients[0]![0]!.dataSync(), 3e-2, 'gradient');
        closeTo(fromOrt.values.layers.get(target.path)!.dataSync(), fromNetwork.values.layers.get(target.path)!.dataSync(), 1e-4, 'layer4 output');
        assert.ok(Math.abs(fromOrt.objectives[0]! - fromNetwork.objectives[0]!) <= 1e-4 * Math.abs(fromNetwork.objectives[0]!));
        for (const outcome of [fromOrt, fromNetwork]) {
          disposeValues(outcome.values);
          tf.dispose(outcome.gradients.flat());
        }
      });
    }

    const methods = name === 'squeezenet1_1' ? ['gradcam', 'gradcampp', 'scorecam'] : ['gradcam', 'gradcampp'];
    for (const method of methods) {
      test(`${method}: maps equal explainBatch on the Network and the PyTorch references (1e-4 of the maximum)`, async () => {
        const layer = loaded.model.meta.targetLayer!;
        const classes = [243, 281, 590, 343, 984, 930].filter((classIndex) => readReference(name, layer, classIndex, method) !== undefined);
        assert.ok(classes.length > 0, `no ${method} reference for ${name}`);
        const request = { method, input, layers: [target], classes: { kind: 'explicit' as const, classes } };
        const fromOrt = await explainBatch(loaded.executor, request);
        const fromNetwork = await explainBatch(loaded.executor.network, request);
        classes.forEach((classIndex, i) => {
          const reference = readReference(name, layer, classIndex, method)!;
          const map = fromOrt.explanations[0]![i]!.map!;
          assert.equal(fromOrt.explanations[0]![i]!.classIndex, classIndex);
          const scale = Math.max(reference.cam_max, 1e-3);
          const vsTorch = maxAbsDifference(map.data, reference.cam_raw.flat()) / scale;
          const vsNetwork = maxAbsDifference(map.data, fromNetwork.explanations[0]![i]!.map!.data) / scale;
          assert.ok(vsTorch <= 1e-4, `class ${classIndex}: ${vsTorch.toExponential(2)} of the maximum from PyTorch`);
          assert.ok(vsNetwork <= 1e-4, `class ${classIndex}: ${vsNetwork.toExponential(2)} of the maximum from the Network`);
        });
      });
    }
  });
}
