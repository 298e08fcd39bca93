/**
 * ONNX nodes as the tfjs-layers classes of the same semantics, for the
 * parts of camviz that read a layer's class and fields: the executor's
 * fusion (Conv2D / DepthwiseConv2D + ReLU), score location (Softmax,
 * Flatten, Reshape), the default CAM target (global pooling), guided
 * backpropagation (ReLU) and the CAM method (Dense, pointwise Conv2D).
 */
import * as tf from '../../engine/tf.js';
import { type LaidTensor, type Layout, toLayout } from './layout.js';
import { dilatedConv2d } from '../../engine/dilated-conv.js';
import type { OnnxNode } from './types.js';

/**
 * How a node layer gets each ONNX input: omitted, a folded constant, the
 * layer's next runtime input, or (a built Conv layer's weights) the layer's
 * own kernel in tfjs' layout, which replaces the ONNX-layout constant.
 */
export type InputSource = { kind: 'omitted' } | { kind: 'constant'; value: LaidTensor } | { kind: 'runtime'; layout: Layout } | { kind: 'kernel' };

/** Gemm with alpha = beta = 1, no transposed input, constant weights [C, N] or [N, C] (transB) and bias. */
export interface DenseGeometry {
  weights: tf.Tensor;
  transposed: boolean;
  bias: tf.Tensor | undefined;
}

/**
 * A Conv as tfjs-layers' Conv2D / DepthwiseConv2D describe one (what
 * src/executor/fusion.ts and the CAM method read): NHWC in and out,
 * constant weights, one group or depthwise, padding tfjs' fused kernels take.
 */
export interface ConvGeometry {
  depthwise: boolean;
  /** Input channels. */
  channels: number;
  /** ONNX weights [M, C/group, kh, kw] and bias [M]. */
  weights: tf.Tensor;
  bias: tf.Tensor | undefined;
  strides: [number, number];
  dilationRate: [number, number];
  /** 'same': TF's padding (the smaller half before), which tfjs' fused depthwise kernel takes where it takes no explicit pads. */
  padding: 'valid' | 'same' | number | [[0, 0], [number, number], [number, number], [0, 0]];
}

/**
 * A Conv layer's weights as the layer holds them: its kernel in tfjs'
 * layout, made on its first read (see build.ts `ConvKernels`), for which
 * the ONNX-layout weights are then dropped; its shape is known before. The
 * bias is the ONNX constant itself (the same layout in both).
 */
export type ConvLayerWeights = Omit<ConvGeometry, 'weights'> & {
  readonly kernel: () => tf.Tensor;
  readonly kernelShape: readonly [number, number, number, number];
  /** The ONNX-layout weights while the model still holds them (until the kernel is made), else undefined. */
  readonly weightsAsStored: () => tf.Tensor | undefined;
};

/** The fields of a tfjs-layers Conv2D / DepthwiseConv2D that the executor's fusion and the CAM method read. */
export function convView(conv: ConvLayerWeights): Record<string, unknown> {
  const [kh, kw] = conv.kernelShape;
  return convFields(conv, conv.kernel, kh, kw);
}

/**
 * A Conv with constant weights as tfjs runs it: the kernel transposed once,
 * not at every call. The output is NHWC, as the op library's. A Conv with a
 * bias runs as one fused kernel (see `fusedConvWithBias`), except a dilated
 * one: that input gradient has no dilations, so it stays a convolution
 * (whose gradient engine/dilated-conv.ts computes, which tfjs refuses) and an add.
 */
export function runConv(conv: ConvLayerWeights, input: LaidTensor): tf.Tensor {
  return tf.tidy(() => {
    const x = toLayout(input, 'nhwc') as tf.Tensor4D;
    const filter = conv.kernel() as tf.Tensor4D;
    const dilated = conv.dilationRate.some((rate) => rate > 1);
    if (conv.bias !== undefined && !dilated) return fusedConvWithBias(conv, filter, conv.bias)(x);
    const y = dilated
      ? dilatedConv2d(x, filter, conv.padding, conv.dilationRate, conv.depthwise)
      : conv.depthwise
        ? tf.depthwiseConv2d(x, filter, conv.strides, conv.padding, 'NHWC')
        : tf.conv2d(x, filter, conv.strides, conv.padding, 'NHWC');
    return conv.bias === undefined ? y : tf.add(y, conv.bias);
  });
}

