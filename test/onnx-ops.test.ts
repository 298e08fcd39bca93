/**
 * The ONNX op library beyond ONNX's conformance data: the 'nhwc' layout
 * scheme gives the same numbers as the ONNX layout, gradients through the
 * ops match finite differences, refusals name the op, node and opset, and
 * runNode/interpretGraph own and free their tensors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import {
  interpretGraph,
  laid,
  runNode,
  supportedOp,
  tensorFromOnnx,
  toLayout,
  UnsupportedOpError,
  type LaidTensor,
} from '../src/model/onnx/interpret.js';
import type { OnnxAttribute, OnnxModel, OnnxNode, OnnxTensor } from '../src/model/onnx/types.js';
import { CamvizError } from '../src/util/errors.js';
import { forEachBackend } from './helpers/backends.js';
import { assertAllClose, mulberry32 } from './helpers/numeric.js';

// ---------------------------------------------------------------- helpers

const ints = (...value: number[]): OnnxAttribute => ({ kind: 'ints', value });
const int = (value: number): OnnxAttribute => ({ kind: 'int', value });
const float = (value: number): OnnxAttribute => ({ kind: 'float', value });
const str = (value: string): OnnxAttribute => ({ kind: 'string', value });
const floats = (...value: number[]): OnnxAttribute => ({ kind: 'floats', value });

function node(opType: string, inputs: string[], outputs: string[], attributes: Record<string, OnnxAttribute> = {}): OnnxNode {
  return { name: `/${opType}`, opType, domain: '', inputs, outputs, attributes };
}

function onnxTensor(name: string, dims: number[], data: number[], type: 'float32' | 'int64' = 'float32'): OnnxTensor {
  return { name, type, dims, data: type === 'float32' ? Float32Array.from(data) : BigInt64Array.from(data.map(BigInt)) };
}

function model(nodes: OnnxNode[], initializers: OnnxTensor[] = [], opset = 13): OnnxModel {
  return {
    irVersion: 8,
    opsets: new Map([['', opset]]),
    producerName: 'test',
    producerVersion: '',
    graph: {
      name: 'g',
      nodes,
      initializers: new Map(initializers.map((t) => [t.name, t])),
      inputs: [],
      outputs: [],
      valueInfo: [],
    },
  };
}

function randomValues(count: number, seed: number): number[] {
  const random = mulberry32(seed);
  return Array.from({ length: count }, () => random() * 2 - 1);
}

/** Runs `nodes` (no disposal: usable under tf.grad) and returns every value. */
function runChain(nodes: OnnxNode[], values: Map<string, LaidTensor>, opset = 13): Map<string, LaidTensor> {
  for (const n of nodes) {
    const outputs = runNode(n, n.inputs.map((name) => (name === '' ? undefined : values.get(name))), opset);
    n.outputs.forEach((name, i) => values.set(name, outputs[i]!));
  }
  return values;
}

/** A 4-D input fed as ONNX gives it, or stored NHWC as camviz feeds images. */
function feed(x: tf.Tensor, layout: 'onnx' | 'nhwc'): LaidTensor {
  return layout === 'onnx' ? laid(x) : laid(tf.transpose(x, [0, 2, 3, 1]), 'nhwc');
}

// ---------------------------------------------------------------- layout

/** Single nodes on a 4-D input `x` [2,3,4,5] (and a constant or two). */
const LAYOUT_CASES: { name: string; nodes: OnnxNode[]; constants?: Record<string, tf.Tensor>; opset?: number }[] = [
  { name: 'Concat on channels', nodes: [node('Relu', ['x'], ['r']), node('Concat', ['x', 'r'], ['y'], { axis: int(1) })] },
  { name: 'Concat on W (negative axis)', nodes: [node('Concat', ['x', 'x'], ['y'], { axis: int(-1) })] },
  { name: 'Concat with an ONNX-layout operand', nodes: [node('Concat', ['x', 'c'], ['y'], { axis: int(1) })], constants: { c: tf.ones([2, 1, 4, 5]) } },
  { name: 'Split on channels', nodes: [node('Split', ['x', 's'], ['y', 'z'], { axis: int(1) })], constants: { s: tf.tensor1d([1, 2], 'int32') } },
  { name: 'Split on H (opset 11 attribute)', nodes: [node('Split', ['x'], ['y', 'z'], { axis: int(2), split: ints(3, 1) })], opset: 11 },
  {
    name: 'Slice with steps 2 and -1 on C and W',
    nodes: [node('Slice', ['x', 'st', 'en', 'ax', 'sp'], ['y'])],
    constants: { st: tf.tensor1d([0, -1], 'int32'), en: tf.tensor1d([3, -100], 'int32'), ax: tf.tensor1d([1, 3], 'int32'), sp: tf.tensor1d([2, -1], 'int32') },
  },
  { name: 'Softmax on channels', nodes: [node('Softmax', ['x'], ['y'], { axis: int(1) })] },
  { name: 'LogSoftmax on H', nodes: [node('LogSoftmax', ['x'], ['y'], { axis: int(2) })] },
  { name: 'Softmax opset 11 (flattened from axis 1)', nodes: [node('Softmax', ['x'], ['y'], { axis: int(1) })], opset: 11 },
  { name: 'ReduceMean over H, W without keepdims', nodes: [node('ReduceMean', ['x'], ['y'], { axes: ints(2, 3), keepdims: int(0) })] },
  { name: 'ReduceMean over C without keepdims', nodes: [node('ReduceMean', ['x'], ['y'], { axes: ints(1), keepdims: int(0) })] },
  { name: 'ReduceMax over H with keepdims', nodes: [node('ReduceMax', ['x'], ['y'], { axes: ints(2) })] },
  { name: 'ReduceSum over W, C (axes input)', nodes: [node('ReduceSum', ['x', 'a'], ['y'], { keepdims: int(0) })], constants: { a: tf.tensor1d([3, 1], 'int32') } },
  { name: 'ReduceL2 over everything', nodes: [node('ReduceL2', ['x'], ['y'], { keepdims: int(0) })] },
  { name: 'Transpose', nodes: [node('Transpose', ['x'], ['y'], { perm: ints(0, 3, 1, 2) })] },
  { name: 'Flatten', nodes: [node('Flatten', ['x'], ['y'])] },
  { name: 'Reshape with 0 and -1', nodes: [node('Reshape', ['x', 's'], ['y'])], constants: { s: tf.tensor1d([0, -1], 'int32') } },
  { name: 'GlobalAveragePool then Flatten', nodes: [node('GlobalAveragePool', ['x'], ['g']), node('Flatten', ['g'], ['y'])] },
  { name: 'GlobalMaxPool then Squeeze', nodes: [node('GlobalMaxPool', ['x'], ['g']), node('Squeeze', ['g', 'a'], ['y'])], constants: { a: tf.tensor1d([2, 3], 'int32') } },
  {
    name: 'Pad constant, asymmetric, negative on W',
    nodes: [node('Pad', ['x', 'p', 'v'], ['y'])],
    constants: { p: tf.tensor1d([0, 1, 0, 2, 0, 0, 1, -1], 'int32'), v: tf.scalar(0.5) },
  },
  { name: 'Pad reflect', nodes: [node('Pad', ['x', 'p'], ['y'], { mode: str('reflect') })], constants: { p: tf.tensor1d([0, 0, 1, 2, 0, 0, 2, 1], 'int32') } },
  { name: 'Pad edge', nodes: [node('Pad', ['x', 'p'], ['y'], { mode: str('edge') })], constants: { p: tf.tensor1d([0, 1, 2, 0, 0, 0, 0, 3], 'int32') } },
  { name: 'Add with a per-channel [C,1,1] operand', nodes: [node('Add', ['x', 'b'], ['y'])], constants: { b: tf.tensor3d([1, 2, 3], [3, 1, 1]) } },
  { name: 'Mul with a [W] operand', nodes: [node('Mul', ['x', 'w'], ['y'])], constants: { w: tf.tensor1d([1, 2, 3, 4, 5]) } },
  { name: 'Sub with a 4-D ONNX-layout operand', nodes: [node('Sub', ['x', 'c'], ['y'])], constants: { c: tf.reshape(tf.range(0, 120), [2, 3, 4, 5]) } },
  { name: 'Where with a [H,W] condition', nodes: [node('Greater', ['x', 'z'], ['m']), node('Where', ['m', 'x', 'z'], ['y'])], constants: { z: tf.zeros([4, 5]) } },
  { name: 'Gather on channels', nodes: [node('Gather', ['x', 'i'], ['y'], { axis: int(1) })], constants: { i: tf.tensor1d([2, -3], 'int32') } },
  { name: 'Shape', nodes: [node('Shape', ['x'], ['y'])] },
  {
    name: 'BatchNormalization',
    nodes: [node('BatchNormalization', ['x', 'sc', 'b', 'm', 'v'], ['y'], { epsilon: float(1e-3) })],
    constants: { sc: tf.tensor1d([1, 2, 3]), b: tf.tensor1d([0.1, 0.2, 0.3]), m: tf.tensor1d([0, 0.5, -0.5]), v: tf.tensor1d([1, 4, 0.25]) },
  },
  {
    name: 'grouped Conv, asymmetric pads',
    nodes: [node('Conv', ['x6', 'w'], ['y'], { group: int(3), pads: ints(0, 1, 1, 0) })],
    constants: { w: tf.tensor4d(randomValues(6 * 2 * 2 * 2, 7), [6, 2, 2, 2]) },
  },
  { name: 'MaxPool ceil_mode', nodes: [node('MaxPool', ['x'], ['y'], { kernel_shape: ints(3, 3), strides: ints(2, 2), ceil_mode: int(1) })] },
  { name: 'MaxPool dilated', nodes: [node('MaxPool', ['x'], ['y'], { kernel_shape: ints(2, 2), dilations: ints(2, 1), pads: ints(1, 0, 0, 1) })] },
  { name: 'AveragePool with pads', nodes: [node('AveragePool', ['x'], ['y'], { kernel_shape: ints(2, 3), pads: ints(1, 1, 0, 1) })] },
  {
    name: 'Resize linear half_pixel by scales (H 2, W 0.6)',
    nodes: [node('Resize', ['x', '', 's'], ['y'], { mode: str('linear') })],
    constants: { s: tf.tensor1d([1, 1, 2, 0.6]) },
  },
  {
    name: 'Resize cubic align_corners to sizes',
    nodes: [node('Resize', ['x', '', '', 'z'], ['y'], { mode: str('cubic'), coordinate_transformation_mode: str('align_corners') })],
    constants: { z: tf.tensor1d([2, 3, 7, 3], 'int32') },
  },
  {
    name: 'Resize nearest on C and W (round_prefer_ceil, asymmetric)',
    nodes: [node('Resize', ['x', '', 's'], ['y'], { nearest_mode: str('round_prefer_ceil'), coordinate_transformation_mode: str('asymmetric') })],
    constants: { s: tf.tensor1d([1, 2, 1, 1.5]) },
  },
  { name: 'Upsample nearest (opset 9)', nodes: [node('Upsample', ['x', 's'], ['y'])], constants: { s: tf.tensor1d([1, 1, 2, 3]) }, opset: 9 },
  {
    name: 'InstanceNormalization',
    nodes: [node('InstanceNormalization', ['x', 'sc', 'b'], ['y'], { epsilon: float(1e-3) })],
    constants: { sc: tf.tensor1d([1, 2, 3]), b: tf.tensor1d([0.1, 0.2, 0.3]) },
  },
  {
    name: 'ConvTranspose strided with pads and output_padding',
    nodes: [node('ConvTranspose', ['x', 'w', 'b'], ['y'], { strides: ints(2, 3), pads: ints(1, 0, 0, 2), output_padding: ints(1, 2) })],
    constants: { w: tf.tensor4d(randomValues(3 * 2 * 3 * 2, 61), [3, 2, 3, 2]), b: tf.tensor1d([0.5, -0.5]) },
  },
  {
    name: 'ConvTranspose grouped, dilated and strided, output_shape beyond the full output',
    nodes: [node('ConvTranspose', ['x6', 'w'], ['y'], { group: int(3), strides: ints(2, 2), dilations: ints(2, 1), output_shape: ints(13, 12) })],
    constants: { w: tf.tensor4d(randomValues(6 * 2 * 2 * 3, 62), [6, 2, 2, 3]) },
  },
  { name: 'ConvTranspose SAME_LOWER', nodes: [node('ConvTranspose', ['x', 'w'], ['y'], { strides: ints(2, 2), auto_pad: str('SAME_LOWER') })], constants: { w: tf.tensor4d(randomValues(3 * 1 * 3 * 3, 63), [3, 1, 3, 3]) } },
  { name: 'DepthToSpace DCR', nodes: [node('DepthToSpace', ['x8'], ['y'], { blocksize: int(2) })] },
  { name: 'DepthToSpace CRD', nodes: [node('DepthToSpace', ['x8'], ['y'], { blocksize: int(2), mode: str('CRD') })] },
  { name: 'SpaceToDepth', nodes: [node('SpaceToDepth', ['x8'], ['y'], { blocksize: int(2) })] },
  { name: 'LRN of an even size', nodes: [node('LRN', ['x'], ['y'], { size: int(2), alpha: float(0.3), beta: float(0.6), bias: float(1.5) })] },
  {
    name: 'GroupNormalization (opset 18: per-group scale)',
    nodes: [node('GroupNormalization', ['x6', 'sc', 'b'], ['y'], { num_groups: int(3) })],
    constants: { sc: tf.tensor1d([1, 2, 3]), b: tf.tensor1d([0.1, 0.2, 0.3]) },
    opset: 18,
  },
  {
    name: 'GroupNormalization (opset 21: per-channel scale)',
    nodes: [node('GroupNormalization', ['x6', 'sc', 'b'], ['y'], { num_groups: int(2), epsilon: float(1e-3) })],
    constants: { sc: tf.tensor1d([1, 2, 3, 4, 5, 6]), b: tf.tensor1d([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]) },
    opset: 21,
  },
  { name: 'CumSum on channels, exclusive and reversed', nodes: [node('CumSum', ['x', 'a'], ['y'], { exclusive: int(1), reverse: int(1) })], constants: { a: tf.scalar(1, 'int32') } },
  { name: 'CumSum on W (negative axis)', nodes: [node('CumSum', ['x', 'a'], ['y'])], constants: { a: tf.tensor1d([-1], 'int32') } },
  { name: 'ArgMax on channels without keepdims', nodes: [node('ArgMax', ['x'], ['y'], { axis: int(1), keepdims: int(0) })] },
  { name: 'ArgMin on H, select_last_index', nodes: [node('Round', ['x'], ['r']), node('ArgMin', ['r'], ['y'], { axis: int(2), select_last_index: int(1) })] },
  { name: 'Hardmax on channels', nodes: [node('Hardmax', ['x'], ['y'], { axis: int(1) })] },
  { name: 'GatherElements on H with negative indices', nodes: [node('GatherElements', ['x', 'i'], ['y'], { axis: int(2) })], constants: { i: tf.tensor4d(Array.from({ length: 2 * 3 * 2 * 5 }, (_, k) => (k % 7) - 4), [2, 3, 2, 5], 'int32') } },
  { name: 'Einsum mixing channels (bchw,dc->bdhw)', nodes: [node('Einsum', ['x', 'm'], ['y'], { equation: str('bchw,dc->bdhw') })], constants: { m: tf.tensor2d(randomValues(4 * 3, 131), [4, 3]) } },
  { name: 'Einsum attention-like over x twice, then its diagonal (bchw,bcgw->bhg; bhh->bh)', nodes: [node('Einsum', ['x', 'x'], ['a'], { equation: str('bchw,bcgw->bhg') }), node('Einsum', ['a'], ['y'], { equation: str('bhh->bh') })] },
  { name: 'Einsum implicit output (cbwh: the letters in order, a transpose)', nodes: [node('Einsum', ['x'], ['y'], { equation: str('cbwh') })] },
  { name: "Einsum with '...' over a 4-D value and a [W] operand", nodes: [node('Einsum', ['x', 'w'], ['y'], { equation: str('...w,w->...') })], constants: { w: tf.tensor1d([1, -2, 3, 0.5, 2]) } },
  { name: 'Mish, Sin, Cos, Sign', nodes: [node('Mish', ['x'], ['m']), node('Sin', ['m'], ['s']), node('Cos', ['x'], ['c']), node('Mul', ['s', 'c'], ['p']), node('Sign', ['p'], ['y'])], opset: 18 },
];

