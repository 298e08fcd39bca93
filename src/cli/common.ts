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

/**
 * The layer names of repeated, comma-separated `--layer` values (TensorFlow
 * names hold no commas). A value naming none (`--layer ""`, `--layer ,`) is a
 * usage error rather than the default layer; a blank part between names is skipped.
 */
export function layerNames(values: readonly string[] | undefined): string[] {
  return (values ?? []).flatMap((value) => {
    const names = value.split(',').map((name) => name.trim()).filter((name) => name !== '');
    if (names.length === 0) throw new UsageError(`--layer '${value}' names no layer: give a name (camviz layers lists them), several separated by commas`);
    return names;
  });
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
