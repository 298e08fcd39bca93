/**
 * Resampling: Resize (the semantics of opsets 10 to 19) and the deprecated
 * Upsample (opsets 7 to 9, which Resize-10 renamed). ONNX's interpolation is
 * separable: along each resized axis, every output element is a weighted
 * sum of a few input elements (1 for nearest, 2 for linear, 4 for cubic)
 * whose indices and weights follow from the axis's lengths, its scale and
 * the coordinate transform alone. Those are computed on the host, in
 * float64 as ONNX's reference implementation computes them, and the op is a
 * gather per tap and a weighted sum, one axis after the other: exact in
 * every mode, on the value as stored (an 'nhwc' value stays 'nhwc'), and
 * differentiable through tf.gather's gradient.
 */
import * as tf from '../../../engine/tf.js';
import { CamvizError } from '../../../util/errors.js';
import { NCHW_TO_NHWC, laid, onnxShape, storedAxis, type LaidTensor } from '../layout.js';
import {
  attrFloat,
  attrFloats,
  attrInt,
  attrInts,
  attrString,
  checkedShape,
  constantFloats,
  constantInts,
  normalizeAxis,
  required,
  unsupported,
  zerosStandIn,
  type OpContext,
  type OpFunction,
} from './common.js';

type Inputs = (LaidTensor | undefined)[];

type InterpolationMode = 'nearest' | 'linear' | 'cubic';

/**
 * How mode nearest rounds a source coordinate between two elements.
 * 'legacy' is Resize-10's and Upsample's, which ONNX left unspecified: down
 * when enlarging, up when shrinking, as ONNX Runtime does and as ONNX's
 * opset-10 test data (test_resize_downsample_nearest) expect.
 */
type NearestRounding = 'round_prefer_floor' | 'round_prefer_ceil' | 'floor' | 'ceil' | 'legacy';

type CoordinateMode =
  | 'half_pixel'
  | 'half_pixel_symmetric'
  | 'pytorch_half_pixel'
  | 'align_corners'
  | 'asymmetric'
  | 'tf_half_pixel_for_nn'
  | 'tf_crop_and_resize';

/** What the attributes say, the same for every resized axis. */
interface Resampling {
  mode: InterpolationMode;
  coordinates: CoordinateMode;
  nearest: NearestRounding;
  /** Cubic convolution's A (cubic_coeff_a). */
  cubicA: number;
  /** exclude_outside: taps outside the input weigh 0, the others are renormalised. */
  excludeOutside: boolean;
  /** tf_crop_and_resize: the value of an output that maps outside the input. */
  extrapolation: number;
}

/** One axis of the input, with what its coordinate transform reads. */
interface AxisGeometry {
  /** The ONNX axis. */
  axis: number;
  inLength: number;
  outLength: number;
  /** The scale given, or outLength / inLength when sizes were given (as ONNX's reference computes it). */
  scale: number;
  /** inLength · scale: the real-valued output length, which align_corners and half_pixel_symmetric read (outLength when sizes were given). */
  resizedLength: number;
  /** [start, end] of the region of interest, normalised (tf_crop_and_resize). */
  roi: [number, number];
}

/** Along one axis, tap k of output o reads source index `indices[k][o]` (clamped to the input: the edge padding of ONNX's reference) with weight `weights[k][o]`. */
interface AxisTaps {
  indices: Int32Array[];
  weights: Float32Array[];
  /** tf_crop_and_resize: 1 where output o maps inside the input, 0 where it takes the extrapolation value. */
  inside?: Float32Array;
}

/** Resize-10's and Upsample's coordinates: asymmetric, with the legacy rounding (no attribute says otherwise). */
const LEGACY_RESAMPLING: Omit<Resampling, 'mode'> = { coordinates: 'asymmetric', nearest: 'legacy', cubicA: -0.75, excludeOutside: false, extrapolation: 0 };

const NEAREST_ROUNDINGS: readonly string[] = ['round_prefer_floor', 'round_prefer_ceil', 'floor', 'ceil'];

function invalid(ctx: OpContext, detail: string): CamvizError {
  return new CamvizError(`ONNX node '${ctx.node.name}' (${ctx.node.opType}): ${detail}`);
}