forEachBackend(() => {
  for (const { name, nodes, constants = {}, opset = 13 } of LAYOUT_CASES) {
    test(`an 'nhwc' input gives the ONNX numbers: ${name}`, () => {
      const x = tf.tensor4d(randomValues(2 * 3 * 4 * 5, 1), [2, 3, 4, 5]);
      const x6 = tf.tensor4d(randomValues(2 * 6 * 4 * 5, 2), [2, 6, 4, 5]);
      const x8 = tf.tensor4d(randomValues(2 * 8 * 4 * 6, 3), [2, 8, 4, 6]);
      const outputs = (layout: 'onnx' | 'nhwc'): tf.Tensor[] =>
        tf.tidy(() => {
          const values = new Map<string, LaidTensor>([['x', feed(x, layout)], ['x6', feed(x6, layout)], ['x8', feed(x8, layout)]]);
          for (const [key, value] of Object.entries(constants)) values.set(key, laid(value));
          runChain(nodes, values, opset);
          return nodes.at(-1)!.outputs.map((out) => tf.clone(toLayout(values.get(out)!, 'onnx')));
        });
      const reference = outputs('onnx');
      const stored = outputs('nhwc');
      reference.forEach((expected, i) => {
        assert.deepEqual(stored[i]!.shape, expected.shape);
        assertAllClose(stored[i]!.dataSync(), expected.dataSync(), 1e-5, name);
      });
      tf.dispose([...reference, ...stored, x, x6, x8]);
    });
  }

  test("a Conv, Relu, Add, MaxPool chain stays 'nhwc' (no transposes) and Flatten after global pooling is a reshape", () => {
    const x = tf.tensor4d(randomValues(1 * 2 * 6 * 6, 3), [1, 2, 6, 6]);
    const values = new Map<string, LaidTensor>([
      ['x', feed(x, 'nhwc')],
      ['w', laid(tf.tensor4d(randomValues(2 * 2 * 3 * 3, 4), [2, 2, 3, 3]))],
      ['b', laid(tf.tensor1d([0.1, -0.1]))],
    ]);
    runChain(
      [
        node('Conv', ['x', 'w', 'b'], ['c'], { pads: ints(1, 1, 1, 1) }),
        node('Relu', ['c'], ['r']),
        node('Add', ['r', 'x'], ['a']),
        node('MaxPool', ['a'], ['m'], { kernel_shape: ints(2, 2), strides: ints(2, 2) }),
        node('GlobalAveragePool', ['m'], ['g']),
        node('Flatten', ['g'], ['f']),
      ],
      values,
    );
    for (const name of ['c', 'r', 'a', 'm', 'g']) assert.equal(values.get(name)!.layout, 'nhwc', name);
    assert.equal(values.get('f')!.layout, 'onnx');
    assert.deepEqual(values.get('f')!.tensor.shape, [1, 2]);
    tf.dispose([x, ...[...values.values()].map((v) => v.tensor)]);
  });
});

test("an elementwise op's layout does not depend on the batch size (the builder plans layouts at batch 1)", () => {
  for (const perSample of [[1, 1, 1], [3, 1, 1]]) {
    const layouts = [1, 2].map((batch) =>
      tf.tidy(() => {
        const x = tf.tensor4d(randomValues(batch * 3 * 4 * 5, 5), [batch, 3, 4, 5]);
        const s = tf.tensor4d(randomValues(batch * perSample[0]!, 6), [batch, ...perSample] as [number, number, number, number]);
        const [viaNhwc] = runNode(node('Mul', ['x', 's'], ['y']), [feed(x, 'nhwc'), laid(s)], 13);
        const [viaOnnx] = runNode(node('Mul', ['x', 's'], ['y']), [laid(x), laid(s)], 13);
        assertAllClose(toLayout(viaNhwc!, 'onnx').dataSync(), viaOnnx!.tensor.dataSync(), 1e-6, `batch ${batch}`);
        return viaNhwc!.layout;
      }),
    );
    assert.deepEqual(layouts, ['nhwc', 'nhwc'], `operand [N, ${perSample.join(', ')}]`);
  }
});

/** Convolution written out in float64 over NCHW, pads given as [top, left, bottom, right]. */
function referenceConv(
  x: { data: ArrayLike<number>; shape: number[] },
  w: { data: ArrayLike<number>; shape: number[] },
  { group, stride, dilation, pads }: { group: number; stride: number; dilation: number; pads: [number, number, number, number] },
): { data: number[]; shape: number[] } {
  const [n, c, h, wd] = x.shape as [number, number, number, number];
  const [m, cg, kh, kw] = w.shape as [number, number, number, number];
  const oh = Math.floor((h + pads[0] + pads[2] - (dilation * (kh - 1) + 1)) / stride) + 1;
  const ow = Math.floor((wd + pads[1] + pads[3] - (dilation * (kw - 1) + 1)) / stride) + 1;
  const out: number[] = [];
  for (let b = 0; b < n; b++)
    for (let o = 0; o < m; o++) {
      const g = Math.floor(o / (m / group));
      for (let i = 0; i < oh; i++)
        for (let j = 0; j < ow; j++) {
          let sum = 0;
          for (let k = 0; k < cg; k++)
            for (let u = 0; u < kh; u++)
              for (let v = 0; v < kw; v++) {
                const row = i * stride - pads[0] + u * dilation;
                const col = j * stride - pads[1] + v * dilation;
                if (row < 0 || row >= h || col < 0 || col >= wd) continue;
                sum += x.data[((b * c + g * cg + k) * h + row) * wd + col]! * w.data[((o * cg + k) * kh + u) * kw + v]!;
              }
          out.push(sum);
        }
    }
  return { data: out, shape: [n, m, oh, ow] };
}

const CONV_CASES: { name: string; x: number[]; w: number[]; attributes: Record<string, OnnxAttribute>; reference: Parameters<typeof referenceConv>[2] }[] = [
  {
    name: 'dilation 2, asymmetric pads',
    x: [1, 2, 7, 6],
    w: [3, 2, 3, 2],
    attributes: { dilations: ints(2, 2), pads: ints(1, 2, 2, 1) },
    reference: { group: 1, stride: 1, dilation: 2, pads: [1, 2, 2, 1] },
  },
  {
    name: 'depthwise with channel multiplier 2, stride 2',
    x: [1, 3, 7, 7],
    w: [6, 1, 3, 3],
    attributes: { group: int(3), strides: ints(2, 2), pads: ints(1, 1, 1, 1) },
    reference: { group: 3, stride: 2, dilation: 1, pads: [1, 1, 1, 1] },
  },
  {
    // 5x6 input, kernel 2, stride 2: 3x3 output needs one extra row, which SAME_LOWER puts on top.
    name: 'auto_pad SAME_LOWER',
    x: [2, 2, 5, 6],
    w: [2, 2, 2, 2],
    attributes: { auto_pad: str('SAME_LOWER'), strides: ints(2, 2) },
    reference: { group: 1, stride: 2, dilation: 1, pads: [1, 0, 0, 0] },
  },
  {
    name: 'two groups of two channels',
    x: [1, 4, 5, 5],
    w: [6, 2, 3, 3],
    attributes: { group: int(2) },
    reference: { group: 2, stride: 1, dilation: 1, pads: [0, 0, 0, 0] },
  },
  {
    name: 'depthwise with channel multiplier 2, dilation 2',
    x: [1, 3, 7, 7],
    w: [6, 1, 3, 3],
    attributes: { group: int(3), dilations: ints(2, 2), pads: ints(2, 1, 2, 3) },
    reference: { group: 3, stride: 1, dilation: 2, pads: [2, 1, 2, 3] },
  },
  {
    name: 'two groups, dilation 3',
    x: [1, 4, 8, 7],
    w: [6, 2, 3, 3],
    attributes: { group: int(2), dilations: ints(3, 3), pads: ints(3, 3, 3, 3) },
    reference: { group: 2, stride: 1, dilation: 3, pads: [3, 3, 3, 3] },
  },
  {
    // Pads beyond the dilated kernel's span: output rows and columns that see only padding.
    name: 'dilation 2, pads wider than the kernel',
    x: [1, 2, 5, 5],
    w: [2, 2, 2, 2],
    attributes: { dilations: ints(2, 2), pads: ints(3, 0, 1, 4) },
    reference: { group: 1, stride: 1, dilation: 2, pads: [3, 0, 1, 4] },
  },
];

