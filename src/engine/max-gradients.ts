/**
 * Gradients of maxima and minima where values tie, as the frameworks that
 * camviz's models come from define them, on every backend.
 *
 * tfjs' own do not: the gradient of tf.max and tf.min (and so of
 * tfjs-layers' GlobalMaxPooling1D/2D and of a graph model's Max node) gives
 * the full upstream gradient to every element tied at the extremum, and
 * tfjs-backend-wasm's MaxPoolGrad routes a window's gradient to its last
 * maximum where the cpu backend's takes the first. The references:
 * - TensorFlow's reduce_max / reduce_min (and Keras' GlobalMaxPooling,
 *   built on them) divide the gradient evenly among the tied elements
 *   (`_MinOrMaxGrad`: indicators / num_selected); its MaxPoolGrad (CPU
 *   kernel) routes each window's gradient to the window's first maximum in
 *   scan order.
 * - PyTorch's max pooling (F.max_pool2d, nn.AdaptiveMaxPool2d, exported to
 *   ONNX as MaxPool and GlobalMaxPool) routes it to one element, the first
 *   maximum in scan order (its argmax); torch.amax / amin (ReduceMax /
 *   ReduceMin) and torch.maximum / minimum (Max / Min) divide it evenly.
 * Ties are common in CNNs (nearest upsampling copies values, ReLU makes
 * zeros, quantised inputs repeat), and a gradient given whole to k ties is
 * k times too large: Grad-CAM's channel weights before a max pooling were
 * inflated by the tie count.
 *
 * Every rule here computes the same on every backend: the reductions' with
 * tf ops, max pooling's in plain loops on the host. camviz's ONNX ops take
 * them through tf.customGrad (the wrappers below).
 * Layers of TF-origin models call tf.max, tf.min and tf.maxPool from
 * tfjs-layers and tfjs-converter, out of camviz's reach: the executor runs
 * each under `withTensorFlowGradients` (engine/tensorflow-gradients.ts),
 * which registers TensorFlow's rules for the Max, Min and MaxPool kernels
 * (`MAX_GRADIENTS`) for that synchronous call only.
 *
 * "First in scan order" is PyTorch's order over an NCHW value: H, then W,
 * within each channel. A window or a spatial reduction of a stored NHWC
 * value reads one channel's (h, w) positions, in that same order.
 */
import type { backend_util as BackendUtil } from '@tensorflow/tfjs-core';
import * as tf from './tf.js';

type Tensor4D = tf.Tensor4D;

/** The windows of a max pool of an NHWC value ([height, width] pairs): window (r, c) starts at row r·stride - top, column c·stride - left. */
export interface PoolWindows {
  readonly kernel: [number, number];
  readonly strides: [number, number];
  readonly dilations: [number, number];
  /** Rows and columns of padding before the input. */
  readonly top: number;
  readonly left: number;
}

// ------------------------------------------------------------ reductions

/** `shape` with the reduced `axes` kept as 1. */
function keptShape(shape: readonly number[], axes: readonly number[]): number[] {
  return shape.map((dim, axis) => (axes.includes(axis) ? 1 : dim));
}

/**
 * dL/dx of y = max (or min) of x over `axes`: dy divided evenly among the
 * elements equal to their y (TensorFlow's _MinOrMaxGrad, torch.amax's
 * "evenly distributes gradient between equal values"). y and dy with or
 * without the reduced axes kept.
 */
export function evenTieGradient(x: tf.Tensor, y: tf.Tensor, dy: tf.Tensor, axes: readonly number[]): tf.Tensor {
  return tf.tidy(() => {
    const shape = keptShape(x.shape, axes);
    const indicators = tf.cast(tf.equal(x, tf.reshape(y, shape)), 'float32');
    const selected = tf.sum(indicators, [...axes], true);
    return tf.mul(tf.div(indicators, selected), tf.reshape(dy, shape));
  });
}

/**
 * dL/dx of y = max of x over `axes`, which must be consecutive: all of dy
 * to the first element equal to its y in row-major order over those axes
 * (PyTorch's argmax routing for max pooling).
 */
