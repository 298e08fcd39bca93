/**
 * How an ONNX value is stored as a tfjs tensor. ONNX vision models are NCHW,
 * tfjs convolutions are NHWC: a 4-D value that comes out of a spatial op is
 * kept NHWC ('nhwc') so that a chain of convolutions, activations and adds
 * runs without a transpose per op. Every other value is stored exactly as
 * ONNX defines it ('onnx').
 */
import * as tf from '../../engine/tf.js';

/** 'nhwc' only for 4-D values: the stored tensor is the ONNX tensor transposed by NCHW_TO_NHWC. */
export type Layout = 'onnx' | 'nhwc';

export interface LaidTensor {
  tensor: tf.Tensor;
  layout: Layout;
}

/** Stored 'nhwc' dim i is ONNX dim NCHW_TO_NHWC[i]. */
export const NCHW_TO_NHWC = [0, 2, 3, 1] as const;
export const NHWC_TO_NCHW = [0, 3, 1, 2] as const;

export function laid(tensor: tf.Tensor, layout: Layout = 'onnx'): LaidTensor {
  return { tensor, layout };
}

/** The value's ONNX shape, whatever its layout. */
export function onnxShape(value: LaidTensor): number[] {
  const shape = value.tensor.shape;
  return value.layout === 'nhwc' ? NHWC_TO_NCHW.map((dim) => shape[dim]!) : [...shape];
}

/**
 * The value stored in `layout`. Returns the same tensor when it already is;
 * otherwise a new tensor (a reshape when the transpose moves only size-1
 * dims, e.g. [N,C,1,1] after global pooling, since the element order is then
 * the same).
 */
export function toLayout(value: LaidTensor, layout: Layout): tf.Tensor {
  if (value.layout === layout) return value.tensor;
  const { tensor } = value;
  if (tensor.rank !== 4) throw new Error(`an 'nhwc' value must be 4-D, got rank ${tensor.rank}`);
  return permuted(tensor, layout === 'nhwc' ? NCHW_TO_NHWC : NHWC_TO_NCHW);
}

/**
 * `tensor` transposed by `perm`: a reshape when the permutation moves only
 * size-1 dims (the element order is then the same), which tfjs does
 * without a kernel.
 */
export function permuted(tensor: tf.Tensor, perm: readonly number[]): tf.Tensor {
  if (!movesOnlyUnitDims(tensor.shape, perm)) return tf.transpose(tensor, [...perm]);
  return tf.reshape(tensor, perm.map((dim) => tensor.shape[dim]!));
}

/**
 * True when converting this 4-D value to `layout` is a reshape (it moves
 * only size-1 dims). The batch dim stays first either way, so the answer
 * does not depend on the batch size.
 */
export function reshapeSuffices(value: LaidTensor, layout: Layout): boolean {
  if (value.layout === layout) return true;
  return movesOnlyUnitDims(value.tensor.shape, layout === 'nhwc' ? NCHW_TO_NHWC : NHWC_TO_NCHW);
}

/** True when permuting by `perm` keeps the order of the dims larger than 1. */
function movesOnlyUnitDims(shape: readonly number[], perm: readonly number[]): boolean {
  const big = perm.filter((dim) => shape[dim]! > 1);
  return big.every((dim, i) => i === 0 || dim > big[i - 1]!);
}

/**
 * Where ONNX axis `axis` (of a 4-D NCHW value, already non-negative) is in
 * the stored tensor of `layout`.
 */
export function storedAxis(axis: number, layout: Layout): number {
  return layout === 'nhwc' ? NCHW_TO_NHWC.indexOf(axis as 0 | 1 | 2 | 3) : axis;
}