forEachBackend(() => {
  for (const { name, x: xShape, w: wShape, attributes, reference } of CONV_CASES) {
    test(`Conv matches a written-out convolution: ${name}`, () => {
      const count = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);
      const xData = randomValues(count(xShape), 31);
      const wData = randomValues(count(wShape), 32);
      const expected = referenceConv({ data: xData, shape: xShape }, { data: wData, shape: wShape }, reference);
      for (const layout of ['onnx', 'nhwc'] as const) {
        tf.tidy(() => {
          const x = tf.tensor(xData, xShape);
          const [y] = runNode(node('Conv', ['x', 'w'], ['y'], attributes), [feed(x, layout), laid(tf.tensor(wData, wShape))], 13);
          const got = toLayout(y!, 'onnx');
          assert.deepEqual(got.shape, expected.shape, layout);
          assertAllClose(got.dataSync(), expected.data, 1e-5, `${name} (${layout})`);
        });
      }
    });
  }
});

forEachBackend(() => {
  // tfjs refuses to differentiate dilated convolutions; camviz's own gradient (src/engine/dilated-conv.ts) is the adjoint of the written-out one.
  for (const { name, x: xShape, w: wShape, attributes, reference } of CONV_CASES.filter((entry) => entry.reference.dilation > 1)) {
    test(`tf.grad through a dilated Conv is the written-out convolution's adjoint: ${name}`, () => {
      const count = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);
      const wData = randomValues(count(wShape), 32);
      const outShape = referenceConv({ data: new Array<number>(count(xShape)).fill(0), shape: xShape }, { data: wData, shape: wShape }, reference).shape;
      const weights = randomValues(count(outShape), 33);
      // Y = Σ weights · conv(x) is linear: dY/dx_i is Y at the i-th unit vector.
      const expected = Array.from({ length: count(xShape) }, (_, i) => {
        const unit = new Array<number>(count(xShape)).fill(0);
        unit[i] = 1;
        return referenceConv({ data: unit, shape: xShape }, { data: wData, shape: wShape }, reference).data.reduce((sum, value, o) => sum + value * weights[o]!, 0);
      });
      for (const layout of ['onnx', 'nhwc'] as const) {
        tf.tidy(() => {
          const f = (x: tf.Tensor): tf.Scalar => {
            const [y] = runNode(node('Conv', ['x', 'w'], ['y'], attributes), [feed(x, layout), laid(tf.tensor(wData, wShape))], 13);
            return tf.sum(tf.mul(toLayout(y!, 'onnx'), tf.tensor(weights, outShape))) as tf.Scalar;
          };
          const gradient = tf.grad(f)(tf.tensor(randomValues(count(xShape), 31), xShape));
          assertAllClose(gradient.dataSync(), expected, 1e-5, `${name} (${layout})`);
        });
      }
    });
  }
});

/** More Conv geometries for the planning pass: SAME_UPPER with strides, a bias, a 1x1 kernel with a kernel_shape attribute. */
const SHAPE_CASES: { name: string; x: number[]; w: number[]; attributes: Record<string, OnnxAttribute>; bias?: number }[] = [
  ...CONV_CASES,
  { name: 'auto_pad SAME_UPPER, stride 3, bias', x: [1, 3, 8, 7], w: [5, 3, 3, 3], attributes: { auto_pad: str('SAME_UPPER'), strides: ints(3, 3) }, bias: 5 },
  { name: '1x1 with kernel_shape, stride 2, bias', x: [1, 4, 9, 9], w: [8, 4, 1, 1], attributes: { kernel_shape: ints(1, 1), strides: ints(2, 2) }, bias: 8 },
  { name: 'depthwise, pads, bias', x: [1, 4, 6, 6], w: [4, 1, 3, 3], attributes: { group: int(4), pads: ints(1, 1, 1, 1) }, bias: 4 },
];

forEachBackend(() => {
  test('shapesOnly: a Conv gives zeros of the shape, layout and dtype the full run gives', () => {
    const count = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);
    for (const { name, x: xShape, w: wShape, attributes, bias } of SHAPE_CASES) {
      for (const layout of ['onnx', 'nhwc'] as const) {
        tf.tidy(() => {
          const inputs = [feed(tf.tensor(randomValues(count(xShape), 41), xShape), layout), laid(tf.tensor(randomValues(count(wShape), 42), wShape))];
          if (bias !== undefined) inputs.push(laid(tf.tensor(randomValues(bias, 43), [bias])));
          const conv = node('Conv', bias === undefined ? ['x', 'w'] : ['x', 'w', 'b'], ['y'], attributes);
          const [full] = runNode(conv, inputs, 13);
          const [probe] = runNode(conv, inputs, 13, { shapesOnly: true });
          assert.deepEqual(probe!.tensor.shape, full!.tensor.shape, `${name} (${layout})`);
          assert.equal(probe!.layout, full!.layout);
          assert.equal(probe!.tensor.dtype, full!.tensor.dtype);
          assert.ok(probe!.tensor.dataSync().every((value) => value === 0), 'no convolution was computed');
        });
      }
    }
  });

  test('shapesOnly: a Conv refuses at planning what the full run refuses', () => {
    const refusals: { name: string; x: number[]; w: number[]; attributes: Record<string, OnnxAttribute>; bias?: number }[] = [
      { name: 'groups that do not divide the output channels', x: [1, 4, 5, 5], w: [5, 2, 3, 3], attributes: { group: int(2) } },
      { name: 'a bias of another length than the output channels', x: [1, 3, 5, 5], w: [6, 3, 3, 3], attributes: {}, bias: 4 },
      { name: 'input channels other than the weights take', x: [1, 4, 5, 5], w: [6, 3, 3, 3], attributes: {} },
      { name: 'strides and dilations', x: [1, 3, 9, 9], w: [2, 3, 3, 3], attributes: { strides: ints(2, 2), dilations: ints(2, 2) } },
    ];
    for (const { name, x: xShape, w: wShape, attributes, bias } of refusals) {
      tf.tidy(() => {
        const inputs = [laid(tf.zeros(xShape)), laid(tf.zeros(wShape))];
        if (bias !== undefined) inputs.push(laid(tf.zeros([bias])));
        const conv = node('Conv', bias === undefined ? ['x', 'w'] : ['x', 'w', 'b'], ['y'], attributes);
        assert.throws(() => runNode(conv, inputs, 13), `the full run refuses ${name}`);
        assert.throws(() => runNode(conv, inputs, 13, { shapesOnly: true }), `shapesOnly refuses ${name}`);
      });
    }
  });
});

// ---------------------------------------------------------------- gradients

/** Central differences of `f` at `x`, one element at a time. */
function finiteDifferences(f: (x: tf.Tensor) => tf.Scalar, x: tf.Tensor, epsilon: number): Float64Array {
  const base = x.dataSync().slice();
  const result = new Float64Array(base.length);
  for (let i = 0; i < base.length; i++) {
    const at = (delta: number): number =>
      tf.tidy(() => {
        const moved = base.slice();
        moved[i] = base[i]! + delta;
        return f(tf.tensor(moved, x.shape)).dataSync()[0]!;
      });
    result[i] = (at(epsilon) - at(-epsilon)) / (2 * epsilon);
  }
  return result;
}

function scoreOf(nodes: OnnxNode[], constants: Record<string, tf.Tensor>, layout: 'onnx' | 'nhwc', output: string): (x: tf.Tensor) => tf.Scalar {
  return (x) => {
    const values = new Map<string, LaidTensor>([['x', feed(x, layout)]]);
    for (const [key, value] of Object.entries(constants)) values.set(key, laid(value));
    runChain(nodes, values, 17);
    return tf.sum(toLayout(values.get(output)!, 'onnx')) as tf.Scalar;
  };
}

forEachBackend(() => {
  for (const layout of ['onnx', 'nhwc'] as const) {
    test(`tf.grad through Conv, Relu, GlobalAveragePool, Gemm matches a hand computation and finite differences (${layout})`, () => {
      // x: 1x1x3x3; one 2x2 kernel of ones and bias -1 (a window sum minus 1), ReLU, mean, ×2.
      const x = tf.tensor4d([1, 2, 0, 0, 1, 0, 0.25, 0, 0], [1, 1, 3, 3]);
      const constants = {
        w: tf.ones([1, 1, 2, 2]),
        b: tf.tensor1d([-1]),
        g: tf.tensor2d([2], [1, 1]),
      };
      const nodes = [
        node('Conv', ['x', 'w', 'b'], ['c']),
        node('Relu', ['c'], ['r']),
        node('GlobalAveragePool', ['r'], ['p']),
        node('Flatten', ['p'], ['f']),
        node('Gemm', ['f', 'g'], ['y'], { transB: int(1) }),
      ];
      const f = scoreOf(nodes, constants, layout, 'y');
      // Window sums: [4, 3, 1.25, 1] minus 1: [3, 2, 0.25, 0]: the last window is at the ReLU's kink
      // side 0 (gradient 0). Score = 2 · (3 + 2 + 0.25 + 0) / 4 = 2.625.
      assert.ok(Math.abs(f(x).dataSync()[0]! - 2.625) < 1e-6);
      // d score / d x[i,j] = 2/4 · (number of active windows covering (i,j)); windows 0, 1, 2 are active.
      const expected = [0.5, 1, 0.5, 1, 1.5, 0.5, 0.5, 0.5, 0];
      const gradient = tf.grad(f)(x);
      assertAllClose(gradient.dataSync(), expected, 1e-6, 'gradient');
      // Away from the kink, finite differences agree (moving x[2,2] alone would cross it).
      const moved = tf.tensor4d([1, 2, 0, 0, 1, 0, 0.25, 0, -0.5], [1, 1, 3, 3]);
      assertAllClose(tf.grad(f)(moved).dataSync(), finiteDifferences(f, moved, 1e-2), 1e-3, 'finite differences');
      tf.dispose([x, moved, gradient, ...Object.values(constants)]);
    });

    test(`tf.grad through Conv and a ReLU6 Clip passes nothing at either bound, as PyTorch's ReLU6 (${layout})`, () => {
      // One 2x2 kernel of ones, bias 0: window sums [7, 6, 3, 0]. Clip(0, 6) gives [6, 6, 3, 0]: the
      // windows at 6 and at 0 sit on the bounds, where PyTorch's ReLU6 (Hardtanh) passes no gradient.
      const x = tf.tensor4d([1, 2, 1, 2, 2, 1, -1, 0, -3], [1, 1, 3, 3]);
      const constants = {
        w: tf.ones([1, 1, 2, 2]),
        b: tf.tensor1d([0]),
        lo: tf.scalar(0),
        hi: tf.scalar(6),
        g: tf.tensor2d([2], [1, 1]),
      };
      const nodes = [
        node('Conv', ['x', 'w', 'b'], ['c']),
        node('Clip', ['c', 'lo', 'hi'], ['r']),
        node('GlobalAveragePool', ['r'], ['p']),
        node('Flatten', ['p'], ['f']),
        node('Gemm', ['f', 'g'], ['y'], { transB: int(1) }),
      ];
      const f = scoreOf(nodes, constants, layout, 'y');
      // Score = 2 · (6 + 6 + 3 + 0) / 4 = 7.5.
      assert.ok(Math.abs(f(x).dataSync()[0]! - 7.5) < 1e-6);
      // Only the window at 3 (rows 1-2, columns 0-1) passes gradient: 2/4 on each of its inputs
      // (torch.nn.functional.relu6 on the same numbers gives these).
      const expected = [0, 0, 0, 0.5, 0.5, 0, 0.5, 0.5, 0];
      const gradient = tf.grad(f)(x);
      assertAllClose(gradient.dataSync(), expected, 1e-6, 'gradient');
      tf.dispose([x, gradient, ...Object.values(constants)]);
    });

    test(`tf.grad through Elu, Selu and a per-channel PRelu: hand-computed, and no NaN where e^x overflows (${layout})`, () => {
      // x: 1x2x1x3, channel 0 [-1, 0.5, 100], channel 1 [-2, 3, 200] (e^100 and e^200 overflow float32).
      const x = tf.tensor4d([-1, 0.5, 100, -2, 3, 200], [1, 2, 1, 3]);
      const constants = { slope: tf.tensor3d([0.25, -0.5], [2, 1, 1]) };
      const alpha = 0.5;
      for (const [opType, attributes, value, slope] of [
        ['Elu', { alpha: float(alpha) }, (v: number) => (v > 0 ? v : alpha * Math.expm1(v)), (v: number) => (v > 0 ? 1 : alpha * Math.exp(v))],
        ['Selu', {}, (v: number) => 1.0507009873554805 * (v > 0 ? v : 1.6732632423543772 * Math.expm1(v)), (v: number) => 1.0507009873554805 * (v > 0 ? 1 : 1.6732632423543772 * Math.exp(v))],
      ] as const) {
        const f = scoreOf([node(opType, ['x'], ['y'], attributes)], {}, layout, 'y');
        const values = [-1, 0.5, 100, -2, 3, 200];
        assertAllClose(f(x).dataSync(), [values.reduce((sum, v) => sum + value(v), 0)], 1e-4, `${opType} value`);
        const gradient = tf.grad(f)(x);
        assertAllClose(gradient.dataSync(), values.map(slope), 1e-5, `${opType} gradient`);
        gradient.dispose();
      }
      // PRelu: slope 0.25 on channel 0, -0.5 on channel 1; the gradient is 1 where x > 0, else the channel's slope.
      const f = scoreOf([node('PRelu', ['x', 'slope'], ['y'])], constants, layout, 'y');
      assertAllClose(f(x).dataSync(), [0.25 * -1 + 0.5 + 100 + -0.5 * -2 + 3 + 200], 1e-4, 'PRelu value');
      const gradient = tf.grad(f)(x);
      assertAllClose(gradient.dataSync(), [0.25, 1, 1, -0.5, 1, 1], 1e-6, 'PRelu gradient');
      tf.dispose([x, gradient, ...Object.values(constants)]);
    });

    test(`tf.grad through Pad, MaxPool, Clip, Slice, Concat matches finite differences (${layout})`, () => {
      // Distinct values spread out so that no max ties and no Clip bound lies within epsilon.
      const random = mulberry32(11);
      const values = Array.from({ length: 1 * 2 * 5 * 5 }, (_, i) => (i % 7) * 0.9 - 2.5 + random() * 0.3);
      const x = tf.tensor4d(values, [1, 2, 5, 5]);
      const constants = {
        pads: tf.tensor1d([0, 0, 1, 0, 0, 0, 0, 1], 'int32'),
        lo: tf.scalar(-1),
        hi: tf.scalar(1.5),
        st: tf.tensor1d([2, -1], 'int32'),
        en: tf.tensor1d([-100, -100], 'int32'),
        ax: tf.tensor1d([2, 3], 'int32'),
        sp: tf.tensor1d([-1, -2], 'int32'),
        weights: tf.tensor4d(randomValues(1 * 4 * 3 * 2, 12), [1, 4, 3, 2]),
      };
      const nodes = [
        node('Pad', ['x', 'pads'], ['p'], { mode: str('reflect') }),
        node('MaxPool', ['p'], ['m'], { kernel_shape: ints(2, 2), strides: ints(2, 2), ceil_mode: int(1) }),
        node('Clip', ['m', 'lo', 'hi'], ['c']),
        node('Slice', ['c', 'st', 'en', 'ax', 'sp'], ['s']),
        node('Concat', ['s', 's'], ['k'], { axis: int(1) }),
        node('Mul', ['k', 'weights'], ['y']),
      ];
      const f = scoreOf(nodes, constants, layout, 'y');
      const gradient = tf.grad(f)(x);
      const reference = finiteDifferences(f, x, 1e-3);
      assertAllClose(gradient.dataSync(), reference, 2e-2, 'gradient');
      assert.ok(reference.some((value) => Math.abs(value) > 0.1), 'some input must matter');
      tf.dispose([x, gradient, ...Object.values(constants)]);
    });
  }
});