// ------------------------------------------------------------ coordinates and taps

/** x_original of output index `o`: ONNX's coordinate_transformation_mode, in float64. */
function sourceCoordinate(o: number, g: AxisGeometry, coordinates: CoordinateMode): number {
  const { inLength, outLength, scale, resizedLength } = g;
  switch (coordinates) {
    case 'half_pixel':
      return (o + 0.5) / scale - 0.5;
    case 'half_pixel_symmetric': {
      // The input's centre maps to the output's: differs from half_pixel only when inLength · scale is not an integer.
      const adjustment = outLength / resizedLength;
      return (inLength / 2) * (1 - adjustment) + (o + 0.5) / scale - 0.5;
    }
    case 'pytorch_half_pixel':
      // The spec's 0 for a length-1 output (ONNX's reference says -0.5; nearest and linear read the same element either way).
      return outLength > 1 ? (o + 0.5) / scale - 0.5 : 0;
    case 'align_corners':
      // The real-valued output length, as ONNX's reference and its test data (test_resize_downsample_scales_linear_align_corners).
      return resizedLength === 1 ? 0 : (o * (inLength - 1)) / (resizedLength - 1);
    case 'asymmetric':
      return o / scale;
    case 'tf_half_pixel_for_nn':
      return (o + 0.5) / scale;
    case 'tf_crop_and_resize': {
      const [start, end] = g.roi;
      if (outLength === 1) return 0.5 * (start + end) * (inLength - 1);
      return start * (inLength - 1) + (o * (end - start) * (inLength - 1)) / (outLength - 1);
    }
  }
}

/** The element mode nearest reads at source coordinate `x` (before clamping to the input). */
function nearestIndex(x: number, rounding: NearestRounding, scale: number): number {
  const floor = Math.floor(x);
  if (x === floor) return floor;
  const fraction = x - floor;
  switch (rounding) {
    case 'round_prefer_floor':
      return fraction <= 0.5 ? floor : floor + 1;
    case 'round_prefer_ceil':
      return fraction < 0.5 ? floor : floor + 1;
    case 'floor':
      return floor;
    case 'ceil':
      return floor + 1;
    case 'legacy':
      return scale < 1 ? floor + 1 : floor;
  }
}

/** Keys' cubic convolution weights (ONNX's cubic_coeffs) of the taps at distances 1 + t, t, 1 - t and 2 - t from the point. */
function cubicWeights(fraction: number, a: number): number[] {
  const near = (d: number): number => ((a + 2) * d - (a + 3)) * d * d + 1;
  const far = (d: number): number => ((a * d - 5 * a) * d + 8 * a) * d - 4 * a;
  return [far(fraction + 1), near(fraction), near(1 - fraction), far(2 - fraction)];
}

/** The taps at source coordinate `x`: the first one's (unclamped) index, and every tap's weight. */
function tapsAt(x: number, g: AxisGeometry, r: Resampling): { first: number; weights: number[] } {
  const floor = Math.floor(x);
  const fraction = x - floor;
  if (r.mode === 'nearest') return { first: nearestIndex(x, r.nearest, g.scale), weights: [1] };
  if (r.mode === 'linear') return { first: floor, weights: [1 - fraction, fraction] };
  const first = floor - 1;
  const weights = cubicWeights(fraction, r.cubicA);
  if (!r.excludeOutside) return { first, weights };
  const kept = weights.map((weight, k) => (first + k < 0 || first + k >= g.inLength ? 0 : weight));
  const total = kept.reduce((sum, weight) => sum + weight, 0);
  return { first, weights: kept.map((weight) => weight / total) };
}

/** The taps of every output along one axis. */
function axisTaps(g: AxisGeometry, r: Resampling): AxisTaps {
  const count = r.mode === 'nearest' ? 1 : r.mode === 'linear' ? 2 : 4;
  const indices = Array.from({ length: count }, () => new Int32Array(g.outLength));
  const weights = Array.from({ length: count }, () => new Float32Array(g.outLength));
  const crops = r.coordinates === 'tf_crop_and_resize';
  const inside = crops ? new Float32Array(g.outLength) : undefined;
  const last = g.inLength - 1;
  for (let o = 0; o < g.outLength; o++) {
    const x = sourceCoordinate(o, g, r.coordinates);
    // TF's CropAndResize: a point outside the input takes the extrapolation value, and its taps weigh nothing.
    if (crops && (x < 0 || x > last)) continue;
    if (inside !== undefined) inside[o] = 1;
    const { first, weights: tapWeights } = tapsAt(x, g, r);
    tapWeights.forEach((weight, k) => {
      indices[k]![o] = Math.min(Math.max(first + k, 0), last);
      weights[k]![o] = weight;
    });
  }
  return inside === undefined ? { indices, weights } : { indices, weights, inside };
}

