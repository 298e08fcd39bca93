/**
 * Spatial ONNX ops on 4-D values (2-D images): Conv, MaxPool, AveragePool,
 * GlobalAveragePool, GlobalMaxPool. They run on NHWC, as tfjs' kernels do,
 * and their outputs stay 'nhwc'. 1-D data, and 3-D data for the pools, runs
 * through them (spatial-rank.ts); a 3-D Conv is refused. The max
 * pools differentiate as PyTorch's: each window's gradient goes to its first
 * maximum (engine/max-gradients.ts).
 */
import * as tf from '../../../engine/tf.js';
import { CamvizError } from '../../../util/errors.js';
import { maxPoolToFirstMax, maxToFirstTie } from '../../../engine/max-gradients.js';
import { laid, onnxShape, toLayout, type LaidTensor } from '../layout.js';
import { dilatedConv2d } from '../../../engine/dilated-conv.js';
import { attrInt, attrInts, attrString, checkedShape, required, unsupported, zerosStandIn, type OpContext, type OpFunction } from './common.js';
import { withSpatialRanks } from './spatial-rank.js';

type Inputs = (LaidTensor | undefined)[];
/** [before, after] for H, then for W. */
type SpatialPads = [[number, number], [number, number]];
/** tf.conv2d's explicit padding: [[0, 0], [top, bottom], [left, right], [0, 0]]. */
type ExplicitPadding = [[number, number], [number, number], [number, number], [number, number]];

interface Window {
  kernel: [number, number];
  strides: [number, number];
  dilations: [number, number];
}

export function pair(ctx: OpContext, values: number[] | undefined, name: string, fallback: number): [number, number] {
  if (values === undefined) return [fallback, fallback];
  if (values.length !== 2) throw unsupported(ctx, `${name} of length ${values.length} (only 2-D is supported)`);
  return [values[0]!, values[1]!];
}

/** The input as NHWC, refusing anything but 2-D spatial data. */
export function spatialInput(ctx: OpContext, inputs: Inputs): tf.Tensor4D {
  const x = required(ctx, inputs, 0);
  if (x.tensor.rank !== 4) throw unsupported(ctx, `${x.tensor.rank - 2}-D data (only 2-D is supported)`);
  return toLayout(x, 'nhwc') as tf.Tensor4D;
}

/** The explicit pads ONNX's pads/auto_pad attributes give for input size `size` (H, W). */
function spatialPads(ctx: OpContext, size: [number, number], window: Window): SpatialPads {
  const autoPad = attrString(ctx, 'auto_pad', 'NOTSET');
  if (autoPad === 'NOTSET') {
    const pads = attrInts(ctx, 'pads') ?? [0, 0, 0, 0];
    if (pads.length !== 4) throw unsupported(ctx, `pads of length ${pads.length} (only 2-D is supported)`);
    return [
      [pads[0]!, pads[2]!],
      [pads[1]!, pads[3]!],
    ];
  }
  if (autoPad === 'VALID') return [[0, 0], [0, 0]];
  if (autoPad !== 'SAME_UPPER' && autoPad !== 'SAME_LOWER') throw unsupported(ctx, `auto_pad '${autoPad}'`);
  const pads = size.map((extent, i): [number, number] => {
    const stride = window.strides[i]!;
    const span = (window.kernel[i]! - 1) * window.dilations[i]! + 1;
    const total = Math.max(0, (Math.ceil(extent / stride) - 1) * stride + span - extent);
    const small = Math.floor(total / 2);
    return autoPad === 'SAME_UPPER' ? [small, total - small] : [total - small, small];
  });
  return pads as SpatialPads;
}

// ------------------------------------------------------------ Conv