forEachBackend(() => {
  for (const layout of ['onnx', 'nhwc'] as const) {
    test(`tf.grad through padded, strided and depthwise Conv, BatchNormalization, HardSwish, AveragePool matches finite differences (${layout})`, () => {
      const x = tf.tensor4d(randomValues(1 * 2 * 6 * 6, 21), [1, 2, 6, 6]);
      const constants = {
        w: tf.tensor4d(randomValues(4 * 2 * 3 * 3, 22), [4, 2, 3, 3]),
        dw: tf.tensor4d(randomValues(4 * 1 * 3 * 3, 23), [4, 1, 3, 3]),
        sc: tf.tensor1d([1, 0.5, 2, 1.5]),
        b: tf.tensor1d([0.1, 0, -0.2, 0.3]),
        m: tf.tensor1d([0, 0.1, -0.1, 0.2]),
        v: tf.tensor1d([1, 2, 0.5, 1]),
        weights: tf.tensor4d(randomValues(4 * 2 * 2, 24), [1, 4, 2, 2]),
      };
      const nodes = [
        node('Conv', ['x', 'w'], ['c'], { strides: ints(2, 2), pads: ints(0, 1, 1, 0) }),
        node('Conv', ['c', 'dw'], ['d'], { group: int(4), pads: ints(1, 1, 1, 1) }),
        node('BatchNormalization', ['d', 'sc', 'b', 'm', 'v'], ['n']),
        node('HardSwish', ['n'], ['h']),
        node('AveragePool', ['h'], ['p'], { kernel_shape: ints(2, 2), strides: ints(2, 2), ceil_mode: int(1) }),
        node('Mul', ['p', 'weights'], ['y']),
      ];
      const f = scoreOf(nodes, constants, layout, 'y');
      const gradient = tf.grad(f)(x);
      assertAllClose(gradient.dataSync(), finiteDifferences(f, x, 1e-3), 2e-2, 'gradient');
      assert.ok(Array.from(gradient.dataSync()).some((value) => Math.abs(value) > 0.01), 'some input must matter');
      tf.dispose([x, gradient, ...Object.values(constants)]);
    });
  }
});

forEachBackend(() => {
  for (const layout of ['onnx', 'nhwc'] as const) {
    test(`tf.grad through InstanceNormalization and Resize (linear, cubic with exclude_outside, nearest) matches finite differences (${layout})`, () => {
      const x = tf.tensor4d(randomValues(1 * 2 * 5 * 6, 31), [1, 2, 5, 6]);
      const constants = {
        sc: tf.tensor1d([1.5, 0.5]),
        b: tf.tensor1d([0.1, -0.2]),
        up: tf.tensor1d([1, 1, 1.5, 2]),
        sz: tf.tensor1d([1, 2, 4, 9], 'int32'),
        near: tf.tensor1d([1, 1, 1.75, 0.8]),
        weights: tf.tensor4d(randomValues(1 * 2 * 7 * 7, 32), [1, 2, 7, 7]),
      };
      const nodes = [
        node('InstanceNormalization', ['x', 'sc', 'b'], ['n']),
        node('Resize', ['n', '', 'up'], ['l'], { mode: str('linear'), coordinate_transformation_mode: str('pytorch_half_pixel') }),
        node('Resize', ['l', '', '', 'sz'], ['c'], { mode: str('cubic'), cubic_coeff_a: float(-0.5), exclude_outside: int(1) }),
        node('Resize', ['c', '', 'near'], ['r'], { mode: str('nearest') }),
        node('Mul', ['r', 'weights'], ['y']),
      ];
      const f = scoreOf(nodes, constants, layout, 'y');
      const gradient = tf.grad(f)(x);
      assertAllClose(gradient.dataSync(), finiteDifferences(f, x, 1e-3), 2e-2, 'gradient');
      assert.ok(Array.from(gradient.dataSync()).some((value) => Math.abs(value) > 0.01), 'some input must matter');
      tf.dispose([x, gradient, ...Object.values(constants)]);
    });

    test(`Resize's gradient is its adjoint: <grad of <w, R(x)>, v> = <w, R(v)> for every mode (${layout})`, () => {
      // Resize is linear in x, so tf.grad of x -> sum(w · R(x)) is Rᵀw, whatever x; an independent check of gather's gradient.
      const cases: [string, OnnxNode, Record<string, tf.Tensor>][] = [
        ['linear align_corners', node('Resize', ['x', '', '', 'z'], ['y'], { mode: str('linear'), coordinate_transformation_mode: str('align_corners') }), { z: tf.tensor1d([1, 3, 7, 5], 'int32') }],
        ['cubic half_pixel', node('Resize', ['x', '', 's'], ['y'], { mode: str('cubic') }), { s: tf.tensor1d([1, 1, 1.4, 0.7]) }],
        ['nearest floor', node('Resize', ['x', '', 's'], ['y'], { mode: str('nearest'), nearest_mode: str('floor') }), { s: tf.tensor1d([1, 1, 2.5, 1.25]) }],
      ];
      for (const [name, resize, constants] of cases) {
        const x = tf.tensor4d(randomValues(1 * 3 * 4 * 5, 41), [1, 3, 4, 5]);
        const v = tf.tensor4d(randomValues(1 * 3 * 4 * 5, 42), [1, 3, 4, 5]);
        const resized = (input: tf.Tensor): tf.Tensor => toLayout(runChain([resize], new Map([['x', feed(input, layout)], ...Object.entries(constants).map(([key, value]): [string, LaidTensor] => [key, laid(value)])]), 17).get('y')!, 'onnx');
        const shape = tf.tidy(() => resized(x).shape);
        const w = tf.tensor(randomValues(shape.reduce((a, b) => a * b, 1), 43), shape);
        const gradient = tf.grad((input: tf.Tensor) => tf.sum(tf.mul(resized(input), w)))(x);
        const left = tf.tidy(() => tf.sum(tf.mul(gradient, v)).dataSync()[0]!);
        const right = tf.tidy(() => tf.sum(tf.mul(w, resized(v))).dataSync()[0]!);
        assert.ok(Math.abs(left - right) <= 1e-4 * Math.max(1, Math.abs(right)), `${name}: ${left} vs ${right}`);
        tf.dispose([x, v, w, gradient, ...Object.values(constants)]);
      }
    });
  }
});

forEachBackend(() => {
  test('tf.grad through a dilated MaxPool routes each window to its maximum', () => {
    const values = Array.from({ length: 25 }, (_, i) => (i * 7) % 25);
    // Windows of 2x2 taps two apart: outputs 3x3; each adds 1 at its largest tap.
    const expected = new Array<number>(25).fill(0);
    for (let i = 0; i < 3; i++)
      for (let j = 0; j < 3; j++) {
        const taps = [0, 2].flatMap((u) => [0, 2].map((v) => (i + u) * 5 + (j + v)));
        const best = taps.reduce((a, b) => (values[b]! > values[a]! ? b : a));
        expected[best]! += 1;
      }
    const pool = node('MaxPool', ['x'], ['y'], { kernel_shape: ints(2, 2), dilations: ints(2, 2) });
    for (const layout of ['onnx', 'nhwc'] as const) {
      const x = tf.tensor4d(values, [1, 1, 5, 5]);
      const gradient = tf.grad((t: tf.Tensor) => tf.sum(runNode(pool, [feed(t, layout)], 13)[0]!.tensor))(x);
      assert.deepEqual(Array.from(gradient.dataSync()), expected, layout);
      tf.dispose([x, gradient]);
    }
  });
});

// ---------------------------------------------------------------- ops checked by hand

test('Gelu (opset 20), exact and tanh approximation, against hand-computed values', () => {
  const x = laid(tf.tensor1d([-1, 0, 1, 2]));
  const [exact] = runNode(node('Gelu', ['x'], ['y']), [x], 20);
  const [approx] = runNode(node('Gelu', ['x'], ['y'], { approximate: str('tanh') }), [x], 20);
  // x·Φ(x): Φ(1) = 0.8413447460685429, Φ(2) = 0.9772498680518208.
  assertAllClose(exact!.tensor.dataSync(), [-0.15865525393145707, 0, 0.8413447460685429, 1.9544997361036416], 1e-6, 'exact');
  // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
  const tanhGelu = (v: number): number => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
  assertAllClose(approx!.tensor.dataSync(), [-1, 0, 1, 2].map(tanhGelu), 1e-6, 'tanh');
  assert.equal(supportedOp('Gelu', 19), false);
  tf.dispose([x.tensor, exact!.tensor, approx!.tensor]);
});

