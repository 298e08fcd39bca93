/**
 * Checked element reads for tests (the code is compiled with
 * noUncheckedIndexedAccess): an index out of range fails the test, naming
 * the index, instead of giving undefined and, further on, NaN.
 */
import assert from 'node:assert/strict';

/** values[index], or a failed assertion when there is no such element. */
export function at<T>(values: ArrayLike<T>, index: number): T {
  const value = values[index];
  assert.ok(value !== undefined, `index ${index} is outside 0..${values.length - 1}`);
  return value;
}
