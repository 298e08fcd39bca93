/**
 * The kernels an ONNX model runs, where they decide its speed against the
 * same network as a layers model (issue 11): a Conv with a bias is one
 * fused kernel whose gradient computes the input's gradient only, and a
 * Reshape whose target is computed from its data's `Shape` (PyTorch's
 * `x.view(x.size(0), ...)`) runs no shape arithmetic. Values and gradients
 * are checked against tfjs' plain ops and the node-by-node interpreter.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
// Loading tfjs-layers registers tfjs' gradients, as camviz's model loading does.
import '../src/engine/tfl.js';
import { loadModel } from '../src/model/load.js';
import { interpretGraph, laid, toLayout } from '../src/model/onnx/interpret.js';
import { type ConvGeometry, type ConvLayerWeights, runConv, tfjsKernel, tfjsKernelShape } from '../src/model/onnx/keras.js';
import { parseOnnxModel } from '../src/model/onnx/parse.js';
import { asset, mobilenetDir, skipWithoutSharedAssets } from './helpers/assets.js';
import { forEachBackend } from './helpers/backends.js';
import { maxAbsDifference } from './helpers/numeric.js';
import { type TestModel, type TestNode, imageInputValue, onnxModelBytes } from './helpers/onnx.js';

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
async function kernelsOf(run: () => tf.Tensor | tf.Tensor[] | Promise<tf.Tensor | tf.Tensor[]>): Promise<string[]> {
  const info = await tf.profile(run);
  const backend = tf.getBackend();
  return info.kernels.map((kernel) => kernel.name).filter((name) => tf.getKernel(name, backend) !== undefined);
}

const count = (names: readonly string[], name: string): number => names.filter((item) => item === name).length;

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
      const filter = tfjsKernel(geometry) as tf.Tensor4D;
      const layerWeights: ConvLayerWeights = { ...geometry, kernel: () => filter, kernelShape: tfjsKernelShape(geometry), weightsAsStored: () => geometry.weights };
      const x = tf.mul(seeded([2, conv.inputSize, conv.inputSize, conv.channels], 13), 2) as tf.Tensor4D;
      const plain = (input: tf.Tensor): tf.Tensor => {
        const y = conv.depthwise
          ? tf.depthwiseConv2d(input as tf.Tensor4D, filter, conv.strides, conv.padding as 'valid' | 'same' | number)
          : tf.conv2d(input as tf.Tensor4D, filter, conv.strides, conv.padding);
        return tf.add(y, geometry.bias!);
      };
      const fused = (input: tf.Tensor): tf.Tensor => runConv(layerWeights, laid(input, 'nhwc'));
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
      tf.dispose([geometry.weights, geometry.bias!, filter, x, expected, actual, weights, expectedGradient, gradient]);
    });
  }
});

// ---------------------------------------------------------------- a Reshape's target from Shape

type TargetChain = 'gather' | 'slice' | 'shape of another value';

/**
 * MobileNet v1's head as its ONNX export writes it: Conv 3 -> 4 + Relu,
 * ReduceMean over H, W (keepdims 0: [N, 4]), Reshape to [N, 1, 1, 4] with N
 * from `Shape`, Transpose to NCHW, Conv 1x1 4 -> 5 with a bias, Flatten.
 * The batch entry of the target: `gather` Shape(pooled) -> Gather(0) ->
 * Unsqueeze; `slice` Shape(pooled) -> Slice(0:1); `shape of another value`
 * Shape(relu) -> Gather(0) -> Unsqueeze, which reads another value than the
 * Reshape's data.
 */
