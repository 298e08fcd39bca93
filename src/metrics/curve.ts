/**
 * What deletion and insertion (Petsiuk et al. 2018, RISE) share: pixels
 * move from a start image to a finish image in order of the map, in
 * `steps` steps, and the score is the area under the class probability
 * curve, by the trapezoid rule over [0, 1] (RISE's `auc`).
 */
import type { MetricValues } from './names.js';
import type { PreprocessedImage, Measurement } from './types.js';

/** Pixels moved after step k of `steps`: round(k / steps x pixels), so that the curve's x is the fraction moved. */
export function movedCount(step: number, steps: number, pixels: number): number {
  return Math.round((step * pixels) / steps);
}

/** The area under values at 0, 1/n, ..., 1 (n + 1 values), by the trapezoid rule. */
export function trapezoidAuc(values: readonly number[]): number {
  if (values.length < 2) throw new RangeError(`a curve needs two points, got ${values.length}`);
  const n = values.length - 1;
  let sum = 0;
  for (const value of values) sum += value;
  return (sum - values[0]! / 2 - values[n]! / 2) / n;
}

/** `start` with the first `count` pixels of `order` taken from `finish`, written into `out`. */
export function movePixels(start: Float32Array, finish: Float32Array, order: Int32Array, count: number, channels: number, out: Float32Array): void {
  out.set(start);
  for (let k = 0; k < count; k++) {
    const base = order[k]! * channels;
    for (let c = 0; c < channels; c++) out[base + c] = finish[base + c]!;
  }
}

/**
 * The curve from `start` (probability `first`) to `finish` (probability
 * `last`): the steps between are the images to run; the value is its AUC.
 */
export function causalCurve(
  image: PreprocessedImage,
  ends: { start: Float32Array; finish: Float32Array; first: number; last: number },
  order: Int32Array,
  steps: number,
  finishValue: (auc: number) => MetricValues,
): Measurement {
  const pixels = image.width * image.height;
  const images = Array.from({ length: steps - 1 }, (_, i) => (out: Float32Array) => movePixels(ends.start, ends.finish, order, movedCount(i + 1, steps, pixels), image.channels, out));
  return {
    images,
    finish: (probabilities) => finishValue(trapezoidAuc([ends.first, ...probabilities, ends.last])),
  };
}
