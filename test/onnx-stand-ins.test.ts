/**
 * The planning pass's stand-ins (src/model/onnx/ops/common.ts): zeros of
 * an op's output shape, viewing one buffer the cpu backend holds, for the
 * outputs of ops that read image data. Each op gives the full run's shape,
 * layout and type and refuses what it refuses; shape arithmetic is still
 * computed, also when it passes through a vector of image size, and graphs
 * that reshape by it plan and run as ONNX computes them (by hand here).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { loadModel } from '../src/model/load.js';
import { releaseStandIns, zerosStandIn } from '../src/model/onnx/ops/common.js';
import { type LaidTensor, laid, runNode } from '../src/model/onnx/interpret.js';
import { forEachBackend } from './helpers/backends.js';
import { asset } from './helpers/assets.js';
import { existsSync } from 'node:fs';
import type { OnnxAttribute, OnnxNode } from '../src/model/onnx/types.js';
import { type TestModel, imageInputValue, onnxModelBytes } from './helpers/onnx.js';

/** Whether the cpu backend holds the tensor's data (the engine's record of where each tensor lives). */
function onCpuBackend(tensor: tf.Tensor): boolean {
  const info = (tf.engine().state as unknown as { tensorInfo: WeakMap<object, { backend: tf.KernelBackend }> }).tensorInfo.get(tensor.dataId);
  return info?.backend === tf.engine().findBackend('cpu');
}

test('stand-ins are zeros of the shape asked, on the cpu backend, all views of one buffer per type', () => {
  const big = zerosStandIn([1, 8, 16, 16], 'float32');
  const small = zerosStandIn([2, 3], 'float32');
  const ints = zerosStandIn([5], 'int32');
  try {
    assert.deepEqual([big.shape, big.dtype, small.shape, ints.dtype], [[1, 8, 16, 16], 'float32', [2, 3], 'int32']);
    for (const tensor of [big, small, ints]) {
      assert.ok(onCpuBackend(tensor));
      assert.ok(tensor.dataSync().every((value) => value === 0));
    }
    const bigValues = big.dataSync() as Float32Array;
    const smallValues = small.dataSync() as Float32Array;
    assert.equal(smallValues.buffer, bigValues.buffer, 'one buffer');
    assert.notEqual(ints.dataSync().buffer, bigValues.buffer, 'another per type');
  } finally {
    tf.dispose([big, small, ints]);
  }
  // A larger value needs a larger buffer; once released, the next stand-in has a buffer of its own.
  const first = zerosStandIn([4], 'float32');
  const larger = zerosStandIn([1, 64, 64, 64], 'float32');
  releaseStandIns();
  const afterRelease = zerosStandIn([4], 'float32');
  try {
    assert.notEqual(larger.dataSync().buffer, first.dataSync().buffer);
    assert.notEqual(afterRelease.dataSync().buffer, larger.dataSync().buffer);
    assert.ok(larger.dataSync().every((value) => value === 0));
  } finally {
    tf.dispose([first, larger, afterRelease]);
    releaseStandIns();
  }
});

test('a stand-in of a negative size is refused, as tfjs refuses such a tensor', () => {
  assert.throws(() => zerosStandIn([1, -7, -7, 4], 'float32'), /shape comprised of positive integers/);
});

const int = (value: number): OnnxAttribute => ({ kind: 'int', value });
const ints = (...value: number[]): OnnxAttribute => ({ kind: 'ints', value });
const float = (value: number): OnnxAttribute => ({ kind: 'float', value });

/** A value of `shape` ([N, C, H, W] as ONNX has it) with varied values of `dtype`, stored in `layout`. */
function value(shape: number[], dtype: 'float32' | 'int32' | 'bool' = 'float32', layout: 'onnx' | 'nhwc' = 'onnx'): LaidTensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const values = Array.from({ length: size }, (_, i) => (dtype === 'bool' ? i % 3 === 0 : dtype === 'int32' ? (i % 7) - 3 : Math.sin(i)));
  const tensor = tf.tensor(values as number[], shape, dtype);
  return layout === 'onnx' ? laid(tensor) : laid(tf.transpose(tensor, [0, 2, 3, 1]), 'nhwc');
}

interface StandInCase {
  name: string;
  op: string;
  inputs: () => (LaidTensor | undefined)[];
  attributes?: Record<string, OnnxAttribute>;
}

const image = (layout: 'onnx' | 'nhwc' = 'nhwc', dtype: 'float32' | 'int32' | 'bool' = 'float32'): LaidTensor => value([1, 4, 8, 8], dtype, layout);
const scalar = (x: number, dtype: 'float32' | 'int32' = 'float32'): LaidTensor => laid(tf.scalar(x, dtype));

