/**
 * The WebAssembly kernels (src/render/kernels.wat) against the JavaScript
 * loops they replaced, kept here as they were (a107d9e): the same values
 * bit for bit (Object.is per element: NaN equals NaN, 0 and -0 differ) on
 * random maps with NaN, infinities, subnormals and negative zeros, for
 * sizes that are and are not multiples of the kernels' 16-byte steps.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { normalizeWithPeakInto, overlayInto, resampleInto, upFilterInto } from '../src/render/kernels.js';
import { type AxisTable, linearAxisTable } from '../src/render/resize.js';
import { colormapIndex, colormapLut } from '../src/render/colormap.js';

/** Deterministic pseudo-random numbers in [0, 1). */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Values of every kind a map may hold: ordinary, tiny, huge, signed zeros, NaN, ±Infinity. */
function awkwardValues(count: number, seed: number): Float32Array {
  const next = random(seed);
  const specials = [Number.NaN, Infinity, -Infinity, 0, -0, 1e-45, -1e-45, 3.4e38, -3.4e38, 1, 0.5];
  return Float32Array.from({ length: count }, () => (next() < 0.1 ? specials[Math.floor(next() * specials.length)]! : (next() - 0.3) * 10 ** Math.floor(next() * 6 - 3)));
}

function assertSameValues(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(actual[i], expected[i])) assert.fail(`${what}: index ${i} is ${actual[i]}, expected ${expected[i]}`);
  }
}

// The JavaScript loops as they were.

function jsResampleInto(src: Float32Array, srcWidth: number, xs: AxisTable, ys: AxisTable, dst: Float32Array, dstStride: number, dstX: number, dstY: number): { min: number; max: number } {
  const width = xs.lo.length;
  const height = ys.lo.length;
  const firstRow = ys.lo[0]!;
  const lastRow = ys.hi[height - 1]!;
  let min = Infinity;
  let max = -Infinity;
  const rows = new Float32Array((lastRow - firstRow + 1) * width);
  for (let r = firstRow; r <= lastRow; r++) {
    const s = r * srcWidth;
    const o = (r - firstRow) * width;
    for (let i = 0; i < width; i++) {
      const w = xs.weight[i]!;
      rows[o + i] = src[s + xs.lo[i]!]! * (1 - w) + src[s + xs.hi[i]!]! * w;
    }
  }
  for (let j = 0; j < height; j++) {
    const a = (ys.lo[j]! - firstRow) * width;
    const b = (ys.hi[j]! - firstRow) * width;
    const w = ys.weight[j]!;
    const v = 1 - w;
    const o = (dstY + j) * dstStride + dstX;
    for (let i = 0; i < width; i++) {
      const value = rows[a + i]! * v + rows[b + i]! * w;
      dst[o + i] = value;
      if (value < min) min = value;
      if (value > max) max = value;
    }
  }
  return { min, max };
}

function jsNormalizeWithPeak(values: Float32Array, min: number, span: number): { normalized: Float32Array; index: number; value: number } {
  const normalized = new Float32Array(values.length);
  let index = 0;
  let value = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    const n = v >= min ? Math.fround(v === Infinity ? 1 : (v - min) / span) : 0;
    normalized[i] = n;
    if (n > value) {
      value = n;
      index = i;
    }
  }
  return { normalized, index, value };
}

function jsOverlay(image: Uint8Array, heat: Float32Array, alpha: number, lut: Uint8Array): Uint8Array {
  const keep = 1 - alpha;
  const out = new Uint8Array(image.length);
  for (let i = 0; i < heat.length; i++) {
    const k = colormapIndex(heat[i]!) * 3;
    for (let c = 0; c < 3; c++) out[i * 3 + c] = Math.floor(keep * image[i * 3 + c]! + alpha * lut[k + c]! + 0.5 + 1e-9);
  }
  return out;
}

