/**
 * Dilated (atrous) convolutions that can be differentiated. tfjs runs
 * conv2d and depthwiseConv2d with dilations but refuses their gradients
 * ("dilation rates greater than 1 are not yet supported in gradients"), so
 * a CAM method, an input gradient or guided backpropagation through
 * DeepLabV3's ASPP or a dilated MobileNet v3 / ResNet backbone failed.
 *
 * With unit strides (tfjs takes no strides with dilations), the input
 * gradient of a dilated correlation is itself a dilated correlation, which
 * tfjs runs forwards: dy, padded by (effective kernel - 1 - the forward's
 * pad) on each side, correlated with the kernel flipped in space (and, for
 * conv2d, with its input and output channels swapped). The padding is the
 * convolution's own, not zeros added to dy: tfjs' kernels skip the taps
 * that fall outside, which on a small map with a large rate (DeepLabV3's
 * ASPP at rate 36 on 6 x 6) are all but the centre one.
 *
 * Differentiable in the input only: the kernel is the model's constant
 * (as for the fused kernels of keras.ts), so no gradient flows to it.
 */
import * as tf from './tf.js';

/** Any padding tf.conv2d takes: 'same', 'valid', one number, or explicit [[0, 0], [top, bottom], [left, right], [0, 0]]. */
export type ConvPadding = 'valid' | 'same' | number | ExplicitPadding;

/**
 * conv2d (filter [kh, kw, C, M]) or depthwiseConv2d (filter [kh, kw, C,
 * multiplier]) of NHWC `x` with unit strides and `dilations`, whose
 * gradient tfjs computes through another dilated correlation.
 */
export function dilatedConv2d(x: tf.Tensor4D, filter: tf.Tensor4D, padding: ConvPadding, dilations: [number, number], depthwise: boolean): tf.Tensor4D {
  const convolve = depthwise ? depthwiseCorrelation : correlation;
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor4D;
    // Saved for the backward pass (which disposes it): a Conv op's filter is a transpose its tidy disposes.
    (args[1] as tf.GradSaveFunc)([filter]);
    const value = convolve(input, filter, padding, dilations);
    const gradFunc = (dy: tf.Tensor4D, saved: tf.Tensor[]): tf.Tensor[] => [
      dilatedInputGradient(dy, saved[0] as tf.Tensor4D, input.shape, { padding, dilations, depthwise }),
    ];
    return { value, gradFunc };
  })(x) as tf.Tensor4D;
}

