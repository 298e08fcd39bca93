/**
 * Gradients of maxima and minima where values tie (src/engine/max-gradients.ts),
 * on cpu and wasm, against values worked out by hand and against the
 * references' rules written out here in plain loops:
 * - ONNX ops as PyTorch differentiates them: MaxPool and GlobalMaxPool
 *   route each window's gradient to its first maximum in scan order (H,
 *   then W, per channel, whatever camviz's stored layout), ReduceMax /
 *   ReduceMin and Max / Min divide it among the ties;
 * - Keras and TF.js layers and graph models as TensorFlow does:
 *   GlobalMaxPooling and a graph's Max divide it among the ties (reduce_max's
 *   _MinOrMaxGrad), MaxPooling routes it to the first maximum (MaxPoolGrad);
 * - tfjs' own gradients, outside camviz's executor, are left as they are.
 * Forward values are tf.max's and tf.maxPool's own, bit for bit.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { withTensorFlowGradients } from '../src/engine/tensorflow-gradients.js';
import { laid, runNode, toLayout, type LaidTensor } from '../src/model/onnx/interpret.js';
import type { OnnxAttribute, OnnxNode } from '../src/model/onnx/types.js';
import { Network } from '../src/executor/network.js';
import { disposeValues } from '../src/executor/network.js';
import { loadModel } from '../src/model/load.js';
import { registerGradientHook } from '../src/hooks/index.js';
import { forEachBackend } from './helpers/backends.js';
import { assertAllClose, mulberry32 } from './helpers/numeric.js';
import { type GraphNodeSpec, attr, placeholder, writeGraphModel } from './helpers/graph-model.js';

// ---------------------------------------------------------------- helpers

const ints = (...value: number[]): OnnxAttribute => ({ kind: 'ints', value });
const int = (value: number): OnnxAttribute => ({ kind: 'int', value });

function node(opType: string, inputs: string[], attributes: Record<string, OnnxAttribute> = {}): OnnxNode {
  return { name: `/${opType}`, opType, domain: '', inputs, outputs: ['y'], attributes };
}

/** An NCHW value fed as ONNX gives it, or stored NHWC as camviz keeps 4-D values. */
function feed(x: tf.Tensor, layout: 'onnx' | 'nhwc'): LaidTensor {
  return layout === 'onnx' || x.rank !== 4 ? laid(x) : laid(tf.transpose(x, [0, 2, 3, 1]), 'nhwc');
}

/** The ONNX (NCHW) output of one node on `inputs`. */
function runOnnx(op: OnnxNode, inputs: LaidTensor[], opset = 13): tf.Tensor {
  const [output] = runNode(op, inputs, opset);
  return toLayout(output!, 'onnx');
}

/** d(sum(weights · op(x)))/dx through one ONNX node, x fed in `layout` (weights: one per output element, or all 1). */
function onnxGradient(op: OnnxNode, x: tf.Tensor, layout: 'onnx' | 'nhwc', weights?: readonly number[], opset = 13): number[] {
  return tf.tidy(() => {
    const gradient = tf.grad((input: tf.Tensor) => {
      const y = runOnnx(op, [feed(input, layout)], opset);
      return tf.sum(weights === undefined ? y : tf.mul(y, tf.tensor(weights, y.shape)));
    })(x);
    return Array.from(gradient.dataSync());
  });
}

/** Small integers: many ties. */
function tiedValues(count: number, seed: number, levels = 3): number[] {
  const random = mulberry32(seed);
  return Array.from({ length: count }, () => Math.floor(random() * levels));
}

function randomWeights(count: number, seed: number): number[] {
  const random = mulberry32(seed);
  return Array.from({ length: count }, () => random() * 2 - 1);
}

interface PoolGeometry {
  kernel: [number, number];
  strides: [number, number];
  dilations: [number, number];
  /** Pads before H and W. */
  top: number;
  left: number;
  out: [number, number];
}