function conv(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = spatialInput(ctx, inputs);
  const weights = toLayout(required(ctx, inputs, 1), 'onnx');
  if (weights.rank !== 4) throw unsupported(ctx, `${weights.rank - 2}-D kernel (only 2-D is supported)`);
  const [outChannels, groupChannels, kH, kW] = weights.shape as [number, number, number, number];
  const window: Window = {
    kernel: pair(ctx, attrInts(ctx, 'kernel_shape'), 'kernel_shape', 0),
    strides: pair(ctx, attrInts(ctx, 'strides'), 'strides', 1),
    dilations: pair(ctx, attrInts(ctx, 'dilations'), 'dilations', 1),
  };
  if (ctx.node.attributes['kernel_shape'] === undefined) window.kernel = [kH, kW];
  const stridesAndDilations = window.strides.some((s) => s > 1) && window.dilations.some((d) => d > 1);
  // tfjs' convolutions take either strides or dilations, not both.
  if (stridesAndDilations) throw unsupported(ctx, 'strides and dilations both larger than 1');
  const [, height, width, channels] = x.shape;
  const [padH, padW] = spatialPads(ctx, [height, width], window);
  const padding: ExplicitPadding = [[0, 0], padH, padW, [0, 0]];
  const group = attrInt(ctx, 'group', 1);
  if (channels !== groupChannels * group) {
    throw new CamvizError(`ONNX node '${ctx.node.name}' (Conv): ${channels} input channels for ${group} groups of ${groupChannels}`);
  }
  // Known before any convolution allocates it: many output channels or huge pads make a huge value.
  const outShape = checkedShape(ctx, convOutputShape(ctx, x.shape, [outChannels, groupChannels, kH, kW], group, window.strides, window.dilations, padding), 'float32', 'nhwc');
  let y: tf.Tensor4D;
  if (ctx.shapesOnly === true) {
    y = zerosStandIn(outShape, 'float32') as tf.Tensor4D;
  } else if (group === 1) {
    const filter = tf.transpose(weights, [2, 3, 1, 0]) as tf.Tensor4D;
    y = convolve(x, filter, window, padding, false);
  } else if (groupChannels === 1) {
    // Depthwise: output channel c·m + j reads input channel c.
    const multiplier = outChannels / channels;
    const filter = tf.transpose(tf.reshape(weights, [channels, multiplier, kH, kW]), [2, 3, 0, 1]) as tf.Tensor4D;
    y = convolve(x, filter, window, padding, true);
  } else {
    y = groupedConv(x, weights, group, window, padding);
  }
  const bias = inputs[2];
  if (bias === undefined) return [laid(y, 'nhwc')];
  // The add's own check of the bias's shape, without the add.
  if (ctx.shapesOnly === true) tf.backend_util.assertAndGetBroadcastShape(y.shape, onnxShape(bias));
  return [laid(ctx.shapesOnly === true ? y : tf.add(y, toLayout(bias, 'onnx')), 'nhwc')];
}

/**
 * The NHWC shape of a Conv's output, as tfjs' convolutions compute it (the
 * output size of every group's convolution is the same; grouped and
 * depthwise Convs give `outChannels` channels, which the groups must
 * divide, as the split or reshape of the weights requires).
 */
function convOutputShape(
  ctx: OpContext,
  inShape: [number, number, number, number],
  [outChannels, , kH, kW]: [number, number, number, number],
  group: number,
  strides: [number, number],
  dilations: [number, number],
  padding: ExplicitPadding,
): [number, number, number, number] {
  if (outChannels % group !== 0) throw new CamvizError(`ONNX node '${ctx.node.name}' (Conv): ${outChannels} output channels for ${group} groups`);
  return tf.backend_util.computeConv2DInfo(inShape, [kH, kW, inShape[3], outChannels], strides, dilations, padding, undefined, false, 'channelsLast').outShape as [number, number, number, number];
}

/** Groups that are neither 1 nor depthwise: one convolution per group. */
function groupedConv(x: tf.Tensor4D, weights: tf.Tensor, group: number, window: Window, padding: ExplicitPadding): tf.Tensor4D {
  const xs = tf.split(x, group, 3) as tf.Tensor4D[];
  const ws = tf.split(weights, group, 0);
  const ys = xs.map((part, i) => convolve(part, tf.transpose(ws[i]!, [2, 3, 1, 0]) as tf.Tensor4D, window, padding, false));
  return tf.concat(ys, 3) as tf.Tensor4D;
}

/** tf.conv2d or tf.depthwiseConv2d; dilated ones through engine/dilated-conv.ts, whose gradient tfjs refuses. */
function convolve(x: tf.Tensor4D, filter: tf.Tensor4D, window: Window, padding: ExplicitPadding, depthwise: boolean): tf.Tensor4D {
  if (window.dilations.some((d) => d > 1)) return dilatedConv2d(x, filter, padding, window.dilations, depthwise);
  return depthwise ? tf.depthwiseConv2d(x, filter, window.strides, padding, 'NHWC') : tf.conv2d(x, filter, window.strides, padding, 'NHWC');
}

