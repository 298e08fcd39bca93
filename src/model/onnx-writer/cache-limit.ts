/**
 * Where the ONNX cache is, and its size bound, read from
 * CAMVIZ_ONNX_CACHE_MB. Their own module, free of the writer and the
 * pruning, so that the command line can check the variable before any work
 * (a usage error for every command and model, not only where the cache is
 * written) and find a session to make ahead (../session-ahead.ts) without
 * loading tfjs.
 */
import { join } from 'node:path';
import { UsageError } from '../../util/errors.js';
import { cacheRoot } from '../../util/cache-root.js';

/** The default cache folder of written ONNX models and saved ONNX Runtime sessions. */
export function onnxCacheDir(): string {
  return join(cacheRoot(), 'onnx');
}

/** The size bound of the ONNX cache in MiB when CAMVIZ_ONNX_CACHE_MB is unset. */
export const DEFAULT_ONNX_CACHE_MB = 1024;

export const ONNX_CACHE_LIMIT_VARIABLE = 'CAMVIZ_ONNX_CACHE_MB';

/** The size bound in bytes from CAMVIZ_ONNX_CACHE_MB (MiB; 0: no bound). Throws a UsageError for a value that is not a number of MiB. */
export function onnxCacheLimitBytes(): number {
  const text = process.env[ONNX_CACHE_LIMIT_VARIABLE]?.trim() ?? '';
  if (text === '') return DEFAULT_ONNX_CACHE_MB * 2 ** 20;
  const mib = /^\d+(\.\d+)?$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isFinite(mib)) throw new UsageError(`${ONNX_CACHE_LIMIT_VARIABLE} must be a size in MiB (0: no bound), not "${text}"`);
  return Math.floor(mib * 2 ** 20);
}
