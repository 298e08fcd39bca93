/**
 * Matrix products: Gemm (the classifier heads of torchvision models) and
 * MatMul with numpy's rules (1-D operands, broadcast batch dimensions).
 */
import * as tf from '../../../engine/tf.js';
import { laid, toLayout, type LaidTensor } from '../layout.js';
import { attrFloat, attrInt, checkedShape, required, unsupported, type OpContext, type OpFunction } from './common.js';

type Inputs = (LaidTensor | undefined)[];

function gemm(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const a = toLayout(required(ctx, inputs, 0), 'onnx');
  const b = toLayout(required(ctx, inputs, 1), 'onnx');
  if (a.rank !== 2 || b.rank !== 2) throw unsupported(ctx, `operands of rank ${a.rank} and ${b.rank} (Gemm takes matrices)`);
  const alpha = attrFloat(ctx, 'alpha', 1);
  const beta = attrFloat(ctx, 'beta', 1);
  const [transA, transB] = [attrInt(ctx, 'transA', 0) === 1, attrInt(ctx, 'transB', 0) === 1];
  // [M, K]·[K, N] is M·N elements, more than both operands when K is small.
  checkedShape(ctx, [a.shape[transA ? 1 : 0]!, b.shape[transB ? 0 : 1]!]);
  const product = tf.matMul(a, b, transA, transB);
  const scaled = alpha === 1 ? product : tf.mul(product, alpha);
  const c = inputs[2];
  if (c === undefined || beta === 0) return [laid(scaled)];
  const bias = toLayout(c, 'onnx');
  return [laid(tf.add(scaled, beta === 1 ? bias : tf.mul(bias, beta)))];
}

function matMul(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  let a = toLayout(required(ctx, inputs, 0), 'onnx');
  let b = toLayout(required(ctx, inputs, 1), 'onnx');
  // numpy: a 1-D left operand is a row vector, a 1-D right operand a column; both extra dims are dropped.
  const vectorA = a.rank === 1;
  const vectorB = b.rank === 1;
  if (vectorA) a = tf.reshape(a, [1, a.shape[0]!]);
  if (vectorB) b = tf.reshape(b, [b.shape[0]!, 1]);
  // tfjs broadcasts batch dims but wants equal ranks.
  const rank = Math.max(a.rank, b.rank);
  const lift = (t: tf.Tensor): tf.Tensor => (t.rank === rank ? t : tf.reshape(t, [...Array<number>(rank - t.rank).fill(1), ...t.shape]));
  checkedShape(ctx, productShape(lift(a).shape, lift(b).shape));
  let y = tf.matMul(lift(a), lift(b));
  if (vectorA || vectorB) {
    const dims = y.shape.slice(0, -2);
    if (!vectorA) dims.push(y.shape[y.rank - 2]!);
    if (!vectorB) dims.push(y.shape[y.rank - 1]!);
    y = tf.reshape(y, dims);
  }
  return [laid(y)];
}

/**
 * The shape of a batched matrix product of equal-rank operands: the batch
 * dims broadcast, then [M, N] (tfjs checks K itself). Broadcast batch dims
 * and a small K make the product far larger than its operands.
 */
function productShape(a: readonly number[], b: readonly number[]): number[] {
  const batch = tf.broadcast_util.assertAndGetBroadcastShape(a.slice(0, -2), b.slice(0, -2));
  return [...batch, a[a.length - 2]!, b[b.length - 1]!];
}

export const LINEAR_OPS: Record<string, OpFunction> = {
  Gemm: gemm,
  MatMul: matMul,
};