/** True when the taps give every element as it is (same length, each output its own index at weight 1): the axis needs no work. */
function isIdentity(taps: AxisTaps, inLength: number): boolean {
  const length = taps.indices[0]?.length ?? 0;
  if (length !== inLength || taps.inside?.some((flag) => flag === 0) === true) return false;
  for (let o = 0; o < length; o++) {
    const k = taps.weights.findIndex((weights) => weights[o] === 1);
    if (k < 0 || taps.indices[k]![o] !== o || taps.weights.some((weights, j) => j !== k && weights[o] !== 0)) return false;
  }
  return true;
}

// ------------------------------------------------------------ the resampling

/** `values` shaped to broadcast along stored axis `axis` of a rank-`rank` value. */
function alongAxis(values: Float32Array, axis: number, rank: number): tf.Tensor {
  return tf.reshape(tf.tensor1d(values, 'float32'), Array.from({ length: rank }, (_, i) => (i === axis ? values.length : 1)));
}

/** `x` resampled along stored axis `axis`: per tap a gather, weighted unless every weight is 1, summed. */
function resampleAxis(x: tf.Tensor, axis: number, taps: AxisTaps): tf.Tensor {
  let sum: tf.Tensor | undefined;
  taps.indices.forEach((indices, k) => {
    const weights = taps.weights[k]!;
    if (weights.every((weight) => weight === 0)) return;
    const picked = tf.gather(x, tf.tensor1d(indices, 'int32'), axis);
    const term = weights.every((weight) => weight === 1) ? picked : tf.mul(picked, alongAxis(weights, axis, x.rank));
    sum = sum === undefined ? term : tf.add(sum, term);
  });
  // Every output outside a crop: nothing read.
  return sum ?? tf.zeros(x.shape.map((dim, i) => (i === axis ? (taps.indices[0]?.length ?? 0) : dim)), x.dtype);
}

/**
 * `x` resized by `geometry` (one entry per ONNX axis). Linear and cubic
 * resize the spatial axes only (2 and after) of a value of rank 3 or more:
 * a batch or channel axis resized so is refused, as ONNX Runtime refuses it.
 */
function resampled(ctx: OpContext, x: LaidTensor, geometry: AxisGeometry[], r: Resampling): LaidTensor {
  const resized = geometry.map((g) => ({ g, taps: axisTaps(g, r) })).filter(({ g, taps }) => !isIdentity(taps, g.inLength));
  if (r.mode !== 'nearest') {
    const outer = geometry.length >= 3 ? resized.find(({ g }) => g.axis < 2) : undefined;
    if (outer !== undefined) throw unsupported(ctx, `${r.mode} resizing of axis ${outer.g.axis} (${outer.g.axis === 0 ? 'the batch' : 'the channels'}): only the spatial axes are resized in mode ${r.mode}`);
    if (x.tensor.dtype !== 'float32') throw unsupported(ctx, `${r.mode} resizing of ${x.tensor.dtype} data`);
  }
  const outShape = checkedShape(ctx, geometry.map((g) => g.outLength), x.tensor.dtype);
  if (ctx.shapesOnly === true) {
    const stored = x.layout === 'nhwc' ? NCHW_TO_NHWC.map((axis) => outShape[axis]!) : outShape;
    return laid(zerosStandIn(stored, x.tensor.dtype), x.layout);
  }
  let y = x.tensor;
  for (const { g, taps } of resized) y = resampleAxis(y, storedAxis(g.axis, x.layout), taps);
  return laid(withExtrapolation(y, resized, x.layout, r.extrapolation), x.layout);
}