test('opset 18 forms: Reduce* axes as an input with noop_with_empty_axes, Split num_outputs, Pad axes', () => {
  tf.tidy(() => {
    const x = laid(tf.tensor2d([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [2, 5]));
    const axes = laid(tf.tensor1d([1], 'int32'));
    const [mean] = runNode(node('ReduceMean', ['x', 'a'], ['y'], { keepdims: int(0) }), [x, axes], 18);
    assert.deepEqual(Array.from(mean!.tensor.dataSync()), [3, 8]);
    const [all] = runNode(node('ReduceMax', ['x'], ['y']), [x], 18);
    assert.deepEqual(all!.tensor.shape, [1, 1]);
    assert.deepEqual(Array.from(all!.tensor.dataSync()), [10]);
    const [same] = runNode(node('ReduceSum', ['x'], ['y'], { noop_with_empty_axes: int(1) }), [x], 18);
    assert.deepEqual(Array.from(same!.tensor.dataSync()), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // Five columns in three pieces: ceil(5 / 3) = 2, 2, then 1.
    const pieces = runNode(node('Split', ['x'], ['a', 'b', 'c'], { axis: int(1), num_outputs: int(3) }), [x], 18);
    assert.deepEqual(pieces.map((piece) => piece.tensor.shape), [[2, 2], [2, 2], [2, 1]]);
    assert.deepEqual(Array.from(pieces[2]!.tensor.dataSync()), [5, 10]);
    const [padded] = runNode(node('Pad', ['x', 'p', 'v', 'a'], ['y']), [x, laid(tf.tensor1d([1, 0], 'int32')), laid(tf.scalar(-1)), axes], 18);
    assert.deepEqual(padded!.tensor.shape, [2, 6]);
    assert.deepEqual(Array.from(padded!.tensor.dataSync()), [-1, 1, 2, 3, 4, 5, -1, 6, 7, 8, 9, 10]);
  });
});

test('Resize: crop with extrapolation, half_pixel_symmetric (opset 19), Resize-10 and Upsample-7, InstanceNormalization, by hand', () => {
  tf.tidy(() => {
    const run = (n: OnnxNode, inputs: (tf.Tensor | undefined)[], opset: number): number[] =>
      Array.from(toLayout(runNode(n, inputs.map((t) => (t === undefined ? undefined : laid(t))), opset)[0]!, 'onnx').dataSync());
    // ONNX's test_resize_tf_crop_and_resize_extrapolation_value: rows 1.2, 2.4 (3.6 is out), columns 1.8 (3.45, 5.1 are out).
    const grid = tf.tensor4d(Array.from({ length: 16 }, (_, i) => i + 1), [1, 1, 4, 4]);
    const crop = node('Resize', ['x', 'roi', '', 'z'], ['y'], { mode: str('linear'), coordinate_transformation_mode: str('tf_crop_and_resize'), extrapolation_value: float(10) });
    const roi = tf.tensor1d([0, 0, 0.4, 0.6, 1, 1, 1.2, 1.7]);
    assertAllClose(run(crop, [grid, roi, undefined, tf.tensor1d([1, 1, 3, 3], 'int32')], 13), [7.6, 10, 10, 12.4, 10, 10, 10, 10, 10], 1e-5, 'crop');
    // Scale 0.6 of 4: 2.4 resized, 2 kept; the centre stays the centre: sources 2/3 and 7/3.
    const row = tf.tensor4d([1, 2, 3, 4], [1, 1, 1, 4]);
    const symmetric = node('Resize', ['x', '', 's'], ['y'], { mode: str('linear'), coordinate_transformation_mode: str('half_pixel_symmetric') });
    assertAllClose(run(symmetric, [row, undefined, tf.tensor1d([1, 1, 1, 0.6])], 19), [5 / 3, 10 / 3], 1e-5, 'half_pixel_symmetric');
    // Resize-10 nearest rounds up when shrinking (ONNX's opset-10 test data), down when enlarging.
    const legacy = node('Resize', ['x', 's'], ['y']);
    assert.deepEqual(run(legacy, [tf.tensor4d([1, 2, 3, 4, 5, 6, 7, 8], [1, 1, 2, 4]), tf.tensor1d([1, 1, 0.6, 0.6])], 10), [1, 3]);
    assert.deepEqual(run(legacy, [tf.tensor4d([1, 2], [1, 1, 1, 2]), tf.tensor1d([1, 1, 1, 3])], 10), [1, 1, 1, 2, 2, 2]);
    // Upsample-7 reads its scales from the attribute; linear is asymmetric: sources 0, 0.5, 1, 1.5 (clamped to 1).
    const upsample = node('Upsample', ['x'], ['y'], { mode: str('linear'), scales: floats(1, 1, 1, 2) });
    assert.deepEqual(run(upsample, [tf.tensor4d([1, 3], [1, 1, 1, 2])], 7), [1, 2, 3, 3]);
    // InstanceNormalization: channel 0 [1, 3] (mean 2, biased variance 1), channel 1 [4, 4] (variance 0: only B is left).
    const norm = node('InstanceNormalization', ['x', 'sc', 'b'], ['y'], { epsilon: float(1e-6) });
    const normalised = run(norm, [tf.tensor4d([1, 3, 4, 4], [1, 2, 1, 2]), tf.tensor1d([2, 5]), tf.tensor1d([0.5, -1])], 6);
    assertAllClose(normalised, [-1.5, 2.5, -1, -1], 1e-5, 'instance norm');
  });
});

test('Resize and Upsample: the opsets claimed, shapesOnly stand-ins, and one-line refusals naming the node', () => {
  assert.equal(supportedOp('Resize', 9), false);
  assert.equal(supportedOp('Resize', 22), true);
  assert.equal(supportedOp('Upsample', 9), true);
  assert.equal(supportedOp('Upsample', 10), false, 'Upsample is deprecated from opset 10');
  assert.equal(supportedOp('InstanceNormalization', 6), true);
  tf.tidy(() => {
    const x = laid(tf.transpose(tf.tensor4d(randomValues(2 * 3 * 4 * 4, 51), [2, 3, 4, 4]), [0, 2, 3, 1]), 'nhwc');
    const scales = laid(tf.tensor1d([1, 1, 1.5, 2]));
    const up = node('Resize', ['x', '', 's'], ['y'], { mode: str('linear') });
    const [full] = runNode(up, [x, undefined, scales], 13);
    const [standIn] = runNode(up, [x, undefined, scales], 13, { shapesOnly: true });
    assert.deepEqual([standIn!.layout, standIn!.tensor.shape], [full!.layout, full!.tensor.shape]);
    assert.deepEqual(full!.tensor.shape, [2, 6, 8, 3]);
    const refusal = (n: OnnxNode, inputs: (LaidTensor | undefined)[], opset: number, pattern: RegExp): void => {
      assert.throws(() => runNode(n, inputs, opset), (error: Error) => error instanceof UnsupportedOpError && pattern.test(error.message) && !error.message.includes('\n'));
    };
    const channels = laid(tf.tensor1d([1, 2, 1, 1]));
    refusal(up, [x, undefined, channels], 13, /unsupported ONNX op Resize \(node '\/Resize', opset 13\): linear resizing of axis 1 \(the channels\)/);
    refusal(node('Resize', ['x', '', 's'], ['y'], { mode: str('cubic'), antialias: int(1) }), [x, undefined, scales], 18, /antialias 1/);
    const sizes = laid(tf.tensor1d([2, 3, 5, 5], 'int32'));
    refusal(node('Resize', ['x', '', '', 'z'], ['y'], { keep_aspect_ratio_policy: str('not_larger') }), [x, undefined, undefined, sizes], 18, /keep_aspect_ratio_policy 'not_larger'/);
    refusal(node('Resize', ['x', '', 's'], ['y'], { coordinate_transformation_mode: str('tf_half_pixel_for_nn') }), [x, undefined, scales], 13, /coordinate_transformation_mode 'tf_half_pixel_for_nn'/);
    refusal(node('Resize', ['x', '', 's'], ['y'], { coordinate_transformation_mode: str('half_pixel_symmetric') }), [x, undefined, scales], 18, /half_pixel_symmetric/);
    refusal(node('Resize', ['x', '', 's'], ['y'], { mode: str('area') }), [x, undefined, scales], 13, /mode 'area'/);
    // Nearest resizes any axis; a value past the per-tensor limit is refused before it is made.
    const [copied] = runNode(node('Resize', ['x', '', 's'], ['y']), [x, undefined, channels], 13);
    assert.deepEqual(copied!.tensor.shape, [2, 4, 4, 6]);
    assert.throws(() => runNode(up, [x, undefined, laid(tf.tensor1d([1, 1, 30000, 30000]))], 13), /would make a tensor of 2x3x120000x120000/);
    assert.throws(() => runNode(up, [x, undefined, laid(tf.tensor1d([1, 1, 2, 2])), sizes], 13), /both scales and sizes are given/);
  });
});

test('int64 tensors become int32: sentinels saturate, other values beyond int32 are refused', () => {
  const t = tensorFromOnnx({ name: 'ends', type: 'int64', dims: [3], data: BigInt64Array.from([9223372036854775807n, -9223372036854775807n, -5n]) });
  assert.equal(t.dtype, 'int32');
  assert.deepEqual(Array.from(t.dataSync()), [2147483647, -2147483648, -5]);
  t.dispose();
  const big = { name: 'count', type: 'int64' as const, dims: [1], data: BigInt64Array.from([4294967296n]) };
  assert.throws(() => tensorFromOnnx(big), /ONNX tensor 'count': int64 value 4294967296 does not fit in int32/);
});

// ---------------------------------------------------------------- refusals and ownership

test('an unsupported op, opset or domain is refused naming the op type, node and opset', () => {
  const x = laid(tf.tensor1d([1, 2]));
  const refusal = (n: OnnxNode, opset: number): UnsupportedOpError => {
    try {
      runNode(n, [x], opset);
    } catch (error) {
      assert.ok(error instanceof UnsupportedOpError);
      return error;
    }
    assert.fail('no error');
  };
  const unknown = refusal({ ...node('NonMaxSuppression', ['x'], ['y']), name: '/head/nms' }, 13);
  assert.match(unknown.message, /NonMaxSuppression.*'\/head\/nms'.*opset 13/);
  assert.equal(unknown.opType, 'NonMaxSuppression');
  assert.match(refusal(node('LayerNormalization', ['x'], ['y']), 16).message, /LayerNormalization.*opset 16/);
  assert.match(refusal({ ...node('TopK', ['x'], ['values']), name: '' }, 13).message, /TopK \(the node computing 'values', opset 13\)/);
  assert.match(refusal({ ...node('Relu', ['x'], ['y']), domain: 'com.microsoft' }, 13).message, /domain 'com.microsoft'/);
  assert.match(refusal(node('MaxPool', ['x'], ['y'], { kernel_shape: ints(2) }), 13).message, /MaxPool.*: an input of rank 1 \(N, C and spatial axes are expected\)/);
  const image = laid(tf.zeros([1, 1, 4, 4]));
  const dilatedStrided = node('MaxPool', ['x'], ['y'], { kernel_shape: ints(2, 2), dilations: ints(2, 2), strides: ints(2, 2) });
  assert.throws(() => runNode(dilatedStrided, [image], 13), /dilations with strides larger than 1/);
  image.tensor.dispose();
  x.tensor.dispose();
});

test('runNode outputs are the caller\'s own tensors, even for Identity', () => {
  const x = laid(tf.tensor1d([1, 2]));
  const [y] = runNode(node('Identity', ['x'], ['y']), [x], 13);
  assert.notEqual(y!.tensor, x.tensor);
  x.tensor.dispose();
  assert.deepEqual(Array.from(y!.tensor.dataSync()), [1, 2]);
  y!.tensor.dispose();
});

test('interpretGraph frees every value but the fetches, also when a node fails', () => {
  const m = model(
    [node('Mul', ['x', 'k'], ['a']), node('Relu', ['a'], ['b']), node('Identity', ['b'], ['c']), node('Add', ['c', 'k'], ['d'])],
    [onnxTensor('k', [2], [2, -1])],
  );
  const x = laid(tf.tensor1d([1, 3]));
  const before = tf.memory().numTensors;
  const result = interpretGraph(m, new Map([['x', x]]), ['d', 'b']);
  assert.equal(tf.memory().numTensors, before + 2);
  assert.deepEqual(Array.from(result.get('d')!.tensor.dataSync()), [4, -1]);
  assert.deepEqual(Array.from(result.get('b')!.tensor.dataSync()), [2, 0]);
  for (const value of result.values()) value.tensor.dispose();
  assert.equal(x.tensor.isDisposed, false, 'feeds stay the caller\'s');

  const failing = model([node('Mul', ['x', 'k'], ['a']), node('Foo', ['a'], ['b'])], [onnxTensor('k', [2], [2, -1])]);
  assert.throws(() => interpretGraph(failing, new Map([['x', x]]), ['b']), UnsupportedOpError);
  assert.equal(tf.memory().numTensors, before);
  const outOfOrder = model([node('Relu', ['a'], ['b']), node('Mul', ['x', 'k'], ['a'])], [onnxTensor('k', [2], [2, -1])]);
  assert.throws(() => interpretGraph(outOfOrder, new Map([['x', x]]), ['b']), /ONNX value 'a' is read before it is computed/);
  const unfed = model([node('Mul', ['x', 'k'], ['a'])], [onnxTensor('k', [2], [2, -1])]);
  unfed.graph.inputs.push({ name: 'x', type: 'float32', shape: [2] });
  assert.throws(() => interpretGraph(unfed, new Map(), ['a']), /ONNX graph input 'x' is not fed/);
  assert.equal(tf.memory().numTensors, before);
  x.tensor.dispose();
});

// ---------------------------------------------------------------- decoder, normalisation and along-an-axis ops

/** A tensor's values as numbers (the references below compute in float64). */
const valuesOf = (t: tf.Tensor): number[] => Array.from(t.dataSync());

/**
 * ConvTranspose written out in float64 over NCHW, as ONNX defines it: every
 * input pixel adds its kernel, dilated, at stride·position, into the full
 * output; output element p of an axis is full-output element p + start.
 * `start` and `size` are computed by hand for each case, not by camviz.
 */
function referenceConvTranspose(
  x: { data: ArrayLike<number>; shape: number[] },
  w: { data: ArrayLike<number>; shape: number[] },
  { group, strides, dilations, start, size }: { group: number; strides: [number, number]; dilations: [number, number]; start: [number, number]; size: [number, number] },
): number[] {
  const [n, c, h, wd] = x.shape as [number, number, number, number];
  const [, mg, kh, kw] = w.shape as [number, number, number, number];
  const cg = c / group;
  const out = new Float64Array(n * mg * group * size[0] * size[1]);
  for (let b = 0; b < n; b++)
    for (let ci = 0; ci < c; ci++) {
      const g = Math.floor(ci / cg);
      for (let mo = 0; mo < mg; mo++)
        for (let i = 0; i < h; i++)
          for (let j = 0; j < wd; j++)
            for (let u = 0; u < kh; u++)
              for (let v = 0; v < kw; v++) {
                const row = i * strides[0] + u * dilations[0] - start[0];
                const col = j * strides[1] + v * dilations[1] - start[1];
                if (row < 0 || row >= size[0] || col < 0 || col >= size[1]) continue;
                const o = g * mg + mo;
                out[((b * mg * group + o) * size[0] + row) * size[1] + col]! += x.data[((b * c + ci) * h + i) * wd + j]! * w.data[((ci * mg + mo) * kh + u) * kw + v]!;
              }
    }
  return Array.from(out);
}

forEachBackend(() => {
  for (const layout of ['onnx', 'nhwc'] as const) {
    test(`ConvTranspose gives a float64 scatter's values for every attribute it accepts (${layout})`, () => {
      const cases: { name: string; x: number[]; w: number[]; attributes: Record<string, OnnxAttribute>; group: number; strides: [number, number]; dilations: [number, number]; start: [number, number]; size: [number, number] }[] = [
        // H: full 2·2 + 2·2 + 1 = 9, + output_padding 1, - pads 1 and 2 = 7 from 1; W: full 3·3 + 2 = 11, + 2, - 0 and 1 = 12 from 0 (the last column: bias only).
        { name: 'grouped, strided and dilated, pads and output_padding', x: [1, 4, 3, 4], w: [4, 3, 3, 2], attributes: { group: int(2), strides: ints(2, 3), dilations: ints(2, 1), pads: ints(1, 0, 2, 1), output_padding: ints(1, 2) }, group: 2, strides: [2, 3], dilations: [2, 1], start: [1, 0], size: [7, 12] },
        // Full 6x6; output_shape 9x8 is zeros beyond it (no crop).
        { name: 'output_shape beyond the full output', x: [1, 2, 3, 3], w: [2, 1, 2, 2], attributes: { strides: ints(2, 2), output_shape: ints(9, 8) }, group: 1, strides: [2, 2], dilations: [1, 1], start: [0, 0], size: [9, 8] },
        // Output 3·2 = 6; total padding H 2·2 + 3 + 1 - 6 = 2 (1 before), W 7 - 6 = 1 (SAME_LOWER: before).
        { name: 'SAME_LOWER with output_padding', x: [1, 2, 3, 3], w: [2, 2, 3, 3], attributes: { strides: ints(2, 2), auto_pad: str('SAME_LOWER'), output_padding: ints(1, 0) }, group: 1, strides: [2, 2], dilations: [1, 1], start: [1, 1], size: [6, 6] },
        // The same with SAME_UPPER: the odd pad after.
        { name: 'SAME_UPPER', x: [1, 2, 3, 3], w: [2, 2, 3, 3], attributes: { strides: ints(2, 2), auto_pad: str('SAME_UPPER'), output_padding: ints(1, 0) }, group: 1, strides: [2, 2], dilations: [1, 1], start: [1, 0], size: [6, 6] },
        // Depthwise-like: 3 groups of one channel, each to two.
        { name: 'one channel per group', x: [2, 3, 2, 3], w: [3, 2, 2, 2], attributes: { group: int(3), strides: ints(1, 2) }, group: 3, strides: [1, 2], dilations: [1, 1], start: [0, 0], size: [3, 6] },
      ];
      cases.forEach((c, k) => {
        tf.tidy(() => {
          const x = tf.tensor4d(randomValues(c.x.reduce((a, b) => a * b, 1), 70 + k), c.x as [number, number, number, number]);
          const w = tf.tensor4d(randomValues(c.w.reduce((a, b) => a * b, 1), 80 + k), c.w as [number, number, number, number]);
          const [y] = runNode(node('ConvTranspose', ['x', 'w'], ['y'], c.attributes), [feed(x, layout), laid(w)], 13);
          assert.equal(y!.layout, 'nhwc');
          const actual = toLayout(y!, 'onnx');
          assert.deepEqual(actual.shape, [c.x[0], c.w[1]! * c.group, ...c.size], c.name);
          const expected = referenceConvTranspose({ data: x.dataSync(), shape: c.x }, { data: w.dataSync(), shape: c.w }, c);
          assertAllClose(actual.dataSync(), expected, 1e-5, c.name);
        });
      });
    });

    test(`ConvTranspose is Conv's adjoint: <ConvT(x), y> = <x, Conv(y)>, grouped, strided or dilated (${layout})`, () => {
      const cases: [string, Record<string, OnnxAttribute>, number[], number[]][] = [
        ['grouped and strided, pads and output_padding', { group: int(2), strides: ints(2, 3), pads: ints(1, 0, 0, 1), output_padding: ints(1, 0) }, [1, 4, 3, 4], [4, 3, 3, 2]],
        ['dilated', { dilations: ints(2, 3), pads: ints(1, 1, 1, 1) }, [2, 2, 4, 4], [2, 3, 3, 2]],
      ];
      for (const [name, attributes, xShape, wShape] of cases) {
        tf.tidy(() => {
          const x = tf.tensor(randomValues(xShape.reduce((a, b) => a * b, 1), 91), xShape);
          const w = tf.tensor(randomValues(wShape.reduce((a, b) => a * b, 1), 92), wShape);
          const [transposed] = runNode(node('ConvTranspose', ['x', 'w'], ['y'], attributes), [feed(x, layout), laid(w)], 13);
          const up = toLayout(transposed!, 'onnx');
          const y = tf.tensor(randomValues(up.size, 93), up.shape);
          const convAttributes = Object.fromEntries(Object.entries(attributes).filter(([key]) => key !== 'output_padding'));
          const [down] = runNode(node('Conv', ['y', 'w'], ['x'], convAttributes), [feed(y, layout), laid(w)], 13);
          const back = toLayout(down!, 'onnx');
          assert.deepEqual(back.shape, xShape, name);
          const left = tf.sum(tf.mul(up, y)).dataSync()[0]!;
          const right = tf.sum(tf.mul(x, back)).dataSync()[0]!;
          assert.ok(Math.abs(left - right) <= 1e-4 * Math.max(1, Math.abs(right)), `${name}: ${left} vs ${right}`);
        });
      }
    });

    test(`DepthToSpace (DCR) and SpaceToDepth undo each other and are each other's adjoint; CRD moves channel k·b² + i·b + j (${layout})`, () => {
      tf.tidy(() => {
        const x = tf.tensor4d(randomValues(2 * 8 * 3 * 2, 101), [2, 8, 3, 2]);
        const run = (n: OnnxNode, input: tf.Tensor): tf.Tensor => toLayout(runNode(n, [feed(input, layout)], 13)[0]!, 'onnx');
        const toSpace = node('DepthToSpace', ['x'], ['y'], { blocksize: int(2) });
        const toDepth = node('SpaceToDepth', ['x'], ['y'], { blocksize: int(2) });
        const spread = run(toSpace, x);
        assert.deepEqual(spread.shape, [2, 2, 6, 4]);
        assert.deepEqual(valuesOf(run(toDepth, spread)), valuesOf(x));
        const y = tf.tensor4d(randomValues(2 * 2 * 6 * 4, 102), [2, 2, 6, 4]);
        const left = tf.sum(tf.mul(spread, y)).dataSync()[0]!;
        const right = tf.sum(tf.mul(x, run(toDepth, y))).dataSync()[0]!;
        assert.ok(Math.abs(left - right) <= 1e-5, `${left} vs ${right}`);
        // DCR: output (c, h·2 + i, w·2 + j) is input ((i·2 + j)·2 + c, h, w); CRD: input (c·4 + i·2 + j, h, w).
        const crd = valuesOf(run(node('DepthToSpace', ['x'], ['y'], { blocksize: int(2), mode: str('CRD') }), x));
        const dcr = valuesOf(spread);
        const input = valuesOf(x);
        const at = (n: number, c: number, h: number, w: number): number => input[((n * 8 + c) * 3 + h) * 2 + w]!;
        for (let n = 0; n < 2; n++)
          for (let c = 0; c < 2; c++)
            for (let row = 0; row < 6; row++)
              for (let col = 0; col < 4; col++) {
                const [h, i, w, j] = [Math.floor(row / 2), row % 2, Math.floor(col / 2), col % 2];
                const out = ((n * 2 + c) * 6 + row) * 4 + col;
                assert.equal(dcr[out], at(n, (i * 2 + j) * 2 + c, h, w));
                assert.equal(crd[out], at(n, c * 4 + i * 2 + j, h, w));
              }
      });
    });

    test(`tf.grad through ConvTranspose, DepthToSpace, LRN, GroupNormalization, Mish, Sin, Cos, CumSum matches finite differences (${layout})`, () => {
      const x = tf.tensor4d(randomValues(1 * 4 * 3 * 3, 111), [1, 4, 3, 3]);
      const constants = {
        w: tf.tensor4d(randomValues(4 * 4 * 3 * 2, 112), [4, 4, 3, 2]),
        b: tf.tensor1d([0.1, -0.2, 0.3, 0, 0.2, -0.1, 0, 0.4]),
        sc: tf.tensor1d([1.5, 0.5]),
        sh: tf.tensor1d([0.1, -0.2]),
        axis: tf.scalar(2, 'int32'),
        weights: tf.tensor4d(randomValues(2 * 18 * 14, 113), [1, 2, 18, 14]),
      };
      const nodes = [
        node('ConvTranspose', ['x', 'w', 'b'], ['t'], { group: int(2), strides: ints(2, 3), dilations: ints(2, 1), pads: ints(1, 0, 0, 1), output_padding: ints(1, 0) }),
        node('LRN', ['t'], ['l'], { size: int(2), alpha: float(0.5), beta: float(0.75), bias: float(1.5) }),
        node('GroupNormalization', ['l', 'sc', 'sh'], ['g'], { num_groups: int(2) }),
        node('Mish', ['g'], ['m']),
        node('DepthToSpace', ['m'], ['d'], { blocksize: int(2), mode: str('CRD') }),
        node('Sin', ['d'], ['s']),
        node('Cos', ['d'], ['c']),
        node('Add', ['s', 'c'], ['a']),
        node('CumSum', ['a', 'axis'], ['k'], { reverse: int(1) }),
        node('Mul', ['k', 'weights'], ['y']),
      ];
      const f = (input: tf.Tensor): tf.Scalar => {
        const values = new Map<string, LaidTensor>([['x', feed(input, layout)]]);
        for (const [key, value] of Object.entries(constants)) values.set(key, laid(value));
        runChain(nodes, values, 18);
        return tf.sum(toLayout(values.get('y')!, 'onnx')) as tf.Scalar;
      };
      const gradient = tf.grad(f)(x);
      // A step of 1e-2: the CumSum adds up hundreds of float32 values, whose rounding a step of 1e-3 would divide by 2e-3 (wasm sums in another order than cpu).
      assertAllClose(gradient.dataSync(), finiteDifferences(f, x, 1e-2), 2e-2, 'gradient');
      assert.ok(Array.from(gradient.dataSync()).some((value) => Math.abs(value) > 0.01), 'some input must matter');
      tf.dispose([x, gradient, ...Object.values(constants)]);
    });
  }
});

test('LRN of an even size, GroupNormalization at opsets 18 and 21, Mish, Round, IsInf, GatherElements, by hand', () => {
  tf.tidy(() => {
    const run = (n: OnnxNode, inputs: tf.Tensor[], opset: number): number[] => valuesOf(toLayout(runNode(n, inputs.map((t) => laid(t)), opset)[0]!, 'onnx'));
    // LRN size 4 over 5 channels at one pixel: ONNX's window is c - 1 .. c + 2, alpha/size · Σ x².
    const channels = [1, -2, 3, 0.5, -1];
    const lrn = node('LRN', ['x'], ['y'], { size: int(4), alpha: float(0.4), beta: float(0.75), bias: float(2) });
    const expected = channels.map((v, c) => {
      const window = channels.slice(Math.max(0, c - 1), c + 3);
      return v / (2 + (0.4 / 4) * window.reduce((sum, u) => sum + u * u, 0)) ** 0.75;
    });
    assertAllClose(run(lrn, [tf.tensor4d(channels, [1, 5, 1, 1])], 13), expected, 1e-5, 'LRN');
    // GroupNormalization: 4 channels in 2 groups, [1, 3 | 5, 7] and [2, 2 | 2, 6]; group 0 mean 4, variance 5; group 1 mean 3, variance 3.
    const x = tf.tensor4d([1, 3, 5, 7, 2, 2, 2, 6], [1, 4, 1, 2]);
    const normal = (v: number, mean: number, variance: number): number => (v - mean) / Math.sqrt(variance + 1e-5);
    const groupNorm = node('GroupNormalization', ['x', 'sc', 'b'], ['y'], { num_groups: int(2) });
    const perGroup = run(groupNorm, [x, tf.tensor1d([2, -1]), tf.tensor1d([0.5, 1])], 18);
    assertAllClose(perGroup, [1, 3, 5, 7].map((v) => 2 * normal(v, 4, 5) + 0.5).concat([2, 2, 2, 6].map((v) => -normal(v, 3, 3) + 1)), 1e-4, 'per group');
    const perChannel = run(groupNorm, [x, tf.tensor1d([1, 2, 3, 4]), tf.tensor1d([0, 0, 0, 1])], 21);
    const scaled = [1, 1, 2, 2, 3, 3, 4, 4];
    assertAllClose(perChannel, [1, 3, 5, 7, 2, 2, 2, 6].map((v, i) => scaled[i]! * normal(v, i < 4 ? 4 : 3, i < 4 ? 5 : 3) + (i >= 6 ? 1 : 0)), 1e-4, 'per channel');
    assert.throws(() => run(groupNorm, [x, tf.tensor1d([1, 2, 3, 4]), tf.tensor1d([0, 0, 0, 0])], 18), /4 scale or bias values, expected 2 \(one per group at opset 18\)/);
    // Mish x · tanh(ln(1 + eˣ)); large inputs stay finite.
    const mish = run(node('Mish', ['x'], ['y']), [tf.tensor1d([-2, 0, 1, 100])], 18);
    assertAllClose(mish, [-2, 0, 1, 100].map((v) => v * Math.tanh(Math.log1p(Math.exp(Math.min(v, 50))))), 1e-5, 'Mish');
    assert.deepEqual(run(node('Round', ['x'], ['y']), [tf.tensor1d([0.5, 1.5, 2.5, -0.5, -1.5, 2.4])], 11), [0, 2, 2, -0, -2, 2]);
    const infinities = tf.tensor1d([Infinity, -Infinity, 1, NaN]);
    assert.deepEqual(run(node('IsInf', ['x'], ['y'], { detect_negative: int(0) }), [infinities], 10), [1, 0, 0, 0]);
    assert.deepEqual(run(node('IsInf', ['x'], ['y'], { detect_positive: int(0) }), [infinities], 10), [0, 1, 0, 0]);
    assert.deepEqual(run(node('IsNaN', ['x'], ['y']), [infinities], 13), [0, 0, 0, 1]);
    // GatherElements on axis 1: row i takes data[i][index].
    const gathered = run(node('GatherElements', ['x', 'i'], ['y'], { axis: int(1) }), [tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]), tf.tensor2d([2, -3, 1, 1], [2, 2], 'int32')], 13);
    assert.deepEqual(gathered, [3, 1, 5, 5]);
    assert.throws(() => run(node('GatherElements', ['x', 'i'], ['y'], { axis: int(1) }), [tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]), tf.tensor2d([0, 3], [2, 1], 'int32')], 13), /an index outside \[-3, 2\] along axis 1/);
  });
});