function headModel(chain: TargetChain): TestModel {
  const shaped = chain === 'shape of another value' ? 'relu' : 'pooled';
  const batch: TestNode[] =
    chain === 'slice'
      ? [
          { name: '/reshape/Shape', opType: 'Shape', inputs: [shaped], outputs: ['shape'] },
          { name: '/reshape/Slice', opType: 'Slice', inputs: ['shape', 'zeros1', 'ones1'], outputs: ['batch'] },
        ]
      : [
          { name: '/reshape/Shape', opType: 'Shape', inputs: [shaped], outputs: ['shape'] },
          { name: '/reshape/Gather', opType: 'Gather', inputs: ['shape', 'zero'], outputs: ['batch_scalar'], attributes: [{ name: 'axis', i: 0 }] },
          { name: '/reshape/Unsqueeze', opType: 'Unsqueeze', inputs: ['batch_scalar', 'zeros1'], outputs: ['batch'] },
        ];
  return {
    nodes: [
      { name: '/conv/Conv', opType: 'Conv', inputs: ['input', 'w1', 'b1'], outputs: ['conv'], attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }] },
      { name: '/relu/Relu', opType: 'Relu', inputs: ['conv'], outputs: ['relu'] },
      { name: '/pool/ReduceMean', opType: 'ReduceMean', inputs: ['relu'], outputs: ['pooled'], attributes: [{ name: 'axes', ints: [2, 3] }, { name: 'keepdims', i: 0 }] },
      ...batch,
      { name: '/reshape/Concat', opType: 'Concat', inputs: ['batch', 'rest'], outputs: ['target'], attributes: [{ name: 'axis', i: 0 }] },
      { name: '/reshape/Reshape', opType: 'Reshape', inputs: ['pooled', 'target'], outputs: ['reshaped'] },
      { name: '/reshape/Transpose', opType: 'Transpose', inputs: ['reshaped'], outputs: ['nchw'], attributes: [{ name: 'perm', ints: [0, 3, 1, 2] }] },
      { name: '/preds/Conv', opType: 'Conv', inputs: ['nchw', 'w2', 'b2'], outputs: ['logits4'] },
      { name: '/Flatten', opType: 'Flatten', inputs: ['logits4'], outputs: ['output'], attributes: [{ name: 'axis', i: 1 }] },
    ],
    inputs: [imageInputValue(6)],
    outputs: [{ name: 'output', shape: ['batch', 5] }],
    initializers: [
      { name: 'w1', dims: [4, 3, 3, 3], values: seededValues(108, 21) },
      { name: 'b1', dims: [4], values: [0.2, -0.1, 0.3, 0.1] },
      { name: 'zero', dims: [], dataType: 7, values: [0] },
      { name: 'zeros1', dims: [1], dataType: 7, values: [0] },
      { name: 'ones1', dims: [1], dataType: 7, values: [1] },
      { name: 'rest', dims: [3], dataType: 7, values: [1, 1, 4] },
      { name: 'w2', dims: [5, 4, 1, 1], values: seededValues(20, 22) },
      { name: 'b2', dims: [5], values: [0.5, -0.5, 0.25, 0, 1] },
    ],
  };
}

