import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import type { ImageGeometry } from '../src/image/geometry.js';
import { finiteRange, mapToOriginal, resizeBilinear } from '../src/render/index.js';
import { mapToOriginalWithRange } from '../src/render/resize.js';
import { at } from './helpers/arrays.js';
import { assertAllClose } from './helpers/numeric.js';
import { findPython } from './helpers/python.js';

/**
 * Written from OpenCV's description, one pixel at a time: source coordinate
 * (d + 0.5) * src / dst - 0.5, below 0 -> first pixel, past the last -> last pixel.
 */
function naiveResize(src: ArrayLike<number>, sw: number, sh: number, dw: number, dh: number): Float64Array {
  const out = new Float64Array(dw * dh);
  const sample = (pos: number, size: number): [number, number, number] => {
    if (pos <= 0) return [0, 0, 0];
    if (pos >= size - 1) return [size - 1, size - 1, 0];
    const i = Math.floor(pos);
    return [i, i + 1, pos - i];
  };
  for (let y = 0; y < dh; y++) {
    const [y0, y1, fy] = sample(((y + 0.5) * sh) / dh - 0.5, sh);
    for (let x = 0; x < dw; x++) {
      const [x0, x1, fx] = sample(((x + 0.5) * sw) / dw - 0.5, sw);
      const top = at(src, y0 * sw + x0) * (1 - fx) + at(src, y0 * sw + x1) * fx;
      const bottom = at(src, y1 * sw + x0) * (1 - fx) + at(src, y1 * sw + x1) * fx;
      out[y * dw + x] = top * (1 - fy) + bottom * fy;
    }
  }
  return out;
}

/** A deterministic pseudo-random map. */
function randomMap(count: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32) * 10 - 3;
  }
  return out;
}

test('2x2 -> 4x4 matches values computed by hand', () => {
  // Columns sample x = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1); rows likewise.
  const out = resizeBilinear(new Float32Array([0, 4, 8, 12]), 2, 2, 4, 4);
  assert.deepEqual(Array.from(out), [0, 1, 3, 4, 2, 3, 5, 6, 6, 7, 9, 10, 8, 9, 11, 12]);
});

test('3x3 -> 5 wide x 7 high matches values computed by hand', () => {
  // x: 0.6 * (d + 0.5) - 0.5 = -0.2 -> 0, 0.4, 1, 1.6, 2.2 -> 2
  const xs = [0, 0.4, 1, 1.6, 2];
  // y: 3/7 * (d + 0.5) - 0.5 = -2/7 -> 0, 1/7, 4/7, 1, 10/7, 13/7, 16/7 -> 2
  const ys = [0, 1 / 7, 4 / 7, 1, 10 / 7, 13 / 7, 2];
  // Bilinear interpolation reproduces a linear ramp exactly: value = 10 y + x.
  const ramp = new Float32Array([0, 1, 2, 10, 11, 12, 20, 21, 22]);
  const out = resizeBilinear(ramp, 3, 3, 5, 7);
  const expected = ys.flatMap((y) => xs.map((x) => 10 * y + x));
  assertAllClose(out, expected, 1e-5, 'ramp');

  // A single peak in the centre: weights are products of the per-axis fractions.
  const peak = resizeBilinear(new Float32Array([0, 0, 0, 0, 9, 0, 0, 0, 0]), 3, 3, 5, 7);
  assert.ok(Math.abs(at(peak, 3 * 5 + 2) - 9) < 1e-6); // (x 1, y 1)
  assert.ok(Math.abs(at(peak, 2 * 5 + 1) - 9 * 0.4 * (4 / 7)) < 1e-5); // (x 0.4, y 4/7)
  assert.ok(Math.abs(at(peak, 5 * 5 + 3) - 9 * 0.4 * (1 - 6 / 7)) < 1e-5); // (x 1.6, y 13/7)
  assert.equal(peak[0], 0);
});

test('resizeBilinear agrees with a naive per-pixel implementation', () => {
  const sizes: [number, number, number, number][] = [
    [7, 7, 1024, 768],
    [14, 10, 33, 57],
    [1, 1, 5, 3],
    [1, 6, 4, 9],
    [5, 4, 5, 4],
    [16, 12, 7, 5], // downsampling too (no antialiasing, like OpenCV)
  ];
  for (const [sw, sh, dw, dh] of sizes) {
    const src = randomMap(sw * sh, sw * 131 + sh);
    assertAllClose(resizeBilinear(src, sw, sh, dw, dh), naiveResize(src, sw, sh, dw, dh), 2e-5, `${sw}x${sh}->${dw}x${dh}`);
  }
});

