/**
 * topClassIndices against sorting every index (the definition: largest value
 * first, ties by index), on values with many ties, for every k around the
 * point where it stops selecting and sorts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { topClassIndices } from '../src/model/predict.js';

const bySorting = (values: Float32Array, k: number): number[] =>
  Array.from(values.keys())
    .sort((a, b) => values[b]! - values[a]! || a - b)
    .slice(0, Math.max(0, k));

test('by hand: ties keep the lower index first; k beyond the classes gives them all', () => {
  const values = Float32Array.from([0.1, 0.5, 0.5, 0.2, -1]);
  assert.deepEqual(topClassIndices(values, 1), [1]);
  assert.deepEqual(topClassIndices(values, 3), [1, 2, 3]);
  assert.deepEqual(topClassIndices(values, 9), [1, 2, 3, 0, 4]);
  assert.deepEqual(topClassIndices(values, 0), []);
  assert.deepEqual(topClassIndices(values, -2), []);
  assert.deepEqual(topClassIndices(new Float32Array(0), 3), []);
});

test('equals sorting every index, for k from 0 to past the classes, on values with ties', () => {
  let seed = 7;
  const random = (): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  for (const size of [1, 2, 7, 40, 1001]) {
    for (let round = 0; round < 5; round++) {
      // Few distinct values: many ties, at the top too.
      const values = Float32Array.from({ length: size }, () => Math.floor(random() * (round + 2)) / (round + 2) - 0.25);
      for (const k of [0, 1, 2, 3, 5, 15, 16, 17, 40, size - 1, size, size + 3]) {
        assert.deepEqual(topClassIndices(values, k), bySorting(values, k), `size ${size}, round ${round}, k ${k}`);
      }
    }
  }
});