/** tf_crop_and_resize: the extrapolation value where any axis maps outside the input (the resampling gave 0 there). */
function withExtrapolation(y: tf.Tensor, resized: { g: AxisGeometry; taps: AxisTaps }[], layout: LaidTensor['layout'], value: number): tf.Tensor {
  const cropped = resized.filter(({ taps }) => taps.inside?.some((flag) => flag === 0) === true);
  if (value === 0 || cropped.length === 0) return y;
  const inside = cropped.map(({ g, taps }) => alongAxis(taps.inside!, storedAxis(g.axis, layout), y.rank)).reduce((product, mask) => tf.mul(product, mask));
  return tf.add(y, tf.mul(tf.sub(1, inside), value));
}

// ------------------------------------------------------------ geometry from scales or sizes

/** Every axis resized by `scales` (one per entry of `axes`); with a crop, the region of interest shortens the output. */
function scaledGeometry(ctx: OpContext, shape: number[], axes: number[], scales: number[], roi: number[] | undefined): AxisGeometry[] {
  if (scales.length !== axes.length) throw invalid(ctx, `${scales.length} scales for ${axes.length} axes`);
  const bad = scales.find((scale) => !(scale > 0 && Number.isFinite(scale)));
  if (bad !== undefined) throw invalid(ctx, `scale ${bad} (scales must be positive)`);
  return shape.map((inLength, axis): AxisGeometry => {
    const at = axes.indexOf(axis);
    if (at < 0) return unresized(axis, inLength);
    const scale = scales[at]!;
    const region = regionOf(roi, at, axes.length);
    // ONNX: floor(input_dimension * (roi_end - roi_start) * scale), the region being [0, 1] unless cropping.
    const outLength = Math.floor(inLength * (region[1] - region[0]) * scale);
    return { axis, inLength, outLength, scale, resizedLength: inLength * scale, roi: region };
  });
}

/** Every axis resized to `sizes` (one per entry of `axes`). */
function sizedGeometry(ctx: OpContext, shape: number[], axes: number[], sizes: number[], roi: number[] | undefined): AxisGeometry[] {
  if (sizes.length !== axes.length) throw invalid(ctx, `${sizes.length} sizes for ${axes.length} axes`);
  return shape.map((inLength, axis): AxisGeometry => {
    const at = axes.indexOf(axis);
    if (at < 0) return unresized(axis, inLength);
    const outLength = sizes[at]!;
    if (outLength < 0 || (inLength === 0 && outLength > 0)) throw invalid(ctx, `size ${outLength} for axis ${axis} of length ${inLength}`);
    return { axis, inLength, outLength, scale: outLength / inLength, resizedLength: outLength, roi: regionOf(roi, at, axes.length) };
  });
}

function unresized(axis: number, inLength: number): AxisGeometry {
  return { axis, inLength, outLength: inLength, scale: 1, resizedLength: inLength, roi: [0, 1] };
}

/** The region of interest of the `at`-th resized axis: roi holds every start, then every end. */
function regionOf(roi: number[] | undefined, at: number, count: number): [number, number] {
  return roi === undefined ? [0, 1] : [roi[at]!, roi[at + count]!];
}

// ------------------------------------------------------------ the ops

function modeOf(ctx: OpContext, allowed: readonly InterpolationMode[]): InterpolationMode {
  const mode = attrString(ctx, 'mode', 'nearest');
  const known = allowed.find((name) => name === mode);
  if (known === undefined) throw unsupported(ctx, `mode '${mode}' (opset ${ctx.opset} has ${allowed.join(', ')})`);
  return known;
}

/** The coordinate transforms each opset defines: tf_half_pixel_for_nn until 12, half_pixel_symmetric from 19. */
function coordinateModeOf(ctx: OpContext): CoordinateMode {
  const allowed: CoordinateMode[] = ['half_pixel', 'pytorch_half_pixel', 'align_corners', 'asymmetric', 'tf_crop_and_resize'];
  if (ctx.opset < 13) allowed.push('tf_half_pixel_for_nn');
  if (ctx.opset >= 19) allowed.push('half_pixel_symmetric');
  const name = attrString(ctx, 'coordinate_transformation_mode', 'half_pixel');
  const known = allowed.find((mode) => mode === name);
  if (known === undefined) throw unsupported(ctx, `coordinate_transformation_mode '${name}' (opset ${ctx.opset} has ${allowed.join(', ')})`);
  return known;
}