test('resizeBilinear reuses an output buffer and rejects bad sizes', () => {
  const out = new Float32Array(6).fill(99);
  assert.equal(resizeBilinear(new Float32Array([1, 2]), 2, 1, 3, 2, out), out);
  assertAllClose(out, naiveResize([1, 2], 2, 1, 3, 2), 1e-6, 'reuse');
  assert.throws(() => resizeBilinear(new Float32Array(3), 2, 2, 4, 4), RangeError);
  assert.throws(() => resizeBilinear(new Float32Array(4), 2, 2, 0, 4), RangeError);
  assert.throws(() => resizeBilinear(new Float32Array(4), 2, 2, 4, 4, new Float32Array(15)), RangeError);
});

const cv2Python = findPython('cv2');

test('resizeBilinear matches cv2.resize INTER_LINEAR on float32', { skip: cv2Python === null ? 'no python3 with cv2' : false }, () => {
  const cases: [number, number, number, number][] = [
    [7, 7, 224, 160],
    [13, 9, 100, 41],
  ];
  for (const [sw, sh, dw, dh] of cases) {
    const src = randomMap(sw * sh, dw + dh);
    const script = `
import json, sys, cv2, numpy as np
a = np.array(json.load(sys.stdin), dtype=np.float32).reshape(${sh}, ${sw})
print(json.dumps(cv2.resize(a, (${dw}, ${dh}), interpolation=cv2.INTER_LINEAR).reshape(-1).tolist()))
`;
    const run = spawnSync(cv2Python!, ['-c', script], { input: JSON.stringify(Array.from(src)), encoding: 'utf8', maxBuffer: 64 << 20 });
    assert.equal(run.status, 0, run.stderr);
    assertAllClose(resizeBilinear(src, sw, sh, dw, dh), JSON.parse(run.stdout) as number[], 1e-5, `cv2 ${sw}x${sh}->${dw}x${dh}`);
  }
});

function geometry(
  mode: ImageGeometry['mode'],
  original: [number, number],
  input: [number, number],
  sourceBox: [number, number, number, number],
  inputBox: [number, number, number, number],
): ImageGeometry {
  const box = ([x, y, width, height]: [number, number, number, number]) => ({ x, y, width, height });
  return {
    mode,
    original: { width: original[0], height: original[1] },
    input: { width: input[0], height: input[1] },
    sourceBox: box(sourceBox),
    inputBox: box(inputBox),
  };
}

/** A 4x4 map whose bilinear samples are easy to write down: value = 10 * row + column. */
const RAMP_4X4 = new Float32Array(Array.from({ length: 16 }, (_, i) => 10 * Math.floor(i / 4) + (i % 4)));

test('mapToOriginal in stretch mode is the plain resize to the original size', () => {
  const map = randomMap(7 * 7, 5);
  const g = geometry('stretch', [1024, 768], [224, 224], [0, 0, 1024, 768], [0, 0, 224, 224]);
  assert.deepEqual(mapToOriginal(map, 7, 7, g), resizeBilinear(map, 7, 7, 1024, 768));
});

test('mapToOriginal in crop mode fills the crop and leaves the margins 0', () => {
  // A 10x6 photo, centre-cropped to its middle 6x6, fed as a 4x4 input; map at input resolution.
  const g = geometry('crop', [10, 6], [4, 4], [2, 0, 6, 6], [0, 0, 4, 4]);
  const out = mapToOriginal(RAMP_4X4, 4, 4, g);
  // Inside the crop, map coordinate = (o - 2 + 0.5) * 4/6 - 0.5 along x, (o + 0.5) * 4/6 - 0.5 along y.
  const coord = (p: number) => Math.min(3, Math.max(0, (p + 0.5) * (4 / 6) - 0.5));
  for (let y = 0; y < 6; y++) {
    for (let x = 0; x < 10; x++) {
      const expected = x < 2 || x >= 8 ? 0 : 10 * coord(y) + coord(x - 2);
      const value = at(out, y * 10 + x);
      assert.ok(Math.abs(value - expected) < 1e-5, `(${x}, ${y}): ${value} vs ${expected}`);
    }
  }
  // By hand: pixel (2, 0) samples (-1/6 -> 0, -1/6 -> 0); pixel (5, 3) samples (11/6, 11/6).
  assert.equal(out[2], 0);
  assert.ok(Math.abs(at(out, 3 * 10 + 5) - (10 * 11) / 6 - 11 / 6) < 1e-5);
});

