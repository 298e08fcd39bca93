/**
 * Matrix products: Gemm (the classifier heads of torchvision models) and
 * MatMul with numpy's rules (1-D operands, broadcast batch dimensions).
 * Both through wasmMatMul (engine/wasm-matmul.ts): on wasm, tfjs'
 * kernel is fast only for untransposed batch-1 operands, and a
 * transformer's attention and torch's Linear exported as Gemm(transB)
 * are neither. The right operand is taken as a weight (its packing kept
 * from pass to pass), which it nearly always is.
 */
import { wasmMatMul } from '../../../engine/wasm-matmul.js';
import * as tf from '../../../engine/tf.js';
import { laid, toLayout, type LaidTensor } from '../layout.js';
import { attrFloat, attrInt, checkedShape, required, unsupported, zerosStandIn, type OpContext, type OpFunction } from './common.js';

type Inputs = (LaidTensor | undefined)[];

function gemm(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const a = toLayout(required(ctx, inputs, 0), 'onnx');
  const b = toLayout(required(ctx, inputs, 1), 'onnx');
  if (a.rank !== 2 || b.rank !== 2) throw unsupported(ctx, `operands of rank ${a.rank} and ${b.rank} (Gemm takes matrices)`);
  const alpha = attrFloat(ctx, 'alpha', 1);
  const beta = attrFloat(ctx, 'beta', 1);
  const [transA, transB] = [attrInt(ctx, 'transA', 0) === 1, attrInt(ctx, 'transB', 0) === 1];
  // [M, K]·[K, N] is M·N elements, more than both operands when K is small.
  const shape = checkedShape(ctx, [a.shape[transA ? 1 : 0]!, b.shape[transB ? 0 : 1]!]);
  const c = inputs[2];
  const bias = c === undefined || beta === 0 ? undefined : toLayout(c, 'onnx');
  if (ctx.shapesOnly === true) {
    checkInnerDims(a.shape[transA ? 0 : 1]!, b.shape[transB ? 1 : 0]!, a.shape, b.shape);
    // The full run's tf.add broadcasts the product to a bias of a higher rank too: the plan has its shape.
    const output = bias === undefined ? shape : checkedShape(ctx, tf.broadcast_util.assertAndGetBroadcastShape(shape, bias.shape));
    return [laid(productStandIn(output, [a, b, ...(bias === undefined ? [] : [bias])]))];
  }
  const product = wasmMatMul(a, b, transA, transB, true);
  const scaled = alpha === 1 ? product : tf.mul(product, alpha);
  if (bias === undefined) return [laid(scaled)];
  return [laid(tf.add(scaled, beta === 1 ? bias : tf.mul(bias, beta)))];
}

function matMul(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const a = toLayout(required(ctx, inputs, 0), 'onnx');
  const b = toLayout(required(ctx, inputs, 1), 'onnx');
  // numpy: a 1-D left operand is a row vector, a 1-D right operand a column; both extra dims are dropped.
  const vectorA = a.rank === 1;
  const vectorB = b.rank === 1;
  const matrixA = vectorA ? [1, a.shape[0]!] : a.shape;
  const matrixB = vectorB ? [b.shape[0]!, 1] : b.shape;
  // tfjs broadcasts batch dims but wants equal ranks.
  const rank = Math.max(matrixA.length, matrixB.length);
  const lifted = (shape: readonly number[]): number[] => [...Array<number>(rank - shape.length).fill(1), ...shape];
  const shape = checkedShape(ctx, productShape(lifted(matrixA), lifted(matrixB)));
  // The product's dims, without those a vector operand's reshape added.
  const dims = shape.slice(0, -2);
  if (!vectorA) dims.push(shape[shape.length - 2]!);
  if (!vectorB) dims.push(shape[shape.length - 1]!);
  if (ctx.shapesOnly === true) {
    checkInnerDims(matrixA[matrixA.length - 1]!, matrixB[matrixB.length - 2]!, a.shape, b.shape);
    return [laid(productStandIn(dims, [a, b]))];
  }
  const reshaped = (t: tf.Tensor, matrix: readonly number[]): tf.Tensor => (t.rank === rank ? t : tf.reshape(t, lifted(matrix)));
  const y = wasmMatMul(reshaped(a, matrixA), reshaped(b, matrixB), false, false, true);
  return [laid(vectorA || vectorB ? tf.reshape(y, dims) : y)];
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

/**
 * In the planning pass (common.ts, zerosStandIn), zeros standing for a
 * product that reads image data: a transformer's MatMuls are nearly all of
 * its planning time otherwise (ViT-B/16: 14 of 16 s on wasm). Its type is
 * what tfjs gives for one element of each operand, which also makes tfjs'
 * own checks of the operands' types.
 */
function productStandIn(shape: readonly number[], operands: readonly tf.Tensor[]): tf.Tensor {
  const dtype = tf.tidy(() => {
    const [a, b, ...rest] = operands.map((operand) => tf.zeros([1, 1], operand.dtype));
    const product = tf.matMul(a!, b!);
    return rest.reduce((sum, bias) => tf.add(sum, bias), product).dtype;
  });
  return zerosStandIn(shape, dtype);
}

/** tfjs' check of a product's inner dims, which a stand-in makes without computing. */
function checkInnerDims(left: number, right: number, a: readonly number[], b: readonly number[]): void {
  if (left !== right) throw new Error(`Error in matMul: inner shapes (${left}) and (${right}) of Tensors with shapes ${JSON.stringify(a)} and ${JSON.stringify(b)} must match.`);
}

export const LINEAR_OPS: Record<string, OpFunction> = {
  Gemm: gemm,
  MatMul: matMul,
};