// ------------------------------------------------------------ pooling

interface PoolGeometry {
  window: Window;
  /** Pads from the attributes. */
  pads: SpatialPads;
  /** Extra pads at the end that ceil_mode adds (not counted by count_include_pad). */
  ceilExtra: [number, number];
}

function poolGeometry(ctx: OpContext, x: tf.Tensor4D, dilated: boolean): PoolGeometry {
  const window: Window = {
    kernel: pair(ctx, attrInts(ctx, 'kernel_shape'), 'kernel_shape', 1),
    strides: pair(ctx, attrInts(ctx, 'strides'), 'strides', 1),
    dilations: pair(ctx, attrInts(ctx, 'dilations'), 'dilations', 1),
  };
  if (window.dilations.some((d) => d !== 1)) {
    if (!dilated) throw unsupported(ctx, 'dilations');
    // tf.pool dilates only with unit strides.
    if (window.strides.some((s) => s !== 1)) throw unsupported(ctx, 'dilations with strides larger than 1');
  }
  const size: [number, number] = [x.shape[1], x.shape[2]];
  const pads = spatialPads(ctx, size, window);
  size.forEach((extent, i) => {
    const span = (window.kernel[i]! - 1) * window.dilations[i]! + 1;
    const cells = extent + pads[i]![0] + pads[i]![1];
    // No window fits, so the output would have no size: tfjs failed on the negative shape without naming the node.
    if (span > cells) throw new CamvizError(`ONNX node '${ctx.node.name}' (${ctx.node.opType}): a window of ${span} over ${cells} cells (the input and its pads)`);
  });
  const ceil = attrInt(ctx, 'ceil_mode', 0) === 1;
  const ceilExtra = size.map((extent, i) => {
    const [before, after] = pads[i]!;
    const kernel = (window.kernel[i]! - 1) * window.dilations[i]! + 1;
    const stride = window.strides[i]!;
    const room = extent + before + after - kernel;
    if (!ceil || room < 0) return 0;
    let outputs = Math.ceil(room / stride) + 1;
    // The last window must start inside the input or its leading pad (as PyTorch and ONNX's reference).
    if ((outputs - 1) * stride >= extent + before) outputs -= 1;
    return Math.max(0, (outputs - 1) * stride + kernel - (extent + before + after));
  }) as [number, number];
  return { window, pads, ceilExtra };
}

/** `paddings`, once the padded copy of `x` that the pools below make is known to be within the per-tensor limit. */
function checkedPaddings(ctx: OpContext, x: tf.Tensor4D, paddings: [number, number][]): [number, number][] {
  checkedShape(ctx, x.shape.map((extent, i) => extent + paddings[i]![0] + paddings[i]![1]), 'float32', 'nhwc');
  return paddings;
}

function totalPaddings({ pads, ceilExtra }: PoolGeometry): [number, number][] {
  return [[0, 0], [pads[0][0], pads[0][1] + ceilExtra[0]], [pads[1][0], pads[1][1] + ceilExtra[1]], [0, 0]];
}

const hasPadding = (paddings: [number, number][]): boolean => paddings.some(([a, b]) => a !== 0 || b !== 0);

/** The NHWC shape of a pool's output over `shape` padded by `paddings` (as the pools below compute it: 'valid' windows over the padded input). */
function pooledShape(shape: readonly number[], paddings: [number, number][], { kernel, strides, dilations }: Window): [number, number, number, number] {
  const padded = shape.map((extent, i) => extent + paddings[i]![0] + paddings[i]![1]) as [number, number, number, number];
  return tf.backend_util.computePool2DInfo(padded, kernel, strides, dilations, 'valid').outShape as [number, number, number, number];
}

