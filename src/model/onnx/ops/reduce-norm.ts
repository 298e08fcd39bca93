/**
 * Reductions (Reduce*), softmaxes and normalisations (BatchNormalization in
 * inference, InstanceNormalization, LayerNormalization, GroupNormalization,
 * LRN) and ops along one axis (ArgMax, ArgMin, CumSum, Hardmax). Reductions,
 * softmaxes and the ops along an axis of an 'nhwc' input work on the stored
 * tensor with remapped axes.
 */
import * as tf from '../../../engine/tf.js';
import { maxSplittingTies, minSplittingTies } from '../../../engine/max-gradients.js';
import { CamvizError } from '../../../util/errors.js';
import { NCHW_TO_NHWC, laid, storedAxis, toLayout, type LaidTensor, type Layout } from '../layout.js';
import { attrFloat, attrInt, attrInts, constantInts, normalizeAxis, required, unsupported, zerosStandIn, type OpContext, type OpFunction } from './common.js';

type Inputs = (LaidTensor | undefined)[];
type Reducer = (x: tf.Tensor, axes: number[], keepDims: boolean) => tf.Tensor;

/**
 * A Reduce* op. `axesInputSince`: the opset from which axes are an input
 * (13 for ReduceSum, 18 for the others), with noop_with_empty_axes.
 */
function reduce(reducer: Reducer, axesInputSince: number): OpFunction {
  return (ctx, inputs) => {
    const x = required(ctx, inputs, 0);
    const rank = x.tensor.rank;
    const given = ctx.opset < axesInputSince ? attrInts(ctx, 'axes') : constantInts(inputs[1]);
    const keepDims = attrInt(ctx, 'keepdims', 1) === 1;
    if ((given === undefined || given.length === 0) && ctx.opset >= axesInputSince && attrInt(ctx, 'noop_with_empty_axes', 0) === 1) {
      return [x];
    }
    const axes = given === undefined || given.length === 0 ? [...Array(rank).keys()] : given.map((axis) => normalizeAxis(ctx, axis, rank));
    if (x.tensor.size === 0) throw unsupported(ctx, 'reducing an empty tensor');
    const stored = [...new Set(axes.map((axis) => storedAxis(axis, x.layout)))];
    if (ctx.shapesOnly === true) return [reducedStandIn(reducer, x, stored, keepDims)];
    const y = reducer(x.tensor, stored, keepDims);
    if (x.layout === 'onnx' || keepDims) return [laid(y, x.layout)];
    const order = keptOrder(stored);
    return [laid(order.every((dim, i) => dim === i) ? y : tf.transpose(y, order), 'onnx')];
  };
}

/**
 * An 'nhwc' value reduced without keepdims: the dims left are in stored
 * order; the permutation that puts them in ONNX order.
 */
function keptOrder(reduced: number[]): number[] {
  const kept = NCHW_TO_NHWC.filter((_, position) => !reduced.includes(position));
  return [...kept.keys()].sort((i, j) => kept[i]! - kept[j]!);
}

/**
 * In the planning pass, zeros standing for a reduction of image data
 * (common.ts, zerosStandIn): the reduced shape, in the order the full run
 * gives it, of the type the reducer gives one element (which also makes
 * its check of the type). MobileNet v1's global ReduceMean run for real
 * was 14 ms of a cold start: its input moved to the wasm heap, transposed.
 */
function reducedStandIn(reducer: Reducer, x: LaidTensor, stored: number[], keepDims: boolean): LaidTensor {
  // The reducer's own check of the axes against the value's rank (a scalar has none to reduce).
  tf.util.parseAxisParam(stored, x.tensor.shape);
  const dtype = reducer(tf.zeros([1], x.tensor.dtype), [0], keepDims).dtype;
  const shape = x.tensor.shape.flatMap((dim, axis) => (!stored.includes(axis) ? [dim] : keepDims ? [1] : []));
  if (x.layout === 'onnx' || keepDims) return laid(zerosStandIn(shape, dtype), x.layout);
  return laid(zerosStandIn(keptOrder(stored).map((axis) => shape[axis]!), dtype), 'onnx');
}

const sumSquare: Reducer = (x, axes, keep) => tf.sum(tf.square(x), axes, keep);

