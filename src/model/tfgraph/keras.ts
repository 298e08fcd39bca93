/**
 * TF graph nodes as the tfjs-layers classes of the same semantics, for the
 * parts of camviz that read a layer's class and fields: the executor's
 * fusion (Conv2D / DepthwiseConv2D [+ BatchNormalization] + ReLU runs as one
 * fused kernel, as for a layers model), guided backpropagation (ReLU, fused
 * activations), score location (Softmax, Reshape), the default CAM target
 * (global pooling) and the CAM method (Dense, pointwise Conv2D); and the
 * ONNX writer, which converts Keras classes (ConcatV2 as Concatenate, a
 * zero Pad as ZeroPadding2D).
 *
 * A view's fields must compute what the node computes: the fused path runs
 * them instead of the node. Views are given only where every field is known
 * (constant weights, NHWC, SAME/VALID padding); otherwise the node keeps its
 * TF op name as its class and runs as itself.
 */
import type * as tf from '../../engine/tf.js';
import { type TfNode, boolAttr, floatAttr, fusedOps, intsAttr, stringAttr } from './graph-def.js';

/** A node (or a conv/matmul with its bias add) as a Keras layer: the class and the fields camviz reads. */
export interface KerasView {
  readonly className: string;
  readonly fields: Readonly<Record<string, unknown>>;
}

/** The constant weight a value key names, if it is a Const node's output. */
export type WeightOf = (key: string) => tf.Tensor | undefined;

/** Depthwise convolutions: TF's, and the converter's fused one (named with or without TF's underscore). */
const DEPTHWISE_OPS = new Set(['DepthwiseConv2dNative', 'FusedDepthwiseConv2dNative', '_FusedDepthwiseConv2dNative']);
const CONV_OPS = new Set(['Conv2D', '_FusedConv2D', ...DEPTHWISE_OPS]);
/** Ops with the bias (and an activation) fused in: `fused_ops`, the bias their third input. */
const FUSED_OPS = new Set(['_FusedConv2D', '_FusedMatMul', 'FusedDepthwiseConv2dNative', '_FusedDepthwiseConv2dNative']);
const PAD_OPS = new Set(['Pad', 'PadV2']);
const MATMUL_OPS = new Set(['MatMul', '_FusedMatMul']);
const BIAS_OPS = new Set(['BiasAdd', 'Add', 'AddV2']);
const BATCH_NORM_OPS = new Set(['FusedBatchNorm', 'FusedBatchNormV2', 'FusedBatchNormV3']);

/** Whether `head` followed by `next` is a conv or matmul with its bias (grouped into one layer). */
export function isBiasOf(head: TfNode, next: TfNode, weightOf: WeightOf): boolean {
  if (!(head.op === 'Conv2D' || head.op === 'DepthwiseConv2dNative' || head.op === 'MatMul') || !BIAS_OPS.has(next.op)) return false;
  return next.inputs.length === 2 && next.inputs[0] === head.name && weightOf(next.inputs[1]!)?.rank === 1;
}

/** The Keras view of a group of nodes (one node, or a conv/matmul and its bias add), if there is one. */
export function kerasView(members: readonly TfNode[], weightOf: WeightOf): KerasView | undefined {
  const head = members[0]!;
  if (head.op === 'ConcatV2') return concatView(head, weightOf);
  if (PAD_OPS.has(head.op)) return padView(head, weightOf);
  const biasKey = members.length === 2 ? members[1]!.inputs[1] : FUSED_OPS.has(head.op) ? head.inputs[2] : undefined;
  const fused = FUSED_OPS.has(head.op) ? fusedOps(head) : [];
  if (FUSED_OPS.has(head.op) && (fused[0] !== 'BiasAdd' || fused.length > 2)) return undefined;
  const activation = fused.length === 2 ? ({ Relu: 'relu', Relu6: 'relu6' } as Record<string, string>)[fused[1]!] : 'linear';
  if (activation === undefined) return undefined;
  const bias = biasKey === undefined ? null : weightOf(biasKey);
  if (bias === undefined) return undefined;
  if (CONV_OPS.has(head.op)) return convView(head, weightOf(head.inputs[1] ?? ''), bias, activation);
  if (MATMUL_OPS.has(head.op)) return denseView(head, weightOf(head.inputs[1] ?? ''), bias, activation);
  if (BATCH_NORM_OPS.has(head.op)) return batchNormView(head, weightOf);
  return undefined;
}

