/**
 * Gradient kernels that tfjs-backend-wasm 4.22 lacks, registered for wasm as
 * compositions of kernels it has.
 *
 * Backprop through MobileNet-, ResNet- and VGG-style models on wasm stops at
 * three kernels the cpu backend has and wasm does not
 * (scripts/find-missing-grad-kernels.ts finds them):
 * - Conv2DBackpropFilter: the fused conv's gradient (tf.fused.conv2d with a
 *   linear activation, which tfjs-layers uses for every conv without a
 *   nonlinear activation, e.g. conv + BatchNorm) computes the filter
 *   gradient even when only the input gradient is wanted.
 * - DepthwiseConv2dNativeBackpropInput: any depthwise conv on the path.
 * - DepthwiseConv2dNativeBackpropFilter: the fused depthwise conv's
 *   gradient, for the same reason as the fused conv's.
 * All three, and a faster Conv2DBackpropInput (wasm's own is plain loops),
 * are built on wasm's XNNPACK-backed forward convolutions plus reshapes,
 * pads and transposes, inside tf.tidy.
 *
 * Conv2DBackprop{Input,Filter} attrs carry no dilation (tfjs-core refuses
 * dilated conv gradients before reaching a kernel); the depthwise kernels
 * honour `dilations` from their attrs.
 */
import type { backend_util as BackendUtil } from '@tensorflow/tfjs-core';
import * as tf from './tf.js';
import { wasmMatMul } from './wasm-matmul.js';

type Tensor4D = tf.Tensor4D;
type Conv2DInfo = BackendUtil.Conv2DInfo;
type ExplicitPadding = BackendUtil.ExplicitPadding;
type RoundingMode = 'floor' | 'round' | 'ceil' | undefined;

const BACKEND = 'wasm';

/** The kernels this module registers for wasm (one replaces wasm's own). */
export const wasmGradientKernelNames: readonly string[] = [
  tf.Conv2DBackpropFilter,
  tf.Conv2DBackpropInput,
  tf.DepthwiseConv2dNativeBackpropInput,
  tf.DepthwiseConv2dNativeBackpropFilter,
  tf.UnsortedSegmentSum,
];

/**
 * Registers the missing gradient kernels for wasm and replaces wasm's
 * loop-based Conv2DBackpropInput with one built on its XNNPACK convolution.
 * Idempotent. Kernels a later tfjs-backend-wasm provides itself are left alone.
 */
export function registerWasmGradientKernels(): void {
  registerIfMissing(tf.Conv2DBackpropFilter, conv2DBackpropFilter);
  registerIfMissing(tf.DepthwiseConv2dNativeBackpropInput, depthwiseConv2dNativeBackpropInput);
  registerIfMissing(tf.DepthwiseConv2dNativeBackpropFilter, depthwiseConv2dNativeBackpropFilter);
  // tf.gather's gradient: needed as soon as an objective picks a class with gather.
  registerIfMissing(tf.UnsortedSegmentSum, unsortedSegmentSum);
  replaceConv2DBackpropInput();
}

function registerIfMissing(kernelName: string, kernelFunc: tf.KernelFunc): void {
  if (tf.getKernel(kernelName, BACKEND) === undefined) {
    tf.registerKernel({ kernelName, backendName: BACKEND, kernelFunc });
  }
}

function replaceConv2DBackpropInput(): void {
  const current = tf.getKernel(tf.Conv2DBackpropInput, BACKEND);
  if (current?.kernelFunc === conv2DBackpropInput) return;
  if (current !== undefined) tf.unregisterKernel(tf.Conv2DBackpropInput, BACKEND);
  tf.registerKernel({ kernelName: tf.Conv2DBackpropInput, backendName: BACKEND, kernelFunc: conv2DBackpropInput });
}

// ------------------------------------------------------------------ kernels

interface KernelArgs {
  inputs: tf.NamedTensorInfoMap;
  backend: {};
  attrs?: tf.NamedAttrMap;
}

