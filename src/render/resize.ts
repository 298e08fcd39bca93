/**
 * Bilinear resampling of single-channel float maps, matching OpenCV's
 * `cv2.resize(..., interpolation=INTER_LINEAR)`: pixel centres at +0.5, source
 * coordinate = (dst + 0.5) * scale - 0.5, clamped to the first/last source
 * pixel at the borders. No antialiasing, so it is meant for upsampling (the
 * usual case: a 7x7 or 14x14 map onto a photo).
 *
 * Weights and source indices are computed once per axis, so the per-pixel work
 * is four multiply-adds and no allocation; the two passes over the pixels
 * run in WebAssembly (kernels.ts).
 */
import type { ImageGeometry } from '../image/geometry.js';
import { resampleInto } from './kernels.js';
import { type ValueRange, finiteRange } from './normalize.js';

/** Per destination pixel along one axis: the two source pixels and the weight of the second. */
export interface AxisTable {
  readonly lo: Int32Array;
  readonly hi: Int32Array;
  readonly weight: Float32Array;
}

/**
 * The sample positions of `count` destination pixels starting at `first`:
 * source coordinate = scale * (d + 0.5) + offset - 0.5, clamped as OpenCV does.
 */
export function linearAxisTable(srcSize: number, first: number, count: number, scale: number, offset: number): AxisTable {
  const lo = new Int32Array(count);
  const hi = new Int32Array(count);
  const weight = new Float32Array(count);
  const last = srcSize - 1;
  for (let i = 0; i < count; i++) {
    const pos = scale * (first + i + 0.5) + offset - 0.5;
    let s = Math.floor(pos);
    let w = pos - s;
    if (s < 0) {
      s = 0;
      w = 0;
    }
    if (s >= last) {
      s = last;
      w = 0;
    }
    lo[i] = s;
    hi[i] = s < last ? s + 1 : last;
    weight[i] = w;
  }
  return { lo, hi, weight };
}

/**
 * Resizes a row-major `srcWidth` x `srcHeight` map to `dstWidth` x `dstHeight`.
 * Pass `out` (dstWidth * dstHeight) to reuse a buffer.
 */
export function resizeBilinear(
  src: Float32Array,
  srcWidth: number,
  srcHeight: number,
  dstWidth: number,
  dstHeight: number,
  out?: Float32Array,
): Float32Array {
  checkMap(src, srcWidth, srcHeight, 'source');
  checkSize(dstWidth, dstHeight, 'destination');
  const dst = outputBuffer(out, dstWidth * dstHeight);
  const xs = linearAxisTable(srcWidth, 0, dstWidth, srcWidth / dstWidth, 0);
  const ys = linearAxisTable(srcHeight, 0, dstHeight, srcHeight / dstHeight, 0);
  resampleInto(src, srcWidth, xs, ys, dst, dstWidth, 0, 0);
  return dst;
}

/**
 * Draws a map computed at model-input resolution back onto the original image.
 *
 * The map covers the whole model input; the part under `geometry.inputBox`
 * (fractional in map cells) is resampled into `geometry.sourceBox` of an
 * original-sized canvas, treating the map as a continuous function sampled at
 * cell centres. Original pixels whose centre lies outside `sourceBox` (the
 * cut-away margins in crop mode) get 0. In stretch mode this is exactly
 * `resizeBilinear` to the original size; in pad mode the padding cells are
 * simply never sampled except as bilinear neighbours at the image edge.
 */
export function mapToOriginal(
  map: Float32Array,
  mapWidth: number,
  mapHeight: number,
  geometry: ImageGeometry,
  out?: Float32Array,
): Float32Array {
  return resampleToOriginal(map, mapWidth, mapHeight, geometry, out).resampled;
}

/**
 * mapToOriginal, and the finite range of its result (finiteRange's: the
 * smallest and largest finite values, or null), found while resampling
 * rather than in a second pass over a map the size of the photo.
 */
