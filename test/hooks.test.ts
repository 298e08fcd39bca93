/**
 * The hook mechanism on the seed examples, with values computed by hand.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {
  backward,
  disposeValues,
  hookGradient,
  registerForwardHook,
  registerForwardPreHook,
  registerFullBackwardHook,
  registerGradientHook,
  withHooks,
} from '../src/index.js';
import { forEachBackend } from './helpers/backends.js';

/** y = (w + x) * (w + 1) as a two-input layers model, with w passing through a named identity. */
class PlusOne extends tfl.layers.Layer {
  static className = 'PlusOne';
  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.add(Array.isArray(inputs) ? inputs[0]! : inputs, 1);
  }
}

function seedModel(): { model: tfl.LayersModel; w: tfl.layers.Layer; a: tfl.layers.Layer } {
  const wInput = tfl.input({ shape: [1], name: 'w_in' });
  const xInput = tfl.input({ shape: [1], name: 'x_in' });
  const w = tfl.layers.activation({ activation: 'linear', name: 'w' });
  const a = tfl.layers.add({ name: 'a' });
  const wOut = w.apply(wInput) as tfl.SymbolicTensor;
  const aOut = a.apply([wOut, xInput]) as tfl.SymbolicTensor;
  const bOut = new PlusOne({ name: 'b' }).apply(wOut) as tfl.SymbolicTensor;
  const y = tfl.layers.multiply({ name: 'y' }).apply([aOut, bOut]) as tfl.SymbolicTensor;
  return { model: tfl.model({ inputs: [wInput, xInput], outputs: y }), w, a };
}

const sumOutput = (values: { output: tf.Tensor }): tf.Scalar => tf.sum(values.output);