/** A unit-stride NHWC correlation's geometry: its padding, dilations, and whether it is depthwise. */
export interface DilatedGeometry {
  readonly padding: ConvPadding;
  readonly dilations: [number, number];
  readonly depthwise: boolean;
  readonly dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/**
 * dL/dx of a unit-stride correlation of NHWC x (of `inputShape`) with
 * `filter`, from dy: dy correlated with the flipped filter, dilated alike.
 */
export function dilatedInputGradient(dy: tf.Tensor4D, filter: tf.Tensor4D, inputShape: readonly [number, number, number, number], geometry: DilatedGeometry): tf.Tensor4D {
  return tf.tidy(() => {
    const { cropped, flipped, padding } = adjointCorrelation(dy, filter, inputShape, geometry);
    return geometry.depthwise
      ? depthwiseInputGradient(cropped, flipped, padding, geometry.dilations)
      : tf.conv2d(cropped, tf.transpose(flipped, [0, 1, 3, 2]), 1, padding, 'NHWC', geometry.dilations);
  });
}

/**
 * TensorFlow's conv2d_transpose (Keras' Conv2DTranspose) of NHWC `x` with
 * `kernel` [kh, kw, outputs, inputs], unit strides and `dilations`, to
 * `outputShape`: TensorFlow defines it as the input gradient of the
 * correlation from its output back to x, which tfjs cannot dilate (its
 * conv2dTranspose takes no dilations). Run as `dilatedConv2d`, so that it
 * can be differentiated in x too.
 */
export function dilatedConv2dTranspose(x: tf.Tensor4D, kernel: tf.Tensor4D, outputShape: readonly [number, number, number, number], padding: 'same' | 'valid', dilations: [number, number]): tf.Tensor4D {
  return tf.tidy(() => {
    const adjoint = adjointCorrelation(x, kernel, outputShape, { padding, dilations, depthwise: false });
    return dilatedConv2d(adjoint.cropped, tf.transpose(adjoint.flipped, [0, 1, 3, 2]), adjoint.padding, dilations, false);
  });
}

/**
 * The correlation whose value is the input gradient of a unit-stride
 * correlation of x (of `inputShape`) with `filter`, from dy: dy with the
 * full correlation's border less the forward's pads (the input's size
 * again), and the filter flipped in space.
 */
function adjointCorrelation(dy: tf.Tensor4D, filter: tf.Tensor4D, inputShape: readonly [number, number, number, number], geometry: DilatedGeometry): { cropped: tf.Tensor4D; flipped: tf.Tensor4D; padding: ExplicitPadding } {
  const { padding, dilations, depthwise, dimRoundingMode } = geometry;
  const info = tf.backend_util.computeConv2DInfo([...inputShape], filter.shape, [1, 1], dilations, padding, dimRoundingMode, depthwise, 'channelsLast');
  const { top, bottom, left, right } = info.padInfo;
  const [effectiveHeight, effectiveWidth] = [info.effectiveFilterHeight, info.effectiveFilterWidth];
  const border = borderOf(dy, [effectiveHeight - 1 - top, effectiveHeight - 1 - bottom], [effectiveWidth - 1 - left, effectiveWidth - 1 - right]);
  return { ...border, flipped: flipSpatially(filter) };
}

function correlation(x: tf.Tensor4D, filter: tf.Tensor4D, padding: ConvPadding, dilations: [number, number]): tf.Tensor4D {
  return tf.conv2d(x, filter, 1, padding, 'NHWC', dilations);
}

function depthwiseCorrelation(x: tf.Tensor4D, filter: tf.Tensor4D, padding: ConvPadding, dilations: [number, number]): tf.Tensor4D {
  return tf.depthwiseConv2d(x, filter, 1, padding, 'NHWC', dilations);
}

/**
 * The input gradient of a depthwise correlation from dy [N, H, W, C·m]
 * and the flipped filter [kh, kw, C, m]: output channel c·m + j came from
 * input channel c, so each of dy's channels is correlated with its own
 * flipped kernel and the m of each input channel are summed.
 */
function depthwiseInputGradient(dy: tf.Tensor4D, flipped: tf.Tensor4D, padding: ExplicitPadding, dilations: [number, number]): tf.Tensor4D {
  const [kh, kw, channels, multiplier] = flipped.shape;
  const perOutput = tf.depthwiseConv2d(dy, tf.reshape(flipped, [kh, kw, channels * multiplier, 1]), 1, padding, 'NHWC', dilations);
  if (multiplier === 1) return perOutput;
  const [n, h, w] = perOutput.shape;
  return tf.sum(tf.reshape(perOutput, [n, h, w, channels, multiplier]), 4);
}

/**
 * The filter [kh, kw, C, M] turned by 180° in space. Turning both axes
 * reverses the order of the kh·kw taps, each a contiguous block: copied
 * block by block, since tfjs' cpu reverse reads and writes element by
 * element (1.5 s for one of ASPP's 3 x 3 x 960 x 256 kernels).
 */
function flipSpatially(filter: tf.Tensor4D): tf.Tensor4D {
  const [kh, kw, channels, outputs] = filter.shape;
  const taps = tf.split(tf.reshape(filter, [kh * kw, channels * outputs]), kh * kw, 0);
  return tf.reshape(tf.concat(taps.reverse(), 0), filter.shape);
}

type ExplicitPadding = [[number, number], [number, number], [number, number], [number, number]];

/**
 * A border of `rows` and `columns` around `x`: the positive amounts as a
 * convolution's explicit padding, the negative ones cut from `x` (a forward
 * pad wider than the dilated kernel).
 */
function borderOf(x: tf.Tensor4D, rows: [number, number], columns: [number, number]): { cropped: tf.Tensor4D; padding: ExplicitPadding } {
  const grow = (amount: number): number => Math.max(0, amount);
  const cut = (amount: number): number => Math.max(0, -amount);
  const [, height, width] = x.shape;
  const cropped = rows.concat(columns).some((amount) => amount < 0)
    ? tf.slice(x, [0, cut(rows[0]), cut(columns[0]), 0], [-1, height - cut(rows[0]) - cut(rows[1]), width - cut(columns[0]) - cut(columns[1]), -1])
    : x;
  return { cropped, padding: [[0, 0], [grow(rows[0]), grow(rows[1])], [grow(columns[0]), grow(columns[1])], [0, 0]] };
}

// ------------------------------------------------------------ TensorFlow's rules for tfjs' kernels

/** The attributes tfjs records for a Conv2D or DepthwiseConv2dNative kernel. */
interface ConvAttributes {
  pad: ConvPadding;
  dataFormat?: 'NHWC' | 'NCHW';
  /** Null where the caller gave none (tfjs-layers' DepthwiseConv2D). */
  dilations?: number | [number, number] | null;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

function pairOf(value: number | [number, number] | null | undefined): [number, number] {
  if (value === undefined || value === null) return [1, 1];
  return typeof value === 'number' ? [value, value] : value;
}

/** The gradient of a convolution's weights, which camviz never asks for (it differentiates inputs and activations). */
function refusedWeightGradient(): tf.Tensor {
  throw new Error('camviz differentiates dilated convolutions with respect to their input only, not their filter or bias');
}

/** dL/dx of a dilated Conv2D / DepthwiseConv2dNative kernel with these attributes (NCHW through NHWC). */
function kernelInputGradient(dy: tf.Tensor4D, x: tf.Tensor4D, filter: tf.Tensor4D, attrs: ConvAttributes, depthwise: boolean): tf.Tensor4D {
  const geometry: DilatedGeometry = {
    padding: attrs.pad,
    dilations: pairOf(attrs.dilations),
    depthwise,
    ...(attrs.dimRoundingMode === undefined ? {} : { dimRoundingMode: attrs.dimRoundingMode }),
  };
  if (attrs.dataFormat !== 'NCHW') return dilatedInputGradient(dy, filter, x.shape, geometry);
  const [n, c, h, w] = x.shape;
  return tf.tidy(() => tf.transpose(dilatedInputGradient(tf.transpose(dy, [0, 2, 3, 1]), filter, [n, h, w, c], geometry), [0, 3, 1, 2]));
}

/**
 * The Conv2D or DepthwiseConv2dNative kernel's gradient as TensorFlow has
 * it: tfjs' own where it gives one (no dilation), the input gradient of
 * `dilatedInputGradient` where tfjs refuses (dilation > 1, hence unit
 * strides). Undefined if tfjs registers none.
 */
function kernelGradConfig(kernelName: string, depthwise: boolean): tf.GradConfig | undefined {
  const own = tf.getGradient(kernelName);
  if (own === undefined) return undefined;
  return {
    kernelName,
    inputsToSave: own.inputsToSave ?? ['x', 'filter'],
    gradFunc: (dy, saved, attrs) => {
      const conv = attrs as unknown as ConvAttributes;
      const [rows, columns] = pairOf(conv.dilations);
      if (rows === 1 && columns === 1) return own.gradFunc(dy, saved, attrs);
      const [x, filter] = saved as [tf.Tensor4D, tf.Tensor4D];
      return { x: () => kernelInputGradient(dy as tf.Tensor4D, x, filter, conv, depthwise), filter: refusedWeightGradient };
    },
  };
}

/** TensorFlow's gradients of the Conv2D and DepthwiseConv2dNative kernels, tfjs' own extended to dilated ones (read when this module loads: tfjs' own). */
export const DILATED_CONV_GRADIENTS: readonly tf.GradConfig[] = [kernelGradConfig(tf.Conv2D, false), kernelGradConfig(tf.DepthwiseConv2dNative, true)].filter(
  (config): config is tf.GradConfig => config !== undefined,
);

/**
 * tf.fused.conv2d and tf.fused.depthwiseConv2d, recorded on a tape, are a
 * tf.customGrad named after the op's scope, whose gradient refuses
 * dilations; a gradient registered under that name replaces it. Under a
 * tape tfjs runs them fused only with a linear activation (any other runs
 * as separate ops), so the gradient is the correlation's alone. The op
 * records no attributes: the geometry is the calling layer's.
 */
const FUSED_OP_SCOPES = { conv: 'fusedConv2d__op', depthwise: 'fusedDepthwiseConv2d__op' } as const;

/**
 * The gradient of a dilated tf.fused.conv2d (or depthwiseConv2d when
 * `geometry.depthwise`) of this geometry, for a layer known to run one:
 * tfjs-layers' Conv2D, a graph model's _FusedConv2D.
 */
export function fusedDilatedConvGradConfig(geometry: DilatedGeometry): tf.GradConfig {
  return {
    kernelName: geometry.depthwise ? FUSED_OP_SCOPES.depthwise : FUSED_OP_SCOPES.conv,
    gradFunc: (dy, saved) => {
      // What the op saves: [filter, x (4-D), y, bias?]; its inputs are numbered x, filter, bias.
      const [filter, x, y] = saved as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
      // A 3-D input's output is reshaped to 3-D after the op: dy has the 4-D output's elements.
      const inputGradient = (): tf.Tensor => dilatedInputGradient(tf.reshape(dy as tf.Tensor, y.shape) as tf.Tensor4D, filter, x.shape, geometry);
      return { 0: inputGradient, 1: refusedWeightGradient, 2: refusedWeightGradient };
    },
  };
}
