/**
 * TensorFlow's gradients inside camviz's executor (src/engine/tensorflow-gradients.ts),
 * on cpu and wasm:
 * - dilated convolutions, which tfjs refuses to differentiate ("dilation
 *   rates greater than 1 are not yet supported in gradients"): Conv2D and
 *   DepthwiseConv2dNative kernels and tf.fused.conv2d, against the adjoint
 *   of the convolution written out in plain loops; tfjs-layers' Conv2D
 *   (linear, so tf.fused, and with a ReLU), Conv1D and SeparableConv2D, and
 *   a graph model's _FusedConv2D and DepthwiseConv2dNative, end to end: the
 *   input gradient and Grad-CAM through `explain` against the same loops;
 * - ReLU6 at exactly 0 and 6 (TensorFlow's Relu6Grad: 0 < x < 6) for a
 *   graph model's Relu6 and Keras' ReLU(max_value=6); ReLU(max_value=4)
 *   keeps clip_by_value's rule (the gradient at 4); forward values are
 *   tfjs' own;
 * - tfjs' own rules outside the executor are left as they are.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { TENSORFLOW_GRADIENTS, withTensorFlowGradients } from '../src/engine/tensorflow-gradients.js';
import { fusedDilatedConvGradConfig } from '../src/engine/dilated-conv.js';
import { Network, disposeValues } from '../src/executor/network.js';
import { explain, imageFromRgb, inputTensor, loadModel } from '../src/index.js';
import { forEachBackend } from './helpers/backends.js';
import { assertAllClose, exactRandomValues } from './helpers/numeric.js';
import { saveLayersModel } from './helpers/layers-model-file.js';
import { type GraphNodeSpec, attr, placeholder, writeGraphModel } from './helpers/graph-model.js';
import { type Correlation, correlate, correlationAdjoint, geometryOf } from './helpers/correlation.js';

const CORRELATIONS: readonly Correlation[] = [
  { input: [2, 7, 6, 3], filter: [3, 3, 3, 4], dilations: [2, 2], padding: 'same', depthwise: false },
  { input: [1, 9, 8, 2], filter: [3, 2, 2, 3], dilations: [3, 2], padding: 'valid', depthwise: false },
  { input: [1, 1, 12, 2], filter: [1, 3, 2, 3], dilations: [1, 2], padding: 'same', depthwise: false },
  { input: [1, 6, 6, 3], filter: [3, 3, 3, 1], dilations: [2, 2], padding: 'same', depthwise: true },
  { input: [2, 8, 7, 2], filter: [3, 3, 2, 2], dilations: [2, 3], padding: 'valid', depthwise: true },
  // A rate so large that only the centre tap falls inside (DeepLab's ASPP on a small map).
  { input: [1, 4, 4, 2], filter: [3, 3, 2, 2], dilations: [6, 6], padding: 'same', depthwise: false },
];

const describeConv = (conv: Correlation): string => `${conv.depthwise ? 'depthwise ' : ''}${conv.filter.slice(0, 2).join('x')} rate ${conv.dilations.join('x')} '${conv.padding}' on ${conv.input.join('x')}`;

// ---------------------------------------------------------------- models through camviz's executor

/** d(score[0, k])/d(input) through camviz's executor, and the score. */
async function executorGradient(model: tfl.LayersModel, input: tf.Tensor, k: number): Promise<{ gradient: Float32Array; score: number }> {
  const network = Network.of(model);
  const objective = (values: { scores: tf.Tensor2D }): tf.Scalar => tf.tidy(() => tf.reshape(tf.slice(values.scores, [0, k], [1, 1]), []) as tf.Scalar);
  const result = await network.backward(input, [objective], { sources: 'input', layers: [] });
  const gradient = result.gradients[0]![0]!.dataSync() as Float32Array;
  const score = result.values.scores.dataSync()[k]!;
  tf.dispose(result.gradients.flat());
  disposeValues(result.values);
  return { gradient, score };
}

