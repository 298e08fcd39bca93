/**
 * Matrix products computed where tfjs-backend-wasm is fast, and the
 * BatchMatMul kernel's gradient through them (tfjs' own values).
 *
 * tfjs-backend-wasm's BatchMatMul runs XNNPACK's packed product only for
 * operands of batch 1 that are not transposed, and naive loops otherwise
 * (about 1.3 GFLOP/s here, against 12-20 with XNNPACK). tfjs' gradient asks
 * for transposed products (dA = dY·Bᵀ, dB = Aᵀ·dY), and a transformer's
 * attention multiplies batches of heads: all on the loops. ViT-B/16's
 * Grad-CAM at its patch embedding spent 52 of 60 s there.
 *
 * `wasmMatMul` builds each product from untransposed batch-1 products:
 * transposes are materialised (a copy, linear in the operand), and
 * P = X·Y is computed as (Yᵀ·Xᵀ)ᵀ when that packs the smaller operand:
 * XNNPACK packs its right operand anew for every tensor it has not seen
 * (it keeps the packing of one it has: a model's weights), and packing a
 * classifier's transposed weights for a one-row dY took 15 ms, the
 * swapped form 0.8. A batched product whose right operand is shared folds
 * the batch into rows; other batched ones run slice by slice when their
 * slices are large (SLICE_MIN_PRODUCTS). Every step
 * is a tfjs op, so the result can be differentiated.
 *
 * Other backends, other types, and batch dims that broadcast otherwise
 * take tf.matMul, as tfjs' own gradient does.
 */
import * as tf from './tf.js';

/** `x` with its last two axes swapped (a copy). */
function swapped(x: tf.Tensor3D): tf.Tensor3D {
  return tf.transpose(x, [0, 2, 1]);
}

/**
 * op(x)·op(y) for batch-1 [1, ·, ·] operands (op: a transpose where asked),
 * as one untransposed product, in the form that moves fewer elements:
 * directly, XNNPACK packs op(y) (reused when `yLasts`: a model's weight,
 * not transposed), and a transposed operand is copied first; swapped,
 * (op(y)ᵀ·op(x)ᵀ)ᵀ packs op(x)ᵀ, copies whichever operand is not already
 * transposed, and copies the [rows, columns] result back. A one-row
 * gradient by a classifier's weights swaps (it would pack the transposed
 * weights); a weight's gradient over few rows into many channels does not
 * (it would transpose the large result).
 */
function batchOneProduct(x: tf.Tensor3D, y: tf.Tensor3D, transposeX: boolean, transposeY: boolean, yLasts: boolean): tf.Tensor3D {
  const [rows, inner] = transposeX ? [x.shape[2], x.shape[1]] : [x.shape[1], x.shape[2]];
  const columns = transposeY ? y.shape[1] : y.shape[2];
  const copied = (transposed: boolean, size: number): number => (transposed ? size : 0);
  const directCost = (yLasts && !transposeY ? 0 : inner * columns) + copied(transposeX, rows * inner) + copied(transposeY, inner * columns);
  const swappedCost = inner * rows + copied(!transposeX, rows * inner) + copied(!transposeY, inner * columns) + rows * columns;
  if (directCost <= swappedCost) return tf.matMul(transposeX ? swapped(x) : x, transposeY ? swapped(y) : y);
  return swapped(tf.matMul(transposeY ? y : swapped(y), transposeX ? x : swapped(x)));
}

/**
 * The fewest multiply-adds a slice of a batched product needs for the
 * product to run slice by slice. Each slice costs about 0.1-0.4 ms of
 * tfjs ops and XNNPACK packing whatever its size: ViT's attention heads
 * ([197, 64]·[64, 197], 2.5M) run faster sliced, tfjs' single loop
 * call is faster below about 1M, and for thousands of tiny slices (an
 * Einsum's per-pixel products, Swin's windows) by hundreds of times.
 */
const SLICE_MIN_PRODUCTS = 2 ** 20;

/** op(x)·op(y) for [Bx, ·, ·] and [By, ·, ·], Bx and By equal or one of them 1. */
function rank3Product(x: tf.Tensor3D, y: tf.Tensor3D, transposeX: boolean, transposeY: boolean, yLasts: boolean): tf.Tensor3D {
  const [xBatch, yBatch] = [x.shape[0], y.shape[0]];
  if (xBatch === 1 && yBatch === 1) return batchOneProduct(x, y, transposeX, transposeY, yLasts);
  if (yBatch === 1) {
    // One right operand for every row of every batch: the batch is more rows.
    const rows = transposeX ? x.shape[2] : x.shape[1];
    const stacked = transposeX ? swapped(x) : x;
    const product = batchOneProduct(tf.reshape(stacked, [1, xBatch * rows, stacked.shape[2]]), y, false, transposeY, yLasts);
    return tf.reshape(product, [xBatch, rows, product.shape[2]]);
  }
  const rows = transposeX ? x.shape[2] : x.shape[1];
  const inner = transposeX ? x.shape[1] : x.shape[2];
  const columns = transposeY ? y.shape[1] : y.shape[2];
  if (rows * inner * columns < SLICE_MIN_PRODUCTS) return tf.matMul(x, y, transposeX, transposeY);
  const xSlices = xBatch === 1 ? Array<tf.Tensor3D>(yBatch).fill(x) : tf.unstack(x).map((slice) => tf.expandDims(slice, 0) as tf.Tensor3D);
  const ySlices = tf.unstack(y).map((slice) => tf.expandDims(slice, 0) as tf.Tensor3D);
  return tf.concat(ySlices.map((ySlice, i) => batchOneProduct(xSlices[i]!, ySlice, transposeX, transposeY, false)), 0);
}