/**
 * PyTorch's max_pool2d backward (max_pool2d_with_indices on CPU), and
 * TensorFlow's MaxPoolGrad on CPU, written out: per channel, each window's
 * dy goes to the first element of the window, rows then columns, that is
 * larger than every one before it; positions outside the input are skipped.
 * x and dy are NCHW, flat.
 */
function firstMaxPoolReference(x: readonly number[], [batch, channels, height, width]: [number, number, number, number], g: PoolGeometry, dy: readonly number[]): number[] {
  const dx = new Array<number>(x.length).fill(0);
  const [outHeight, outWidth] = g.out;
  for (let plane = 0; plane < batch * channels; plane++) {
    for (let r = 0; r < outHeight; r++) {
      for (let c = 0; c < outWidth; c++) {
        let best = -1;
        for (let i = 0; i < g.kernel[0]; i++) {
          for (let j = 0; j < g.kernel[1]; j++) {
            const row = r * g.strides[0] - g.top + i * g.dilations[0];
            const column = c * g.strides[1] - g.left + j * g.dilations[1];
            if (row < 0 || column < 0 || row >= height || column >= width) continue;
            const at = (plane * height + row) * width + column;
            if (best < 0 || x[at]! > x[best]!) best = at;
          }
        }
        dx[best]! += dy[(plane * outHeight + r) * outWidth + c]!;
      }
    }
  }
  return dx;
}

/** TensorFlow's _MinOrMaxGrad (and torch.amax's) written out for a reduction of each row of `rows`: dy[row] divided among the row's extreme elements. */
function evenSplitReference(rows: readonly (readonly number[])[], dy: readonly number[], kind: 'max' | 'min'): number[][] {
  return rows.map((row, r) => {
    const extreme = kind === 'max' ? Math.max(...row) : Math.min(...row);
    const ties = row.filter((value) => value === extreme).length;
    return row.map((value) => (value === extreme ? dy[r]! / ties : 0));
  });
}

// ---------------------------------------------------------------- ONNX ops (PyTorch's rules)

