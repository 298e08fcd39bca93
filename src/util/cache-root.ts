/**
 * Where camviz keeps what it can make again: downloaded models, written
 * ONNX models, the code cache. Here, below every layer that needs it.
 */
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** CAMVIZ_CACHE, else $XDG_CACHE_HOME/camviz, else ~/.cache/camviz. */
export function cacheRoot(): string {
  const explicit = process.env['CAMVIZ_CACHE'];
  if (explicit) return resolve(explicit);
  const xdg = process.env['XDG_CACHE_HOME'];
  return join(xdg ? resolve(xdg) : join(homedir(), '.cache'), 'camviz');
}