/** Resize's attributes from opset 11 on. */
function resizeResampling(ctx: OpContext): Resampling {
  const mode = modeOf(ctx, ['nearest', 'linear', 'cubic']);
  const nearest = attrString(ctx, 'nearest_mode', 'round_prefer_floor');
  if (!NEAREST_ROUNDINGS.includes(nearest)) throw unsupported(ctx, `nearest_mode '${nearest}'`);
  // Antialiasing changes linear and cubic only (opset 18).
  if (ctx.opset >= 18 && mode !== 'nearest' && attrInt(ctx, 'antialias', 0) !== 0) throw unsupported(ctx, `antialias 1 (the ${mode} filter stretched when downscaling)`);
  return {
    mode,
    coordinates: coordinateModeOf(ctx),
    nearest: nearest as NearestRounding,
    cubicA: attrFloat(ctx, 'cubic_coeff_a', -0.75),
    excludeOutside: attrInt(ctx, 'exclude_outside', 0) === 1,
    extrapolation: attrFloat(ctx, 'extrapolation_value', 0),
  };
}

/** A scales, sizes or roi input that is given and not empty (opsets 11-12 require scales, empty when sizes are given). */
function nonEmpty(values: number[] | undefined): number[] | undefined {
  return values === undefined || values.length === 0 ? undefined : values;
}

function resize(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = required(ctx, inputs, 0);
  const shape = onnxShape(x);
  if (ctx.opset < 11) {
    const geometry = scaledGeometry(ctx, shape, [...shape.keys()], constantFloats(required(ctx, inputs, 1)) ?? [], undefined);
    return [resampled(ctx, x, geometry, { mode: modeOf(ctx, ['nearest', 'linear']), ...LEGACY_RESAMPLING })];
  }
  const resampling = resizeResampling(ctx);
  const axes = ctx.opset >= 18 ? attrInts(ctx, 'axes')?.map((axis) => normalizeAxis(ctx, axis, shape.length)) : undefined;
  const resizedAxes = axes ?? [...shape.keys()];
  const roi = resampling.coordinates === 'tf_crop_and_resize' ? nonEmpty(constantFloats(inputs[1])) : undefined;
  if (roi !== undefined && roi.length !== 2 * resizedAxes.length) throw invalid(ctx, `roi of ${roi.length} values for ${resizedAxes.length} axes`);
  const scales = nonEmpty(constantFloats(inputs[2]));
  const sizes = nonEmpty(constantInts(inputs[3]));
  if (scales !== undefined && sizes !== undefined) throw invalid(ctx, 'both scales and sizes are given');
  if (scales !== undefined) return [resampled(ctx, x, scaledGeometry(ctx, shape, resizedAxes, scales, roi), resampling)];
  if (sizes === undefined) throw invalid(ctx, 'neither scales nor sizes is given');
  const policy = ctx.opset >= 18 ? attrString(ctx, 'keep_aspect_ratio_policy', 'stretch') : 'stretch';
  if (policy !== 'stretch') throw unsupported(ctx, `keep_aspect_ratio_policy '${policy}' (only 'stretch': sizes as given)`);
  return [resampled(ctx, x, sizedGeometry(ctx, shape, resizedAxes, sizes, roi), resampling)];
}

/** Upsample: scales as an attribute (opset 7) or an input (9), asymmetric coordinates, as Resize-10. */
function upsample(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = required(ctx, inputs, 0);
  const shape = onnxShape(x);
  const scales = ctx.opset < 9 ? attrFloats(ctx, 'scales') : constantFloats(required(ctx, inputs, 1));
  if (scales === undefined) throw invalid(ctx, 'no scales');
  const geometry = scaledGeometry(ctx, shape, [...shape.keys()], scales, undefined);
  return [resampled(ctx, x, geometry, { mode: modeOf(ctx, ['nearest', 'linear']), ...LEGACY_RESAMPLING })];
}

export const RESIZE_OPS: Record<string, OpFunction> = {
  Resize: resize,
  Upsample: upsample,
};
