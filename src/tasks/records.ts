/** Manifest records of failed inputs; free of tfjs and sharp, for a folder run's main thread. */
import { CamvizError, describeError } from '../util/errors.js';
import { printable } from '../util/text.js';
import type { InputImage, InputRecord, Timings } from './types.js';

/**
 * The record of an input that failed: its error message and whatever timings
 * it got. An error that names no file (one camviz did not expect) is given
 * the input's, so that its line in a folder run's log says which image failed.
 */
export function errorRecord(input: InputImage, error: unknown, timings: Timings = {}): InputRecord {
  const stack = process.env['CAMVIZ_VERBOSE'] === '1' && error instanceof Error ? error.stack : undefined;
  const message = error instanceof CamvizError && error.file !== undefined ? error.describe() : `${describeError(error)} (${printable(input.path)})`;
  return { input: input.path, relative: input.relative, status: 'error', outputs: [], timings, error: message, ...(stack === undefined ? {} : { stack }) };
}

/**
 * The records of a batch in the batch's order (an input is its path and its
 * relative name: the same file may come from two inputs). Inputs a stopping
 * run dropped before their model work (decodeBatch) have none.
 */
export function inBatchOrder(batch: readonly InputImage[], records: readonly InputRecord[]): InputRecord[] {
  const key = (path: string, relative: string): string => `${relative}\u0000${path}`;
  const byInput = new Map(records.map((record) => [key(record.input, record.relative), record]));
  return batch.flatMap((input) => byInput.get(key(input.path, input.relative)) ?? []);
}