/** A Dense head [inputs, units] without bias applied to `pooled`, its kernel set to known values. */
function denseHead(pooled: tfl.SymbolicTensor, units: number, inputs: number, seed: number): { output: tfl.SymbolicTensor; kernel: number[] } {
  const kernel = exactRandomValues(inputs * units, seed);
  const layer = tfl.layers.dense({ units, useBias: false, name: 'logits' });
  const output = layer.apply(pooled) as tfl.SymbolicTensor;
  layer.setWeights([tf.tensor2d(kernel, [inputs, units])]);
  return { output, kernel };
}

/** dScore/dA of score = Dense(k)(mean over positions of A [1, cells, channels]): W[:, k] / cells at every position. */
function pooledHeadGradient(cells: number, channels: number, kernel: readonly number[], units: number, k: number): Float64Array {
  return Float64Array.from({ length: cells * channels }, (_, i) => kernel[(i % channels) * units + k]! / cells);
}

function setRandomWeights(layer: tfl.layers.Layer, seed: number): number[][] {
  const weights = layer.getWeights().map((weight, i) => exactRandomValues(weight.size, seed + i));
  layer.setWeights(weights.map((values, i) => tf.tensor(values, layer.getWeights()[i]!.shape)));
  return weights;
}

forEachBackend((backend) => {
  describe('dilated convolutions differentiated in camviz\'s executor', () => {
    for (const conv of CORRELATIONS) {
      test(`the ${conv.depthwise ? 'DepthwiseConv2dNative' : 'Conv2D'} kernel, ${describeConv(conv)}: the written-out correlation's adjoint`, () => {
        const xValues = exactRandomValues(conv.input.reduce((a, b) => a * b, 1), 1);
        const filterValues = exactRandomValues(conv.filter.reduce((a, b) => a * b, 1), 2);
        const x = tf.tensor4d(xValues, conv.input);
        const filter = tf.tensor4d(filterValues, conv.filter);
        const { outHeight, outWidth, outChannels } = geometryOf(conv);
        const weights = exactRandomValues(conv.input[0] * outHeight * outWidth * outChannels, 3);
        const run = (input: tf.Tensor4D): tf.Tensor4D =>
          conv.depthwise ? tf.depthwiseConv2d(input, filter, 1, conv.padding, 'NHWC', conv.dilations) : tf.conv2d(input, filter, 1, conv.padding, 'NHWC', conv.dilations);
        const { value, grad } = tf.valueAndGrad((input: tf.Tensor) => withTensorFlowGradients(() => tf.sum(tf.mul(run(input as tf.Tensor4D), tf.tensor(weights, [conv.input[0], outHeight, outWidth, outChannels])))))(x);
        assertAllClose(grad.dataSync(), correlationAdjoint(conv, weights, filterValues), 1e-4, 'input gradient');
        const forward = correlate(conv, xValues, filterValues).reduce((sum, y, i) => sum + y * weights[i]!, 0);
        assert.ok(Math.abs(value.dataSync()[0]! - forward) <= 1e-3 * Math.max(1, Math.abs(forward)), 'forward value');
        tf.dispose([x, filter, value, grad]);
      });
    }

    test('the Conv2D kernel outside: tfjs\' own refusal, unchanged', () => {
      const x = tf.ones([1, 5, 5, 1]);
      const filter = tf.ones([3, 3, 1, 1]);
      assert.throws(() => tf.grad((input: tf.Tensor) => tf.sum(tf.conv2d(input as tf.Tensor4D, filter as tf.Tensor4D, 1, 'same', 'NHWC', 2)))(x), /dilation rates greater than 1/);
      tf.dispose([x, filter]);
    });

    for (const conv of CORRELATIONS.filter((candidate) => candidate.input[1] > 1)) {
      test(`tf.fused (bias, linear) of a layer known to be dilated, ${describeConv(conv)}: the adjoint; the filter's gradient is refused`, () => {
        const xValues = exactRandomValues(conv.input.reduce((a, b) => a * b, 1), 4);
        const filterValues = exactRandomValues(conv.filter.reduce((a, b) => a * b, 1), 5);
        const x = tf.tensor4d(xValues, conv.input);
        const filter = tf.tensor4d(filterValues, conv.filter);
        const { outHeight, outWidth, outChannels } = geometryOf(conv);
        const bias = tf.tensor1d(exactRandomValues(outChannels, 6));
        const weights = exactRandomValues(conv.input[0] * outHeight * outWidth * outChannels, 7);
        const rules = [...TENSORFLOW_GRADIENTS, fusedDilatedConvGradConfig({ padding: conv.padding, dilations: conv.dilations, depthwise: conv.depthwise })];
        const args = { filter, bias, strides: 1 as const, pad: conv.padding, dilations: conv.dilations };
        const run = (input: tf.Tensor4D): tf.Tensor4D => (conv.depthwise ? tf.fused.depthwiseConv2d({ x: input, ...args }) : tf.fused.conv2d({ x: input, ...args }));
        const objective = (input: tf.Tensor): tf.Scalar =>
          withTensorFlowGradients(() => tf.sum(tf.mul(run(input as tf.Tensor4D), tf.tensor(weights, [conv.input[0], outHeight, outWidth, outChannels]))), rules);
        const grad = tf.grad(objective)(x);
        assertAllClose(grad.dataSync(), correlationAdjoint(conv, weights, filterValues), 1e-4, 'input gradient');
        assert.throws(() => tf.grads((input: tf.Tensor, _filter: tf.Tensor) => objective(input))([x, filter]), /input only/);
        assert.equal(tf.getGradient('fusedConv2d__op'), undefined, 'the op scope has no gradient again');
        tf.dispose([x, filter, bias, grad]);
      });
    }

    /** A dilated layer between a feature conv and a pooled Dense head, with known weights. */
    function dilatedModel(dilated: tfl.layers.Layer, inputShape: number[], features: number, channels: number): { model: tfl.LayersModel; feat: tfl.layers.Layer; head: { kernel: number[] } } {
      const input = tfl.input({ shape: inputShape });
      const rank = inputShape.length - 1;
      const feat = rank === 1 ? tfl.layers.conv1d({ filters: features, kernelSize: 1, name: 'feat' }) : tfl.layers.conv2d({ filters: features, kernelSize: 1, name: 'feat' });
      const pool = rank === 1 ? tfl.layers.globalAveragePooling1d({}) : tfl.layers.globalAveragePooling2d({});
      const head = denseHead(pool.apply(dilated.apply(feat.apply(input))) as tfl.SymbolicTensor, 3, channels, 11);
      return { model: tfl.model({ inputs: input, outputs: head.output }), feat, head };
    }

    /** The feature conv's output (tfjs-layers' own forward, outside camviz). */
    function featuresOf(model: tfl.LayersModel, x: tf.Tensor): Float32Array {
      const sub = tfl.model({ inputs: model.inputs, outputs: model.getLayer('feat').output as tfl.SymbolicTensor });
      return tf.tidy(() => (sub.predict(x) as tf.Tensor).dataSync() as Float32Array);
    }

    for (const { name, make, conv } of [
      { name: 'Conv2D rate 2, linear (run as tf.fused)', make: () => tfl.layers.conv2d({ filters: 3, kernelSize: 3, dilationRate: 2, padding: 'same', name: 'dil' }), conv: { input: [1, 7, 7, 4], filter: [3, 3, 4, 3], dilations: [2, 2], padding: 'same', depthwise: false } },
      { name: 'Conv2D rate [2, 3] \'valid\', no bias', make: () => tfl.layers.conv2d({ filters: 3, kernelSize: 2, dilationRate: [2, 3], padding: 'valid', useBias: false, name: 'dil' }), conv: { input: [1, 7, 7, 4], filter: [2, 2, 4, 3], dilations: [2, 3], padding: 'valid', depthwise: false } },
      { name: 'Conv1D rate 2 (WaveNet-style)', make: () => tfl.layers.conv1d({ filters: 3, kernelSize: 3, dilationRate: 2, padding: 'same', name: 'dil' }), conv: { input: [1, 1, 11, 4], filter: [1, 3, 4, 3], dilations: [1, 2], padding: 'same', depthwise: false } },
    ] as { name: string; make: () => tfl.layers.Layer; conv: Correlation }[]) {
      test(`tfjs-layers' ${name}: the input gradient through the executor is the written-out one's`, async () => {
        const dilated = make();
        const is1d = conv.input[1] === 1;
        const inputShape = is1d ? [conv.input[2], 2] : [conv.input[1], conv.input[2], 2];
        const { model, feat, head } = dilatedModel(dilated, inputShape, conv.input[3], conv.filter[3]);
        const [featKernel] = setRandomWeights(feat, 20);
        const [kernel] = setRandomWeights(dilated, 30);
        const x = tf.tensor(exactRandomValues(inputShape.reduce((a, b) => a * b, 1), 40), [1, ...inputShape]);
        const { outHeight, outWidth } = geometryOf(conv);
        const k = 1;
        const dFeat = correlationAdjoint(conv, pooledHeadGradient(outHeight * outWidth, conv.filter[3], head.kernel, 3, k), kernel!);
        // Through the 1x1 feature conv: dx[p, i] = Σ_f dFeat[p, f] · K[i, f] (its bias adds nothing).
        const features = conv.input[3];
        const expected = Float64Array.from({ length: x.size }, (_, index) => {
          const [position, channel] = [Math.floor(index / 2), index % 2];
          let sum = 0;
          for (let f = 0; f < features; f++) sum += dFeat[position * features + f]! * featKernel![channel * features + f]!;
          return sum;
        });
        const { gradient } = await executorGradient(model, x, k);
        assertAllClose(gradient, expected, 1e-4, 'input gradient');
        x.dispose();
        model.dispose();
      });
    }

    test('tfjs-layers\' Conv2D rate 2 with a ReLU: the gradient gated where the pre-activation is positive', async () => {
      const input = tfl.input({ shape: [6, 6, 2] });
      const dilated = tfl.layers.conv2d({ filters: 3, kernelSize: 3, dilationRate: 2, padding: 'same', activation: 'relu', name: 'dil' });
      const head = denseHead(tfl.layers.globalAveragePooling2d({}).apply(dilated.apply(input)) as tfl.SymbolicTensor, 2, 3, 12);
      const model = tfl.model({ inputs: input, outputs: head.output });
      const [kernel, bias] = setRandomWeights(dilated, 50);
      const conv: Correlation = { input: [1, 6, 6, 2], filter: [3, 3, 2, 3], dilations: [2, 2], padding: 'same', depthwise: false };
      const xValues = exactRandomValues(72, 51);
      const x = tf.tensor4d(xValues, [1, 6, 6, 2]);
      const pre = correlate(conv, xValues, kernel!).map((value, i) => value + bias![i % 3]!);
      const dy = pooledHeadGradient(36, 3, head.kernel, 2, 0).map((value, i) => (pre[i]! > 0 ? value : 0));
      assert.ok(pre.some((value) => value > 0) && pre.some((value) => value < 0), 'the ReLU must gate');
      assertAllClose((await executorGradient(model, x, 0)).gradient, correlationAdjoint(conv, dy, kernel!), 1e-4, 'input gradient');
      x.dispose();
      model.dispose();
    });

    test('tfjs-layers\' SeparableConv2D rate 2 (a dilated depthwise kernel, then a pointwise one)', async () => {
      const input = tfl.input({ shape: [6, 6, 2] });
      const separable = tfl.layers.separableConv2d({ filters: 3, kernelSize: 3, dilationRate: 2, padding: 'same', useBias: false, name: 'dil' });
      const head = denseHead(tfl.layers.globalAveragePooling2d({}).apply(separable.apply(input)) as tfl.SymbolicTensor, 2, 3, 13);
      const model = tfl.model({ inputs: input, outputs: head.output });
      const [depthwise, pointwise] = setRandomWeights(separable, 60);
      const x = tf.tensor4d(exactRandomValues(72, 61), [1, 6, 6, 2]);
      const dPointwise = pooledHeadGradient(36, 3, head.kernel, 2, 1);
      const dDepthwise = Float64Array.from({ length: 72 }, (_, i) => [0, 1, 2].reduce((sum, o) => sum + dPointwise[Math.floor(i / 2) * 3 + o]! * pointwise![(i % 2) * 3 + o]!, 0));
      const conv: Correlation = { input: [1, 6, 6, 2], filter: [3, 3, 2, 1], dilations: [2, 2], padding: 'same', depthwise: true };
      assertAllClose((await executorGradient(model, x, 1)).gradient, correlationAdjoint(conv, dDepthwise, depthwise!), 1e-4, 'input gradient');
      x.dispose();
      model.dispose();
    });

    test('explain() Grad-CAM at a layer before a dilated Conv2D (a saved TF.js layers model): the written-out map', async () => {
      const folder = await mkdtemp(join(tmpdir(), `camviz-dilated-${backend}-`));
      const conv: Correlation = { input: [1, 8, 8, 4], filter: [3, 3, 4, 3], dilations: [2, 2], padding: 'same', depthwise: false };
      const { model, feat, head } = dilatedModel(tfl.layers.conv2d({ filters: 3, kernelSize: 3, dilationRate: 2, padding: 'same', name: 'dil' }), [8, 8, 3], 4, 3);
      setRandomWeights(feat, 70);
      const [kernel] = setRandomWeights(model.getLayer('dil'), 71);
      await saveLayersModel(model, folder);
      const loaded = await loadModel(folder);
      try {
        const rgb = Uint8Array.from({ length: 8 * 8 * 3 }, (_, i) => (i * 37) % 256);
        const image = await imageFromRgb(rgb, 8, 8, { size: loaded.meta.inputSize });
        const explanation = (await explain(loaded, [image], { method: 'gradcam', layers: ['feat'], classes: [2] }))[0]?.[0];
        const x = inputTensor(loaded, [image.input]);
        const activation = featuresOf(model, x);
        x.dispose();
        // Grad-CAM: channel weights the spatial mean of dScore/dA, the map relu(Σ_c α_c A_c).
        const dA = correlationAdjoint(conv, pooledHeadGradient(64, 3, head.kernel, 3, 2), kernel!);
        const alphas = [0, 1, 2, 3].map((c) => dA.filter((_, i) => i % 4 === c).reduce((a, b) => a + b, 0) / 64);
        const expected = Array.from({ length: 64 }, (_, p) => Math.max(0, alphas.reduce((sum, alpha, c) => sum + alpha * activation[p * 4 + c]!, 0)));
        assert.ok(expected.some((value) => value > 0), 'the map is not all zeros');
        assertAllClose(explanation!.map!.data, expected, 1e-4, 'Grad-CAM map');
      } finally {
        loaded.dispose();
        model.dispose();
        await rm(folder, { recursive: true, force: true });
      }
    });
  });
});

