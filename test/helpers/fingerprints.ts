/**
 * What the tests of fingerprints kept by file identity
 * (src/model/file-fingerprints.ts) share: a temporary cache folder, and
 * files whose times can be set back exactly and that count as settled.
 */
import assert from 'node:assert/strict';
import { readFile, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as tf from '@tensorflow/tfjs-core';
import { FILE_FINGERPRINTS_NAME } from '../../src/model/file-fingerprints.js';
import type { CamvizModel } from '../../src/model/load.js';

/** Whole seconds, which utimes can set again to the nanosecond. */
export const WHOLE_SECOND = new Date('2026-01-02T03:04:05Z');

/** Makes `folder` camviz's cache root (CAMVIZ_CACHE); returns what puts the variable back as it was. */
export function useCacheRoot(folder: string): () => void {
  const saved = process.env['CAMVIZ_CACHE'];
  process.env['CAMVIZ_CACHE'] = folder;
  return () => {
    if (saved === undefined) delete process.env['CAMVIZ_CACHE'];
    else process.env['CAMVIZ_CACHE'] = saved;
  };
}

/** Sets the files' times to WHOLE_SECOND (again, after a rewrite). */
export async function setWholeSecond(paths: readonly string[]): Promise<void> {
  for (const path of paths) await utimes(path, WHOLE_SECOND, WHOLE_SECOND);
}

/** Waits until files changed now count as settled: files changed within the last 40 s are not recorded (src/model/file-fingerprints.ts, SETTLED_MS). */
export function untilSettled(): Promise<void> {
  return sleep(40_500);
}

/** The fingerprints recorded under the cache root `cache`, by the real path of each model's first file. */
export async function recordedFingerprints(cache: string): Promise<Record<string, { fingerprint: string }>> {
  return (JSON.parse(await readFile(join(cache, 'onnx', FILE_FINGERPRINTS_NAME), 'utf8')) as { entries: Record<string, { fingerprint: string }> }).entries;
}

/**
 * Asserts that `onOrt` runs on ONNX Runtime and gives, for one seeded image
 * of `size` x `size`, the scores `onTfjs` gives on tfjs (within 1e-5); then
 * disposes both models. Returns how many scores there were.
 */
export async function assertScoresAsOnTfjs(onOrt: CamvizModel, onTfjs: CamvizModel, size: number): Promise<number> {
  const input = tf.randomUniform([1, size, size, 3], 0, 1, 'float32', 7);
  try {
    assert.equal((await onOrt.engine()).kind, 'onnxruntime');
    const fromOrt = await (await onOrt.executor()).forward(input);
    const fromTfjs = await (await onTfjs.executor()).forward(input);
    const [a, b] = [fromOrt.scores.dataSync(), fromTfjs.scores.dataSync()];
    a.forEach((value, i) => assert.ok(Math.abs(value - b[i]!) <= 1e-5, `score ${i}: ${value} on ORT, ${b[i]} from the new weights on tfjs`));
    tf.dispose([fromOrt.scores, fromTfjs.scores, ...fromOrt.layers.values(), ...fromTfjs.layers.values()]);
    return a.length;
  } finally {
    input.dispose();
    onOrt.dispose();
    onTfjs.dispose();
  }
}
