/**
 * Reference numerics written apart from camviz's own code, in float64, so
 * that tests compare camviz against something it did not compute.
 */
import assert from 'node:assert/strict';

/**
 * mulberry32, a small seeded generator of numbers in [0, 1), so that failures
 * reproduce: the one the shapes data generator uses, not a second copy.
 */
export { mulberry32 } from '../../scripts/shapes-data.js';
import { mulberry32 } from '../../scripts/shapes-data.js';

/** `count` seeded values that float32 holds exactly (multiples of 1/32 in [-2, 2]): weights whose sums round alike in every engine. */
export function exactRandomValues(count: number, seed: number): number[] {
  const random = mulberry32(seed);
  return Array.from({ length: count }, () => Math.round((random() * 2 - 1) * 64) / 32);
}

/** The largest |a[i] - b[i]|; the lengths must match. */
export function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'lengths differ');
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

/** Every |actual[i] - expected[i]| <= `tolerance` (an absolute bound), with the same length. */
export function assertAllClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number, what = 'values'): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const difference = Math.abs(actual[i]! - expected[i]!);
    assert.ok(difference <= tolerance, `${what}[${i}]: got ${actual[i]}, expected ${expected[i]} (tolerance ${tolerance})`);
  }
}

/**
 * Bilinear resize with half-pixel centres and clamped edges (torch's
 * align_corners=False, TF's half_pixel_centers), written out here.
 */
export function upsample(map: ArrayLike<number>, width: number, height: number, outWidth: number, outHeight: number): Float64Array {
  const axis = (size: number, outSize: number, i: number): [number, number, number] => {
    const position = Math.max(0, ((i + 0.5) * size) / outSize - 0.5);
    const low = Math.min(Math.floor(position), size - 1);
    const high = Math.min(low + 1, size - 1);
    return [low, high, low === size - 1 ? 0 : position - low];
  };
  const out = new Float64Array(outWidth * outHeight);
  for (let y = 0; y < outHeight; y++) {
    const [y0, y1, wy] = axis(height, outHeight, y);
    for (let x = 0; x < outWidth; x++) {
      const [x0, x1, wx] = axis(width, outWidth, x);
      const top = map[y0 * width + x0]! * (1 - wx) + map[y0 * width + x1]! * wx;
      const bottom = map[y1 * width + x0]! * (1 - wx) + map[y1 * width + x1]! * wx;
      out[y * outWidth + x] = top * (1 - wy) + bottom * wy;
    }
  }
  return out;
}