async function withModelFile<T>(model: TestModel, run: (path: string) => Promise<T>): Promise<T> {
  const folder = await mkdtemp(join(tmpdir(), 'camviz-onnx-kernels-'));
  try {
    const path = join(folder, 'm.onnx');
    await writeFile(path, onnxModelBytes(model));
    return await run(path);
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

/** The model's output for `input` (NHWC) as the ONNX interpreter computes it, node by node (the Shape chain included). */
function interpretedOutput(model: TestModel, input: tf.Tensor): tf.Tensor {
  const values = interpretGraph(parseOnnxModel(onnxModelBytes(model), 'm.onnx'), new Map([['input', laid(input, 'nhwc')]]), ['output']);
  const output = values.get('output')!;
  const stored = toLayout(output, 'onnx');
  if (stored !== output.tensor) output.tensor.dispose();
  return stored;
}

const SHAPE_KERNELS = ['Cast', 'Less', 'Select', 'GatherV2', 'Concat', 'Slice'];

forEachBackend((backend) => {
  for (const chain of ['gather', 'slice'] as const) {
    test(`${backend}: a Reshape whose batch comes from its data's Shape (${chain}) has a constant target: no shape layers or kernels, the interpreter's values at batch 1 and 3`, async () => {
      const model = headModel(chain);
      await withModelFile(model, async (path) => {
        const loaded = await loadModel(path, { preprocess: 'none' });
        try {
          const network = loaded.network();
          assert.deepEqual(
            network.graph.nodes.map((node) => node.layer.getClassName()),
            ['Conv2D', 'ReLU', 'GlobalAveragePooling2D', 'Reshape', 'Transpose', 'Conv2D', 'Flatten'],
          );
          for (const batch of [1, 3]) {
            const input = tf.mul(seeded([batch, 6, 6, 3], 23 + batch), 2);
            const expected = interpretedOutput(model, input);
            const values = await network.forward(input);
            assert.deepEqual(values.output.shape, [batch, 5]);
            const difference = maxAbsDifference(values.output.dataSync(), expected.dataSync());
            assert.ok(difference <= 1e-5, `batch ${batch}: built and interpreted differ by ${difference}`);
            tf.dispose([values.output, values.scores, values.probabilities]);
            const kernels = await kernelsOf(async () => {
              const run = await network.forward(input);
              tf.dispose([run.output, run.probabilities]);
              return run.scores;
            });
            assert.deepEqual(kernels.filter((name) => SHAPE_KERNELS.includes(name)), [], `batch ${batch}: ${kernels.join(' ')}`);
            // Both convolutions fused, the head's bias inside its kernel.
            assert.equal(count(kernels, 'FusedConv2D'), 2, kernels.join(' '));
            assert.equal(count(kernels, 'Add') + count(kernels, 'Conv2D'), 0, kernels.join(' '));
            tf.dispose([input, expected]);
          }
        } finally {
          loaded.dispose();
        }
      });
    });
  }

  test(`${backend}: a Reshape whose batch comes from the Shape of another value keeps its shape layers, with the interpreter's values at batch 3`, async () => {
    const model = headModel('shape of another value');
    await withModelFile(model, async (path) => {
      const loaded = await loadModel(path, { preprocess: 'none' });
      try {
        const network = loaded.network();
        const classes = network.graph.nodes.map((node) => node.layer.getClassName());
        for (const op of ['Shape', 'Gather', 'Unsqueeze', 'Concat']) assert.ok(classes.includes(op), `${op} in ${classes.join(' ')}`);
        const input = tf.mul(seeded([3, 6, 6, 3], 31), 2);
        const expected = interpretedOutput(model, input);
        const values = await network.forward(input);
        assert.deepEqual(values.output.shape, [3, 5]);
        assert.ok(maxAbsDifference(values.output.dataSync(), expected.dataSync()) <= 1e-5);
        tf.dispose([input, expected, values.output, values.scores, values.probabilities]);
      } finally {
        loaded.dispose();
      }
    });
  });

  test(`${backend}: Grad-CAM's backward through the folded head is the closed form (W·r / HW per channel) and computes no filter gradient`, async () => {
    const model = headModel('gather');
    await withModelFile(model, async (path) => {
      const loaded = await loadModel(path, { preprocess: 'none' });
      try {
        const network = loaded.network();
        const relu = network.graph.nodes.find((node) => node.layer.getClassName() === 'ReLU')!;
        const input = tf.mul(seeded([3, 6, 6, 3], 41), 2);
        const classWeights = seeded([3, 5], 42);
        const objective = (values: { scores: tf.Tensor }): tf.Scalar => tf.sum(tf.mul(values.scores, classWeights));
        const run = () => network.backward(input, [objective], { sources: [relu] });
        const result = await run();
        const [gradient] = result.gradients[0]!;
        // d/dA of sum_n,k r[n,k]·(W[k]·mean_hw(A[n]) + b[k]) = (r[n]·W)[c] / (H·W) at every position.
        const w2 = tf.tensor2d(seededValues(20, 22), [5, 4]);
        const perChannel = tf.div(tf.matMul(classWeights, w2), 36);
        const expected = tf.broadcastTo(tf.reshape(perChannel, [3, 1, 1, 4]), [3, 6, 6, 4]);
        assert.deepEqual(gradient!.shape, [3, 6, 6, 4]);
        const difference = maxAbsDifference(gradient!.dataSync(), expected.dataSync());
        assert.ok(difference <= 1e-6, `gradient differs from the closed form by ${difference}`);
        const kernels = await kernelsOf(async () => {
          const again = await run();
          tf.dispose([again.values.output, again.values.probabilities, again.values.scores]);
          return again.gradients.flat();
        });
        assert.deepEqual(kernels.filter((name) => name.includes('BackpropFilter')), [], kernels.join(' '));
        tf.dispose([input, classWeights, result.values.output, result.values.scores, result.values.probabilities, ...result.gradients.flat(), w2, perChannel, expected]);
      } finally {
        loaded.dispose();
      }
    });
  });
});

// ---------------------------------------------------------------- MobileNet v1: the ONNX export and the layers model

const mobilenetOnnx = asset('onnx', 'mobilenet_v1_0.75_224.onnx');
const skipMobilenet: string | false = skipWithoutSharedAssets || (existsSync(mobilenetOnnx) ? false : `the shared ONNX assets are absent (${mobilenetOnnx})`);

/** Kernel name -> calls, without the ones that move no data (Reshape) or copy a view (Identity). */
function computeKernels(names: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of names) if (name !== 'Reshape' && name !== 'Identity') counts[name] = (counts[name] ?? 0) + 1;
  return counts;
}

forEachBackend(
  () => {
    test('MobileNet v1: the ONNX export runs the layers model\'s kernels (no shape arithmetic, the head conv fused) and gives its logits at batch 1 and 3', { skip: skipMobilenet }, async () => {
      const onnx = await loadModel(mobilenetOnnx, { preprocess: 'tf' });
      const layers = await loadModel(mobilenetDir);
      try {
        const images = tf.randomUniform([3, 224, 224, 3], -1, 1, 'float32', 51);
        const scoresOf = async (model: typeof onnx, input: tf.Tensor): Promise<tf.Tensor> => {
          const values = await model.network().forward(input);
          tf.dispose([values.output, values.probabilities]);
          return values.scores;
        };
        const expected = await scoresOf(layers, images);
        const scale = tf.max(tf.abs(expected)).dataSync()[0]!;
        const batched = await scoresOf(onnx, images);
        assert.deepEqual(batched.shape, [3, 1000]);
        assert.ok(maxAbsDifference(batched.dataSync(), expected.dataSync()) <= 1e-4 * scale, 'batch 3: ONNX and layers logits');
        for (let i = 0; i < 3; i++) {
          const single = tf.slice(images, [i, 0, 0, 0], [1, 224, 224, 3]);
          const alone = await scoresOf(onnx, single);
          assert.deepEqual(alone.shape, [1, 1000]);
          assert.ok(maxAbsDifference(alone.dataSync(), tf.slice(expected, [i, 0], [1, 1000]).dataSync()) <= 1e-4 * scale, `image ${i} alone`);
          tf.dispose([single, alone]);
        }
        const single = tf.slice(images, [0, 0, 0, 0], [1, 224, 224, 3]);
        const onnxKernels = computeKernels(await kernelsOf(() => scoresOf(onnx, single)));
        const { Softmax: layersSoftmax, ...layersKernels } = computeKernels(await kernelsOf(() => scoresOf(layers, single)));
        // The layers model's softmax is one of its layers; the export has none, and its probabilities are the host's softmax (executor/softmax.ts).
        assert.equal(layersSoftmax, 1);
        assert.deepEqual(onnxKernels, layersKernels);
        assert.equal(onnxKernels['FusedConv2D'], 15);
        tf.dispose([images, expected, batched, single]);
      } finally {
        onnx.dispose();
        layers.dispose();
      }
    });
  },
  ['wasm'],
);
