/**
 * Small helpers the commands share.
 */
import { join, relative, resolve } from 'node:path';
import { parseSize } from '../model/metadata.js';
import type { InputRecord } from '../tasks/types.js';
import { UsageError } from '../util/errors.js';
import { OPTION_LIMITS } from './options.js';

/** The model options of every model-using command (as commander gives them). */
export interface ModelOptions {
  model?: string;
  backend?: string;
  preprocess?: string;
  labels?: string;
  size?: string;
}

/**
 * A whole-number option within [minimum, maximum], or a usage error stating
 * the range. Decimal digits only: Number() would read '' as 0 (for
 * --max-pixels: no limit), '0x10' as 16 and '1e3' as 1000.
 */
export function parseCount(value: string, flag: string, minimum = 1, maximum = Number.MAX_SAFE_INTEGER): number {
  const text = value.trim();
  const number = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(number) || number < minimum || number > maximum) {
    const range = maximum === Number.MAX_SAFE_INTEGER ? `of at least ${minimum}` : `from ${minimum} to ${maximum}`;
    throw new UsageError(`${flag} '${value}' must be a whole number ${range}`);
  }
  return number;
}

/**
 * The folder `--out` names, resolved; undefined when not given. An empty
 * value (`--out "$UNSET_VARIABLE"`) is a usage error: resolved, it was the
 * current folder, which then received every output and the manifest.
 */
export function outFolder(value: string): string;
export function outFolder(value: string | undefined): string | undefined;
export function outFolder(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (value.trim() === '') throw new UsageError('--out is empty: give the output folder');
  return resolve(value);
}

/**
 * Checks what an image command's options ask for against OPTION_LIMITS,
 * before any work: the model options, and --batch-size's maximum.
 */
export function checkImageCommandOptions(options: ModelOptions & { batchSize?: string }): void {
  checkModelOptions(options);
  if (options.batchSize !== undefined) parseCount(options.batchSize, '--batch-size', 1, OPTION_LIMITS.batchSize.max);
}

/**
 * Checks the model options' values before any work: `--size` within
 * OPTION_LIMITS.size a side (the model may need more: its own error then
 * names the layer). The value itself is parsed again where the model loads.
 */
export function checkModelOptions(options: ModelOptions): void {
  if (options.size === undefined) return;
  const { width, height } = parseSize(options.size);
  const { min, max } = OPTION_LIMITS.size;
  if (Math.min(width, height) < min || Math.max(width, height) > max) {
    throw new UsageError(`--size '${options.size}' must be ${min} to ${max} pixels a side`);
  }
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

/**
 * Without --json, the files a run wrote, one `wrote <path>` line each, under
 * --out as given: for a single image, whose run has no summary line, and
 * with --verbose for every image (a folder run's summary says where the
 * manifest is). Outputs --skip-existing kept are `kept`.
 */
export function printWrittenFiles(records: readonly InputRecord[], out: string | undefined): void {
  if (records.length !== 1 && process.env['CAMVIZ_VERBOSE'] !== '1') return;
  const lines = records
    .filter((record) => record.status === 'ok')
    .flatMap((record) => record.outputs.map((path) => `${record.resumed ? 'kept' : 'wrote'} ${join(out ?? 'camviz-out', path)}\n`));
  process.stdout.write(lines.join(''));
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** A path relative to the working folder when it lies inside it (for messages). */
export function displayPath(path: string): string {
  const inside = relative(process.cwd(), path);
  return inside === '' || inside.startsWith('..') ? path : inside;
}