// ---------------------------------------------------------------- a graph model: _FusedConv2D and DepthwiseConv2dNative dilated, Relu6

describe('a TF.js graph model with dilated _FusedConv2D and DepthwiseConv2dNative nodes and a Relu6', () => {
  let folder: string;
  before(async () => {
    folder = await mkdtemp(join(tmpdir(), 'camviz-tf-gradients-graph-'));
  });
  after(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  const convAttr = (dilation: number, padding: string): Record<string, unknown> => ({
    T: attr.float,
    strides: attr.ints([1, 1, 1, 1]),
    padding: attr.string(padding),
    data_format: attr.string('NHWC'),
    dilations: attr.ints([1, dilation, dilation, 1]),
  });
  const conv: Correlation = { input: [1, 7, 7, 3], filter: [3, 3, 3, 3], dilations: [2, 2], padding: 'same', depthwise: false };
  const depthwise: Correlation = { input: [1, 7, 7, 3], filter: [3, 3, 3, 1], dilations: [2, 2], padding: 'valid', depthwise: true };
  const kernel = exactRandomValues(81, 80);
  const bias = exactRandomValues(3, 81);
  const depthwiseKernel = exactRandomValues(27, 82);
  const dense = exactRandomValues(6, 83);
  const nodes: GraphNodeSpec[] = [
    placeholder('image', [-1, 7, 7, 3]),
    { name: 'net/dil/Conv2D', op: '_FusedConv2D', input: ['image', 'net/dil/kernel', 'net/dil/bias'], attr: { ...convAttr(2, 'SAME'), num_args: attr.int(1), fused_ops: attr.strings(['BiasAdd']) } },
    { name: 'net/dw/depthwise', op: 'DepthwiseConv2dNative', input: ['net/dil/Conv2D', 'net/dw/kernel'], attr: convAttr(2, 'VALID') },
    { name: 'net/dw/Relu6', op: 'Relu6', input: ['net/dw/depthwise'], attr: { T: attr.float } },
    { name: 'net/pool/Mean', op: 'Mean', input: ['net/dw/Relu6', 'net/pool/axes'], attr: { T: attr.float, keep_dims: attr.bool(false) } },
    { name: 'net/logits/MatMul', op: 'MatMul', input: ['net/pool/Mean', 'net/logits/weights'], attr: { T: attr.float, transpose_a: attr.bool(false), transpose_b: attr.bool(false) } },
  ];
  const weights = [
    { name: 'net/dil/kernel', shape: [3, 3, 3, 3], dtype: 'float32' as const, data: kernel },
    { name: 'net/dil/bias', shape: [3], dtype: 'float32' as const, data: bias },
    { name: 'net/dw/kernel', shape: [3, 3, 3, 1], dtype: 'float32' as const, data: depthwiseKernel },
    { name: 'net/pool/axes', shape: [2], dtype: 'int32' as const, data: [1, 2] },
    { name: 'net/logits/weights', shape: [3, 2], dtype: 'float32' as const, data: dense },
  ];

  forEachBackend((backend) => {
    test(`the input gradient of a score: both dilated convolutions' adjoints, Relu6 gated as TensorFlow does (${backend})`, async () => {
      const model = await loadModel(await writeGraphModel(await mkdtemp(join(folder, `${backend}-`)), nodes, weights));
      const xValues = exactRandomValues(147, 84);
      const x = tf.tensor4d(xValues, [1, 7, 7, 3]);
      try {
        const hidden = correlate(conv, xValues, kernel).map((value, i) => value + bias[i % 3]!);
        const pre = correlate(depthwise, hidden, depthwiseKernel);
        const cells = pre.length / 3;
        const dRelu = pooledHeadGradient(cells, 3, dense, 2, 1).map((value, i) => (pre[i]! > 0 && pre[i]! < 6 ? value : 0));
        const expected = correlationAdjoint(conv, correlationAdjoint(depthwise, dRelu, depthwiseKernel), kernel);
        assertAllClose((await executorGradient(model.layersModel!, x, 1)).gradient, expected, 1e-4, 'input gradient');
      } finally {
        x.dispose();
        model.dispose();
      }
    });

    test(`Relu6 at 0, 6 and between: TensorFlow's Relu6Grad (0 < x < 6), forward values tfjs' own (${backend})`, async () => {
      const relu6Nodes: GraphNodeSpec[] = [
        placeholder('image', [-1, 2, 3, 3]),
        { name: 'net/act/Relu6', op: 'Relu6', input: ['image'], attr: { T: attr.float } },
        { name: 'net/pool/Sum', op: 'Sum', input: ['net/act/Relu6', 'net/pool/axes'], attr: { T: attr.float, keep_dims: attr.bool(false) } },
      ];
      const model = await loadModel(await writeGraphModel(await mkdtemp(join(folder, `relu6-${backend}-`)), relu6Nodes, [{ name: 'net/pool/axes', shape: [2], dtype: 'int32', data: [1, 2] }]));
      // Channel 1 of each position: -1, 0, 3, 6, 6.5, 5.999.
      const channel1 = [-1, 0, 3, 6, 6.5, 5.999];
      const x = tf.tensor4d(channel1.flatMap((value) => [1, value, 2]), [1, 2, 3, 3]);
      try {
        const { gradient, score } = await executorGradient(model.layersModel!, x, 1);
        assert.deepEqual(Array.from(gradient), [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert.ok(Math.abs(score - (3 + 6 + 6 + 5.999)) < 1e-5, `score ${score}`);
      } finally {
        x.dispose();
        model.dispose();
      }
    });
  });
});

// ---------------------------------------------------------------- Keras' ReLU(max_value)

forEachBackend(() => {
  describe('Keras ReLU layers in camviz\'s executor, as TensorFlow differentiates them', () => {
    /** Flatten -> the ReLU -> a Dense of ones: the score is the sum of the activations. */
    function reluModel(layer: tfl.layers.Layer, size: number): tfl.LayersModel {
      const input = tfl.input({ shape: [size] });
      const dense = tfl.layers.dense({ units: 1, useBias: false, kernelInitializer: 'ones' });
      return tfl.model({ inputs: input, outputs: dense.apply(layer.apply(input)) as tfl.SymbolicTensor });
    }

    for (const { name, layer, values, expected } of [
      { name: 'ReLU(max_value=6): tf.nn.relu6, none at 0 or 6', layer: () => tfl.layers.reLU({ maxValue: 6 }), values: [-1, 0, 3, 6, 7, 5.5], expected: [0, 0, 1, 0, 0, 1] },
      { name: 'Activation(\'relu6\'): none at 0 or 6', layer: () => tfl.layers.activation({ activation: 'relu6' }), values: [-1, 0, 3, 6, 7, 5.5], expected: [0, 0, 1, 0, 0, 1] },
      { name: 'ReLU(max_value=4): relu then clip_by_value, the gradient at 4 (ClipByValue\'s rule)', layer: () => tfl.layers.reLU({ maxValue: 4 }), values: [-1, 0, 3, 4, 5, 3.5], expected: [0, 0, 1, 1, 0, 1] },
      { name: 'ReLU(): none at 0', layer: () => tfl.layers.reLU({}), values: [-1, 0, 3, 6, 7, 5.5], expected: [0, 0, 1, 1, 1, 1] },
    ]) {
      test(name, async () => {
        const model = reluModel(layer(), values.length);
        const x = tf.tensor2d([values]);
        const { gradient, score } = await executorGradient(model, x, 0);
        assert.deepEqual(Array.from(gradient), expected);
        const forward = tf.tidy(() => (model.predict(x) as tf.Tensor).dataSync()[0]!);
        assert.equal(score, forward, 'forward value unchanged');
        x.dispose();
        model.dispose();
      });
    }

    test('outside the executor tfjs\' own rules are unchanged: relu6 and clipByValue pass the gradient at 6', () => {
      const x = tf.tensor1d([0, 3, 6]);
      const relu6 = tf.grad((t: tf.Tensor) => tf.sum(tf.relu6(t)))(x);
      const clipped = tf.grad((t: tf.Tensor) => tf.sum(tf.clipByValue(t, 0, 6)))(x);
      assert.deepEqual(Array.from(relu6.dataSync()), [0, 1, 1]);
      assert.deepEqual(Array.from(clipped.dataSync()), [1, 1, 1]);
      tf.dispose([x, relu6, clipped]);
    });

    test('the rules are registered for each layer\'s call only and put back (a name with none before has none again)', () => {
      const before = ['Max', 'Conv2D', 'DepthwiseConv2dNative', 'Relu6', 'ClipByValue'].map((name) => tf.getGradient(name));
      const fused = fusedDilatedConvGradConfig({ padding: 'same', dilations: [2, 2], depthwise: false });
      withTensorFlowGradients(() => {
        assert.equal(tf.getGradient('fusedConv2d__op'), fused);
        assert.notEqual(tf.getGradient('Relu6'), before[3]);
      }, [...TENSORFLOW_GRADIENTS, fused]);
      assert.deepEqual(['Max', 'Conv2D', 'DepthwiseConv2dNative', 'Relu6', 'ClipByValue'].map((name) => tf.getGradient(name)), before);
      assert.equal(tf.getGradient('fusedConv2d__op'), undefined);
    });
  });
});
