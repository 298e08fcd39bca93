/**
 * Min-max normalisation and peak finding for maps held in typed arrays.
 * Non-finite values (NaN, ±Infinity, e.g. from a division by a zero gradient
 * norm) are ignored when finding the range, so one bad value cannot blank
 * the whole map.
 */
import { normalizeWithPeakInto } from './kernels.js';

export interface ValueRange {
  min: number;
  max: number;
}

export interface MapPeak {
  x: number;
  y: number;
  value: number;
}

/** The smallest and largest finite values, or null when there are none. */
export function finiteRange(values: ArrayLike<number>): ValueRange | null {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!; // i < length; no per-value undefined check in this hot loop
    if (!Number.isFinite(v)) continue;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return min <= max ? { min, max } : null;
}

/**
 * Scales `values` to 0..1 by their finite min and max. A constant (or
 * all-non-finite) input gives all 0; otherwise NaN and -Infinity give 0 and
 * +Infinity 1; never NaN. Pass `out` (same length; may be `values` itself) to reuse a buffer.
 */
export function minMaxNormalize(values: Float32Array, out?: Float32Array): Float32Array {
  const n = values.length;
  const result = out ?? new Float32Array(n);
  if (result.length !== n) throw new RangeError(`output holds ${result.length} values, need ${n}`);
  const range = finiteRange(values);
  if (range === null || !(range.max > range.min)) {
    return result.fill(0);
  }
  const { min } = range;
  const span = range.max - min;
  for (let i = 0; i < n; i++) {
    const v = values[i]!; // i < n; no per-value undefined check in this hot loop
    if (v >= min) result[i] = v === Infinity ? 1 : (v - min) / span;
    else result[i] = 0; // NaN, -Infinity
  }
  return result;
}

/**
 * minMaxNormalize and the argmax of its result in one pass over the map
 * instead of two (the overlays' peak): the same values and the same peak,
 * the first of the largest normalised values in reading order (normalised
 * values are never infinite). `out` may be `values` itself.
 */
export function minMaxNormalizeWithPeak(
  values: Float32Array,
  width: number,
  out?: Float32Array,
  /** finiteRange(values), when the caller found it already (mapToOriginalWithRange). */
  knownRange?: ValueRange | null,
): { normalized: Float32Array; peak: MapPeak } {
  const n = values.length;
  if (!Number.isInteger(width) || width < 1 || n % width !== 0 || n === 0) {
    throw new RangeError(`map of ${n} values is not a whole, non-zero number of rows of ${width}`);
  }
  const result = out ?? new Float32Array(n);
  if (result.length !== n) throw new RangeError(`output holds ${result.length} values, need ${n}`);
  const range = knownRange === undefined ? finiteRange(values) : knownRange;
  if (range === null || !(range.max > range.min)) return { normalized: result.fill(0), peak: { x: 0, y: 0, value: 0 } };
  // The loop runs in WebAssembly (kernels.ts): v >= min ? fround(v === Infinity ? 1 : (v - min) / span) : 0 per value, and the first largest.
  const { index, value } = normalizeWithPeakInto(values, result, range.min, range.max - range.min);
  return { normalized: result, peak: { x: index % width, y: Math.floor(index / width), value } };
}

/**
 * Where the largest finite value of a row-major map of the given width is
 * (first one in reading order on ties), or null if it has no finite value.
 */
export function argmax(map: ArrayLike<number>, width: number): MapPeak | null {
  if (!Number.isInteger(width) || width < 1 || map.length % width !== 0) {
    throw new RangeError(`map of ${map.length} values is not a whole number of rows of ${width}`);
  }
  let best = -1;
  let bestValue = -Infinity;
  for (let i = 0; i < map.length; i++) {
    const v = map[i]!; // i < length; no per-value undefined check in this hot loop
    if (v > bestValue && v !== Infinity) {
      bestValue = v;
      best = i;
    }
  }
  if (best < 0) return null;
  return { x: best % width, y: Math.floor(best / width), value: bestValue };
}
