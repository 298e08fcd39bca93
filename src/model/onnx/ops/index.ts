/**
 * The ONNX op library: one function per op type of the default domain,
 * written once for ONNX semantics on tfjs tensors with tf ops only, so that
 * `tf.grad` runs through every op. `runNode` runs one node.
 */
import * as tf from '../../../engine/tf.js';
// tf.grad through these ops needs tfjs' gradient registrations, which tfjs-layers' bundle carries.
import '../../../engine/tfl.js';
import { type LaidTensor } from '../layout.js';
import type { OnnxNode } from '../types.js';
import { UnsupportedOpError, type OpFunction } from './common.js';
import { CONV_POOL_OPS } from './conv-pool.js';
import { CONV_TRANSPOSE_OPS } from './conv-transpose.js';
import { DEPTH_SPACE_OPS } from './depth-space.js';
import { EINSUM_OPS } from './einsum.js';
import { ELEMENTWISE_OPS } from './elementwise.js';
import { LINEAR_OPS } from './linear.js';
import { REDUCE_NORM_OPS } from './reduce-norm.js';
import { RESIZE_OPS } from './resize.js';
import { TENSOR_OPS } from './tensor.js';

export { UnsupportedOpError } from './common.js';

/** The newest default-domain opset whose semantics these ops follow. */
export const MAX_OPSET = 22;

const OPS: Record<string, OpFunction> = {
  ...ELEMENTWISE_OPS,
  ...CONV_POOL_OPS,
  ...CONV_TRANSPOSE_OPS,
  ...DEPTH_SPACE_OPS,
  ...EINSUM_OPS,
  ...LINEAR_OPS,
  ...REDUCE_NORM_OPS,
  ...RESIZE_OPS,
  ...TENSOR_OPS,
};

/**
 * The first opset at which camviz runs an op, when not 1: the op's
 * introduction, or the version whose semantics the op library implements.
 */
const SINCE: Record<string, number> = {
  Erf: 9,
  Gelu: 20,
  HardSwish: 14,
  // PRelu's slope broadcasts the numpy way from opset 7; ThresholdedRelu is in the default domain from opset 10.
  PRelu: 7,
  ThresholdedRelu: 10,
  Where: 9,
  LessOrEqual: 12,
  GreaterOrEqual: 12,
  Mean: 6,
  Sum: 6,
  Min: 6,
  Max: 6,
  ConstantOfShape: 9,
  Expand: 8,
  Range: 11,
  LayerNormalization: 17,
  // InstanceNormalization-1 differs from 6 only by the legacy consumed_inputs attribute; ONNX's test data use 6.
  InstanceNormalization: 6,
  Upsample: 7,
  Resize: 10,
  Sign: 9,
  IsNaN: 9,
  IsInf: 10,
  Round: 11,
  Mish: 18,
  CumSum: 11,
  GatherElements: 11,
  ScatterND: 11,
  Mod: 10,
  GroupNormalization: 18,
  Einsum: 12,
};

/** The last opset at which an op exists, for the ops ONNX deprecated (Upsample became Resize at opset 10). */
const UNTIL: Record<string, number> = {
  Upsample: 9,
};

/** The op types camviz claims (each from its SINCE opset to its UNTIL opset or MAX_OPSET). */
export const SUPPORTED_OPS: readonly string[] = Object.keys(OPS).sort();

export function supportedOp(opType: string, opset: number): boolean {
  return Object.hasOwn(OPS, opType) && opset >= (SINCE[opType] ?? 1) && opset <= (UNTIL[opType] ?? MAX_OPSET);
}

/**
 * Run one node. `inputs[i]` is undefined for an omitted optional input. The
 * outputs are new tensors that the caller owns (never one of the inputs);
 * everything made on the way is disposed. With `shapesOnly`, outputs whose
 * values cost much may be zeros of their shape (see OpContext).
 */
export function runNode(node: OnnxNode, inputs: (LaidTensor | undefined)[], opset: number, options: { shapesOnly?: boolean } = {}): LaidTensor[] {
  const op = OPS[node.opType];
  if (op === undefined || !isDefaultDomain(node.domain) || !supportedOp(node.opType, opset)) {
    throw new UnsupportedOpError(node, opset, isDefaultDomain(node.domain) ? undefined : `domain '${node.domain}'`);
  }
  const inputTensors = new Set(inputs.map((value) => value?.tensor));
  let layouts: LaidTensor['layout'][] = [];
  const tensors = tf.tidy(() => {
    const outputs = op({ node, opset, ...(options.shapesOnly === true ? { shapesOnly: true } : {}) }, inputs);
    layouts = outputs.map((output) => output.layout);
    // An op may hand back an input (Identity, a no-op reshape): the caller
    // disposes inputs and outputs independently, so give it its own tensor.
    return outputs.map((output) => (inputTensors.has(output.tensor) ? tf.clone(output.tensor) : output.tensor));
  });
  return tensors.map((tensor, i) => ({ tensor, layout: layouts[i]! }));
}

function isDefaultDomain(domain: string): boolean {
  return domain === '' || domain === 'ai.onnx';
}