test('ConvTranspose and the new ops: the opsets claimed, a shapesOnly stand-in, one-line refusals naming the node', () => {
  for (const [op, since] of [['Mish', 18], ['GroupNormalization', 18], ['CumSum', 11], ['GatherElements', 11], ['Round', 11], ['IsInf', 10], ['Sign', 9]] as const) {
    assert.equal(supportedOp(op, since - 1), false, op);
    assert.equal(supportedOp(op, since), true, op);
  }
  for (const op of ['ConvTranspose', 'DepthToSpace', 'SpaceToDepth', 'LRN', 'ArgMax', 'ArgMin', 'Hardmax', 'Sin', 'Cos']) assert.equal(supportedOp(op, 7), true, op);
  assert.equal(supportedOp('NonMaxSuppression', 13), false);
  tf.tidy(() => {
    const x = laid(tf.transpose(tf.tensor4d(randomValues(2 * 2 * 3 * 3, 121), [2, 2, 3, 3]), [0, 2, 3, 1]), 'nhwc');
    const w = laid(tf.tensor4d(randomValues(2 * 3 * 3 * 3, 122), [2, 3, 3, 3]));
    const up = node('ConvTranspose', ['x', 'w'], ['y'], { strides: ints(2, 2), output_padding: ints(1, 1), pads: ints(1, 1, 1, 1) });
    const [full] = runNode(up, [x, w], 13);
    const [standIn] = runNode(up, [x, w], 13, { shapesOnly: true });
    assert.deepEqual([standIn!.layout, standIn!.tensor.shape], [full!.layout, full!.tensor.shape]);
    assert.deepEqual(full!.tensor.shape, [2, 6, 6, 3]);
    const refusal = (n: OnnxNode, inputs: LaidTensor[], opset: number, pattern: RegExp): void => {
      assert.throws(() => runNode(n, inputs, opset), (error: Error) => error instanceof UnsupportedOpError && pattern.test(error.message) && !error.message.includes('\n'));
    };
    refusal(node('ConvTranspose', ['x', 'w'], ['y'], { strides: ints(2, 2), output_shape: ints(5, 5) }), [x, w], 13, /unsupported ONNX op ConvTranspose \(node '\/ConvTranspose', opset 13\): output_shape 5 below the full output 7 without auto_pad/);
    refusal(node('ConvTranspose', ['x', 'w'], ['y'], { strides: ints(2, 2), auto_pad: str('SAME_UPPER') }), [x, w], 10, /auto_pad SAME_UPPER before opset 11/);
    refusal(node('ConvTranspose', ['x', 'w'], ['y'], { pads: ints(1, 1, 1, 1), output_shape: ints(5, 5) }), [x, w], 13, /pads together with output_shape/);
    refusal(node('ConvTranspose', ['x', 'w'], ['y'], { strides: ints(4, 4), auto_pad: str('SAME_LOWER') }), [x, w], 13, /negative total padding/);
    refusal(node('ConvTranspose', ['x', 'w'], ['y']), [laid(tf.zeros([1, 2, 3, 3, 3])), laid(tf.zeros([2, 3, 3, 3, 3]))], 13, /3-D data \(only 1-D and 2-D are supported\)/);
    refusal(node('MaxPool', ['x'], ['y'], { kernel_shape: ints(2, 2, 2, 2) }), [laid(tf.zeros([1, 1, 2, 2, 2, 2]))], 13, /4-D data \(only 1-D, 2-D and 3-D are supported\)/);
    refusal(node('AveragePool', ['x'], ['y'], { kernel_shape: ints(2, 2) }), [laid(tf.zeros([1, 1, 2, 2, 2]))], 13, /kernel_shape of length 2 for 3-D data/);
    refusal(node('DepthToSpace', ['x'], ['y'], { blocksize: int(2), mode: str('XYZ') }), [laid(tf.zeros([1, 4, 2, 2]))], 13, /mode 'XYZ'/);
    assert.throws(() => runNode(node('DepthToSpace', ['x'], ['y'], { blocksize: int(2) }), [x], 13), /2 channels for blocks of 2x2/);
    // A transposed convolution grows its input: past the per-tensor limit it is refused before anything is made.
    const huge = node('ConvTranspose', ['x', 'w'], ['y'], { strides: ints(30000, 30000) });
    assert.throws(() => runNode(huge, [x, w], 13), /would make a tensor of 2x3x60003x60003/);
  });
});