function conv2DBackpropInput(args: KernelArgs): tf.TensorInfo {
  const attrs = args.attrs as unknown as tf.Conv2DBackpropInputAttrs;
  const nchw = attrs.dataFormat === 'NCHW';
  return tf.tidy(() => {
    const dy = channelsLast(tensorOf(args.inputs, 'dy') as Tensor4D, nchw);
    const filter = tensorOf(args.inputs, 'filter') as Tensor4D;
    const [n, c, h, w] = attrs.inputShape;
    const inputShape: [number, number, number, number] = nchw ? [n, h, w, c] : attrs.inputShape;
    const info = tf.backend_util.computeConv2DInfo(
      inputShape, filter.shape, attrs.strides, 1, channelsLastPad(attrs.pad, nchw), attrs.dimRoundingMode as RoundingMode, false,
    );
    if (isPlainPointwise(info)) {
      const dx = pointwiseInputGradient(dy, filter, info);
      return nchw ? tf.transpose(dx, [0, 3, 1, 2]) : dx;
    }
    // dx = dy (spread by the strides) correlated with the filter rotated by
    // 180 degrees and its in/out channels swapped.
    const rotated = tf.transpose(rotate180(filter), [0, 1, 3, 2]);
    const { input, pad } = transposedConvInput(dy, info);
    const dx = tf.conv2d(input, rotated, 1, pad, 'NHWC', 1);
    return nchw ? tf.transpose(dx, [0, 3, 1, 2]) : dx;
  });
}

function depthwiseConv2dNativeBackpropInput(args: KernelArgs): tf.TensorInfo {
  const attrs = args.attrs as unknown as tf.DepthwiseConv2dNativeBackpropInputAttrs;
  return tf.tidy(() => {
    const dy = tensorOf(args.inputs, 'dy') as Tensor4D;
    const filter = tensorOf(args.inputs, 'filter') as Tensor4D;
    const info = tf.backend_util.computeConv2DInfo(
      attrs.inputShape, filter.shape, attrs.strides, attrs.dilations ?? 1, attrs.pad,
      attrs.dimRoundingMode as RoundingMode, true,
    );
    const [fh, fw, inChannels, multiplier] = filter.shape;
    // Output channel c*multiplier+m of the forward conv comes from input
    // channel c: run each output channel back on its own (multiplier 1), then
    // add up the multiplier's channels of each input channel.
    const rotated = tf.reshape(rotate180(filter), [fh, fw, inChannels * multiplier, 1]);
    const { input, pad } = transposedConvInput(dy, info);
    const dilations: [number, number] = [info.dilationHeight, info.dilationWidth];
    const perOutputChannel = tf.depthwiseConv2d(input, rotated as Tensor4D, 1, pad, 'NHWC', dilations);
    if (multiplier === 1) return perOutputChannel;
    const [n, h, w] = perOutputChannel.shape;
    return tf.sum(tf.reshape(perOutputChannel, [n, h, w, inChannels, multiplier]), 4);
  });
}

/**
 * UnsortedSegmentSum as a matmul with the one-hot matrix of the segment ids:
 * out[s] = sum of x[i] over the i with ids[i] = s (ids out of range add
 * nothing, as in TensorFlow).
 */
function unsortedSegmentSum(args: KernelArgs): tf.TensorInfo {
  const numSegments = (args.attrs as unknown as tf.UnsortedSegmentSumAttrs).numSegments;
  return tf.tidy(() => {
    const x = tensorOf(args.inputs, 'x');
    const ids = tf.reshape(tensorOf(args.inputs, 'segmentIds'), [-1]);
    const rows = ids.shape[0];
    const rest = x.shape.slice(1);
    const flat = tf.reshape(tf.cast(x, 'float32'), [rows, -1]);
    // [S, N] one-hot built transposed, so that wasm takes its XNNPACK matmul.
    const selector = tf.transpose(tf.cast(tf.oneHot(tf.cast(ids, 'int32'), numSegments), 'float32'));
    const summed = tf.matMul(selector, flat);
    return tf.cast(tf.reshape(summed, [numSegments, ...rest]), x.dtype);
  });
}

function conv2DBackpropFilter(args: KernelArgs): tf.TensorInfo {
  const attrs = args.attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  return tf.tidy(() => {
    const nchw = attrs.dataFormat === 'NCHW';
    const x = channelsLast(tensorOf(args.inputs, 'x') as Tensor4D, nchw);
    const dy = channelsLast(tensorOf(args.inputs, 'dy') as Tensor4D, nchw);
    const info = tf.backend_util.computeConv2DInfo(
      x.shape, attrs.filterShape, attrs.strides, 1, channelsLastPad(attrs.pad, nchw), attrs.dimRoundingMode as RoundingMode, false,
    );
    return info.filterHeight * info.filterWidth === 1 ? pointwiseFilterGradient(x, dy, info) : filterGradientByConv(x, dy, info);
  });
}