/** Ops on image data whose stand-ins must agree with the full run. */
const AGREEING: StandInCase[] = [
  { name: 'Relu', op: 'Relu', inputs: () => [image()] },
  { name: 'LeakyRelu', op: 'LeakyRelu', inputs: () => [image('onnx')], attributes: { alpha: float(0.2) } },
  { name: 'Not on bool', op: 'Not', inputs: () => [image('nhwc', 'bool')] },
  { name: 'Add, a per-channel constant broadcast', op: 'Add', inputs: () => [image(), value([4, 1, 1])] },
  { name: 'Equal gives bool', op: 'Equal', inputs: () => [image(), image()] },
  { name: 'Div of int32', op: 'Div', inputs: () => [image('onnx', 'int32'), scalar(2, 'int32')] },
  { name: 'Pow, an int32 exponent', op: 'Pow', inputs: () => [image(), scalar(2, 'int32')] },
  { name: 'Mean of three', op: 'Mean', inputs: () => [image(), image(), image()] },
  { name: 'Where', op: 'Where', inputs: () => [image('nhwc', 'bool'), image(), scalar(0)] },
  { name: 'Clip(0, 6)', op: 'Clip', inputs: () => [image(), scalar(0), scalar(6)] },
  { name: 'Clip of int32 with min > max', op: 'Clip', inputs: () => [image('nhwc', 'int32'), scalar(5, 'int32'), scalar(2, 'int32')] },
  { name: 'MaxPool 2x2 stride 2', op: 'MaxPool', inputs: () => [image()], attributes: { kernel_shape: ints(2, 2), strides: ints(2, 2) } },
  { name: 'MaxPool of int32, ceil mode', op: 'MaxPool', inputs: () => [image('onnx', 'int32')], attributes: { kernel_shape: ints(3, 3), strides: ints(2, 2), ceil_mode: int(1) } },
  { name: 'AveragePool with pads', op: 'AveragePool', inputs: () => [image()], attributes: { kernel_shape: ints(3, 3), pads: ints(1, 1, 1, 1) } },
  { name: 'GlobalAveragePool of an NHWC value', op: 'GlobalAveragePool', inputs: () => [image()] },
  { name: 'GlobalAveragePool of an ONNX-layout value', op: 'GlobalAveragePool', inputs: () => [image('onnx')] },
  { name: 'GlobalMaxPool', op: 'GlobalMaxPool', inputs: () => [image()] },
  { name: 'ReduceMean over H and W, kept (a global pool)', op: 'ReduceMean', inputs: () => [image()], attributes: { axes: ints(2, 3) } },
  { name: 'ReduceMax over H, not kept: an NHWC int32 value reordered', op: 'ReduceMax', inputs: () => [image('nhwc', 'int32')], attributes: { axes: ints(2), keepdims: int(0) } },
  { name: 'ReduceMean of int32 over channels, not kept', op: 'ReduceMean', inputs: () => [image('nhwc', 'int32')], attributes: { axes: ints(1), keepdims: int(0) } },
  { name: 'ReduceSum, axes as an input', op: 'ReduceSum', inputs: () => [image(), laid(tf.tensor1d([-1, 1], 'int32'))], attributes: { keepdims: int(0) } },
  { name: 'ReduceL2 of an ONNX-layout value over every axis', op: 'ReduceL2', inputs: () => [image('onnx')], attributes: { keepdims: int(0) } },
  { name: 'Concat on channels', op: 'Concat', inputs: () => [image(), value([1, 2, 8, 8], 'float32', 'nhwc')], attributes: { axis: int(1) } },
  { name: 'MatMul of an NHWC value by a weight', op: 'MatMul', inputs: () => [image(), value([8, 5])] },
  { name: 'MatMul with broadcast batch dims', op: 'MatMul', inputs: () => [image('onnx'), value([4, 8, 3])] },
  { name: 'MatMul by a vector', op: 'MatMul', inputs: () => [image('onnx'), value([8])] },
  { name: 'MatMul of a vector by image data', op: 'MatMul', inputs: () => [value([8]), image('onnx')] },
  { name: 'MatMul of two image values (attention scores)', op: 'MatMul', inputs: () => [image('onnx'), image('onnx')] },
  { name: 'Gemm with transB and a bias', op: 'Gemm', inputs: () => [value([2, 6]), value([5, 6]), value([5])], attributes: { transB: int(1), alpha: float(0.5) } },
  { name: 'Gemm with transA, beta 0', op: 'Gemm', inputs: () => [value([6, 2]), value([6, 5]), value([2, 5])], attributes: { transA: int(1), beta: float(0) } },
  // tfjs' add broadcasts the product up to the bias' rank: the full run gives [1, 2, 5], and so must the plan.
  { name: 'Gemm with a bias of a higher rank', op: 'Gemm', inputs: () => [value([2, 6]), value([6, 5]), value([1, 2, 5])] },
];