/**
 * conv(x) + bias as tfjs' fused kernel (one kernel, as tfjs-layers runs a
 * Conv2D), differentiable in x only. tfjs' own gradient of the fused kernel
 * also computes the filter's and the bias's gradients, which made a
 * leaf-mode backward through SqueezeNet's classifier conv ten times slower
 * on the cpu backend; here the filter and bias are constants of the model,
 * so only the input's gradient is computed, by the kernel tfjs' plain
 * convolution's gradient runs.
 */
function fusedConvWithBias(conv: ConvLayerWeights, filter: tf.Tensor4D, bias: tf.Tensor): (x: tf.Tensor4D) => tf.Tensor4D {
  const { strides } = conv;
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const x = args[0] as tf.Tensor4D;
    const value = conv.depthwise
      ? tf.fused.depthwiseConv2d({ x, filter, strides, pad: depthwisePadding(conv), dataFormat: 'NHWC', bias })
      : tf.fused.conv2d({ x, filter, strides, pad: conv.padding, dataFormat: 'NHWC', bias });
    const gradFunc = (dy: tf.Tensor4D): tf.Tensor[] => {
      const inputs = { dy, filter };
      const attrs = { strides, pad: conv.padding, inputShape: x.shape, ...(conv.depthwise ? { dilations: [1, 1] } : { dataFormat: 'NHWC' }) };
      return [tf.engine().runKernel(conv.depthwise ? tf.DepthwiseConv2dNativeBackpropInput : tf.Conv2DBackpropInput, inputs, attrs as unknown as tf.NamedAttrMap)];
    };
    return { value, gradFunc };
  }) as (x: tf.Tensor4D) => tf.Tensor4D;
}

/** A depthwise Conv's padding: `convGeometry` never gives one explicit pads. */
function depthwisePadding(conv: ConvLayerWeights): 'valid' | 'same' | number {
  if (typeof conv.padding === 'object') throw new Error('a depthwise Conv with explicit pads has no ConvGeometry');
  return conv.padding;
}

function convFields(conv: ConvLayerWeights, read: () => tf.Tensor, kh: number, kw: number): Record<string, unknown> {
  return {
    [conv.depthwise ? 'depthwiseKernel' : 'kernel']: { read },
    bias: conv.bias === undefined ? null : { read: () => conv.bias },
    kernelSize: [kh, kw],
    strides: conv.strides,
    dilationRate: conv.dilationRate,
    padding: conv.padding,
    dataFormat: 'channelsLast',
    activation: { getClassName: () => 'linear', apply: (x: tf.Tensor) => x },
    // ONNX's [M, C, kh, kw] is output-major as it is (a depthwise Conv's M reads one channel each: no classifier).
    ...(conv.depthwise ? {} : { outputMajorKernel: conv.weightsAsStored }),
  };
}

/**
 * The fields of a tfjs-layers Dense that the CAM method reads: kernel [C, N]
 * and bias. Without transB the Gemm's weights are that kernel (the tensor
 * itself: a clone is a copy on the wasm backend). With transB (PyTorch's
 * Linear) the transposed kernel is made on first read and kept in `kernels`:
 * the Gemm runs on the ONNX weights, and only what reads the kernel (the CAM
 * method, the closed-form head) pays for the copy.
 */
export function denseView(dense: DenseGeometry, kernels: Set<tf.Tensor>): Record<string, unknown> {
  let kernel: tf.Tensor | undefined;
  const read = (): tf.Tensor => {
    if (!dense.transposed) return dense.weights;
    kernel ??= tf.keep(tf.transpose(dense.weights));
    kernels.add(kernel);
    return kernel;
  };
  return {
    kernel: { read },
    // With transB the Gemm's weights are [N, C]: output-major as they are.
    outputMajorKernel: () => (dense.transposed ? dense.weights : undefined),
    bias: dense.bias === undefined ? null : { read: () => dense.bias },
    activation: { getClassName: () => 'linear', apply: (x: tf.Tensor) => x },
  };
}