const REDUCERS: Record<string, Reducer> = {
  ReduceMean: (x, axes, keep) => tf.mean(x, axes, keep),
  ReduceSum: (x, axes, keep) => tf.sum(x, axes, keep),
  // torch.amax / amin (what export to ReduceMax / ReduceMin) divide the gradient among ties; tf.max's gives it whole to each.
  ReduceMax: maxSplittingTies,
  ReduceMin: minSplittingTies,
  ReduceProd: (x, axes, keep) => tf.prod(x, axes, keep),
  ReduceSumSquare: sumSquare,
  ReduceL1: (x, axes, keep) => tf.sum(tf.abs(x), axes, keep),
  ReduceL2: (x, axes, keep) => tf.sqrt(sumSquare(x, axes, keep)),
  ReduceLogSum: (x, axes, keep) => tf.log(tf.sum(x, axes, keep)),
  ReduceLogSumExp: (x, axes, keep) => tf.logSumExp(x, axes, keep),
};

const reduceOps = Object.fromEntries(
  Object.entries(REDUCERS).map(([name, reducer]) => [name, reduce(reducer, name === 'ReduceSum' ? 13 : 18)]),
);

// ------------------------------------------------------------ along one axis

/**
 * ArgMax and ArgMin: the index of the first extreme along `axis` (the last
 * with select_last_index, opset 12), int64 in ONNX, int32 here. Not
 * differentiable (post-processing inside a graph).
 */
function argReduce(find: (x: tf.Tensor, axis: number) => tf.Tensor): OpFunction {
  return (ctx, inputs) => {
    const x = required(ctx, inputs, 0);
    const axis = storedAxis(normalizeAxis(ctx, attrInt(ctx, 'axis', 0), x.tensor.rank), x.layout);
    const keepDims = attrInt(ctx, 'keepdims', 1) === 1;
    const last = ctx.opset >= 12 && attrInt(ctx, 'select_last_index', 0) === 1;
    if (x.tensor.size === 0) throw unsupported(ctx, 'an empty input');
    const length = x.tensor.shape[axis]!;
    // The last extreme is the first one of the reversed axis.
    const indices = last ? tf.sub(tf.scalar(length - 1, 'int32'), find(tf.reverse(x.tensor, axis), axis)) : find(x.tensor, axis);
    if (keepDims) return [laid(tf.expandDims(indices, axis), x.layout)];
    if (x.layout === 'onnx') return [laid(indices)];
    const order = keptOrder([axis]);
    return [laid(order.every((dim, i) => dim === i) ? indices : tf.transpose(indices, order), 'onnx')];
  };
}

/** CumSum along the axis its second input gives; exclusive and reverse as tfjs' cumsum has them. */
function cumSum(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = required(ctx, inputs, 0);
  const given = constantInts(required(ctx, inputs, 1));
  if (given?.length !== 1) throw unsupported(ctx, `axis of ${given?.length ?? 0} values (one is expected)`);
  const axis = storedAxis(normalizeAxis(ctx, given[0]!, x.tensor.rank), x.layout);
  const exclusive = attrInt(ctx, 'exclusive', 0) === 1;
  const reverse = attrInt(ctx, 'reverse', 0) === 1;
  const last = x.tensor.rank - 1;
  if (axis === last) return [laid(tf.cumsum(x.tensor, axis, exclusive, reverse), x.layout)];
  // tfjs 4.22's cumsum gradient transposes its result when the axis is not the last one, which it already is not: sum along the last axis only.
  const swap = [...Array(x.tensor.rank).keys()].map((dim) => (dim === axis ? last : dim === last ? axis : dim));
  return [laid(tf.transpose(tf.cumsum(tf.transpose(x.tensor, swap), last, exclusive, reverse), swap), x.layout)];
}

/** One-hot of the first maximum along the last axis, in `x`'s type. */
function hardmaxLast(x: tf.Tensor): tf.Tensor {
  const depth = x.shape[x.rank - 1]!;
  return tf.cast(tf.oneHot(tf.argMax(x, -1), depth), x.dtype);
}

// ------------------------------------------------------------ softmax

/**
 * Softmax and LogSoftmax. From opset 13 along one axis (default -1); before,
 * over everything from `axis` (default 1) on, as one flattened row per
 * leading index.
 */
function softmaxOp(last: (x: tf.Tensor) => tf.Tensor): OpFunction {
  return (ctx, inputs) => {
    const x = required(ctx, inputs, 0);
    if (ctx.opset < 13) {
      const t = toLayout(x, 'onnx');
      const axis = normalizeAxis(ctx, attrInt(ctx, 'axis', 1), t.rank);
      const outer = t.shape.slice(0, axis).reduce((a, b) => a * b, 1);
      return [laid(tf.reshape(last(tf.reshape(t, [outer, t.size / Math.max(outer, 1)])), t.shape))];
    }
    const rank = x.tensor.rank;
    const axis = storedAxis(normalizeAxis(ctx, attrInt(ctx, 'axis', -1), rank), x.layout);
    if (axis === rank - 1) return [laid(last(x.tensor), x.layout)];
    const perm = [...Array(rank).keys()];
    perm[axis] = rank - 1;
    perm[rank - 1] = axis;
    return [laid(tf.transpose(last(tf.transpose(x.tensor, perm)), perm), x.layout)];
  };
}

