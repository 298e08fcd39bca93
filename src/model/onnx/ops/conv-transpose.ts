/**
 * ConvTranspose on 2-D images (U-Net and segmentation decoders, GAN
 * generators): the adjoint of a Conv with the same weights. tfjs'
 * conv2dTranspose has neither groups nor dilations, so each group runs its
 * own conv2dTranspose with a kernel that holds zeros between its taps, with
 * 'valid' padding: that gives the full output, every input pixel's whole
 * kernel footprint (stride · (in - 1) + the dilated kernel per axis). ONNX's
 * geometry (pads, output_padding, output_shape, auto_pad) then only decides
 * which window of that full output is the result: pads crop it, and
 * output_padding or a larger output_shape extend it with zeros at the end
 * (the bias alone there). Exact for every combination it accepts,
 * differentiable through conv2dTranspose's gradient (a convolution). The
 * output stays 'nhwc', as Conv's. 1-D data runs through it as 2-D data of
 * height 1 (spatial-rank.ts); 3-D is refused.
 */
import * as tf from '../../../engine/tf.js';
import { CamvizError } from '../../../util/errors.js';
import { laid, onnxShape, toLayout, type LaidTensor } from '../layout.js';
import { attrInt, attrInts, attrString, checkedShape, required, unsupported, zerosStandIn, type OpContext, type OpFunction } from './common.js';
import { pair, spatialInput } from './conv-pool.js';
import { withSpatialRanks } from './spatial-rank.js';

type Inputs = (LaidTensor | undefined)[];

/** One spatial axis of a ConvTranspose: output element p is full-output element p + start (zero outside the full output). */
interface AxisPlacement {
  /** Length of the full output: stride · (in - 1) + (kernel - 1) · dilation + 1. */
  full: number;
  /** Where the output starts in the full output: the leading pad (negative: zeros before it). */
  start: number;
  /** The output's length. */
  length: number;
}

interface AxisGeometry {
  input: number;
  kernel: number;
  stride: number;
  dilation: number;
  outputPadding: number;
}

/** The full output's length along one axis, before any pad or output_padding. */
function fullLength(g: AxisGeometry): number {
  return g.stride * (g.input - 1) + (g.kernel - 1) * g.dilation + 1;
}

/**
 * Where the output sits in the full output along each axis, from the pads,
 * output_shape and auto_pad attributes, as ONNX's reference implementation
 * places it. Where ONNX's spec text, its reference and ONNX Runtime place
 * the output differently (an output_shape that crops without auto_pad; an
 * auto_pad whose total padding is negative; auto_pad SAME before opset 11,
 * whose rule opset 11 reversed), the node is refused.
 */
function placements(ctx: OpContext, axes: [AxisGeometry, AxisGeometry]): [AxisPlacement, AxisPlacement] {
  const autoPad = attrString(ctx, 'auto_pad', 'NOTSET');
  if (!['NOTSET', 'VALID', 'SAME_UPPER', 'SAME_LOWER'].includes(autoPad)) throw unsupported(ctx, `auto_pad '${autoPad}'`);
  const same = autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER';
  if (same && ctx.opset < 11) throw unsupported(ctx, `auto_pad ${autoPad} before opset 11 (opset 11 reversed which end takes the odd pad)`);
  const pads = attrInts(ctx, 'pads');
  const outputShape = attrInts(ctx, 'output_shape');
  if (pads !== undefined && pads.length !== 4) throw unsupported(ctx, `pads of length ${pads.length} (only 2-D is supported)`);
  const explicitPads = pads !== undefined && pads.some((p) => p !== 0);
  if (explicitPads && autoPad !== 'NOTSET') throw unsupported(ctx, `pads together with auto_pad ${autoPad}`);
  if (explicitPads && outputShape !== undefined) throw unsupported(ctx, 'pads together with output_shape (ONNX Runtime recomputes the pads, ONNX keeps them)');
  const wanted = outputShape === undefined ? undefined : spatialOutputShape(ctx, outputShape);
  return axes.map((g, i): AxisPlacement => {
    const full = fullLength(g);
    const natural = full + g.outputPadding;
    if (explicitPads) return checkedPlacement(ctx, { full, start: pads[i]!, length: natural - pads[i]! - pads[i + 2]! });
    const length = wanted?.[i] ?? (same ? g.input * g.stride : natural);
    const total = natural - length;
    if (!same) {
      if (total > 0) throw unsupported(ctx, `output_shape ${length} below the full output ${natural} without auto_pad (ONNX's spec, its reference and ONNX Runtime crop it differently)`);
      return checkedPlacement(ctx, { full, start: 0, length });
    }
    if (total < 0) throw unsupported(ctx, `auto_pad ${autoPad} with stride ${g.stride} above the dilated kernel plus output_padding (a negative total padding)`);
    const small = Math.floor(total / 2);
    return checkedPlacement(ctx, { full, start: autoPad === 'SAME_UPPER' ? small : total - small, length });
  }) as [AxisPlacement, AxisPlacement];
}