// ---------------------------------------------------------------- Einsum

/** One Einsum node on `operands` (ONNX layout), its output's values and ONNX shape. */
function einsumOf(equation: string, operands: tf.Tensor[], opset = 12): { values: number[]; shape: number[] } {
  return tf.tidy(() => {
    const n = node('Einsum', operands.map((_, i) => `x${i}`), ['y'], { equation: str(equation) });
    const y = toLayout(runNode(n, operands.map((t) => laid(t)), opset)[0]!, 'onnx');
    return { values: valuesOf(y), shape: y.shape };
  });
}

forEachBackend(() => {
  test('Einsum against hand-computed values: products, diagonals, traces, implicit outputs, ellipses, broadcasting, three operands, integers', () => {
    tf.tidy(() => {
      const a = tf.tensor2d([1, 2, 3, 4], [2, 2]);
      const b = tf.tensor2d([5, 6, 7, 8], [2, 2]);
      const cases: [string, tf.Tensor[], number[], number[]][] = [
        // [[1,2],[3,4]]·[[5,6],[7,8]] = [[19,22],[43,50]]; spaces anywhere.
        ['ij,jk->ik', [a, b], [2, 2], [19, 22, 43, 50]],
        [' i j , j k ', [a, b], [2, 2], [19, 22, 43, 50]],
        // Implicit 'ji,jk': i and k once each, so the output is 'ik': Σ_j a[j][i] b[j][k] = aᵀb.
        ['ji,jk', [a, b], [2, 2], [26, 30, 38, 44]],
        ['ij->ji', [a], [2, 2], [1, 3, 2, 4]],
        // Implicit 'ba' lists b before a, so its output 'ab' is the transpose.
        ['ba', [a], [2, 2], [1, 3, 2, 4]],
        ['ii->i', [a], [2], [1, 4]],
        ['ii', [a], [], [5]],
        ['ij->', [a], [], [10]],
        ['ij->j', [a], [2], [4, 6]],
        // Σ_ij a[i][j] b[j][i] = trace(ab) = 19 + 50; upper and lower case are different letters.
        ['Ab,bA', [a, b], [], [69]],
        // 2x2x2 of 0..7: the diagonal is elements 0 and 7; 'iij->ij' keeps [i][i][j]: 0, 1 and 6, 7.
        ['iii->i', [tf.tensor3d([0, 1, 2, 3, 4, 5, 6, 7], [2, 2, 2])], [2], [0, 7]],
        ['iij->ij', [tf.tensor3d([0, 1, 2, 3, 4, 5, 6, 7], [2, 2, 2])], [2, 2], [0, 1, 6, 7]],
        ['i,i', [tf.tensor1d([1, 2, 3]), tf.tensor1d([4, 5, 6])], [], [32]],
        ['i,j->ij', [tf.tensor1d([1, 2]), tf.tensor1d([3, 4, 5])], [2, 3], [3, 4, 5, 6, 8, 10]],
        // Rows of a dotted with [1, -1] (broadcast along the ellipsis): [1-2, 3-4]; implicit output keeps the ellipsis.
        ['...i,...i->...', [a, tf.tensor1d([1, -1])], [2], [-1, -1]],
        ['...i,i', [a, tf.tensor1d([1, -1])], [2], [-1, -1]],
        // A size-1 dim broadcasts against its letter's size elsewhere: 2·(1 + 2 + 3).
        ['i,i', [tf.tensor1d([2]), tf.tensor1d([1, 2, 3])], [], [12]],
        // a·b·[[1,0],[0,2]] = [[19,44],[43,100]]; a scalar operand scales.
        ['ij,jk,kl->il', [a, b, tf.tensor2d([1, 0, 0, 2], [2, 2])], [2, 2], [19, 44, 43, 100]],
        ['ij,->ji', [a, tf.scalar(3)], [2, 2], [3, 9, 6, 12]],
        ['->', [tf.scalar(5)], [], [5]],
        ['ij,jk->ik', [tf.tensor2d([1, 2, 3, 4], [2, 2], 'int32'), tf.tensor2d([5, 6, 7, 8], [2, 2], 'int32')], [2, 2], [19, 22, 43, 50]],
      ];
      for (const [equation, operands, shape, expected] of cases) {
        const got = einsumOf(equation, operands);
        assert.deepEqual(got.shape, shape, equation);
        assertAllClose(got.values, expected, 1e-5, equation);
      }
    });
  });

  for (const layout of ['onnx', 'nhwc'] as const) {
    test(`tf.grad through Einsum (channel mixing, attention-like, diagonal, ellipsis, size-1 broadcasting) matches finite differences (${layout})`, () => {
      const x = tf.tensor4d(randomValues(1 * 3 * 4 * 4, 141), [1, 3, 4, 4]);
      const constants = {
        m: tf.tensor2d(randomValues(2 * 3, 142), [2, 3]),
        w: tf.tensor1d(randomValues(4, 143)),
        // [1, 4]: its 'c' broadcasts against the mixed value's 2 channels in a summed letter.
        r: tf.tensor2d(randomValues(4, 144), [1, 4]),
      };
      const nodes = [
        node('Einsum', ['x', 'm'], ['mixed'], { equation: str('bchw,dc->bdhw') }),
        node('Einsum', ['mixed', 'x'], ['scores'], { equation: str('bdhw,bcgw->bhg') }),
        node('Einsum', ['scores'], ['diagonal'], { equation: str('bhh->bh') }),
        node('Einsum', ['mixed', 'w'], ['rows'], { equation: str('...hw,w->...h') }),
        node('Einsum', ['rows', 'r'], ['pooled'], { equation: str('bch,ch->b') }),
        node('Einsum', ['diagonal', 'scores', 'pooled'], ['y'], { equation: str('bh,bhg,b->bg') }),
      ];
      const f = scoreOf(nodes, constants, layout, 'y');
      const gradient = tf.grad(f)(x);
      assertAllClose(gradient.dataSync(), finiteDifferences(f, x, 1e-2), 2e-2, 'gradient');
      assert.ok(Array.from(gradient.dataSync()).some((value) => Math.abs(value) > 0.01), 'some input must matter');
      tf.dispose([x, gradient, ...Object.values(constants)]);
    });
  }
});

