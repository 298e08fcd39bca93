/**
 * The planning pass's stand-ins (src/model/onnx/ops/common.ts): zeros of
 * an op's output shape, viewing one buffer the cpu backend holds, for
 * values that are image data; shape arithmetic, a few elements, is still
 * computed, and a graph that reshapes by it plans and runs as ONNX
 * computes it (by hand here).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { loadModel } from '../src/model/load.js';
import { STAND_IN_MIN_ELEMENTS, mayStandIn, releaseStandIns, zerosStandIn } from '../src/model/onnx/ops/common.js';
import type { OnnxNode } from '../src/model/onnx/types.js';
import { type TestModel, imageInputValue, onnxModelBytes } from './helpers/onnx.js';

const node: OnnxNode = { name: 'n', opType: 'Relu', domain: '', inputs: ['x'], outputs: ['y'], attributes: {} };

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

test('only the planning pass stands in, and only for values of image size', () => {
  const planning = { node, opset: 13, shapesOnly: true };
  assert.equal(mayStandIn(planning, [1, 3, 16, 16]), false, `${3 * 16 * 16} elements`);
  assert.equal(mayStandIn(planning, [1, 4, 16, 16]), true, `${4 * 16 * 16} elements`);
  assert.equal(mayStandIn(planning, [4], [1, 4, 16, 16]), true, 'any operand of image size');
  assert.equal(mayStandIn(planning, [STAND_IN_MIN_ELEMENTS - 1]), false);
  assert.equal(mayStandIn({ node, opset: 13 }, [1, 64, 64, 64]), false, 'not when planning');
  assert.equal(mayStandIn({ node, opset: 13, shapesOnly: false }, [1, 64, 64, 64]), false);
});

const SIZE = 32;
const CHANNELS = 2;
const WEIGHTS = [0.5, -1, 2, 0.25, 1, -0.5]; // [2 out, 3 in], 1x1
const BIAS = [0.1, -0.2];

/**
 * input [N, 3, 32, 32] -> 1x1 Conv (2 channels: 2,048 values, image data)
 * -> Relu -> Mul by 3, then reshaped to [N, C * 1024] where C * 1024 is
 * computed from the Relu's Shape: Gather (C), Mul by 1024, Concat with the
 * batch. The Mul of that arithmetic is small: were it a stand-in (zeros),
 * the target would be [N, 0].
 */
function reshapedByArithmetic(): TestModel {
  return {
    nodes: [
      { name: '/conv/Conv', opType: 'Conv', inputs: ['input', 'w', 'b'], outputs: ['c'] },
      { name: '/relu/Relu', opType: 'Relu', inputs: ['c'], outputs: ['r'] },
      { name: '/scale/Mul', opType: 'Mul', inputs: ['r', 'three'], outputs: ['m'] },
      { name: '/shape/Shape', opType: 'Shape', inputs: ['r'], outputs: ['s'] },
      { name: '/batch/Slice', opType: 'Slice', inputs: ['s', 'zero', 'one'], outputs: ['batch'] },
      { name: '/channels/Slice', opType: 'Slice', inputs: ['s', 'one', 'two'], outputs: ['channels'] },
      { name: '/width/Mul', opType: 'Mul', inputs: ['channels', 'pixels'], outputs: ['width'] },
      { name: '/target/Concat', opType: 'Concat', inputs: ['batch', 'width'], outputs: ['target'], attributes: [{ name: 'axis', i: 0 }] },
      { name: '/flat/Reshape', opType: 'Reshape', inputs: ['m', 'target'], outputs: ['output'] },
    ],
    inputs: [imageInputValue(SIZE)],
    outputs: [{ name: 'output' }],
    initializers: [
      { name: 'w', dims: [CHANNELS, 3, 1, 1], values: WEIGHTS },
      { name: 'b', dims: [CHANNELS], values: BIAS },
      { name: 'three', dims: [], values: [3] },
      { name: 'zero', dims: [1], dataType: 7, values: [0] },
      { name: 'one', dims: [1], dataType: 7, values: [1] },
      { name: 'two', dims: [1], dataType: 7, values: [2] },
      { name: 'pixels', dims: [1], dataType: 7, values: [SIZE * SIZE] },
    ],
  };
}

/** The model by hand, in float64: NHWC input, the output in ONNX's order [N, C * H * W]. */
function byHand(input: Float32Array, batch: number): number[] {
  const out: number[] = [];
  for (let n = 0; n < batch; n++) {
    for (let c = 0; c < CHANNELS; c++) {
      for (let p = 0; p < SIZE * SIZE; p++) {
        let sum = BIAS[c]!;
        for (let k = 0; k < 3; k++) sum += WEIGHTS[c * 3 + k]! * input[(n * SIZE * SIZE + p) * 3 + k]!;
        out.push(3 * Math.max(0, sum));
      }
    }
  }
  return out;
}

test('shape arithmetic on a value of image size is computed: the graph reshapes by it, plans and runs as by hand', async () => {
  const folder = await mkdtemp(join(tmpdir(), 'camviz-stand-ins-'));
  try {
    const path = join(folder, 'm.onnx');
    await writeFile(path, onnxModelBytes(reshapedByArithmetic()));
    const model = await loadModel(path, { preprocess: 'none' });
    try {
      const output = model.layersModel!.outputs[0]!;
      assert.deepEqual(output.shape, [null, CHANNELS * SIZE * SIZE]);
      const batch = 2;
      const values = Float32Array.from({ length: batch * SIZE * SIZE * 3 }, (_, i) => Math.sin(i * 0.37) * 2);
      const input = tf.tensor4d(values, [batch, SIZE, SIZE, 3]);
      const result = model.layersModel!.predict(input) as tf.Tensor;
      try {
        assert.deepEqual(result.shape, [batch, CHANNELS * SIZE * SIZE]);
        const got = result.dataSync();
        const expected = byHand(values, batch);
        const worst = expected.reduce((max, value, i) => Math.max(max, Math.abs(value - got[i]!)), 0);
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
});