export function mapToOriginalWithRange(
  map: Float32Array,
  mapWidth: number,
  mapHeight: number,
  geometry: ImageGeometry,
  out?: Float32Array,
): { resampled: Float32Array; range: ValueRange | null } {
  const { resampled, written, coversAll } = resampleToOriginal(map, mapWidth, mapHeight, geometry, out);
  let { min, max } = written;
  // An infinite value in the map makes infinite (or NaN) ones here, which finiteRange skips: it decides.
  if (min === -Infinity || max === Infinity) return { resampled, range: finiteRange(resampled) };
  if (!coversAll) {
    // The pixels outside the map's box are zeros.
    min = Math.min(min, 0);
    max = Math.max(max, 0);
  }
  // The values were stored as float32; rounding is monotonic, so the stored extremes are the rounded ones.
  return { resampled, range: min <= max ? { min: Math.fround(min), max: Math.fround(max) } : null };
}

function resampleToOriginal(
  map: Float32Array,
  mapWidth: number,
  mapHeight: number,
  geometry: ImageGeometry,
  out: Float32Array | undefined,
): { resampled: Float32Array; written: { min: number; max: number }; coversAll: boolean } {
  checkMap(map, mapWidth, mapHeight, 'map');
  const { original, input, sourceBox, inputBox } = geometry;
  checkSize(original.width, original.height, 'original');
  checkSize(input.width, input.height, 'model input');
  checkBox(sourceBox, 'sourceBox');
  checkBox(inputBox, 'inputBox');

  const dst = outputBuffer(out, original.width * original.height);
  const [x0, x1] = coveredPixels(sourceBox.x, sourceBox.width, original.width);
  const [y0, y1] = coveredPixels(sourceBox.y, sourceBox.height, original.height);
  const coversAll = x0 === 0 && y0 === 0 && x1 === original.width && y1 === original.height;
  if (out !== undefined && !coversAll) dst.fill(0);
  if (x1 <= x0 || y1 <= y0) return { resampled: dst, written: { min: Infinity, max: -Infinity }, coversAll };

  // Map cells per original pixel, and where original x = 0 lands in map cells.
  // Written as one division of whole-number products so that stretch mode
  // reproduces resizeBilinear's srcWidth / dstWidth bit for bit.
  const scaleX = (inputBox.width * mapWidth) / (input.width * sourceBox.width);
  const scaleY = (inputBox.height * mapHeight) / (input.height * sourceBox.height);
  const offsetX = (inputBox.x * mapWidth) / input.width - sourceBox.x * scaleX;
  const offsetY = (inputBox.y * mapHeight) / input.height - sourceBox.y * scaleY;
  const xs = linearAxisTable(mapWidth, x0, x1 - x0, scaleX, offsetX);
  const ys = linearAxisTable(mapHeight, y0, y1 - y0, scaleY, offsetY);
  const written = resampleInto(map, mapWidth, xs, ys, dst, original.width, x0, y0);
  return { resampled: dst, written, coversAll };
}

/** The pixels [first, end) of an axis of `size` whose centres lie in [start, start + length). */
function coveredPixels(start: number, length: number, size: number): [number, number] {
  const first = Math.max(0, Math.ceil(start - 0.5));
  const end = Math.min(size, Math.ceil(start + length - 0.5));
  return [first, Math.max(first, end)];
}

function outputBuffer(out: Float32Array | undefined, length: number): Float32Array {
  if (out === undefined) return new Float32Array(length);
  if (out.length !== length) throw new RangeError(`output holds ${out.length} values, need ${length}`);
  return out;
}

function checkSize(width: number, height: number, what: string): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`${what} size must be positive whole numbers, got ${width}x${height}`);
  }
}

function checkMap(map: Float32Array, width: number, height: number, what: string): void {
  checkSize(width, height, what);
  if (map.length !== width * height) {
    throw new RangeError(`${what} has ${map.length} values, expected ${width}x${height} = ${width * height}`);
  }
}

function checkBox(box: { x: number; y: number; width: number; height: number }, what: string): void {
  const finite = [box.x, box.y, box.width, box.height].every(Number.isFinite);
  if (!finite || box.width <= 0 || box.height <= 0) {
    throw new RangeError(`${what} must be finite with positive size, got ${JSON.stringify(box)}`);
  }
}