function maxPool(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  if ((ctx.node.outputs[1] ?? '') !== '') throw unsupported(ctx, 'the Indices output');
  if (attrInt(ctx, 'storage_order', 0) !== 0) throw unsupported(ctx, 'storage_order 1');
  const input = spatialInput(ctx, inputs);
  if (ctx.shapesOnly === true) {
    const geometry = poolGeometry(ctx, input, true);
    return [laid(zerosStandIn(pooledShape(input.shape, totalPaddings(geometry), geometry.window), input.dtype, ctx, 'nhwc'), 'nhwc')];
  }
  const x = input.dtype === 'float32' ? input : (tf.cast(input, 'float32') as tf.Tensor4D);
  const geometry = poolGeometry(ctx, x, true);
  const paddings = checkedPaddings(ctx, x, totalPaddings(geometry));
  const { kernel, strides, dilations } = geometry.window;
  // Padding with -Infinity keeps pads out of every maximum.
  const padded = hasPadding(paddings) ? tf.pad(x, paddings, -Infinity) : x;
  // Each window's gradient to its first maximum, as PyTorch's max pooling (tfjs-wasm's MaxPoolGrad takes the last).
  const y = maxPoolToFirstMax(padded, kernel, strides, dilations);
  return [laid(input.dtype === 'float32' ? y : tf.cast(y, input.dtype), 'nhwc')];
}

function averagePool(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = spatialInput(ctx, inputs);
  const geometry = poolGeometry(ctx, x, false);
  const paddings = checkedPaddings(ctx, x, totalPaddings(geometry));
  const { kernel, strides } = geometry.window;
  // tfjs' average pool takes float32 only: another type is refused by the pool itself, in the plan as at run time.
  if (ctx.shapesOnly === true && x.dtype === 'float32') return [laid(zerosStandIn(pooledShape(x.shape, paddings, geometry.window), x.dtype, ctx, 'nhwc'), 'nhwc')];
  if (!hasPadding(paddings)) return [laid(tf.avgPool(x, kernel, strides, 'valid'), 'nhwc')];
  const sums = tf.avgPool(tf.pad(x, paddings, 0), kernel, strides, 'valid');
  // The mean over the counted cells: the input, plus the attribute pads when count_include_pad.
  const includePads = attrInt(ctx, 'count_include_pad', 0) === 1;
  const inner = tf.ones([1, x.shape[1], x.shape[2], 1]) as tf.Tensor4D;
  const attributePads: [number, number][] = [[0, 0], geometry.pads[0], geometry.pads[1], [0, 0]];
  const counted = includePads ? tf.pad(inner, attributePads, 1) : tf.pad(inner, attributePads, 0);
  const ceilPads: [number, number][] = [[0, 0], [0, geometry.ceilExtra[0]], [0, geometry.ceilExtra[1]], [0, 0]];
  const mask = tf.pad(counted, ceilPads, 0) as tf.Tensor4D;
  const share = tf.avgPool(mask, kernel, strides, 'valid');
  return [laid(tf.div(sums, share), 'nhwc')];
}

function globalPool(reduce: (x: tf.Tensor, axes: number[]) => tf.Tensor): OpFunction {
  return (ctx, inputs) => {
    const x = required(ctx, inputs, 0);
    if (x.tensor.rank === 4 && ctx.shapesOnly === true) {
      const [batch, channels] = onnxShape(x) as [number, number];
      // The type the reduction gives, from one element.
      const dtype = reduce(tf.zeros([1, 1, 1, 1], x.tensor.dtype), [1, 2]).dtype;
      return [laid(zerosStandIn([batch, 1, 1, channels], dtype), 'nhwc')];
    }
    if (x.tensor.rank === 4) return [laid(reduce(toLayout(x, 'nhwc'), [1, 2]), 'nhwc')];
    const axes = [...Array(x.tensor.rank).keys()].slice(2);
    return [laid(reduce(x.tensor, axes), x.layout)];
  };
}

export const CONV_POOL_OPS: Record<string, OpFunction> = {
  Conv: withSpatialRanks(conv, false),
  MaxPool: withSpatialRanks(maxPool, true),
  AveragePool: withSpatialRanks(averagePool, true),
  GlobalAveragePool: globalPool((x, axes) => tf.mean(x, axes, true)),
  // PyTorch's AdaptiveMaxPool2d(1) (what exports to GlobalMaxPool) routes the gradient to the first maximum; tf.max's goes to every tie.
  GlobalMaxPool: globalPool((x, axes) => maxToFirstTie(x, axes, true)),
};