/** What the full run refuses, the stand-in refuses. */
const REFUSED: StandInCase[] = [
  { name: 'Add of shapes that do not broadcast', op: 'Add', inputs: () => [image(), value([1, 3, 8, 8], 'float32', 'nhwc')] },
  { name: 'Where with a float condition', op: 'Where', inputs: () => [image(), image(), scalar(0)] },
  { name: 'Concat of other heights', op: 'Concat', inputs: () => [image(), value([1, 4, 7, 8], 'float32', 'nhwc')], attributes: { axis: int(1) } },
  { name: 'AveragePool of int32', op: 'AveragePool', inputs: () => [image('nhwc', 'int32')], attributes: { kernel_shape: ints(2, 2) } },
  { name: 'ReduceSum of a scalar over axis 0', op: 'ReduceSum', inputs: () => [scalar(3), laid(tf.tensor1d([0], 'int32'))] },
  { name: 'MatMul of inner dims that differ', op: 'MatMul', inputs: () => [image('onnx'), value([7, 5])] },
  { name: 'MatMul of batch dims that do not broadcast', op: 'MatMul', inputs: () => [image('onnx'), value([3, 8, 2])] },
  { name: 'Gemm of inner dims that differ', op: 'Gemm', inputs: () => [value([2, 6]), value([5, 6])] },
  { name: 'Gemm with a bias that does not broadcast', op: 'Gemm', inputs: () => [value([2, 6]), value([6, 5]), value([3])] },
  { name: 'Gelu with an unknown approximation', op: 'Gelu', inputs: () => [image()], attributes: { approximate: { kind: 'string', value: 'cubic' } } },
];

function opNode(op: string, inputs: number, attributes: Record<string, OnnxAttribute> = {}): OnnxNode {
  return { name: op, opType: op, domain: '', inputs: Array.from({ length: inputs }, (_, i) => `x${i}`), outputs: ['y'], attributes };
}

forEachBackend(() => {
  test('ops that read image data give stand-ins of the shape, layout and type the full run gives, without computing', () => {
    for (const { name, op, inputs, attributes } of AGREEING) {
      tf.tidy(() => {
        const values = inputs();
        const opsetOf = op === 'Gelu' ? 20 : 13;
        const [full] = runNode(opNode(op, values.length, attributes), values, opsetOf);
        const [standIn] = runNode(opNode(op, values.length, attributes), values, opsetOf, { shapesOnly: true });
        assert.deepEqual(standIn!.tensor.shape, full!.tensor.shape, name);
        assert.equal(standIn!.layout, full!.layout, name);
        assert.equal(standIn!.tensor.dtype, full!.tensor.dtype, name);
        assert.ok(onCpuBackend(standIn!.tensor) && standIn!.tensor.dataSync().every((element) => Number(element) === 0), `${name}: a stand-in`);
      });
    }
    releaseStandIns();
  });

  test('a stand-in refuses what the full run refuses', () => {
    for (const { name, op, inputs, attributes } of REFUSED) {
      tf.tidy(() => {
        const values = inputs();
        const opsetOf = op === 'Gelu' ? 20 : 13;
        assert.throws(() => runNode(opNode(op, values.length, attributes), values, opsetOf), `the full run refuses ${name}`);
        assert.throws(() => runNode(opNode(op, values.length, attributes), values, opsetOf, { shapesOnly: true }), `the stand-in refuses ${name}`);
      });
    }
    // A pool window past its input: refused naming the node, before a stand-in of a negative size is asked for.
    tf.tidy(() => assert.throws(() => runNode(opNode('MaxPool', 1, { kernel_shape: ints(12, 12) }), [image()], 13, { shapesOnly: true }), /ONNX node 'MaxPool' \(MaxPool\): a window of 12 over 8 cells/));
    releaseStandIns();
  });
});

const SIZE = 32;
const CHANNELS = 2;
const WEIGHTS = [0.5, -1, 2, 0.25, 1, -0.5]; // [2 out, 3 in], 1x1
const BIAS = [0.1, -0.2];