export function firstTieGradient(x: tf.Tensor, y: tf.Tensor, dy: tf.Tensor, axes: readonly number[]): tf.Tensor {
  const sorted = [...axes].sort((a, b) => a - b);
  const first = sorted[0] ?? 0;
  const last = sorted.at(-1) ?? -1;
  if (sorted.some((axis, i) => axis !== first + i)) throw new Error(`firstTieGradient reduces consecutive axes, not [${axes.join(', ')}]`);
  const size = (dims: readonly number[]): number => dims.reduce((product, dim) => product * dim, 1);
  const outer = size(x.shape.slice(0, first));
  const span = size(x.shape.slice(first, last + 1));
  const inner = size(x.shape.slice(last + 1));
  return tf.tidy(() => {
    const tied = tf.cast(tf.equal(x, tf.reshape(y, keptShape(x.shape, sorted))), 'float32');
    // span - position at the tied elements, 0 elsewhere: the largest is the first tie (distinct positive integers, exact in float32).
    const earliness = tf.mul(tf.reshape(tied, [outer, span, inner]), tf.reshape(tf.range(span, 0, -1, 'float32'), [1, span, 1]));
    const chosen = tf.cast(tf.equal(earliness, tf.max(earliness, 1, true)), 'float32');
    return tf.reshape(tf.mul(chosen, tf.reshape(dy, [outer, 1, inner])), x.shape);
  });
}

type Reduction = (x: tf.Tensor, axes: number[], keepDims: boolean) => tf.Tensor;
type ReductionGradient = (x: tf.Tensor, y: tf.Tensor, dy: tf.Tensor, axes: readonly number[]) => tf.Tensor;

/** `reduce` with `gradient` as its gradient (float32 values; other types have none and reduce as they are). */
function withReductionGradient(reduce: Reduction, gradient: ReductionGradient): Reduction {
  return (x, axes, keepDims) => {
    if (x.dtype !== 'float32') return reduce(x, axes, keepDims);
    const reduced = tf.util.parseAxisParam(axes, x.shape);
    return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const [input, save] = args as [tf.Tensor, tf.GradSaveFunc];
      const value = reduce(input, reduced, keepDims);
      // Saved, not captured: the caller may free the input before the backward pass.
      save([input, value]);
      return { value, gradFunc: (dy: tf.Tensor, [kept, output]: tf.Tensor[]) => gradient(kept!, output!, dy, reduced) };
    })(x);
  };
}

/** tf.max whose gradient divides among ties evenly (torch.amax, ONNX ReduceMax). */
export const maxSplittingTies: Reduction = withReductionGradient((x, axes, keepDims) => tf.max(x, axes, keepDims), evenTieGradient);

/** tf.min whose gradient divides among ties evenly (torch.amin, ONNX ReduceMin). */
export const minSplittingTies: Reduction = withReductionGradient((x, axes, keepDims) => tf.min(x, axes, keepDims), evenTieGradient);

/** tf.max over consecutive axes whose gradient goes to the first tie (PyTorch's AdaptiveMaxPool2d(1), ONNX GlobalMaxPool). */
export const maxToFirstTie: Reduction = withReductionGradient((x, axes, keepDims) => tf.max(x, axes, keepDims), firstTieGradient);

// ------------------------------------------------------------ elementwise

/** `grad` of a broadcast result summed back to an operand of `shape`. */
function unbroadcast(grad: tf.Tensor, shape: readonly number[]): tf.Tensor {
  const axes = tf.broadcast_util.getReductionAxes([...shape], grad.shape);
  return tf.reshape(axes.length === 0 ? grad : tf.sum(grad, axes, true), [...shape]);
}

/**
 * The elementwise maximum (or minimum) of `operands`, broadcast, folded
 * pairwise as tf.maximum computes it; its gradient at each element divides
 * dy evenly among the operands equal to the result there: torch.maximum's
 * half each for two (ONNX Max / Min), a third each for three.
 */
export function elementwiseSplittingTies(kind: 'max' | 'min', operands: readonly tf.Tensor[]): tf.Tensor {
  const step = kind === 'max' ? (a: tf.Tensor, b: tf.Tensor) => tf.maximum(a, b) : (a: tf.Tensor, b: tf.Tensor) => tf.minimum(a, b);
  const fold = (tensors: readonly tf.Tensor[]): tf.Tensor => tensors.slice(1).reduce(step, tf.clone(tensors[0]!));
  if (operands.some((operand) => operand.dtype !== 'float32')) return fold(operands);
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const inputs = args.slice(0, -1) as tf.Tensor[];
    const save = args.at(-1) as tf.GradSaveFunc;
    const value = fold(inputs);
    save([...inputs, value]);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[] => {
      const output = saved.at(-1)!;
      const ties = saved.slice(0, -1).map((input) => tf.cast(tf.equal(input, output), 'float32'));
      const share = tf.div(dy, ties.reduce((count, tie) => tf.add(count, tie)));
      return ties.map((tie, i) => unbroadcast(tf.mul(share, tie), saved[i]!.shape));
    };
    return { value, gradFunc };
  })(...operands);
}

// ------------------------------------------------------------ max pooling

/**
 * dL/dx of y = a max pool of x (NHWC float32, windows as `windows` says,
 * their number dy's): each window's dy to the window's first maximum in
 * row-major order (the first element larger than every one before it),
 * summed where windows overlap; positions outside x are never chosen.
 * Plain loops on the host: composed of tf ops (a strided slice, compare
 * and scatter per tap), a ResNet stem's pool took 12x tfjs' own gradient
 * on wasm and 5x on cpu; these loops read each window once.
 */