const constant = (tensor: tf.Tensor) => ({ read: () => tensor });
const activationNamed = (name: string) => ({ getClassName: () => name, apply: (x: tf.Tensor) => x });

function convView(node: TfNode, kernel: tf.Tensor | undefined, bias: tf.Tensor | null, activation: string): KerasView | undefined {
  const padding = stringAttr(node, 'padding');
  const format = stringAttr(node, 'data_format') ?? 'NHWC';
  const strides = intsAttr(node, 'strides') ?? [1, 1, 1, 1];
  const dilations = intsAttr(node, 'dilations') ?? [1, 1, 1, 1];
  if (kernel?.rank !== 4 || format !== 'NHWC' || (padding !== 'SAME' && padding !== 'VALID') || strides.length !== 4 || dilations.length !== 4) return undefined;
  const depthwise = DEPTHWISE_OPS.has(node.op);
  const [kh, kw] = kernel.shape;
  return {
    className: depthwise ? 'DepthwiseConv2D' : 'Conv2D',
    fields: {
      // TF's filters are tfjs' layouts: [kh, kw, in, out] and [kh, kw, in, multiplier].
      [depthwise ? 'depthwiseKernel' : 'kernel']: constant(kernel),
      bias: bias === null ? null : constant(bias),
      kernelSize: [kh, kw],
      strides: [strides[1], strides[2]],
      dilationRate: [dilations[1], dilations[2]],
      padding: padding.toLowerCase(),
      dataFormat: 'channelsLast',
      activation: activationNamed(activation),
    },
  };
}

function denseView(node: TfNode, kernel: tf.Tensor | undefined, bias: tf.Tensor | null, activation: string): KerasView | undefined {
  if (kernel?.rank !== 2 || boolAttr(node, 'transpose_a') === true || boolAttr(node, 'transpose_b') === true) return undefined;
  return { className: 'Dense', fields: { kernel: constant(kernel), bias: bias === null ? null : constant(bias), activation: activationNamed(activation) } };
}

function batchNormView(node: TfNode, weightOf: WeightOf): KerasView | undefined {
  const [, gamma, beta, mean, variance] = node.inputs.map(weightOf);
  const format = stringAttr(node, 'data_format') ?? 'NHWC';
  if (gamma === undefined || beta === undefined || mean === undefined || variance === undefined || format !== 'NHWC' || boolAttr(node, 'is_training') === true) return undefined;
  return {
    className: 'BatchNormalization',
    fields: {
      axis: -1,
      epsilon: floatAttr(node, 'epsilon') ?? 0.0001,
      center: true,
      scale: true,
      gamma: constant(gamma),
      beta: constant(beta),
      movingMean: constant(mean),
      movingVariance: constant(variance),
    },
  };
}

/** The value of a small constant (an axis, paddings), if `key` names one. */
function constantValues(key: string | undefined, weightOf: WeightOf): number[] | undefined {
  const tensor = key === undefined ? undefined : weightOf(key);
  return tensor === undefined ? undefined : Array.from(tensor.dataSync());
}

/**
 * ConcatV2 (its last input the axis) as Keras' Concatenate. Only its
 * computed inputs are the layer's: a concatenated constant would be left
 * out, so the view is given only when every value input is computed.
 */
function concatView(node: TfNode, weightOf: WeightOf): KerasView | undefined {
  const axis = constantValues(node.inputs.at(-1), weightOf);
  if (axis?.length !== 1 || node.inputs.slice(0, -1).some((key) => weightOf(key) !== undefined)) return undefined;
  return { className: 'Concatenate', fields: { axis: axis[0] } };
}

/** Pad / PadV2 of H and W only, with zeros, as Keras' ZeroPadding2D ([[top, bottom], [left, right]]). */
function padView(node: TfNode, weightOf: WeightOf): KerasView | undefined {
  const paddings = constantValues(node.inputs[1], weightOf);
  const fill = node.op === 'PadV2' ? constantValues(node.inputs[2], weightOf) : [0];
  if (paddings?.length !== 8 || fill?.length !== 1 || fill[0] !== 0) return undefined;
  const [batchBefore, batchAfter, top, bottom, left, right, channelsBefore, channelsAfter] = paddings;
  if (batchBefore !== 0 || batchAfter !== 0 || channelsBefore !== 0 || channelsAfter !== 0) return undefined;
  return { className: 'ZeroPadding2D', fields: { padding: [[top, bottom], [left, right]], dataFormat: 'channelsLast' } };
}