/** A graph of input [N, 3, 32, 32] -> the 1x1 Conv of WEIGHTS and BIAS (output 'c'), then `nodes` (ending in 'output'), with `initializers` beside the Conv's. */
function afterConv(nodes: TestModel['nodes'], initializers: NonNullable<TestModel['initializers']>): TestModel {
  return {
    nodes: [{ name: '/conv/Conv', opType: 'Conv', inputs: ['input', 'w', 'b'], outputs: ['c'] }, ...nodes],
    inputs: [imageInputValue(SIZE)],
    outputs: [{ name: 'output' }],
    initializers: [{ name: 'w', dims: [CHANNELS, 3, 1, 1], values: WEIGHTS }, { name: 'b', dims: [CHANNELS], values: BIAS }, ...initializers],
  };
}

/**
 * input [N, 3, 32, 32] -> 1x1 Conv (2 channels: 2,048 values, image data)
 * -> Relu -> Mul by 3, then reshaped to [N, C * 1024] where C * 1024 is
 * computed from the Relu's Shape: Gather (C), Mul by 1024, Concat with the
 * batch. The Mul of that arithmetic is small: were it a stand-in (zeros),
 * the target would be [N, 0].
 */
function reshapedByArithmetic(): TestModel {
  return afterConv(
    [
      { name: '/relu/Relu', opType: 'Relu', inputs: ['c'], outputs: ['r'] },
      { name: '/scale/Mul', opType: 'Mul', inputs: ['r', 'three'], outputs: ['m'] },
      { name: '/shape/Shape', opType: 'Shape', inputs: ['r'], outputs: ['s'] },
      { name: '/batch/Slice', opType: 'Slice', inputs: ['s', 'zero', 'one'], outputs: ['batch'] },
      { name: '/channels/Slice', opType: 'Slice', inputs: ['s', 'one', 'two'], outputs: ['channels'] },
      { name: '/width/Mul', opType: 'Mul', inputs: ['channels', 'pixels'], outputs: ['width'] },
      { name: '/target/Concat', opType: 'Concat', inputs: ['batch', 'width'], outputs: ['target'], attributes: [{ name: 'axis', i: 0 }] },
      { name: '/flat/Reshape', opType: 'Reshape', inputs: ['m', 'target'], outputs: ['output'] },
    ],
    [
      { name: 'three', dims: [], values: [3] },
      { name: 'zero', dims: [1], dataType: 7, values: [0] },
      { name: 'one', dims: [1], dataType: 7, values: [1] },
      { name: 'two', dims: [1], dataType: 7, values: [2] },
      { name: 'pixels', dims: [1], dataType: 7, values: [SIZE * SIZE] },
    ],
  );
}

/** The model by hand, in float64: NHWC input, the output in ONNX's order [N, C * H * W]; the ReLU and the scale by 3 unless said otherwise. */
function byHand(input: Float32Array, batch: number, { relu = true, scale = 3 }: { relu?: boolean; scale?: number } = {}): number[] {
  const out: number[] = [];
  for (let n = 0; n < batch; n++) {
    for (let c = 0; c < CHANNELS; c++) {
      for (let p = 0; p < SIZE * SIZE; p++) {
        let sum = BIAS[c]!;
        for (let k = 0; k < 3; k++) sum += WEIGHTS[c * 3 + k]! * input[(n * SIZE * SIZE + p) * 3 + k]!;
        out.push(scale * (relu ? Math.max(0, sum) : sum));
      }
    }
  }
  return out;
}

/**
 * Writes `graph`, loads it, checks the output shape the plan gives it, then
 * runs a batch of two varied images and compares the output, shape and
 * values, with `byHandOf`'s (float64) for that batch.
 */