/** A Gemm that computes x·W + b on the image's values with constant W and b, as a Dense layer does. */
export function denseGeometry(node: OnnxNode, sources: readonly InputSource[]): DenseGeometry | undefined {
  const [a, b, c] = sources;
  const number = (name: string, fallback: number): number => {
    const attribute = node.attributes[name];
    return attribute?.kind === 'int' || attribute?.kind === 'float' ? attribute.value : fallback;
  };
  if (a?.kind !== 'runtime' || b?.kind !== 'constant' || b.value.tensor.rank !== 2) return undefined;
  if (number('transA', 0) !== 0 || number('alpha', 1) !== 1 || number('beta', 1) !== 1) return undefined;
  if (c !== undefined && c.kind !== 'omitted' && (c.kind !== 'constant' || c.value.tensor.rank !== 1)) return undefined;
  return { weights: b.value.tensor, transposed: number('transB', 0) === 1, bias: c?.kind === 'constant' ? c.value.tensor : undefined };
}

/** The shape of `tfjsKernel(conv)`: [kh, kw, C/group, M], depthwise [kh, kw, C, M/C]. */
export function tfjsKernelShape(conv: ConvGeometry): [number, number, number, number] {
  const [outChannels, groupChannels, kh, kw] = conv.weights.shape as [number, number, number, number];
  return conv.depthwise ? [kh, kw, conv.channels, outChannels / conv.channels] : [kh, kw, groupChannels, outChannels];
}

/** ONNX [M, C/group, kh, kw] as tfjs' [kh, kw, C, M] (Conv2D) or [kh, kw, C, M/C] (depthwise): a new tensor the caller owns. */
export function tfjsKernel(conv: ConvGeometry): tf.Tensor {
  return tf.tidy(() => {
    const [outChannels, , kh, kw] = conv.weights.shape as [number, number, number, number];
    if (!conv.depthwise) return tf.transpose(conv.weights, [2, 3, 1, 0]);
    // Depthwise: output channel c·m + j reads input channel c.
    return tf.transpose(tf.reshape(conv.weights, [conv.channels, outChannels / conv.channels, kh, kw]), [2, 3, 0, 1]);
  });
}

/** Keras class names of the same semantics, which the executor and the CAM methods read. */
export function kerasClassName(node: OnnxNode, constantOf: (value: string) => LaidTensor | undefined, inputRank: number): string {
  switch (node.opType) {
    case 'Relu':
      return 'ReLU';
    case 'Clip':
      return isReluClip(node, constantOf) ? 'ReLU' : 'Clip';
    case 'GlobalAveragePool':
      return 'GlobalAveragePooling2D';
    case 'GlobalMaxPool':
      return 'GlobalMaxPooling2D';
    case 'ReduceMean':
      return inputRank === 4 && isSpatialReduce(node, constantOf) ? 'GlobalAveragePooling2D' : 'ReduceMean';
    case 'Flatten':
    case 'Reshape':
    case 'Softmax':
    case 'Dropout':
      return node.opType;
    default:
      return node.opType;
  }
}

/** Clip(0, 6) (ReLU6) and Clip(0) (ReLU) gate like a ReLU in guided backpropagation. */
function isReluClip(node: OnnxNode, constantOf: (value: string) => LaidTensor | undefined): boolean {
  const attribute = node.attributes['min'];
  let min: number | undefined = attribute?.kind === 'float' ? attribute.value : undefined;
  const minInput = node.inputs[1];
  if (minInput !== undefined && minInput !== '') {
    const value = constantOf(minInput);
    min = value === undefined || value.tensor.size !== 1 ? undefined : value.tensor.dataSync()[0];
  }
  return min === 0;
}

/**
 * Clip's upper bound: undefined when it has none, NaN when it has one that
 * is not a constant scalar (a bound all the same: what reads this, the
 * fusion and the closed-form head, must not take it for a plain ReLU).
 */
export function clipMax(node: OnnxNode, constantOf: (value: string) => LaidTensor | undefined): number | undefined {
  const attribute = node.attributes['max'];
  const maxInput = node.inputs[2];
  if (maxInput !== undefined && maxInput !== '') {
    const value = constantOf(maxInput);
    return value === undefined || value.tensor.size !== 1 ? Number.NaN : value.tensor.dataSync()[0];
  }
  return attribute?.kind === 'float' ? attribute.value : undefined;
}

function intsAttribute(node: OnnxNode, name: string): number[] | undefined {
  const attribute = node.attributes[name];
  return attribute?.kind === 'ints' ? attribute.value : undefined;
}

/**
 * The geometry of a Conv that tfjs' fused kernels can run: an NHWC input,
 * constant weights and bias, one group or depthwise, no strides together
 * with dilations, padding that the kernel takes (depthwise: equal on every
 * side, or TF's "same" padding for this input size). Undefined otherwise:
 * the Conv then runs as its own layer.
 */