forEachBackend((backend) => {
  test(`seed 1 on ${backend}: a gradient hook on a sees dy/da = 2; dy/dw = 5, dy/dx = 2`, async () => {
    // Tensor level, inside tf.grads.
    let dyda = Number.NaN;
    const [dw, dx] = tf.grads((w: tf.Tensor, x: tf.Tensor) => {
      const a = hookGradient(tf.add(w, x), (grad) => {
        dyda = grad.dataSync()[0]!;
      });
      return tf.mul(a, tf.add(w, 1));
    })([tf.scalar(1), tf.scalar(2)]);
    assert.equal(dyda, 2);
    assert.equal(dw!.dataSync()[0], 5);
    assert.equal(dx!.dataSync()[0], 2);
    tf.dispose([dw!, dx!]);

    // Layer level, through backward().
    const { model, a } = seedModel();
    let layerDyda = Number.NaN;
    const handle = registerGradientHook(a, (grad) => {
      layerDyda = grad.dataSync()[0]!;
    });
    const result = await backward(model, [tf.tensor2d([[1]]), tf.tensor2d([[2]])], sumOutput);
    handle.remove();
    assert.equal(layerDyda, 2);
    assert.deepEqual(result.gradients[0]!.map((grad) => grad.dataSync()[0]), [5, 2]);
    assert.equal(result.objectives[0], 6);
    tf.dispose(result.gradients.flat());
    disposeValues(result.values);
  });

  test(`seed 2 on ${backend}: a hook on w returning grad*3 makes dy/dw = 15`, async () => {
    const [dw] = tf.grads((w: tf.Tensor, x: tf.Tensor) => {
      const hookedW = hookGradient(w, (grad) => tf.mul(grad, 3));
      return tf.mul(tf.add(hookedW, x), tf.add(hookedW, 1));
    })([tf.scalar(1), tf.scalar(2)]);
    assert.equal(dw!.dataSync()[0], 15);
    dw!.dispose();

    const { model, w } = seedModel();
    const handle = registerGradientHook(w, (grad) => tf.mul(grad, 3));
    const result = await backward(model, [tf.tensor2d([[1]]), tf.tensor2d([[2]])], sumOutput);
    handle.remove();
    assert.deepEqual(result.gradients[0]!.map((grad) => grad.dataSync()[0]), [15, 2]);
    tf.dispose(result.gradients.flat());
    disposeValues(result.values);
  });

  test(`seed 3 on ${backend}: a forward hook captures the conv's input and output`, () => {
    const { model, conv } = convPoolModel();
    let capturedInput: number[] = [];
    let capturedOutput: number[][][][] = [];
    const handle = registerForwardHook(conv, (_layer, inputs, output) => {
      capturedInput = Array.from(inputs[0]!.dataSync());
      capturedOutput = (output as tf.Tensor).arraySync() as number[][][][];
    });
    const output = model.predict(tf.ones([1, 4, 4, 1])) as tf.Tensor;
    handle.remove();
    assert.deepEqual(capturedInput, new Array(16).fill(1));
    // Each 3x3 window of ones sums to 9; channel 1's weights are 2.
    assert.deepEqual(capturedOutput, [[[[9, 18], [9, 18]], [[9, 18], [9, 18]]]]);
    assert.deepEqual(Array.from(output.dataSync()), [9, 18]);
    output.dispose();
  });

  test(`seed 4 on ${backend}: a pre-hook sees the input and may replace it`, () => {
    const { model, conv } = convPoolModel();
    let seen: number[] = [];
    const handle = registerForwardPreHook(conv, (_layer, inputs) => {
      seen = Array.from(inputs[0]!.dataSync());
      return [tf.mul(inputs[0]!, 2)];
    });
    const output = model.predict(tf.ones([1, 4, 4, 1])) as tf.Tensor;
    handle.remove();
    assert.deepEqual(seen, new Array(16).fill(1));
    assert.deepEqual(Array.from(output.dataSync()), [18, 36]);
    output.dispose();
    const after = model.predict(tf.ones([1, 4, 4, 1])) as tf.Tensor;
    assert.deepEqual(Array.from(after.dataSync()), [9, 18], 'removed hook no longer replaces');
    after.dispose();
  });

  test(`seed 5 on ${backend}: a full backward hook with an L1 loss sees hand-computed gradients`, async () => {
    const { model, conv } = convPoolModel();
    const input = tf.reshape(tf.range(0, 16), [1, 4, 4, 1]);
    // By hand: conv windows of 0..15 (row-major 4x4) sum to 9 * centre value:
    // centres 5, 6, 9, 10 -> channel 0 = 45, 54, 81, 90; channel 1 doubles.
    // Max pool -> [90, 180]. L1 loss against [100, 100]: dL/dy = sign(y - t) = [-1, +1].
    // grad_output of the conv: zero except at (1,1): -1 (channel 0), +1 (channel 1).
    // grad_input: that position's window (rows 1-3, cols 1-3) gets -1*1 + 1*2 = 1.
    const expectedGradOutput = [0, 0, 0, 0, 0, 0, -1, 1];
    const expectedGradInput = [0, 0, 0, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1];
    const target = tf.tensor2d([[100, 100]]);
    let gradOutput: number[] = [];
    let gradInput: number[] = [];
    await withHooks(
      [
        {
          layer: conv,
          backward: (_layer, gradInputs, gradOutputs) => {
            gradOutput = Array.from(gradOutputs[0]!.dataSync());
            gradInput = Array.from(gradInputs[0]!.dataSync());
          },
        },
      ],
      async () => {
        const result = await backward(model, input, (values) => tf.sum(tf.abs(tf.sub(values.output, target))));
        assert.equal(result.objectives[0], 10 + 80);
        assert.deepEqual(Array.from(result.gradients[0]![0]!.dataSync()), expectedGradInput);
        tf.dispose(result.gradients.flat());
        disposeValues(result.values);
      },
    );
    assert.deepEqual(gradOutput, expectedGradOutput);
    assert.deepEqual(gradInput, expectedGradInput);

    // A full backward hook may replace grad_input: doubling it doubles dL/dx.
    const handle = registerFullBackwardHook(conv, (_layer, gradInputs) => gradInputs.map((grad) => (grad ? tf.mul(grad, 2) : null)));
    const doubled = await backward(model, input, (values) => tf.sum(tf.abs(tf.sub(values.output, target))));
    handle.remove();
    assert.deepEqual(Array.from(doubled.gradients[0]![0]!.dataSync()), expectedGradInput.map((v) => 2 * v));
    tf.dispose(doubled.gradients.flat());
    disposeValues(doubled.values);
    tf.dispose([input, target]);
  });

  test(`hooks on ${backend}: removal restores the layer exactly`, () => {
    const { model, conv } = convPoolModel();
    const ownBefore = Object.getOwnPropertyNames(conv).sort();
    const protoCall = Object.getPrototypeOf(conv).call;
    const handles = [
      registerForwardHook(conv, () => undefined),
      registerForwardPreHook(conv, () => undefined),
      registerGradientHook(conv, () => undefined),
      registerFullBackwardHook(conv, () => undefined),
    ];
    assert.ok(Object.prototype.hasOwnProperty.call(conv, 'call'));
    handles.forEach((handle) => handle.remove());
    handles[0]!.remove();
    assert.deepEqual(Object.getOwnPropertyNames(conv).sort(), ownBefore);
    assert.equal(Object.getPrototypeOf(conv).call, protoCall);
    assert.equal((conv as unknown as { call: unknown }).call, protoCall);
    model.dispose();
  });

  test(`hooks on ${backend}: withHooks removes hooks when the function throws`, async () => {
    const { conv } = convPoolModel();
    await assert.rejects(
      withHooks([{ layer: conv, forward: () => undefined }], () => {
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.ok(!Object.prototype.hasOwnProperty.call(conv, 'call'));
  });
});

function convPoolModel(): { model: tfl.LayersModel; conv: tfl.layers.Layer } {
  const conv = tfl.layers.conv2d({
    inputShape: [4, 4, 1],
    filters: 2,
    kernelSize: 3,
    padding: 'valid',
    useBias: true,
    name: 'conv',
  });
  const model = tfl.sequential({ layers: [conv, tfl.layers.maxPooling2d({ poolSize: 2, name: 'pool' })] });
  const kernel = tf.concat([tf.ones([3, 3, 1, 1]), tf.fill([3, 3, 1, 1], 2)], 3);
  conv.setWeights([kernel, tf.zeros([2])]);
  return { model, conv };
}