/** output_shape's spatial sides: ONNX gives H, W; some exporters give N, C, H, W (as ONNX Runtime accepts). */
function spatialOutputShape(ctx: OpContext, outputShape: number[]): [number, number] {
  if (outputShape.length === 2) return [outputShape[0]!, outputShape[1]!];
  if (outputShape.length === 4) return [outputShape[2]!, outputShape[3]!];
  throw unsupported(ctx, `output_shape of length ${outputShape.length} (only 2-D is supported)`);
}

function checkedPlacement(ctx: OpContext, placement: AxisPlacement): AxisPlacement {
  if (placement.length > 0) return placement;
  throw new CamvizError(`ONNX node '${ctx.node.name}' (ConvTranspose): an output side of ${placement.length} (the pads exceed the full output ${placement.full})`);
}

/**
 * `weights` ([C, M/group, kH, kW]) with dilation - 1 zeros between the taps
 * along `axis` (2 or 3): each tap padded with zeros to `dilation` and the
 * trailing zeros cut off, so the gradient is the pad's and the slice's.
 */
function dilateAxis(weights: tf.Tensor4D, axis: 2 | 3, dilation: number): tf.Tensor4D {
  if (dilation === 1) return weights;
  const shape = weights.shape;
  const taps = shape[axis];
  const split = [...shape.slice(0, axis + 1), 1, ...shape.slice(axis + 1)];
  const paddings = split.map((_, i): [number, number] => (i === axis + 1 ? [0, dilation - 1] : [0, 0]));
  const spread = tf.reshape(tf.pad(tf.reshape(weights, split), paddings), shape.map((dim, i) => (i === axis ? taps * dilation : dim)));
  const size = shape.map((dim, i) => (i === axis ? (taps - 1) * dilation + 1 : dim));
  return tf.slice(spread, [0, 0, 0, 0], size) as tf.Tensor4D;
}

/** The full output (NHWC), one conv2dTranspose per group. */
function fullOutput(x: tf.Tensor4D, weights: tf.Tensor4D, group: number, strides: [number, number], dilations: [number, number], full: [number, number]): tf.Tensor4D {
  const dilated = dilateAxis(dilateAxis(weights, 2, dilations[0]), 3, dilations[1]);
  const xs = group === 1 ? [x] : (tf.split(x, group, 3) as tf.Tensor4D[]);
  const ws = group === 1 ? [dilated] : (tf.split(dilated, group, 0) as tf.Tensor4D[]);
  const ys = xs.map((part, i) => {
    // tfjs' filter [kH, kW, outDepth, inDepth] is ONNX's [inDepth, outDepth, kH, kW] transposed: the adjoint of the Conv it would be.
    const filter = tf.transpose(ws[i]!, [2, 3, 1, 0]) as tf.Tensor4D;
    return tf.conv2dTranspose(part, filter, [x.shape[0], full[0], full[1], filter.shape[2]], strides, 'valid');
  });
  return ys.length === 1 ? ys[0]! : (tf.concat(ys, 3) as tf.Tensor4D);
}