/** `t` as [batch, rows, columns], its leading dims flattened into the batch. */
function asRank3(t: tf.Tensor): tf.Tensor3D {
  const [rows, columns] = t.shape.slice(-2) as [number, number];
  return tf.reshape(t, [t.size / (rows * columns), rows, columns]);
}

/** Whether the operands' batch dims are equal, or one side's all 1 (what rank3Product broadcasts). */
function batchesAlign(a: readonly number[], b: readonly number[]): boolean {
  const [aBatch, bBatch] = [a.slice(0, -2), b.slice(0, -2)];
  const ones = (dims: number[]): boolean => dims.every((dim) => dim === 1);
  return ones(aBatch) || ones(bBatch) || (aBatch.length === bBatch.length && aBatch.every((dim, i) => dim === bBatch[i]));
}

/** Whether wasmMatMul computes a product of these operands its own way (else it is tfjs' matMul). */
function takesOwnWay(a: tf.Tensor, b: tf.Tensor): boolean {
  return tf.getBackend() === 'wasm' && a.dtype === 'float32' && b.dtype === 'float32' && a.rank >= 2 && b.rank >= 2 && batchesAlign(a.shape, b.shape);
}

/**
 * The product of operands one of which is empty, as zeros of its shape
 * (undefined when the inner dims differ: tf.matMul refuses that). On wasm,
 * tf.matMul gives a product over an inner dim of 0 unwritten memory (XNNPACK
 * refuses the empty operator, the kernel returns its output as it found
 * it), where the sum of no terms is 0; and a zero-length dim defeats the
 * reshapes to rank 3 (0 / 0 rows).
 */
function emptyProduct(a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean): tf.Tensor | undefined {
  const [aRows, aColumns] = a.shape.slice(-2) as [number, number];
  const [bRows, bColumns] = b.shape.slice(-2) as [number, number];
  if ((transposeA ? aRows : aColumns) !== (transposeB ? bColumns : bRows)) return undefined;
  const batch = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  return tf.zeros([...batch, transposeA ? aColumns : aRows, transposeB ? bRows : bColumns]);
}

/**
 * tf.matMul(a, b, transposeA, transposeB) for operands of rank 2 or more,
 * the same values (summed in another order), computed on wasm as the top of
 * this file says. `bLasts`: b is a model's weight, whose packing XNNPACK
 * keeps from pass to pass.
 */
export function wasmMatMul(a: tf.Tensor, b: tf.Tensor, transposeA = false, transposeB = false, bLasts = false): tf.Tensor {
  if (!takesOwnWay(a, b)) return tf.matMul(a, b, transposeA, transposeB);
  if (a.size === 0 || b.size === 0) return emptyProduct(a, b, transposeA, transposeB) ?? tf.matMul(a, b, transposeA, transposeB);
  return tf.tidy(() => {
    const product = rank3Product(asRank3(a), asRank3(b), transposeA, transposeB, bLasts);
    const batch = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
    return tf.reshape(product, [...batch, ...product.shape.slice(1)]);
  });
}

/**
 * `gradient` of an operand of shape `like` that the product broadcast:
 * summed over the batch dims it was broadcast along (tfjs' own rule sums
 * none, and tf.grads refuses its shape).
 */
function summedTo(gradient: tf.Tensor, like: readonly number[]): tf.Tensor {
  if (gradient.shape.length === like.length && gradient.shape.every((dim, i) => dim === like[i])) return gradient;
  return tf.tidy(() => {
    const batch = gradient.shape.slice(0, -2);
    const likeBatch = like.slice(0, -2);
    const axes = tf.backend_util.getReductionAxes(likeBatch, batch);
    return tf.reshape(axes.length === 0 ? gradient : tf.sum(gradient, axes), like as number[]);
  });
}

/** tfjs' own formulas (gradients/BatchMatMul_grad.ts), each product through wasmMatMul (tf.matMul where it takes tfjs' way), a broadcast operand's summed back. */
function gradients(dy: tf.Tensor, a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean): { a: () => tf.Tensor; b: () => tf.Tensor } {
  const made = (x: tf.Tensor, y: tf.Tensor, tx: boolean, ty: boolean, like: tf.Tensor) => (): tf.Tensor => summedTo(wasmMatMul(x, y, tx, ty), like.shape);
  if (!transposeA && !transposeB) return { a: made(dy, b, false, true, a), b: made(a, dy, true, false, b) };
  if (!transposeA && transposeB) return { a: made(dy, b, false, false, a), b: made(dy, a, true, false, b) };
  if (transposeA && !transposeB) return { a: made(b, dy, false, true, a), b: made(a, dy, false, false, b) };
  return { a: made(b, dy, true, true, a), b: made(dy, a, true, true, b) };
}

/** The BatchMatMul kernel's gradient: tfjs' own, its products through wasmMatMul. */
export const BATCH_MAT_MUL_GRADIENT: tf.GradConfig = {
  kernelName: tf.BatchMatMul,
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved, attrs) => {
    const [a, b] = saved as [tf.Tensor, tf.Tensor];
    const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
    return gradients(dy as tf.Tensor, a, b, transposeA, transposeB);
  },
};
