/**
 * What the commands share: turning option values into library calls.
 */
import { UsageError } from '../errors.js';
import { type BackendInfo, requestedBackend, useBackend } from '../model/backend.js';
import { type ImageLoadOptions, parseBackground } from '../model/image.js';
import type { InputSize } from '../model/metadata.js';
import { type CamvizModel, loadModel } from '../model/load.js';
import type { ResizeMode } from '../model/geometry.js';

export interface ModelOptions {
  model?: string;
  backend?: string;
  preprocess?: string;
  labels?: string;
  size?: string;
}

export interface ImageOptions {
  resize?: string;
  background?: string;
  maxPixels?: string;
  glob?: string;
}

export interface Prepared {
  backend: BackendInfo;
  model: CamvizModel;
}

/** Starts the backend and loads the model. */
export async function prepareModel(options: ModelOptions, log?: (message: string) => void): Promise<Prepared> {
  const backend = await useBackend(requestedBackend(options.backend));
  const model = await loadModel(options.model, {
    ...(options.preprocess === undefined ? {} : { preprocess: options.preprocess }),
    ...(options.labels === undefined ? {} : { labels: options.labels }),
    ...(options.size === undefined ? {} : { size: options.size }),
    ...(log === undefined ? {} : { log }),
  });
  return { backend, model };
}

export function imageLoadOptions(options: ImageOptions, size: InputSize): ImageLoadOptions {
  const maxPixels = parseCount(options.maxPixels ?? '100000000', '--max-pixels', 0);
  const background = options.background ?? '#ffffff';
  parseBackground(background);
  return {
    size,
    resize: (options.resize ?? 'stretch') as ResizeMode,
    background,
    maxPixels,
  };
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
