/**
 * The kernels an ONNX model runs, where they decide its speed against the
 * same network as a layers model (issue 11): a Conv with a bias is one
 * fused kernel whose gradient computes the input's gradient only. Values
 * and gradients are checked against tfjs' plain ops.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
// Loading tfjs-layers registers tfjs' gradients, as camviz's model loading does.
import '../src/engine/tfl.js';
import { laid } from '../src/model/onnx/layout.js';
import { type ConvGeometry, convView, runConv } from '../src/model/onnx/keras.js';
import { forEachBackend } from './helpers/backends.js';
import { maxAbsDifference } from './helpers/numeric.js';

/** Seeded values in [-1, 1). */
function seededValues(count: number, seed: number): number[] {
  let state = seed;
  return Array.from({ length: count }, () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 1073741824 - 1;
  });
}

function seeded(shape: number[], seed: number): tf.Tensor {
  return tf.tensor(seededValues(shape.reduce((a, b) => a * b, 1), seed), shape);
}

/** The kernels `run` calls, by kernel name (op scopes such as `conv2d__op` are left out). */
async function kernelsOf(run: () => tf.Tensor | tf.Tensor[]): Promise<string[]> {
  const info = await tf.profile(() => {
    const result = run();
    return result;
  });
  const backend = tf.getBackend();
  return info.kernels.map((kernel) => kernel.name).filter((name) => tf.getKernel(name, backend) !== undefined);
}

// ---------------------------------------------------------------- a Conv with a bias

interface ConvCase {
  what: string;
  /** ONNX weights [M, C/group, kh, kw]. */
  weights: number[];
  channels: number;
  depthwise: boolean;
  strides: [number, number];
  padding: ConvGeometry['padding'];
  inputSize: number;
}

const CONV_CASES: ConvCase[] = [
  { what: '3x3 stride 2, asymmetric explicit pads', weights: [4, 3, 3, 3], channels: 3, depthwise: false, strides: [2, 2], padding: [[0, 0], [0, 1], [0, 1], [0, 0]], inputSize: 8 },
  { what: '1x1 classifier', weights: [5, 4, 1, 1], channels: 4, depthwise: false, strides: [1, 1], padding: 'valid', inputSize: 3 },
  { what: '3x3 pads 1', weights: [4, 3, 3, 3], channels: 3, depthwise: false, strides: [1, 1], padding: 1, inputSize: 7 },
  { what: 'depthwise x2, pads 1', weights: [6, 1, 3, 3], channels: 3, depthwise: true, strides: [1, 1], padding: 1, inputSize: 7 },
  { what: 'depthwise, TF "same" at stride 2', weights: [3, 1, 3, 3], channels: 3, depthwise: true, strides: [2, 2], padding: 'same', inputSize: 8 },
];

forEachBackend((backend) => {
  for (const conv of CONV_CASES) {
    test(`${backend}: a Conv with a bias (${conv.what}) is one fused kernel; its input gradient is that of the plain ops, without the filter's`, async () => {
      const outChannels = conv.weights[0]!;
      const geometry: ConvGeometry = {
        depthwise: conv.depthwise,
        channels: conv.channels,
        weights: seeded(conv.weights, 11),
        bias: seeded([outChannels], 12),
        strides: conv.strides,
        dilationRate: [1, 1],
        padding: conv.padding,
      };
      const kernels = new Set<tf.Tensor>();
      const filter = convView(geometry, kernels).kernel.read() as tf.Tensor4D;
      const x = tf.mul(seeded([2, conv.inputSize, conv.inputSize, conv.channels], 13), 2) as tf.Tensor4D;
      const plain = (input: tf.Tensor): tf.Tensor => {
        const y = conv.depthwise
          ? tf.depthwiseConv2d(input as tf.Tensor4D, filter, conv.strides, conv.padding as 'valid' | 'same' | number)
          : tf.conv2d(input as tf.Tensor4D, filter, conv.strides, conv.padding);
        return tf.add(y, geometry.bias!);
      };
      const fused = (input: tf.Tensor): tf.Tensor => runConv(geometry, filter, laid(input, 'nhwc'));
      const expected = plain(x);
      const actual = fused(x);
      assert.deepEqual(actual.shape, expected.shape);
      assert.ok(maxAbsDifference(actual.dataSync(), expected.dataSync()) <= 1e-5, 'forward values');
      // A weighted sum, so that every output element's gradient differs.
      const weights = seeded(expected.shape, 14);
      const objective = (run: (input: tf.Tensor) => tf.Tensor) => (input: tf.Tensor): tf.Tensor => tf.sum(tf.mul(run(input), weights));
      const expectedGradient = tf.grad(objective(plain))(x);
      const gradient = tf.grad(objective(fused))(x);
      assert.deepEqual(gradient.shape, x.shape);
      const difference = maxAbsDifference(gradient.dataSync(), expectedGradient.dataSync());
      assert.ok(difference <= 1e-4, `input gradients differ by ${difference}`);
      assert.ok(tf.max(tf.abs(expectedGradient)).dataSync()[0]! > 0.1, 'the gradient is not vacuous');

      const forwardKernels = await kernelsOf(() => fused(x));
      assert.deepEqual(forwardKernels, [conv.depthwise ? 'FusedDepthwiseConv2D' : 'FusedConv2D']);
      const backwardKernels = await kernelsOf(() => tf.grad(objective(fused))(x));
      assert.deepEqual(backwardKernels.filter((name) => name.includes('Backprop')), [conv.depthwise ? 'DepthwiseConv2dNativeBackpropInput' : 'Conv2DBackpropInput']);
      tf.dispose([geometry.weights, geometry.bias!, ...kernels, x, expected, actual, weights, expectedGradient, gradient]);
    });
  }
});