function depthwiseConv2dNativeBackpropFilter(args: KernelArgs): tf.TensorInfo {
  const attrs = args.attrs as unknown as tf.DepthwiseConv2dNativeBackpropFilterAttrs;
  return tf.tidy(() => {
    const x = tensorOf(args.inputs, 'x') as Tensor4D;
    const dy = tensorOf(args.inputs, 'dy') as Tensor4D;
    const info = tf.backend_util.computeConv2DInfo(
      x.shape, attrs.filterShape, attrs.strides, attrs.dilations ?? 1, attrs.pad,
      attrs.dimRoundingMode as RoundingMode, true,
    );
    return depthwiseFilterGradientByConv(x, dy, info);
  });
}

// ------------------------------------------------------------------ geometry

/**
 * One spatial axis of a convolution as the forward kernels compute it:
 * y[o] = sum_i x[o*stride - padBefore + i*dilation] * w[i], with zeros
 * outside x. Derived from the output size and the leading pad only, so
 * 'same', 'valid', numeric pads with any rounding mode, and explicit pads
 * all come out right.
 */
interface Axis {
  inSize: number;
  outSize: number;
  filterSize: number;
  stride: number;
  dilation: number;
  padBefore: number;
}

function axes(info: Conv2DInfo): [Axis, Axis] {
  return [
    {
      inSize: info.inHeight, outSize: info.outHeight, filterSize: info.filterHeight,
      stride: info.strideHeight, dilation: info.dilationHeight, padBefore: info.padInfo.top,
    },
    {
      inSize: info.inWidth, outSize: info.outWidth, filterSize: info.filterWidth,
      stride: info.strideWidth, dilation: info.dilationWidth, padBefore: info.padInfo.left,
    },
  ];
}

/** Rows of x past the end that the last output window reads (negative: rows never read). */
function padAfter(a: Axis): number {
  return (a.outSize - 1) * a.stride + (a.filterSize - 1) * a.dilation + 1 - a.inSize - a.padBefore;
}

/**
 * Pads before/after that turn a stride-1 'valid' correlation of the
 * stride-spread dy with the rotated filter into the input gradient.
 * Negative values are rows to crop.
 */
function transposedPads(a: Axis): [number, number] {
  const spreadSize = (a.outSize - 1) * a.stride + 1;
  return [(a.filterSize - 1) * a.dilation - a.padBefore, a.inSize - spreadSize + a.padBefore];
}

/**
 * dy with (stride - 1) zeros between neighbours, cropped where the pads are
 * negative, and the remaining (non-negative) pads for the convolution.
 */
function transposedConvInput(dy: Tensor4D, info: Conv2DInfo): { input: Tensor4D; pad: ExplicitPadding } {
  const [rows, cols] = axes(info);
  const [top, bottomOfSpread] = transposedPads(rows);
  const [left, rightOfSpread] = transposedPads(cols);
  // spreadByStrides already appends (stride - 1) zero rows and columns.
  const bottom = bottomOfSpread - (rows.stride - 1);
  const right = rightOfSpread - (cols.stride - 1);
  const spread = cropNegative(spreadByStrides(dy, rows.stride, cols.stride), [top, bottom], [left, right]);
  const pad: ExplicitPadding = [[0, 0], [Math.max(top, 0), Math.max(bottom, 0)], [Math.max(left, 0), Math.max(right, 0)], [0, 0]];
  return { input: spread, pad };
}

/**
 * t with (stride - 1) zeros after every row and column, the last ones
 * included: the caller counts those trailing zeros as padding, which saves
 * a slice (wasm's Slice copies its whole input through JS).
 */
function spreadByStrides(t: Tensor4D, strideH: number, strideW: number): Tensor4D {
  if (strideH === 1 && strideW === 1) return t;
  const [n, h, w, c] = t.shape;
  const gaps = tf.pad(tf.reshape(t, [n, h, 1, w, 1, c]), [[0, 0], [0, 0], [0, strideH - 1], [0, 0], [0, strideW - 1], [0, 0]]);
  return tf.reshape(gaps, [n, h * strideH, w * strideW, c]);
}