// ------------------------------------------------------------ normalisation

function batchNormalization(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  if (attrInt(ctx, 'training_mode', 0) !== 0 || ctx.node.outputs.filter((name) => name !== '').length > 1) {
    throw unsupported(ctx, 'training mode');
  }
  const x = required(ctx, inputs, 0);
  const [scale, bias, mean, variance] = [1, 2, 3, 4].map((i) => toLayout(required(ctx, inputs, i), 'onnx'));
  const epsilon = attrFloat(ctx, 'epsilon', 1e-5);
  // y = x·m + s with m = scale / sqrt(var + eps) and s = bias - mean·m, per channel.
  const multiplier = tf.mul(scale!, tf.rsqrt(tf.add(variance!, epsilon)));
  const shift = tf.sub(bias!, tf.mul(mean!, multiplier));
  const layout = channelsLayout(x);
  const t = toLayout(x, layout);
  return [laid(tf.add(tf.mul(t, perChannel(multiplier, t, layout)), perChannel(shift, t, layout)), layout)];
}

/** A per-channel normalisation computes a 4-D value in 'nhwc', where the channels are the last axis, as the convolutions around it. */
function channelsLayout(x: LaidTensor): Layout {
  return x.tensor.rank === 4 ? 'nhwc' : 'onnx';
}

/** A [C] vector shaped to broadcast over the channels of `t`: the last stored axis of 'nhwc', axis 1 of 'onnx'. */
function perChannel(p: tf.Tensor, t: tf.Tensor, layout: Layout): tf.Tensor {
  return layout === 'nhwc' || t.rank <= 2 ? p : tf.reshape(p, [p.size, ...Array<number>(t.rank - 2).fill(1)]);
}

/** y = scale · (x - mean) / sqrt(variance + epsilon) + B, the mean and (biased) variance over the spatial axes of each sample's channel. */
function instanceNormalization(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = required(ctx, inputs, 0);
  const rank = x.tensor.rank;
  if (rank < 3) throw unsupported(ctx, `input of rank ${rank} (InstanceNormalization normalises [N, C, D1, ...])`);
  const [scale, bias] = [1, 2].map((i) => toLayout(required(ctx, inputs, i), 'onnx'));
  const epsilon = attrFloat(ctx, 'epsilon', 1e-5);
  const layout = channelsLayout(x);
  const t = toLayout(x, layout);
  const spatial = layout === 'nhwc' ? [1, 2] : [...Array(rank).keys()].slice(2);
  const centred = tf.sub(t, tf.mean(t, spatial, true));
  const inverseStd = tf.rsqrt(tf.add(tf.mean(tf.square(centred), spatial, true), epsilon));
  return [laid(tf.add(tf.mul(tf.mul(centred, inverseStd), perChannel(scale!, t, layout)), perChannel(bias!, t, layout)), layout)];
}

function layerNormalization(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = toLayout(required(ctx, inputs, 0), 'onnx');
  const axis = normalizeAxis(ctx, attrInt(ctx, 'axis', -1), x.rank);
  const epsilon = attrFloat(ctx, 'epsilon', 1e-5);
  const axes = [...Array(x.rank).keys()].slice(axis);
  const mean = tf.mean(x, axes, true);
  const centred = tf.sub(x, mean);
  const inverseStd = tf.rsqrt(tf.add(tf.mean(tf.square(centred), axes, true), epsilon));
  let y = tf.mul(centred, inverseStd);
  y = tf.mul(y, toLayout(required(ctx, inputs, 1), 'onnx'));
  const bias = inputs[2];
  if (bias !== undefined) y = tf.add(y, toLayout(bias, 'onnx'));
  return [laid(y), laid(mean), laid(inverseStd)].slice(0, Math.max(ctx.node.outputs.length, 1));
}

/**
 * GroupNormalization: each sample's channels in num_groups groups, each
 * group normalised over its channels and spatial positions together (mean
 * and biased variance), then scaled and shifted. Opsets 18-20 give one scale
 * and bias per group, 21 one per channel (ONNX changed the inputs' meaning);
 * stash_type only asks for float32 statistics, which these are.
 */
