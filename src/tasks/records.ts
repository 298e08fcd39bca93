/** Manifest records of failed inputs; free of tfjs and sharp, for a folder run's main thread. */
import { describeError } from '../util/errors.js';
import type { InputImage, InputRecord, Timings } from './types.js';

/** The record of an input that failed: its error message and whatever timings it got. */
export function errorRecord(input: InputImage, error: unknown, timings: Timings = {}): InputRecord {
  const stack = process.env['CAMVIZ_VERBOSE'] === '1' && error instanceof Error ? error.stack : undefined;
  return { input: input.path, relative: input.relative, status: 'error', outputs: [], timings, error: describeError(error), ...(stack === undefined ? {} : { stack }) };
}