async function assertPlansAndRunsAsByHand(graph: TestModel, planned: (number | null)[], byHandOf: (input: Float32Array, batch: number) => { shape: number[]; values: number[] }): Promise<void> {
  const folder = await mkdtemp(join(tmpdir(), 'camviz-stand-ins-'));
  try {
    const path = join(folder, 'm.onnx');
    await writeFile(path, onnxModelBytes(graph));
    const model = await loadModel(path, { preprocess: 'none' });
    try {
      assert.deepEqual(model.layersModel!.outputs[0]!.shape, planned);
      const batch = 2;
      const values = Float32Array.from({ length: batch * SIZE * SIZE * 3 }, (_, i) => Math.sin(i * 0.37) * 2);
      const input = tf.tensor4d(values, [batch, SIZE, SIZE, 3]);
      const result = model.layersModel!.predict(input) as tf.Tensor;
      try {
        const expected = byHandOf(values, batch);
        assert.deepEqual(result.shape, expected.shape);
        const got = result.dataSync();
        const worst = expected.values.reduce((max, value, i) => Math.max(max, Math.abs(value - got[i]!)), 0);
        assert.ok(worst < 1e-5, `largest difference ${worst}`);
      } finally {
        tf.dispose([input, result]);
      }
    } finally {
      model.dispose();
    }
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

test('shape arithmetic on a value of image size is computed: the graph reshapes by it, plans and runs as by hand', async () => {
  await assertPlansAndRunsAsByHand(reshapedByArithmetic(), [null, CHANNELS * SIZE * SIZE], (input, batch) => ({ shape: [batch, CHANNELS * SIZE * SIZE], values: byHand(input, batch) }));
});

/**
 * input [N, 3, 32, 32] -> 1x1 Conv (2 channels) -> reshaped to [-1, M]
 * where M = max(range(H * W) + 1) = 1,024, computed from the Conv's Shape:
 * shape arithmetic through a vector of 1,024 elements (Range, Add), which
 * is as large as image data but is no image data. A stand-in there (zeros)
 * would make M 1 and plan the output [null, 2].
 */
function reshapedThroughLargeArithmetic(): TestModel {
  return afterConv(
    [
      { name: '/s/Shape', opType: 'Shape', inputs: ['c'], outputs: ['s'] },
      { name: '/hw/Slice', opType: 'Slice', inputs: ['s', 'two', 'four'], outputs: ['hw'] },
      { name: '/n/ReduceProd', opType: 'ReduceProd', inputs: ['hw'], outputs: ['n'], attributes: [{ name: 'keepdims', i: 0 }] },
      { name: '/r/Range', opType: 'Range', inputs: ['zero_s', 'n', 'one_s'], outputs: ['r'] },
      { name: '/r1/Add', opType: 'Add', inputs: ['r', 'one_s'], outputs: ['r1'] },
      { name: '/m/ReduceMax', opType: 'ReduceMax', inputs: ['r1'], outputs: ['m'], attributes: [{ name: 'keepdims', i: 1 }] },
      { name: '/t/Concat', opType: 'Concat', inputs: ['minus1', 'm'], outputs: ['t'], attributes: [{ name: 'axis', i: 0 }] },
      { name: '/flat/Reshape', opType: 'Reshape', inputs: ['c', 't'], outputs: ['output'] },
    ],
    [
      { name: 'two', dims: [1], dataType: 7, values: [2] },
      { name: 'four', dims: [1], dataType: 7, values: [4] },
      { name: 'zero_s', dims: [], dataType: 7, values: [0] },
      { name: 'one_s', dims: [], dataType: 7, values: [1] },
      { name: 'minus1', dims: [1], dataType: 7, values: [-1] },
    ],
  );
}

test('shape arithmetic through a vector as large as image data is computed: the reshape plans and runs as by hand', async () => {
  // The Conv without the ReLU and the scale by 3, as [N * C, H * W].
  await assertPlansAndRunsAsByHand(reshapedThroughLargeArithmetic(), [null, SIZE * SIZE], (input, batch) => ({ shape: [batch * CHANNELS, SIZE * SIZE], values: byHand(input, batch, { relu: false, scale: 1 }) }));
});

/** The shared ONNX exports (torchvision's: Conv, Relu, Clip, pools, Add, Mul, Sigmoid, Concat, Gemm), where present. */
const SHARED_ONNX = ['mobilenet_v1_0.75_224', 'mobilenet_v2', 'resnet18', 'efficientnet_b0', 'squeezenet1_1'].map((name) => asset('onnx', `${name}.onnx`)).filter((path) => existsSync(path));

forEachBackend(() => {
  test('planning writes nothing into the stand-ins\' buffer', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'camviz-stand-ins-'));
    try {
      const local = join(folder, 'm.onnx');
      await writeFile(local, onnxModelBytes(reshapedByArithmetic()));
      for (const path of [local, ...SHARED_ONNX]) {
        // A buffer larger than any value these models plan (ResNet-18's largest, 112 x 112 x 64, is 0.8M values): the plan's stand-ins view it.
        const view = zerosStandIn([2, 1024, 1024], 'float32');
        const buffer = new Float32Array((view.dataSync() as Float32Array).buffer);
        try {
          const model = await loadModel(path, { preprocess: 'none', engine: 'tfjs' });
          model.dispose();
          assert.ok(buffer.every((element) => element === 0), `a zero was overwritten while ${path} was planned`);
        } finally {
          view.dispose();
          releaseStandIns();
        }
      }
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });
});