function groupNormalization(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = required(ctx, inputs, 0);
  const rank = x.tensor.rank;
  if (rank < 3) throw unsupported(ctx, `input of rank ${rank} (GroupNormalization normalises [N, C, D1, ...])`);
  const groups = attrInt(ctx, 'num_groups', 0);
  const layout = channelsLayout(x);
  const t = toLayout(x, layout);
  const channels = layout === 'nhwc' ? t.shape[3]! : t.shape[1]!;
  if (groups < 1 || channels % groups !== 0) throw new CamvizError(`ONNX node '${ctx.node.name}' (GroupNormalization): ${channels} channels in ${groups} groups`);
  const epsilon = attrFloat(ctx, 'epsilon', 1e-5);
  // nhwc: [N, H, W, G, C/G], statistics over H, W and C/G; onnx: [N, G, rest], statistics over rest.
  const grouped = layout === 'nhwc' ? tf.reshape(t, [...t.shape.slice(0, 3), groups, channels / groups]) : tf.reshape(t, [t.shape[0]!, groups, -1]);
  const axes = layout === 'nhwc' ? [1, 2, 4] : [2];
  const centred = tf.sub(grouped, tf.mean(grouped, axes, true));
  const inverseStd = tf.rsqrt(tf.add(tf.mean(tf.square(centred), axes, true), epsilon));
  const normalised = tf.reshape(tf.mul(centred, inverseStd), t.shape);
  const [scale, bias] = [1, 2].map((i) => perChannelOfGroups(ctx, toLayout(required(ctx, inputs, i), 'onnx'), channels, groups));
  return [laid(tf.add(tf.mul(normalised, perChannel(scale!, t, layout)), perChannel(bias!, t, layout)), layout)];
}

/** GroupNormalization's scale or bias as one value per channel: opsets 18-20 give one per group, which each of its channels takes. */
function perChannelOfGroups(ctx: OpContext, p: tf.Tensor, channels: number, groups: number): tf.Tensor {
  const perGroup = ctx.opset < 21;
  const expected = perGroup ? groups : channels;
  if (p.size !== expected) {
    throw new CamvizError(`ONNX node '${ctx.node.name}' (GroupNormalization): ${p.size} scale or bias values, expected ${expected} (one per ${perGroup ? 'group' : 'channel'} at opset ${ctx.opset})`);
  }
  const vector = tf.reshape(p, [expected]);
  return perGroup ? tf.reshape(tf.tile(tf.reshape(vector, [groups, 1]), [1, channels / groups]), [channels]) : vector;
}

/**
 * LRN across channels (AlexNet, CaffeNet, GoogLeNet): x / (bias + alpha/size
 * · Σ x²)^beta, the sum over channels c - floor((size-1)/2) to c +
 * ceil((size-1)/2) (ONNX's window is lopsided for an even size, tfjs' LRN
 * never is, and tfjs' alpha is ONNX's alpha / size). The window's mean of
 * the squares, alpha/size · Σ, is an average pool along the channels of
 * their zero-padded copy, with tfjs' gradients.
 */
function lrn(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = required(ctx, inputs, 0);
  const size = attrInt(ctx, 'size', 0);
  if (size < 1) throw new CamvizError(`ONNX node '${ctx.node.name}' (LRN): size ${size} (it must be at least 1)`);
  if (x.tensor.rank !== 4) throw unsupported(ctx, `input of rank ${x.tensor.rank} (only 4-D images)`);
  const alpha = attrFloat(ctx, 'alpha', 1e-4);
  const beta = attrFloat(ctx, 'beta', 0.75);
  const bias = attrFloat(ctx, 'bias', 1);
  const t = toLayout(x, 'nhwc');
  const channels = t.shape[3]!;
  const below = Math.floor((size - 1) / 2);
  const squares = tf.reshape(tf.square(t), [1, -1, channels, 1]) as tf.Tensor4D;
  const padded = tf.pad(squares, [[0, 0], [0, 0], [below, size - 1 - below], [0, 0]]);
  const windowMean = tf.reshape(tf.avgPool(padded, [1, size], 1, 'valid'), t.shape);
  return [laid(tf.div(t, tf.pow(tf.add(tf.mul(windowMean, alpha), bias), beta)), 'nhwc')];
}

export const REDUCE_NORM_OPS: Record<string, OpFunction> = {
  ...reduceOps,
  Softmax: softmaxOp((x) => tf.softmax(x)),
  LogSoftmax: softmaxOp((x) => tf.logSoftmax(x)),
  // Hardmax changed at opset 13 as Softmax did: one axis instead of everything from axis on.
  Hardmax: softmaxOp(hardmaxLast),
  ArgMax: argReduce((x, axis) => tf.argMax(x, axis)),
  ArgMin: argReduce((x, axis) => tf.argMin(x, axis)),
  CumSum: cumSum,
  LRN: lrn,
  GroupNormalization: groupNormalization,
  BatchNormalization: batchNormalization,
  InstanceNormalization: instanceNormalization,
  LayerNormalization: layerNormalization,
};