/** The window of the full output that `placements` describe: a slice, after zeros where it reaches past either end. */
function placed(full: tf.Tensor4D, [h, w]: [AxisPlacement, AxisPlacement]): tf.Tensor4D {
  const zerosBefore = (p: AxisPlacement): number => Math.max(0, -p.start);
  const zerosAfter = (p: AxisPlacement): number => Math.max(0, p.start + p.length - p.full);
  const grown = [h, w].some((p) => zerosBefore(p) > 0 || zerosAfter(p) > 0);
  const padded = grown ? tf.pad(full, [[0, 0], [zerosBefore(h), zerosAfter(h)], [zerosBefore(w), zerosAfter(w)], [0, 0]]) : full;
  const begin = [0, h.start + zerosBefore(h), w.start + zerosBefore(w), 0];
  const size = [full.shape[0], h.length, w.length, full.shape[3]];
  if (size.every((dim, i) => dim === padded.shape[i])) return padded;
  return tf.slice(padded, begin, size);
}

function convTranspose(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = spatialInput(ctx, inputs);
  const weights = toLayout(required(ctx, inputs, 1), 'onnx');
  if (weights.rank !== 4) throw unsupported(ctx, `${weights.rank - 2}-D kernel (only 2-D is supported)`);
  const [inChannels, groupOutChannels, kH, kW] = weights.shape as [number, number, number, number];
  const group = attrInt(ctx, 'group', 1);
  const [batch, height, width, channels] = x.shape;
  if (channels !== inChannels || group < 1 || inChannels % group !== 0) {
    throw new CamvizError(`ONNX node '${ctx.node.name}' (ConvTranspose): ${channels} input channels for weights of ${inChannels} in ${group} groups`);
  }
  const kernel = pair(ctx, attrInts(ctx, 'kernel_shape'), 'kernel_shape', 0);
  if (ctx.node.attributes['kernel_shape'] !== undefined && (kernel[0] !== kH || kernel[1] !== kW)) {
    throw new CamvizError(`ONNX node '${ctx.node.name}' (ConvTranspose): kernel_shape ${kernel.join('x')} for weights of ${kH}x${kW}`);
  }
  const strides = pair(ctx, attrInts(ctx, 'strides'), 'strides', 1);
  const dilations = pair(ctx, attrInts(ctx, 'dilations'), 'dilations', 1);
  const outputPadding = pair(ctx, attrInts(ctx, 'output_padding'), 'output_padding', 0);
  const axis = (i: 0 | 1): AxisGeometry => ({ input: [height, width][i]!, kernel: [kH, kW][i]!, stride: strides[i], dilation: dilations[i], outputPadding: outputPadding[i] });
  const [h, w] = placements(ctx, [axis(0), axis(1)]);
  const outChannels = groupOutChannels * group;
  // Both are made: the full output, then the window of it that is the result.
  checkedShape(ctx, [batch, h.full, w.full, outChannels], 'float32', 'nhwc');
  const outShape = checkedShape(ctx, [batch, h.length, w.length, outChannels], 'float32', 'nhwc');
  const bias = inputs[2];
  if (ctx.shapesOnly === true) {
    if (bias !== undefined) tf.backend_util.assertAndGetBroadcastShape(outShape, onnxShape(bias));
    return [laid(zerosStandIn(outShape, 'float32'), 'nhwc')];
  }
  const y = placed(fullOutput(x, weights as tf.Tensor4D, group, strides, dilations, [h.full, w.full]), [h, w]);
  return [laid(bias === undefined ? y : tf.add(y, toLayout(bias, 'onnx')), 'nhwc')];
}

export const CONV_TRANSPOSE_OPS: Record<string, OpFunction> = {
  ConvTranspose: withSpatialRanks(convTranspose, false),
};
