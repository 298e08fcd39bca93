/**
 * The Prod kernel's gradient (ONNX ReduceProd, a graph model's Prod):
 * tfjs' own formula, written with tfjs' functions. tfjs 4.22's own calls
 * `tensor.reshape`, a chained op that only tfjs' full bundle registers, so
 * with tfjs-core, as camviz loads it, every gradient through a product
 * failed ("permutedX.reshape is not a function").
 *
 * d(prod x)/dx_i is the product of the other elements: the exclusive
 * cumulative products from the left and from the right, multiplied, which
 * holds where an element is zero (dividing the product by x_i would not).
 */
import * as tf from './tf.js';

/** dy times the product of the other elements along the last axis of x ([..., n]); dy has x's shape with that axis 1. */
function lastAxisGradient(x: tf.Tensor, dy: tf.Tensor): tf.Tensor {
  const axis = x.rank - 1;
  const others = tf.mul(tf.cumprod(x, axis, true, false), tf.cumprod(x, axis, true, true));
  return tf.mul(dy, others);
}

/** The gradient of prod(x, axes) for dy (of the reduced shape, kept dims or not): the reduced axes moved last and flattened into one. */
function prodGradient(x: tf.Tensor, dy: tf.Tensor, axes: readonly number[]): tf.Tensor {
  return tf.tidy(() => {
    const permutation = tf.backend_util.getAxesPermutation(axes as number[], x.rank);
    const permuted = permutation === null ? x : tf.transpose(x, permutation);
    const kept = permuted.shape.slice(0, x.rank - axes.length);
    const flat = tf.reshape(permuted, [...kept, -1]);
    const gradient = tf.reshape(lastAxisGradient(flat, tf.reshape(dy, [...kept, 1])), permuted.shape);
    return permutation === null ? gradient : tf.transpose(gradient, tf.backend_util.getUndoAxesPermutation(permutation));
  });
}

/** The rule, for every layer the executor runs (engine/tensorflow-gradients.ts). */
export const PROD_GRADIENT: tf.GradConfig = {
  kernelName: tf.Prod,
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved as [tf.Tensor];
    const { axis } = attrs as unknown as { axis: number | number[] | null | undefined };
    const axes = axis === undefined || axis === null ? x.shape.map((_, i) => i) : tf.util.parseAxisParam(axis, x.shape);
    return { x: () => prodGradient(x, dy as tf.Tensor, axes) };
  },
};