forEachBackend(() => {
  for (const layout of ['onnx', 'nhwc'] as const) {
    describe(`ONNX ops with tied maxima (${layout})`, () => {
      test('GlobalMaxPool: each channel\'s gradient to its first maximum, rows then columns', () => {
        // Channel 0 ties at 3 in (0,1), (0,2), (1,0); channel 1 is constant.
        const x = tf.tensor4d([1, 3, 3, 3, 0, 1, 2, 2, 2, 2, 2, 2], [1, 2, 2, 3]);
        assert.deepEqual(onnxGradient(node('GlobalMaxPool', ['x']), x, layout), [0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]);
        x.dispose();
      });

      test('GlobalMaxPool of a 3-D value: along the one spatial axis', () => {
        const x = tf.tensor3d([0, 4, 1, 4, 2, 2, 2, 1], [1, 2, 4]);
        assert.deepEqual(onnxGradient(node('GlobalMaxPool', ['x']), x, layout), [0, 1, 0, 0, 1, 0, 0, 0]);
        x.dispose();
      });

      test('MaxPool 2x2, stride 1: each window to its first maximum (by hand)', () => {
        // Windows at (0,0) [1 1; 1 1], (0,1) [1 0; 1 0], (1,0) [1 1; 0 0], (1,1) [1 0; 0 0].
        const x = tf.tensor4d([1, 1, 0, 1, 1, 0, 0, 0, 0], [1, 1, 3, 3]);
        assert.deepEqual(onnxGradient(node('MaxPool', ['x'], { kernel_shape: ints(2, 2) }), x, layout), [1, 1, 0, 1, 1, 0, 0, 0, 0]);
        x.dispose();
      });

      test('MaxPool 3x3, stride 2, pads 1 on a constant map: pads never take a window (by hand)', () => {
        // Windows start at rows and columns -1 and 1: each one's first element inside the input, (0,0), (0,1), (1,0), (1,1), takes its weight.
        const x = tf.ones([1, 1, 4, 4]);
        const pool = node('MaxPool', ['x'], { kernel_shape: ints(3, 3), strides: ints(2, 2), pads: ints(1, 1, 1, 1) });
        assert.deepEqual(onnxGradient(pool, x, layout, [1, 2, 3, 4]), [1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        x.dispose();
      });

      for (const { name, attributes, geometry } of [
        { name: '3x3 stride 2 pads 1', attributes: { kernel_shape: ints(3, 3), strides: ints(2, 2), pads: ints(1, 1, 1, 1) }, geometry: { kernel: [3, 3], strides: [2, 2], dilations: [1, 1], top: 1, left: 1, out: [3, 3] } },
        { name: '2x3 strides 1x2 asymmetric pads', attributes: { kernel_shape: ints(2, 3), strides: ints(1, 2), pads: ints(0, 2, 1, 0) }, geometry: { kernel: [2, 3], strides: [1, 2], dilations: [1, 1], top: 0, left: 2, out: [5, 3] } },
        { name: '3x3 stride 2 ceil_mode', attributes: { kernel_shape: ints(3, 3), strides: ints(2, 2), ceil_mode: int(1) }, geometry: { kernel: [3, 3], strides: [2, 2], dilations: [1, 1], top: 0, left: 0, out: [2, 2] } },
        { name: '2x2 dilated 2, pads 1', attributes: { kernel_shape: ints(2, 2), dilations: ints(2, 2), pads: ints(1, 1, 0, 0) }, geometry: { kernel: [2, 2], strides: [1, 1], dilations: [2, 2], top: 1, left: 1, out: [4, 4] } },
      ] as { name: string; attributes: Record<string, OnnxAttribute>; geometry: PoolGeometry }[]) {
        test(`MaxPool ${name}: PyTorch's max_pool2d backward on values that tie`, () => {
          const shape: [number, number, number, number] = [2, 3, 5, 5];
          const values = tiedValues(2 * 3 * 5 * 5, 7);
          const dy = randomWeights(2 * 3 * geometry.out[0] * geometry.out[1], 8);
          const x = tf.tensor4d(values, shape);
          const pool = node('MaxPool', ['x'], attributes);
          assertAllClose(onnxGradient(pool, x, layout, dy), firstMaxPoolReference(values, shape, geometry, dy), 1e-6, 'gradient');
          x.dispose();
        });
      }

      test('ReduceMax and ReduceMin: the gradient divided among the ties (torch.amax, torch.amin)', () => {
        const rows = [[1, 3, 3], [2, 2, 0]];
        const x = tf.tensor2d(rows.flat(), [2, 3]);
        const dy = [1, 2];
        for (const kind of ['max', 'min'] as const) {
          const op = node(kind === 'max' ? 'ReduceMax' : 'ReduceMin', ['x'], { axes: ints(1), keepdims: int(0) });
          assert.deepEqual(onnxGradient(op, x, layout, dy), evenSplitReference(rows, dy, kind).flat(), kind);
        }
        // By hand: max 3 twice (half each), min 0 once.
        assert.deepEqual(onnxGradient(node('ReduceMax', ['x'], { keepdims: int(0) }), x, layout), [0, 0.5, 0.5, 0, 0, 0]);
        assert.deepEqual(onnxGradient(node('ReduceMin', ['x']), x, layout), [0, 0, 0, 0, 0, 1]);
        x.dispose();
      });

      test('ReduceMax over H and W of a 4-D value: per channel, among that channel\'s ties', () => {
        const values = tiedValues(2 * 3 * 4 * 4, 9);
        const x = tf.tensor4d(values, [2, 3, 4, 4]);
        const dy = randomWeights(6, 10);
        const planes = Array.from({ length: 6 }, (_, plane) => values.slice(plane * 16, plane * 16 + 16));
        for (const keepdims of [0, 1]) {
          const op = node('ReduceMax', ['x'], { axes: ints(2, 3), keepdims: int(keepdims) });
          assertAllClose(onnxGradient(op, x, layout, dy), evenSplitReference(planes, dy, 'max').flat(), 1e-6, `keepdims ${keepdims}`);
        }
        x.dispose();
      });

      test('Max and Min: each operand equal to the result gets its share (torch.maximum\'s half), broadcast operands summed', () => {
        const a = tf.tensor2d([1, 2, 3, 4], [2, 2]);
        const b = tf.tensor1d([2, 2]);
        for (const [opType, expectedA, expectedB] of [
          // a > b: 1 to a; a = b: half each; a < b: 1 to b. b's column sums: [1 + 0, 0.5 + 0], [0 + 1, 0.5 + 1].
          ['Max', [0, 0.5, 1, 1], [1, 0.5]],
          ['Min', [1, 0.5, 0, 0], [1, 1.5]],
        ] as const) {
          const grads = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(runOnnx(node(opType, ['a', 'b']), [feed(p, layout), feed(q, layout)])))([a, b]);
          assert.deepEqual(Array.from(grads[0]!.dataSync()), expectedA, `${opType} a`);
          assert.deepEqual(Array.from(grads[1]!.dataSync()), expectedB, `${opType} b`);
          tf.dispose(grads);
        }
        // Three operands tied: a third each.
        const c = tf.tensor1d([5]);
        const three = tf.grads((p: tf.Tensor, q: tf.Tensor, r: tf.Tensor) => tf.sum(runOnnx(node('Max', ['a', 'b', 'c']), [laid(p), laid(q), laid(r)])))([c, c.clone(), c.clone()]);
        for (const grad of three) assertAllClose(grad.dataSync(), [1 / 3], 1e-7, 'a third');
        tf.dispose([a, b, c, ...three]);
      });

      test('forward values are tf.max\'s and tf.maxPool\'s, bit for bit', () => {
        const x = tf.tensor4d(randomWeights(2 * 3 * 6 * 6, 11), [2, 3, 6, 6]);
        const nhwc = tf.transpose(x, [0, 2, 3, 1]);
        const cases: [OnnxNode, tf.Tensor][] = [
          [node('GlobalMaxPool', ['x']), tf.transpose(tf.max(nhwc, [1, 2], true), [0, 3, 1, 2])],
          [node('MaxPool', ['x'], { kernel_shape: ints(3, 3), strides: ints(2, 2) }), tf.transpose(tf.maxPool(nhwc as tf.Tensor4D, 3, 2, 'valid'), [0, 3, 1, 2])],
          [node('ReduceMax', ['x'], { axes: ints(1) }), tf.max(x, 1, true)],
          [node('ReduceMin', ['x'], { axes: ints(2, 3), keepdims: int(0) }), tf.min(x, [2, 3])],
        ];
        for (const [op, expected] of cases) {
          const actual = runOnnx(op, [feed(x, layout)]);
          assert.deepEqual(Array.from(actual.dataSync()), Array.from(expected.dataSync()), op.opType);
          tf.dispose([actual, expected]);
        }
        const y = tf.mul(x, 0.5);
        const maximum = runOnnx(node('Max', ['x', 'h']), [feed(x, layout), feed(y, layout)]);
        const expected = tf.maximum(x, y);
        assert.deepEqual(Array.from(maximum.dataSync()), Array.from(expected.dataSync()), 'Max');
        tf.dispose([x, nhwc, y, maximum, expected]);
      });
    });
  }
});

// ---------------------------------------------------------------- TensorFlow's rules, in camviz's executor only

describe('withTensorFlowGradients', () => {
  test('puts tfjs\' own gradients back afterwards, also when the call throws, and nests', () => {
    const kernels = ['Max', 'Min', 'MaxPool'];
    const before = kernels.map((name) => tf.getGradient(name));
    assert.ok(before.every((config) => config !== undefined), 'tfjs registers these gradients');
    withTensorFlowGradients(() => {
      const inside = kernels.map((name) => tf.getGradient(name));
      assert.ok(inside.every((config, i) => config !== before[i]));
      withTensorFlowGradients(() => undefined);
      assert.deepEqual(kernels.map((name) => tf.getGradient(name)), inside);
    });
    assert.deepEqual(kernels.map((name) => tf.getGradient(name)), before);
    assert.throws(() => withTensorFlowGradients(() => {
      throw new Error('boom');
    }), /boom/);
    assert.deepEqual(kernels.map((name) => tf.getGradient(name)), before);
  });

  forEachBackend(() => {
    test('applies to what is recorded inside; tf.max outside keeps tfjs\' own gradient', () => {
      const x = tf.tensor1d([2, 1, 2]);
      const inside = tf.grad((t: tf.Tensor) => withTensorFlowGradients(() => tf.max(t)))(x);
      const outside = tf.grad((t: tf.Tensor) => tf.max(t))(x);
      assert.deepEqual(Array.from(inside.dataSync()), [0.5, 0, 0.5]);
      // tfjs' rule, unchanged for everything else in the process: the whole gradient to each tie.
      assert.deepEqual(Array.from(outside.dataSync()), [1, 0, 1]);
      tf.dispose([x, inside, outside]);
    });
  });
});

/** d(score[0, k])/d(input) through camviz's executor. */
async function executorGradient(model: tfl.LayersModel, input: tf.Tensor, k: number): Promise<number[]> {
  const network = Network.of(model);
  const objective = (values: { scores: tf.Tensor2D }): tf.Scalar => tf.tidy(() => tf.reshape(tf.slice(values.scores, [0, k], [1, 1]), []) as tf.Scalar);
  const result = await network.backward(input, [objective], { sources: 'input', layers: [] });
  const gradient = Array.from(result.gradients[0]![0]!.dataSync());
  tf.dispose(result.gradients.flat());
  disposeValues(result.values);
  return gradient;
}

/** A Dense head without bias, its kernel [inputs, units] set to `kernel`. */
function denseHead(units: number, kernel: readonly number[], inputs: number): tfl.layers.Layer {
  const dense = tfl.layers.dense({ units, useBias: false, name: 'logits' });
  dense.build([null, inputs]);
  dense.setWeights([tf.tensor2d([...kernel], [inputs, units])]);
  return dense;
}

forEachBackend(() => {
  describe('Keras layers in camviz\'s executor, as TensorFlow differentiates them', () => {
    const kernel = [0.7, -0.2, 0.4, -0.5, 0.9, 0.3]; // [2 channels, 3 classes]

    test('UpSampling2D then GlobalMaxPooling2D: the gradient divided among the tied copies (by hand)', async () => {
      const input = tfl.input({ shape: [3, 3, 2] });
      const pooled = tfl.layers.globalMaxPooling2d({ name: 'pool' }).apply(tfl.layers.upSampling2d({ size: [2, 2] }).apply(input));
      const model = tfl.model({ inputs: input, outputs: denseHead(3, kernel, 2).apply(pooled) as tfl.SymbolicTensor });
      // Channel 0 (even positions): its maximum 2 three times, every copy four times: 12 ties of W[0, 1] / 12, summed back by fours.
      // Channel 1: 5 once (four copies): W[1, 1] / 4 each, W[1, 1] in all.
      const x = tf.tensor4d([1, 5, 2, 0, 2, 0, 0, 0, 2, 0, 1, 0, 1, 0, 1, 0, 0, 0], [1, 3, 3, 2]);
      const expected = [0, 0.9, -0.2 / 3, 0, -0.2 / 3, 0, 0, 0, -0.2 / 3, 0, 0, 0, 0, 0, 0, 0, 0, 0];
      assertAllClose(await executorGradient(model, x, 1), expected, 1e-6, 'gradient');
      x.dispose();
      model.dispose();
    });

    test('a gradient hook on GlobalMaxPooling2D still fires, with the pooled gradient', async () => {
      const input = tfl.input({ shape: [2, 2, 2] });
      const pool = tfl.layers.globalMaxPooling2d({ name: 'pool' });
      const model = tfl.model({ inputs: input, outputs: denseHead(3, kernel, 2).apply(pool.apply(input)) as tfl.SymbolicTensor });
      const seen: number[][] = [];
      const handle = registerGradientHook(pool, (grad) => void seen.push(Array.from(grad.dataSync())));
      const x = tf.tensor4d([1, 1, 1, 0, 0, 1, 1, 0], [1, 2, 2, 2]);
      try {
        // Channel 0: 1 three times; channel 1: 1 twice.
        assertAllClose(await executorGradient(model, x, 2), [0.4 / 3, 0.15, 0.4 / 3, 0, 0, 0.15, 0.4 / 3, 0], 1e-6, 'gradient');
        assertAllClose(seen.flat(), [0.4, 0.3], 1e-6, 'hooked gradient');
      } finally {
        handle.remove();
        x.dispose();
        model.dispose();
      }
    });

    test('GlobalMaxPooling1D: among the ties (TensorFlow\'s reduce_max)', async () => {
      const input = tfl.input({ shape: [5, 2] });
      const model = tfl.model({ inputs: input, outputs: denseHead(3, kernel, 2).apply(tfl.layers.globalMaxPooling1d({}).apply(input)) as tfl.SymbolicTensor });
      const columns = [[3, 1, 3, 3, 0], [2, 2, 1, 0, 2]];
      const x = tf.tensor3d([3, 2, 1, 2, 3, 1, 3, 0, 0, 2], [1, 5, 2]);
      const split = evenSplitReference(columns, [kernel[0]!, kernel[3]!], 'max');
      const expected = Array.from({ length: 10 }, (_, i) => split[i % 2]![Math.floor(i / 2)]!);
      assertAllClose(await executorGradient(model, x, 0), expected, 1e-6, 'gradient');
      x.dispose();
      model.dispose();
    });

    for (const { name, pool, geometry } of [
      { name: "MaxPooling2D 3x3 stride 2 'same'", pool: { poolSize: 3, strides: 2, padding: 'same' }, geometry: { kernel: [3, 3], strides: [2, 2], dilations: [1, 1], top: 1, left: 1, out: [3, 3] } },
      { name: "MaxPooling2D 2x2 stride 1 'valid'", pool: { poolSize: 2, strides: 1, padding: 'valid' }, geometry: { kernel: [2, 2], strides: [1, 1], dilations: [1, 1], top: 0, left: 0, out: [4, 4] } },
      { name: "MaxPooling2D 4x4 stride 3 'same'", pool: { poolSize: 4, strides: 3, padding: 'same' }, geometry: { kernel: [4, 4], strides: [3, 3], dilations: [1, 1], top: 1, left: 1, out: [2, 2] } },
    ] as { name: string; pool: { poolSize: number; strides: number; padding: 'same' | 'valid' }; geometry: PoolGeometry }[]) {
      test(`${name}: each window to its first maximum (TensorFlow's MaxPoolGrad)`, async () => {
        const input = tfl.input({ shape: [5, 5, 1] });
        const pooled = tfl.layers.flatten().apply(tfl.layers.maxPooling2d(pool).apply(input));
        const cells = geometry.out[0] * geometry.out[1];
        const weights = randomWeights(cells, 12);
        const model = tfl.model({ inputs: input, outputs: denseHead(1, weights, cells).apply(pooled) as tfl.SymbolicTensor });
        const values = tiedValues(25, 13);
        const x = tf.tensor4d(values, [1, 5, 5, 1]);
        assertAllClose(await executorGradient(model, x, 0), firstMaxPoolReference(values, [1, 1, 5, 5], geometry, weights), 1e-6, 'gradient');
        x.dispose();
        model.dispose();
      });
    }

    test('MaxPooling1D: each window to its first maximum', async () => {
      const input = tfl.input({ shape: [6, 1] });
      const pooled = tfl.layers.flatten().apply(tfl.layers.maxPooling1d({ poolSize: 3, strides: 1 }).apply(input));
      const model = tfl.model({ inputs: input, outputs: denseHead(1, [1, 2, 3, 4], 4).apply(pooled) as tfl.SymbolicTensor });
      // Windows [2 0 2], [0 2 1], [2 1 2], [1 2 2]: first maxima at 0, 2, 2, 4.
      const x = tf.tensor3d([2, 0, 2, 1, 2, 2], [1, 6, 1]);
      assert.deepEqual(await executorGradient(model, x, 0), [1, 0, 5, 0, 4, 0]);
      x.dispose();
      model.dispose();
    });
  });
});

describe('a TF.js graph model with MaxPool and Max nodes, as TensorFlow differentiates it', () => {
  let folder: string;
  before(async () => {
    folder = await mkdtemp(join(tmpdir(), 'camviz-max-graph-'));
  });
  after(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  const dense = [0.7, -0.2, 0.4, -0.5, 0.9, 0.3]; // [3 channels, 2 classes]
  const nodes: GraphNodeSpec[] = [
    placeholder('image', [-1, 4, 4, 3]),
    { name: 'net/pool/MaxPool', op: 'MaxPool', input: ['image'], attr: { T: attr.float, ksize: attr.ints([1, 2, 2, 1]), strides: attr.ints([1, 1, 1, 1]), padding: attr.string('SAME'), data_format: attr.string('NHWC') } },
    { name: 'net/max/Max', op: 'Max', input: ['net/pool/MaxPool', 'net/max/axes'], attr: { T: attr.float, keep_dims: attr.bool(false) } },
    { name: 'net/logits/MatMul', op: 'MatMul', input: ['net/max/Max', 'net/logits/weights'], attr: { T: attr.float, transpose_a: attr.bool(false), transpose_b: attr.bool(false) } },
    { name: 'net/probs', op: 'Softmax', input: ['net/logits/MatMul'], attr: { T: attr.float } },
  ];

  forEachBackend((backend) => {
    test(`the input gradient of a score: MaxPool to the first maximum, Max divided among the ties (${backend})`, async () => {
      const dir = await mkdtemp(join(folder, `${backend}-`));
      const model = await loadModel(await writeGraphModel(dir, nodes, [
        { name: 'net/max/axes', shape: [2], dtype: 'int32', data: [1, 2] },
        { name: 'net/logits/weights', shape: [3, 2], dtype: 'float32', data: dense },
      ]));
      const values = tiedValues(48, 14, 4);
      const x = tf.tensor4d(values, [1, 4, 4, 3]);
      try {
        const gradient = await executorGradient(model.layersModel!, x, 1);
        // By the rules written out, per channel: the pool's output (2x2 windows, stride 1, 'same': one row and column of pad after).
        const nchw = Array.from({ length: 48 }, (_, i) => values[(i % 16) * 3 + Math.floor(i / 16)]!);
        const pooled = Array.from({ length: 48 }, (_, i) => {
          const [c, r, col] = [Math.floor(i / 16), Math.floor(i / 4) % 4, i % 4];
          const window = [[r, col], [r, col + 1], [r + 1, col], [r + 1, col + 1]].filter(([a, b]) => a! < 4 && b! < 4);
          return Math.max(...window.map(([a, b]) => nchw[c * 16 + a! * 4 + b!]!));
        });
        const planes = [0, 1, 2].map((c) => pooled.slice(c * 16, c * 16 + 16));
        const pooledGradient = evenSplitReference(planes, [dense[1]!, dense[3]!, dense[5]!], 'max').flat();
        const geometry: PoolGeometry = { kernel: [2, 2], strides: [1, 1], dilations: [1, 1], top: 0, left: 0, out: [4, 4] };
        const expected = firstMaxPoolReference(nchw, [1, 3, 4, 4], geometry, pooledGradient);
        const nhwcExpected = Array.from({ length: 48 }, (_, i) => expected[(i % 3) * 16 + Math.floor(i / 3)]!);
        assertAllClose(gradient, nhwcExpected, 1e-6, 'gradient');
        assert.ok(planes.some((plane) => plane.filter((value) => value === Math.max(...plane)).length > 1), 'the maxima must tie');
      } finally {
        x.dispose();
        model.dispose();
      }
    });
  });
});