export function firstMaxPoolGradient(x: Tensor4D, dy: Tensor4D, windows: PoolWindows): Tensor4D {
  const [batch, height, width, channels] = x.shape;
  const [, outHeight, outWidth] = dy.shape;
  const { kernel: [kh, kw], strides: [sh, sw], dilations: [dh, dw], top, left } = windows;
  const upstream = dy.dataSync();
  const dx = new Float32Array(x.size);
  // A view of x's data (no copy on wasm), read before the next tfjs call.
  const values = tf.peekValues(x);
  const best = new Float32Array(channels);
  const chosen = new Int32Array(channels);
  for (let n = 0; n < batch; n++) {
    for (let r = 0; r < outHeight; r++) {
      for (let c = 0; c < outWidth; c++) {
        chosen.fill(-1);
        for (let i = 0; i < kh; i++) {
          const row = r * sh - top + i * dh;
          if (row < 0 || row >= height) continue;
          for (let j = 0; j < kw; j++) {
            const column = c * sw - left + j * dw;
            if (column < 0 || column >= width) continue;
            const base = ((n * height + row) * width + column) * channels;
            for (let d = 0; d < channels; d++) {
              const value = values[base + d]!;
              if (chosen[d]! < 0 || value > best[d]!) {
                best[d] = value;
                chosen[d] = base + d;
              }
            }
          }
        }
        const out = ((n * outHeight + r) * outWidth + c) * channels;
        for (let d = 0; d < channels; d++) if (chosen[d]! >= 0) dx[chosen[d]!]! += upstream[out + d]!;
      }
    }
  }
  return tf.tensor4d(dx, x.shape);
}

/**
 * A max pool of an already padded NHWC `x` over 'valid' windows (tf.maxPool,
 * or tf.pool when dilated), whose gradient goes to each window's first
 * maximum (PyTorch's max pooling, ONNX MaxPool), on every backend.
 */
export function maxPoolToFirstMax(x: Tensor4D, kernel: [number, number], strides: [number, number], dilations: [number, number]): Tensor4D {
  const pool = (input: Tensor4D): Tensor4D =>
    dilations.some((d) => d !== 1) ? (tf.pool(input, kernel, 'max', 'valid', dilations, strides) as Tensor4D) : tf.maxPool(input, kernel, strides, 'valid');
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, save] = args as [Tensor4D, tf.GradSaveFunc];
    save([input]);
    const gradFunc = (dy: tf.Tensor, [kept]: tf.Tensor[]): Tensor4D => firstMaxPoolGradient(kept as Tensor4D, dy as Tensor4D, { kernel, strides, dilations, top: 0, left: 0 });
    return { value: pool(input), gradFunc };
  })(x) as Tensor4D;
}

// ------------------------------------------------------------ TensorFlow's rules for tfjs' kernels

interface MaxPoolAttributes {
  filterSize: [number, number] | number;
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | BackendUtil.ExplicitPadding;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/** TensorFlow's _MinOrMaxGrad for the Max or Min kernel. */
function reductionGradConfig(kernelName: string): tf.GradConfig {
  return {
    kernelName,
    inputsToSave: ['x'],
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const [x, y] = saved as [tf.Tensor, tf.Tensor];
      const axes = tf.util.parseAxisParam(attrs['reductionIndices'] as number | number[], x.shape);
      return { x: () => evenTieGradient(x, y, dy as tf.Tensor, axes) };
    },
  };
}

/** TensorFlow's MaxPoolGrad (CPU) for the MaxPool kernel: each window's gradient to its first maximum. */
const maxPoolGradConfig: tf.GradConfig = {
  kernelName: tf.MaxPool,
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved as [Tensor4D];
    const { filterSize, strides, pad, dimRoundingMode } = attrs as unknown as MaxPoolAttributes;
    const info = tf.backend_util.computePool2DInfo(x.shape, filterSize, strides, 1, pad, dimRoundingMode);
    const windows: PoolWindows = {
      kernel: [info.filterHeight, info.filterWidth],
      strides: [info.strideHeight, info.strideWidth],
      dilations: [1, 1],
      top: info.padInfo.top,
      left: info.padInfo.left,
    };
    return { x: () => firstMaxPoolGradient(x, dy as Tensor4D, windows) };
  },
};

/** TensorFlow's gradients of the Max, Min and MaxPool kernels (engine/tensorflow-gradients.ts registers them inside camviz's executor). */
export const MAX_GRADIENTS: readonly tf.GradConfig[] = [reductionGradConfig(tf.Max), reductionGradConfig(tf.Min), maxPoolGradConfig];