/**
 * The filter [fh, fw, ...] with its taps in reverse order (rotated by 180
 * degrees in space). wasm's Reverse kernel is slow (about 40 ns an element);
 * multiplying the [taps, rest] matrix by the anti-diagonal permutation goes
 * through XNNPACK and is exact: every output is 1 * w plus zeros.
 */
function isPlainPointwise(info: Conv2DInfo): boolean {
  return (
    info.filterHeight === 1 &&
    info.filterWidth === 1 &&
    info.strideHeight === 1 &&
    info.strideWidth === 1 &&
    info.padInfo.top === 0 &&
    info.padInfo.bottom === 0 &&
    info.padInfo.left === 0 &&
    info.padInfo.right === 0
  );
}

/**
 * A 1x1 conv's input gradient: dy · Wᵀ, the filter as stored, through
 * wasmMatMul (wasm's own transposed product is plain loops: a classifier
 * head's, 1000 x 768, took 3-6 ms; the general path's filter transpose
 * about 3).
 */
function pointwiseInputGradient(dy: Tensor4D, filter: Tensor4D, info: Conv2DInfo): Tensor4D {
  const rows = tf.reshape(dy, [-1, info.outChannels]);
  const weights = tf.reshape(filter, [info.inChannels, info.outChannels]);
  return tf.reshape(wasmMatMul(rows, weights, false, true), [info.batchSize, info.inHeight, info.inWidth, info.inChannels]);
}

function rotate180(filter: Tensor4D): Tensor4D {
  const [fh, fw, a, b] = filter.shape;
  const taps = fh * fw;
  if (taps === 1) return filter;
  const reversal = new Float32Array(taps * taps);
  for (let i = 0; i < taps; i++) reversal[i * taps + (taps - 1 - i)] = 1;
  const reversed = tf.matMul(tf.tensor2d(reversal, [taps, taps]), tf.reshape(filter, [taps, a * b]));
  return tf.reshape(reversed, filter.shape);
}

function cropNegative(t: Tensor4D, [top, bottom]: [number, number], [left, right]: [number, number]): Tensor4D {
  if (Math.min(top, bottom, left, right) >= 0) return t;
  const [n, h, w, c] = t.shape;
  const cropTop = Math.max(-top, 0);
  const cropLeft = Math.max(-left, 0);
  const size = [n, h - cropTop - Math.max(-bottom, 0), w - cropLeft - Math.max(-right, 0), c];
  return tf.slice(t, [0, cropTop, cropLeft, 0], size);
}

// ---------------------------------------------------------- filter gradients

/**
 * The filter gradient of a KxK conv as one forward conv: with x's channels as
 * the batch and its batch as the channels, correlating x with dy (dilated by
 * the stride) gives dW[i, j, c, o] at output pixel (i*dilation, j*dilation)
 * of batch entry c. XNNPACK does the whole reduction in one call.
 */
function filterGradientByConv(x: Tensor4D, dy: Tensor4D, info: Conv2DInfo): Tensor4D {
  const [rows, cols] = axes(info);
  const channelsAsBatch = tf.transpose(x, [3, 1, 2, 0]);
  const [n, outH, outW, outC] = dy.shape;
  const dyAsFilter = n === 1 ? tf.reshape(dy, [outH, outW, 1, outC]) : tf.transpose(dy, [1, 2, 0, 3]);
  const pad: ExplicitPadding = [[0, 0], [rows.padBefore, Math.max(padAfter(rows), 0)], [cols.padBefore, Math.max(padAfter(cols), 0)], [0, 0]];
  const out = tf.engine().runKernel<Tensor4D>(
    tf.Conv2D,
    { x: channelsAsBatch, filter: dyAsFilter },
    { strides: [rows.dilation, cols.dilation], pad, dataFormat: 'NHWC', dilations: [rows.stride, cols.stride] },
  );
  const taps = leading(out, [out.shape[0], rows.filterSize, cols.filterSize, out.shape[3]]);
  return tf.transpose(taps, [1, 2, 0, 3]);
}

