/**
 * TF graph nodes as the tfjs-layers classes of the same semantics, for the
 * parts of camviz that read a layer's class and fields: the executor's
 * fusion (Conv2D / DepthwiseConv2D [+ BatchNormalization] + ReLU runs as one
 * fused kernel, as for a layers model), guided backpropagation (ReLU, fused
 * activations), score location (Softmax, Reshape), the default CAM target
 * (global pooling) and the CAM method (Dense, pointwise Conv2D).
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

const CONV_OPS = new Set(['Conv2D', 'DepthwiseConv2dNative', '_FusedConv2D']);
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
  const biasKey = members.length === 2 ? members[1]!.inputs[1] : head.op.startsWith('_Fused') ? head.inputs[2] : undefined;
  const fused = head.op.startsWith('_Fused') ? fusedOps(head) : [];
  if (head.op.startsWith('_Fused') && (fused[0] !== 'BiasAdd' || fused.length > 2)) return undefined;
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
  const depthwise = node.op === 'DepthwiseConv2dNative';
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
