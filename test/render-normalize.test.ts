import assert from 'node:assert/strict';
import { test } from 'node:test';
import { argmax, finiteRange, minMaxNormalize } from '../src/render/index.js';
import { minMaxNormalizeWithPeak } from '../src/render/normalize.js';

test('minMaxNormalize scales by the finite min and max', () => {
  const out = minMaxNormalize(new Float32Array([2, 4, 6, 3]));
  assert.deepEqual(Array.from(out), [0, 0.5, 1, 0.25]);
});

test('non-finite values are ignored for the range and never give NaN', () => {
  const values = new Float32Array([2, Number.NaN, 6, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 5]);
  assert.deepEqual(Array.from(minMaxNormalize(values)), [0, 0, 1, 1, 0, 0.75]);
});

test('constant, empty and all-non-finite inputs give zeros', () => {
  assert.deepEqual(Array.from(minMaxNormalize(new Float32Array([3, 3, 3]))), [0, 0, 0]);
  assert.deepEqual(Array.from(minMaxNormalize(new Float32Array([Number.NaN, Number.POSITIVE_INFINITY]))), [0, 0]);
  assert.deepEqual(Array.from(minMaxNormalize(new Float32Array([-1e-30, -1e-30, Number.NaN]))), [0, 0, 0]);
  assert.equal(minMaxNormalize(new Float32Array(0)).length, 0);
});

test('minMaxNormalize works in place and checks the output size', () => {
  const values = new Float32Array([-1, 1, 0]);
  assert.equal(minMaxNormalize(values, values), values);
  assert.deepEqual(Array.from(values), [0, 1, 0.5]);
  assert.throws(() => minMaxNormalize(values, new Float32Array(2)), RangeError);
});

test('finiteRange', () => {
  assert.deepEqual(finiteRange([3, Number.NaN, -2, Number.POSITIVE_INFINITY, 7]), { min: -2, max: 7 });
  assert.equal(finiteRange([Number.NaN]), null);
  assert.equal(finiteRange([]), null);
});

test('argmax gives the first largest finite value as x, y', () => {
  // 3 wide, 2 high: the 9s are at (2, 0) and (0, 1); the first in reading order wins.
  assert.deepEqual(argmax(new Float32Array([1, 5, 9, 9, 2, 0]), 3), { x: 2, y: 0, value: 9 });
  assert.deepEqual(argmax(new Float32Array([Number.POSITIVE_INFINITY, Number.NaN, -4, -3]), 2), { x: 1, y: 1, value: -3 });
  assert.equal(argmax(new Float32Array([Number.NaN, Number.NEGATIVE_INFINITY]), 2), null);
  assert.throws(() => argmax(new Float32Array(5), 2), RangeError);
});

test('minMaxNormalizeWithPeak: the values of minMaxNormalize and the peak of argmax over them, in one pass', () => {
  let seed = 3;
  const random = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const maps: Float32Array[] = [
    Float32Array.from({ length: 12 * 7 }, () => random() * 10 - 3),
    // Values 1 ulp apart near the top: ties after normalising must keep the first in reading order.
    Float32Array.from({ length: 5 * 4 }, (_, i) => 1e6 + (i % 3) * 0.0625),
    Float32Array.from({ length: 6 * 3 }, (_, i) => [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 2, -1][i % 5]!),
    new Float32Array(4 * 4).fill(5),
    new Float32Array(3 * 2).fill(Number.NaN),
    Float32Array.of(0.25),
  ];
  const widths = [12, 5, 6, 4, 3, 1];
  for (const [k, map] of maps.entries()) {
    const width = widths[k]!;
    const expected = minMaxNormalize(map);
    const expectedPeak = argmax(expected, width);
    const inPlace = map.slice();
    const { normalized, peak } = minMaxNormalizeWithPeak(inPlace, width, inPlace);
    assert.equal(normalized, inPlace, 'written where asked');
    assert.deepEqual(normalized, expected, `map ${k}`);
    assert.deepEqual(peak, expectedPeak, `map ${k}`);
  }
  assert.throws(() => minMaxNormalizeWithPeak(new Float32Array(5), 2), RangeError);
});