/** A 1x1 conv's filter gradient is x^T dy over the sampled pixels: one matmul. */
function pointwiseFilterGradient(x: Tensor4D, dy: Tensor4D, info: Conv2DInfo): Tensor4D {
  const [rows, cols] = axes(info);
  const padded = padIfAny(x, [[0, 0], [rows.padBefore, Math.max(padAfter(rows), 0)], [cols.padBefore, Math.max(padAfter(cols), 0)], [0, 0]]);
  const extent = [x.shape[0], (rows.outSize - 1) * rows.stride + 1, (cols.outSize - 1) * cols.stride + 1, x.shape[3]];
  // Strided sampling copies; 1x1 stride-1 convs that read all of x need none.
  const sampled = rows.stride === 1 && cols.stride === 1 && padded.shape.every((d, i) => d === extent[i])
    ? padded
    : tf.stridedSlice(padded, [0, 0, 0, 0], extent, [1, rows.stride, cols.stride, 1]);
  // xᵀ·dy through wasmMatMul: wasm's own transposed product is plain loops.
  const grad = wasmMatMul(tf.reshape(sampled, [-1, info.inChannels]), tf.reshape(dy, [-1, info.outChannels]), true, false);
  return tf.reshape(grad, [1, 1, info.inChannels, info.outChannels]);
}

function padIfAny(x: Tensor4D, paddings: Array<[number, number]>): Tensor4D {
  return paddings.every(([before, after]) => before === 0 && after === 0) ? x : tf.pad(x, paddings);
}

/**
 * The depthwise filter gradient as one depthwise conv: x's batch folded into
 * its channels (N*C channels of one image), dy (dilated by the stride) as a
 * depthwise filter with the multiplier as its channel multiplier, then the
 * batch summed out.
 */
function depthwiseFilterGradientByConv(x: Tensor4D, dy: Tensor4D, info: Conv2DInfo): Tensor4D {
  const [rows, cols] = axes(info);
  const [n, h, w, c] = x.shape;
  const [, outH, outW] = dy.shape;
  const multiplier = info.outChannels / info.inChannels;
  const batchInChannels = n === 1 ? tf.reshape(x, [1, h, w, c]) : tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h, w, n * c]);
  const dyAsFilter = n === 1
    ? tf.reshape(dy, [outH, outW, c, multiplier])
    : tf.reshape(tf.transpose(dy, [1, 2, 0, 3]), [outH, outW, n * c, multiplier]);
  const pad: ExplicitPadding = [[0, 0], [rows.padBefore, Math.max(padAfter(rows), 0)], [cols.padBefore, Math.max(padAfter(cols), 0)], [0, 0]];
  const out = tf.engine().runKernel<Tensor4D>(
    tf.DepthwiseConv2dNative,
    { x: batchInChannels, filter: dyAsFilter },
    { strides: [rows.dilation, cols.dilation], pad, dilations: [rows.stride, cols.stride] },
  );
  const taps = leading(out, [1, rows.filterSize, cols.filterSize, out.shape[3]]);
  const perImage = tf.reshape(taps, [rows.filterSize, cols.filterSize, n, c, multiplier]);
  return n === 1 ? tf.reshape(perImage, info.filterShape) : tf.sum<Tensor4D>(perImage, 2);
}

// ------------------------------------------------------------------ helpers

/** The first `size` entries along each axis; no copy when that is all of t (wasm's Slice copies through JS). */
function leading(t: Tensor4D, size: [number, number, number, number]): Tensor4D {
  return t.shape.every((d, i) => d === size[i]) ? t : tf.slice(t, 0, size);
}

/** NCHW data as NHWC (the filter layout is the same in both formats). */
function channelsLast(t: Tensor4D, nchw: boolean): Tensor4D {
  return nchw ? tf.transpose(t, [0, 2, 3, 1]) : t;
}

type Pad = 'valid' | 'same' | number | ExplicitPadding;

/** Explicit pads are listed in the data's axis order; the kernels work in NHWC. */
function channelsLastPad(pad: Pad, nchw: boolean): Pad {
  return nchw && Array.isArray(pad) ? [[0, 0], pad[2], pad[3], [0, 0]] : pad;
}

/** A kernel input as a Tensor (a new handle on the same data when it is only a TensorInfo). */
function tensorOf(inputs: tf.NamedTensorInfoMap, name: string): tf.Tensor {
  const info = inputs[name];
  if (info === undefined) throw new Error(`kernel input '${name}' is missing`);
  return info instanceof tf.TensorClass ? info : tf.engine().makeTensorFromTensorInfo(info);
}
