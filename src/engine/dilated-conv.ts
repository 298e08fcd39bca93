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
  const info = tf.backend_util.computeConv2DInfo(x.shape, filter.shape, [1, 1], dilations, padding, undefined, depthwise, 'channelsLast');
  const { top, bottom, left, right } = info.padInfo;
  const [effectiveHeight, effectiveWidth] = [info.effectiveFilterHeight, info.effectiveFilterWidth];
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor4D;
    // Saved for the backward pass (which disposes it): a Conv op's filter is a transpose its tidy disposes.
    (args[1] as tf.GradSaveFunc)([filter]);
    const value = convolve(input, filter, padding, dilations);
    const gradFunc = (dy: tf.Tensor4D, saved: tf.Tensor[]): tf.Tensor[] =>
      tf.tidy(() => {
        // The full correlation's border, less the forward's pads: the input's size again.
        const { cropped, padding: backwardPadding } = borderOf(dy, [effectiveHeight - 1 - top, effectiveHeight - 1 - bottom], [effectiveWidth - 1 - left, effectiveWidth - 1 - right]);
        const flipped = flipSpatially(saved[0] as tf.Tensor4D);
        return [
          depthwise
            ? depthwiseInputGradient(cropped, flipped, backwardPadding, dilations)
            : tf.conv2d(cropped, tf.transpose(flipped, [0, 1, 3, 2]), 1, backwardPadding, 'NHWC', dilations),
        ];
      });
    return { value, gradFunc };
  })(x) as tf.Tensor4D;
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
