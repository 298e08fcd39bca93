/**
 * 1-D and 3-D data through the 2-D spatial ops (Conv, ConvTranspose,
 * MaxPool, AveragePool), so that ONNX's geometry (pads, auto_pad,
 * ceil_mode, count_include_pad, output_padding, output_shape, groups,
 * dilations) and PyTorch's max-pool gradient stay written once:
 * - 1-D data (nn.Conv1d, nn.ConvTranspose1d, nn.MaxPool1d, nn.AvgPool1d)
 *   is 2-D data of height 1: a unit axis whose kernel, stride and dilation
 *   are 1 and whose pads are 0, which changes nothing.
 * - 3-D pooling (nn.MaxPool3d, nn.AvgPool3d) is separable: each depth slice
 *   is pooled over H and W, then the results over depth (a 2-D pool of
 *   kernel [depth, 1]). A maximum of maxima is the maximum, and its first
 *   in (D, H, W) scan order, where PyTorch sends the gradient, is the
 *   first depth's first (H, W): tfjs' own maxPool3d gradient takes the last
 *   on ties. An average of averages is the average: each axis' count of
 *   cells (pads counted or not) multiplies into the 3-D window's.
 * Values other than 4-D are stored in ONNX's layout; the 2-D ops read and
 * give 'nhwc', so each lift is a transpose and a reshape.
 */
import * as tf from '../../../engine/tf.js';
import { laid, onnxShape, toLayout, type LaidTensor } from '../layout.js';
import type { OnnxAttribute } from '../types.js';
import { attrInts, unsupported, zerosStandIn, type OpContext, type OpFunction } from './common.js';

type Inputs = (LaidTensor | undefined)[];

/** For each axis of the 2-D op: one of the node's spatial axes, or a unit axis. */
type AxisPick = [number | 'unit', number | 'unit'];

/** The attributes with a value per spatial axis, and the value that leaves a unit axis alone. */
const PER_AXIS: Record<string, number> = { kernel_shape: 1, strides: 1, dilations: 1, output_padding: 0, output_shape: 1 };

/** `op` also on 1-D data and, with `threeD`, on 3-D data (pools only: they are separable); other ranks are refused. */
export function withSpatialRanks(op: OpFunction, threeD: boolean): OpFunction {
  return (ctx, inputs) => {
    const rank = inputs[0]?.tensor.rank ?? 4;
    if (rank === 4) return op(ctx, inputs);
    if (rank === 3) return oneD(op, ctx, inputs);
    if (rank === 5 && threeD) return pooled3d(op, ctx, inputs);
    if (rank < 3) throw unsupported(ctx, `an input of rank ${rank} (N, C and spatial axes are expected)`);
    throw unsupported(ctx, `${rank - 2}-D data (only 1-D${threeD ? ', 2-D and 3-D are' : ' and 2-D are'} supported)`);
  };
}

/** [N, C, L] as [N, 1, L, C] (stored NHWC), a Conv's weights [O, I, k] as [O, I, 1, k]; the output back to [N, C', L']. */
function oneD(op: OpFunction, ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = toLayout(inputs[0]!, 'onnx');
  const [batch, channels, length] = x.shape as [number, number, number];
  const lifted = rearranged(ctx, x, [0, 2, 1], [batch, 1, length, channels]);
  const weights = inputs[1] === undefined ? undefined : laid(tf.reshape(toLayout(inputs[1], 'onnx'), liftedKernel(inputs[1])));
  const y = op(picked(ctx, ['unit', 0], 1), [laid(lifted, 'nhwc'), weights, ...inputs.slice(2)])[0]!.tensor;
  const [, , outLength, outChannels] = y.shape as [number, number, number, number];
  return [laid(rearranged(ctx, y, [0, 3, 1, 2], [batch, outChannels, outLength]))];
}

/** A 1-D kernel [O, I, k] with a unit axis before k. */
function liftedKernel(weights: LaidTensor): number[] {
  const shape = onnxShape(weights);
  return [...shape.slice(0, -1), 1, ...shape.slice(-1)];
}

/** [N, C, D, H, W]: each depth slice pooled over (H, W) as [N·D, H, W, C], then over depth as [N, D, H'·W', C]. */
function pooled3d(op: OpFunction, ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = toLayout(inputs[0]!, 'onnx');
  const [batch, channels, depth, height, width] = x.shape as [number, number, number, number, number];
  const slices = rearranged(ctx, x, [0, 2, 3, 4, 1], [batch * depth, height, width, channels]);
  const planes = op(picked(ctx, [1, 2], 3), [laid(slices, 'nhwc')])[0]!.tensor;
  const [, outHeight, outWidth] = planes.shape as [number, number, number, number];
  const columns = rearranged(ctx, planes, [0, 1, 2, 3], [batch, depth, outHeight * outWidth, channels]);
  const pooled = op(picked(ctx, [0, 'unit'], 3), [laid(columns, 'nhwc')])[0]!.tensor;
  return [laid(rearranged(ctx, pooled, [0, 3, 1, 2], [batch, channels, pooled.shape[1]!, outHeight, outWidth]))];
}

/**
 * `x` transposed by `permutation`, then reshaped to `shape`. In the
 * planning pass a stand-in of that shape (checked against the per-tensor
 * limit): a stand-in is the cpu backend's, which another backend's
 * transpose or reshape would copy.
 */
function rearranged(ctx: OpContext, x: tf.Tensor, permutation: number[], shape: number[]): tf.Tensor {
  if (ctx.shapesOnly === true) return zerosStandIn(shape, x.dtype, ctx);
  const moved = permutation.every((axis, i) => axis === i) ? x : tf.transpose(x, permutation);
  return tf.reshape(moved, shape);
}

/** The node as a 2-D op on the axes `pick` names sees it: each per-axis attribute (and `pads`, per end) picked or unit. */
function picked(ctx: OpContext, pick: AxisPick, spatialRank: number): OpContext {
  const attributes: Record<string, OnnxAttribute> = { ...ctx.node.attributes };
  const choose = (values: number[], unit: number): number[] => pick.map((axis) => (axis === 'unit' ? unit : values[axis]!));
  for (const [name, unit] of Object.entries(PER_AXIS)) {
    const values = attrInts(ctx, name);
    if (values === undefined) continue;
    // output_shape may lead with N and C (as ONNX Runtime accepts).
    const lead = name === 'output_shape' && values.length === spatialRank + 2 ? values.slice(0, 2) : [];
    if (values.length - lead.length !== spatialRank) throw unsupported(ctx, `${name} of length ${values.length} for ${spatialRank}-D data`);
    attributes[name] = { kind: 'ints', value: [...lead, ...choose(values.slice(lead.length), unit)] };
  }
  const pads = attrInts(ctx, 'pads');
  if (pads !== undefined) {
    if (pads.length !== 2 * spatialRank) throw unsupported(ctx, `pads of length ${pads.length} for ${spatialRank}-D data`);
    attributes['pads'] = { kind: 'ints', value: [...choose(pads.slice(0, spatialRank), 0), ...choose(pads.slice(spatialRank), 0)] };
  }
  return { ...ctx, node: { ...ctx.node, attributes } };
}