export function convGeometry(node: OnnxNode, sources: readonly InputSource[], input: LaidTensor): ConvGeometry | undefined {
  const [, weightSource, biasSource] = sources;
  if (weightSource?.kind !== 'constant' || (biasSource !== undefined && biasSource.kind === 'runtime')) return undefined;
  const weights = weightSource.value.tensor;
  if (weights.rank !== 4 || input.tensor.rank !== 4) return undefined;
  const channels = input.tensor.shape[input.layout === 'nhwc' ? 3 : 1]!;
  const [outChannels, groupChannels] = weights.shape as [number, number, number, number];
  const groupAttribute = node.attributes['group'];
  const group = groupAttribute?.kind === 'int' ? groupAttribute.value : 1;
  const depthwise = group > 1 && group === channels && groupChannels === 1 && outChannels % channels === 0;
  if (group !== 1 && !depthwise) return undefined;
  const strides = (intsAttribute(node, 'strides') ?? [1, 1]) as [number, number];
  const dilationRate = (intsAttribute(node, 'dilations') ?? [1, 1]) as [number, number];
  if (strides.length !== 2 || dilationRate.length !== 2) return undefined;
  if (strides.some((stride) => stride > 1) && dilationRate.some((rate) => rate > 1)) return undefined;
  const autoPad = node.attributes['auto_pad'];
  const pads = autoPad?.kind === 'string' && autoPad.value !== 'NOTSET' ? (autoPad.value === 'VALID' ? [0, 0, 0, 0] : undefined) : (intsAttribute(node, 'pads') ?? [0, 0, 0, 0]);
  // SAME_UPPER / SAME_LOWER depend on the input size: left to the op library.
  if (pads === undefined || pads.length !== 4) return undefined;
  const [top, left, bottom, right] = pads as [number, number, number, number];
  let padding: ConvGeometry['padding'];
  if (top === 0 && left === 0 && bottom === 0 && right === 0) padding = 'valid';
  else if (top === left && top === bottom && top === right) padding = top;
  else if (depthwise) {
    if (!isTfSamePadding(spatialSize(input), weights.shape.slice(2) as [number, number], strides, dilationRate, [top, left, bottom, right])) return undefined;
    padding = 'same';
  } else padding = [[0, 0], [top, bottom], [left, right], [0, 0]];
  const bias = biasSource?.kind === 'constant' ? biasSource.value.tensor : undefined;
  return { depthwise, channels, weights, bias, strides, dilationRate, padding };
}

/** [height, width] of a 4-D value in either layout. */
function spatialSize(input: LaidTensor): [number, number] {
  const [, a, b, c] = input.tensor.shape as [number, number, number, number];
  return input.layout === 'nhwc' ? [a, b] : [b, c];
}

/**
 * Whether ONNX pads [top, left, bottom, right] are what TF's "same" padding
 * gives: output ceil(size / stride), the total padding split with the
 * smaller half before (asymmetric at stride 2 on even sizes).
 */
function isTfSamePadding(size: [number, number], kernel: [number, number], strides: [number, number], dilations: [number, number], pads: [number, number, number, number]): boolean {
  return [0, 1].every((axis) => {
    const effectiveKernel = (kernel[axis]! - 1) * dilations[axis]! + 1;
    const out = Math.ceil(size[axis]! / strides[axis]!);
    const total = Math.max((out - 1) * strides[axis]! + effectiveKernel - size[axis]!, 0);
    const before = Math.floor(total / 2);
    return pads[axis] === before && pads[axis + 2] === total - before;
  });
}

function isSpatialReduce(node: OnnxNode, constantOf: (value: string) => LaidTensor | undefined): boolean {
  const attribute = node.attributes['axes'];
  let axes: number[] | undefined = attribute?.kind === 'ints' ? attribute.value : undefined;
  const axesInput = node.inputs[1];
  if (axesInput !== undefined && axesInput !== '') {
    const value = constantOf(axesInput);
    axes = value === undefined ? undefined : Array.from(value.tensor.dataSync());
  }
  if (axes === undefined) return false;
  const normal = axes.map((axis) => (axis < 0 ? axis + 4 : axis)).sort();
  return normal.length === 2 && normal[0] === 2 && normal[1] === 3;
}
