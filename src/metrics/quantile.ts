/**
 * Quantiles as numpy.percentile computes them by default: linear
 * interpolation between order statistics. One implementation for ROAD's
 * thresholds (src/metrics/road.ts) and `camviz compare`'s top regions
 * (src/batch/compare.ts), so that both match their Python references.
 */

/** Each q-quantile (0..1) of `values`, sorting once. */
export function quantiles(values: ArrayLike<number>, qs: readonly number[]): number[] {
  if (values.length === 0) throw new RangeError('no values');
  const sorted = Float64Array.from(values).sort();
  return qs.map((q) => {
    const position = q * (sorted.length - 1);
    const below = Math.floor(position);
    const above = Math.min(sorted.length - 1, below + 1);
    return sorted[below]! + (sorted[above]! - sorted[below]!) * (position - below);
  });
}

/** The q-quantile (0..1) of `values`. */
export function quantile(values: ArrayLike<number>, q: number): number {
  return quantiles(values, [q])[0]!;
}