function jsUpFilter(rgb: Uint8Array, stride: number, height: number): Uint8Array {
  const rows = new Uint8Array((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    rows[y * (stride + 1)] = 2;
    for (let i = 0; i < stride; i++) rows[y * (stride + 1) + 1 + i] = rgb[y * stride + i]! - (y === 0 ? 0 : rgb[(y - 1) * stride + i]!);
  }
  return rows;
}

test('resampling: the same values and extremes as the JavaScript, whole and into a part of a larger map', () => {
  const cases = [
    { src: [7, 7], dst: [224, 224], box: [0, 0] },
    { src: [14, 14], dst: [333, 201], box: [0, 0] },
    { src: [1, 1], dst: [5, 3], box: [0, 0] },
    { src: [13, 9], dst: [64, 48], box: [7, 5] },
    { src: [7, 7], dst: [3, 2], box: [1, 1] },
  ];
  for (const [n, { src: [sw, sh], dst: [dw, dh], box: [bx, by] }] of cases.entries()) {
    const map = awkwardValues(sw! * sh!, 11 + n);
    const xs = linearAxisTable(sw!, 0, dw!, sw! / dw!, 0);
    const ys = linearAxisTable(sh!, 0, dh!, sh! / dh!, 0);
    const stride = dw! + 2 * bx!;
    const expected = new Float32Array(stride * (dh! + 2 * by!)).fill(-7);
    const actual = expected.slice();
    const expectedRange = jsResampleInto(map, sw!, xs, ys, expected, stride, bx!, by!);
    const actualRange = resampleInto(map, sw!, xs, ys, actual, stride, bx!, by!);
    assertSameValues(actual, expected, `${sw}x${sh} -> ${dw}x${dh} at (${bx}, ${by})`);
    assert.deepEqual(actualRange, expectedRange);
  }
});

test('resampling finite maps gives finite extremes equal to the written values rounded', () => {
  const next = random(5);
  const map = Float32Array.from({ length: 49 }, () => next() * 4 - 1);
  const out = new Float32Array(100 * 80);
  const { min, max } = resampleInto(map, 7, linearAxisTable(7, 0, 100, 0.07, 0), linearAxisTable(7, 0, 80, 7 / 80, 0), out, 100, 0, 0);
  assert.equal(Math.fround(min), Math.min(...out));
  assert.equal(Math.fround(max), Math.max(...out));
});

test('normalising: the same values, peak and peak value as the JavaScript, also in place', () => {
  for (const [n, length] of [1, 15, 16, 17, 50_176, 100_003].entries()) {
    const values = awkwardValues(length, 101 + n);
    const min = -2.5;
    const span = 7.25;
    const expected = jsNormalizeWithPeak(values, min, span);
    const out = new Float32Array(length);
    const peak = normalizeWithPeakInto(values, out, min, span);
    assertSameValues(out, expected.normalized, `${length} values`);
    assert.deepEqual(peak, { index: expected.index, value: expected.value });
    const inPlace = values.slice();
    assert.deepEqual(normalizeWithPeakInto(inPlace, inPlace, min, span), peak);
    assertSameValues(inPlace, expected.normalized, `${length} values in place`);
  }
});

test('blending: the same bytes as the JavaScript for every alpha tried, colormap and heat, into a new buffer or the photo', () => {
  const next = random(9);
  const pixels = 70_001;
  const image = Uint8Array.from({ length: pixels * 3 }, () => Math.floor(next() * 256));
  const heat = awkwardValues(pixels, 3).map((v) => (Number.isFinite(v) ? v % 1.2 : v));
  // Alternating options: each change remakes the kernels' tables.
  for (const [alpha, colormap] of [[0.5, 'jet'], [0.7, 'jet'], [0.7, 'viridis'], [0, 'gray'], [1, 'turbo'], [0.5, 'jet']] as const) {
    const lut = colormapLut(colormap);
    const expected = jsOverlay(image, heat, alpha, lut);
    const out = new Uint8Array(pixels * 3);
    overlayInto(image, heat, alpha, colormap, out);
    assert.deepEqual(out, expected, `alpha ${alpha}, ${colormap}`);
    const photo = image.slice();
    overlayInto(photo, heat, alpha, colormap, photo);
    assert.deepEqual(photo, expected, `alpha ${alpha}, ${colormap}, over the photo`);
  }
});

test('the Up filter: the same rows as byte by byte, for row lengths around the 16-byte steps', () => {
  const next = random(21);
  for (const [width, height] of [[1, 1], [5, 3], [16, 4], [21, 7], [224, 224], [333, 2]] as const) {
    const stride = width * 3;
    const rgb = Uint8Array.from({ length: stride * height }, () => Math.floor(next() * 256));
    const rows = new Uint8Array((stride + 1) * height).fill(99);
    upFilterInto(rgb, stride, height, rows);
    assert.deepEqual(rows, jsUpFilter(rgb, stride, height), `${width}x${height}`);
  }
});

test('a call after a larger one, and a larger one after, keep their own values (the memory grows, its old views are never used)', () => {
  const small = awkwardValues(100, 1);
  const large = awkwardValues(3_000_000, 2);
  for (const values of [small, large, small]) {
    const out = new Float32Array(values.length);
    const peak = normalizeWithPeakInto(values, out, -1, 3);
    const expected = jsNormalizeWithPeak(values, -1, 3);
    assertSameValues(out, expected.normalized, `${values.length} values`);
    assert.equal(peak.index, expected.index);
  }
});

test('after a call too large to keep its memory for, the next overlay with the same options is still right (its tables made again)', () => {
  const next = random(4);
  const pixels = 1000;
  const image = Uint8Array.from({ length: pixels * 3 }, () => Math.floor(next() * 256));
  const heat = Float32Array.from({ length: pixels }, () => next());
  const lut = colormapLut('jet');
  const expected = jsOverlay(image, heat, 0.6, lut);
  const before = new Uint8Array(pixels * 3);
  overlayInto(image, heat, 0.6, 'jet', before);
  // 36 MB: over what an instance keeps once a call needs much less, so the next overlay gets a new instance (and its tables made again).
  const huge = new Float32Array(9_000_000).fill(1);
  normalizeWithPeakInto(huge, huge, 0, 2);
  assert.equal(huge[0], 0.5);
  const after = new Uint8Array(pixels * 3);
  overlayInto(image, heat, 0.6, 'jet', after);
  assert.deepEqual(before, expected);
  assert.deepEqual(after, expected);
});