test('mapToOriginal in pad mode samples only the part of the map under inputBox', () => {
  // An 8x4 photo letterboxed into an 8x8 input (2 rows of padding above and below);
  // the map is 4x4, so the photo covers map rows 1..3 (fractional box 0,1,4,2).
  const g = geometry('pad', [8, 4], [8, 8], [0, 0, 8, 4], [0, 2, 8, 4]);
  const out = mapToOriginal(RAMP_4X4, 4, 4, g);
  // By hand: map x = (x + 0.5) / 2 - 0.5 -> 0 (clamped), 0.25, 0.75, ... 2.75, 3 (clamped);
  // map y = 1 + (y + 0.5) / 2 - 0.5 -> 0.75, 1.25, 1.75, 2.25.
  const xs = [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3];
  const ys = [0.75, 1.25, 1.75, 2.25];
  assertAllClose(out, ys.flatMap((y) => xs.map((x) => 10 * y + x)), 1e-5, 'pad');
  assert.ok(Math.abs(at(out, 0) - 7.5) < 1e-6);
  assert.ok(Math.abs(at(out, 3 * 8 + 7) - 25.5) < 1e-6);
});

test('mapToOriginal with a fractional crop box and a reused dirty buffer', () => {
  // Pixel centres 1.5 .. 6.5 lie in [1.5, 7.5): columns 1..6 are inside, 0 and 7 outside.
  const g = geometry('crop', [8, 2], [4, 4], [1.5, 0, 6, 2], [0, 0, 4, 4]);
  const out = new Float32Array(16).fill(-1);
  mapToOriginal(new Float32Array(16).fill(3), 4, 4, g, out);
  const row = [0, 3, 3, 3, 3, 3, 3, 0];
  assert.deepEqual(Array.from(out), [...row, ...row]);
});

test('mapToOriginal validates its inputs', () => {
  const g = geometry('stretch', [8, 8], [4, 4], [0, 0, 8, 8], [0, 0, 4, 4]);
  assert.throws(() => mapToOriginal(new Float32Array(15), 4, 4, g), RangeError);
  assert.throws(() => mapToOriginal(new Float32Array(16), 4, 4, { ...g, sourceBox: { x: 0, y: 0, width: 0, height: 8 } }), RangeError);
  assert.throws(() => mapToOriginal(new Float32Array(16), 4, 4, g, new Float32Array(63)), RangeError);
});

test('mapToOriginalWithRange: mapToOriginal and finiteRange of its result, found while resampling', () => {
  const geometries = [
    geometry('stretch', [37, 23], [8, 8], [0, 0, 37, 23], [0, 0, 8, 8]),
    geometry('crop', [10, 6], [4, 4], [2, 0, 6, 6], [0, 0, 4, 4]),
    geometry('crop', [8, 2], [4, 4], [1.5, 0, 6, 2], [0, 0, 4, 4]),
    geometry('pad', [8, 4], [8, 8], [0, 0, 8, 4], [0, 2, 8, 4]),
  ];
  const base = randomMap(4 * 4, 11).map((v) => v - 0.5);
  const maps = [
    base,
    base.map((v) => v + 5), // all positive: the crop's zero margins are the minimum
    base.map((v) => v - 10), // all negative: they are the maximum
    base.map((v, i) => (i === 5 ? Number.NaN : v)),
    base.map((v, i) => (i === 6 ? Number.POSITIVE_INFINITY : v)),
    base.map((v, i) => (i === 9 ? Number.NEGATIVE_INFINITY : v)),
    new Float32Array(16).fill(Number.NaN),
    new Float32Array(16).fill(2),
  ];
  for (const [g, shape] of geometries.entries()) {
    for (const [m, map] of maps.entries()) {
      const expected = mapToOriginal(map, 4, 4, shape);
      const scratch = new Float32Array(expected.length).fill(9); // a reused buffer with old values
      const { resampled, range } = mapToOriginalWithRange(map, 4, 4, shape, scratch);
      assert.equal(resampled, scratch);
      assert.deepEqual(resampled, expected, `geometry ${g} (${shape.mode}), map ${m}`);
      assert.deepEqual(range, finiteRange(expected), `geometry ${g} (${shape.mode}), map ${m}`);
    }
  }
});