test('Einsum: claimed from opset 12, a shapesOnly stand-in, one-line refusals naming the node', () => {
  assert.equal(supportedOp('Einsum', 11), false);
  assert.equal(supportedOp('Einsum', 12), true);
  tf.tidy(() => {
    const x = laid(tf.transpose(tf.tensor4d(randomValues(2 * 3 * 4 * 5, 151), [2, 3, 4, 5]), [0, 2, 3, 1]), 'nhwc');
    const m = laid(tf.tensor2d(randomValues(6 * 3, 152), [6, 3]));
    const mixing = node('Einsum', ['x', 'm'], ['y'], { equation: str('bchw,dc->bdhw') });
    const [full] = runNode(mixing, [x, m], 12);
    const [standIn] = runNode(mixing, [x, m], 12, { shapesOnly: true });
    assert.deepEqual([full!.layout, full!.tensor.shape], ['nhwc', [2, 4, 5, 6]]);
    assert.deepEqual([standIn!.layout, standIn!.tensor.shape], [full!.layout, full!.tensor.shape]);
    const refusals: [string, number[][], RegExp][] = [
      ['ij,jk->ik', [[2, 3], [4, 5]], /'j' is 4 in operand 1 but 3 in an earlier operand/],
      ['ij->i', [[2, 3, 4]], /operand 0 has rank 3 but its term 'ij' has 2 letters/],
      ['i1->i', [[2, 3]], /'1' in operand 0 \(terms hold letters and one '\.\.\.'\)/],
      ['i.j', [[2, 2]], /'\.' in operand 0/],
      ['......', [[2]], /more than one '\.\.\.' in operand 0/],
      ['ii->i', [[2, 3]], /'i' is 2 and 3 in operand 0/],
      ['i->ii', [[2]], /'i' more than once in the output/],
      ['i->j', [[2]], /output letter 'j' is in no input term/],
      ['ij,jk', [[2, 3]], /2 terms for 1 inputs/],
      ['i->i->i', [[2]], /more than one '->'/],
      ['  ', [[2]], /the equation is empty/],
      ['i\n->i', [[2]], /'i\\n->i': '\\n' in operand 0/],
      ['i,j,k,l->ijkl', [[1000], [1000], [1000], [1000]], /would make a tensor of 1000x1000x1000x1000/],
    ];
    for (const [equation, shapes, pattern] of refusals) {
      const n = node('Einsum', shapes.map((_, i) => `x${i}`), ['y'], { equation: str(equation) });
      assert.throws(() => runNode(n, shapes.map((shape) => laid(tf.zeros(shape))), 12), (error: Error) => pattern.test(error.message) && error.message.includes("'/Einsum'") && !error.message.includes('\n'), equation);
    }
    assert.throws(() => runNode(node('Einsum', ['x', 'y'], ['z'], { equation: str('i,i') }), [laid(tf.zeros([2])), laid(tf.zeros([2], 'int32'))], 12), /operands of type float32 and int32/);
  });
});

test('Mod (fmod 0 and 1), ScatterND and a training Dropout of ratio 0 (what torchvision Swin exports), by hand', () => {
  tf.tidy(() => {
    const run = (n: OnnxNode, inputs: tf.Tensor[], opset: number): number[] => valuesOf(toLayout(runNode(n, inputs.map((t) => laid(t)), opset)[0]!, 'onnx'));
    const a = [7, -7, 7, -7];
    const b = [3, 3, -3, -3];
    // fmod 0: the divisor's sign (Python's %); fmod 1: the dividend's (C's fmod).
    assert.deepEqual(run(node('Mod', ['a', 'b'], ['y']), [tf.tensor1d(a, 'int32'), tf.tensor1d(b, 'int32')], 13), [1, 2, -2, -1]);
    assert.deepEqual(run(node('Mod', ['a', 'b'], ['y'], { fmod: int(1) }), [tf.tensor1d(a, 'int32'), tf.tensor1d(b, 'int32')], 13), [1, -1, 1, -1]);
    assertAllClose(run(node('Mod', ['a', 'b'], ['y'], { fmod: int(1) }), [tf.tensor1d([5.5, -5.5]), tf.tensor1d([2, 2])], 13), [1.5, -1.5], 1e-6, 'float fmod');
    // ScatterND: rows 2 and 0 (then -4, which is 0 again: the last write wins) of a 4 x 2 matrix replaced.
    const scatter = node('ScatterND', ['d', 'i', 'u'], ['y']);
    const data = tf.tensor2d([1, 2, 3, 4, 5, 6, 7, 8], [4, 2]);
    const indices = tf.tensor2d([2, 0, -4], [3, 1], 'int32');
    const updates = tf.tensor2d([10, 20, 30, 40, 50, 60], [3, 2]);
    assert.deepEqual(run(scatter, [data, indices, updates], 13), [50, 60, 3, 4, 10, 20, 7, 8]);
    // Single elements ([row, column] indices).
    assert.deepEqual(run(scatter, [data, tf.tensor2d([3, 1, 1, 0], [2, 2], 'int32'), tf.tensor1d([-1, -2])], 13), [1, 2, -2, 4, 5, 6, 7, -1]);
    // The gradient reaches data where nothing overwrote it and the updates that were written.
    const [dData, dUpdates] = tf.grads((d: tf.Tensor, u: tf.Tensor) => tf.sum(tf.mul(toLayout(runNode(scatter, [laid(d), laid(indices), laid(u)], 13)[0]!, 'onnx'), tf.reshape(tf.range(1, 9), [4, 2]))))([data, updates]);
    assert.deepEqual(valuesOf(dData!), [0, 0, 3, 4, 0, 0, 7, 8]);
    assert.deepEqual(valuesOf(dUpdates!), [5, 6, 0, 0, 1, 2]);
    assert.throws(() => run(scatter, [data, tf.tensor2d([4], [1, 1], 'int32'), tf.tensor2d([0, 0], [1, 2])], 13), /ScatterND\): index 4 outside \[-4, 3\] on axis 0/);
    // A reduction before the opset that brought it, or one ONNX does not define (the reductions: test/onnx-scatternd.test.ts).
    assert.throws(() => run(node('ScatterND', ['d', 'i', 'u'], ['y'], { reduction: str('add') }), [data, indices, updates], 13), /ScatterND.*reduction 'add'/);
    assert.throws(() => run(node('ScatterND', ['d', 'i', 'u'], ['y'], { reduction: str('max') }), [data, indices, updates], 17), /ScatterND.*reduction 'max'/);
    assert.throws(() => run(node('ScatterND', ['d', 'i', 'u'], ['y'], { reduction: str('mean') }), [data, indices, updates], 18), /ScatterND.*reduction 'mean'/);
    assert.throws(() => run(node('ScatterND', ['d', 'i', 'u'], ['y'], { reduction: str('add') }), [tf.cast(data, 'bool'), indices, tf.cast(updates, 'bool')], 16), /ScatterND.*reduction 'add' of bool data/);
    // Dropout with training_mode true drops nothing at ratio 0; any other ratio is refused.
    const dropout = node('Dropout', ['x', 'r', 't'], ['y']);
    const x = tf.tensor1d([1, -2, 3]);
    assert.deepEqual(run(dropout, [x, tf.scalar(0), tf.scalar(true, 'bool')], 13), [1, -2, 3]);
    assert.throws(() => run(dropout, [x, tf.scalar(0.1), tf.scalar(true, 'bool')], 13), /Dropout.*training mode/);
    assert.throws(() => run(node('Dropout', ['x'], ['y'], { is_test: int(0) }), [x], 6), /Dropout.*training mode/);
  });
});

forEachBackend(() => {
  test("a 3-D MaxPool's gradient goes to each window's first maximum in (D, H, W) order, as PyTorch's max_pool3d, by hand", () => {
    tf.tidy(() => {
      const pool = node('MaxPool', ['x'], ['y'], { kernel_shape: ints(2, 2, 2) });
      const gradient = (values: number[]): number[] => {
        const x = tf.tensor(values, [1, 1, 2, 2, 2]);
        return valuesOf(tf.grad((v: tf.Tensor) => tf.sum(toLayout(runNode(pool, [laid(v)], 13)[0]!, 'onnx')))(x));
      };
      // All tied: the first element; the maximum at (0, 1, 1) and (1, 0, 0): the first depth's, later in (H, W) though it is.
      assert.deepEqual(gradient([1, 1, 1, 1, 1, 1, 1, 1]), [1, 0, 0, 0, 0, 0, 0, 0]);
      assert.deepEqual(gradient([0, 0, 0, 5, 5, 0, 0, 0]), [0, 0, 0, 1, 0, 0, 0, 0]);
      // 1-D as 2-D of height 1: windows [0, 1], [2, 3] of a stride-2 pool, each tied.
      const oneD = node('MaxPool', ['x'], ['y'], { kernel_shape: ints(2), strides: ints(2) });
      const x = tf.tensor([3, 3, 2, 2], [1, 1, 4]);
      assert.deepEqual(valuesOf(tf.grad((v: tf.Tensor) => tf.sum(toLayout(runNode(oneD, [laid(v)], 13)[0]!, 'onnx')))(x)), [1, 0, 1, 0]);
    });
  });
});

test('a pooling window wider than its padded input is refused in one line naming the node (1-D, 2-D, 3-D; planning pass and run), where tfjs failed on a negative shape', () => {
  const cases: [OnnxNode, number[]][] = [
    [node('MaxPool', ['x'], ['y'], { kernel_shape: ints(9, 1, 1) }), [1, 2, 7, 3, 3]],
    [node('AveragePool', ['x'], ['y'], { kernel_shape: ints(2, 2, 4), pads: ints(0, 0, 0, 0, 0, 1) }), [1, 2, 3, 3, 2]],
    [node('AveragePool', ['x'], ['y'], { kernel_shape: ints(5) }), [1, 2, 3]],
    [node('MaxPool', ['x'], ['y'], { kernel_shape: ints(3, 3), dilations: ints(2, 2) }), [1, 1, 4, 4]],
  ];
  for (const [pool, shape] of cases) {
    for (const shapesOnly of [true, false]) {
      tf.tidy(() => {
        assert.throws(
          () => runNode(pool, [laid(tf.ones(shape))], 13, { shapesOnly }),
          (error: Error) => error instanceof CamvizError && /node '\/(MaxPool|AveragePool)' \((MaxPool|AveragePool)\): a window of \d+ over \d+ cells/.test(error.message) && !error.message.includes('\n'),
          `${pool.opType} ${JSON.stringify(pool.attributes)} on [${shape.join(', ')}]${shapesOnly ? ' (planning)' : ''}`,
        );
      });
    }
  }
});
