/**
 * Small helpers the commands share.
 */
import { UsageError } from '../util/errors.js';

/** The model options of every model-using command (as commander gives them). */
export interface ModelOptions {
  model?: string;
  backend?: string;
  preprocess?: string;
  labels?: string;
  size?: string;
}

/** A non-negative integer option, or a usage error. */
export function parseCount(value: string, flag: string, minimum = 1): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < minimum) {
    throw new UsageError(`${flag} '${value}' must be an integer of at least ${minimum}`);
  }
  return number;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
