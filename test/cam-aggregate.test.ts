/**
 * The multi-layer aggregation (pytorch-grad-cam's: each layer's map min-max
 * normalised, resized to the finest layer's resolution, averaged) runs in
 * plain Float32Arrays with render's cv2-style resize. It must equal the
 * same steps done with TensorFlow.js ops (tf.image.resizeBilinear with
 * half-pixel centres) to 1e-6, on maps of unequal, non-square sizes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { type FeatureMap, aggregateLayers } from '../src/cam/index.js';
import { useBackend } from '../src/engine/backend.js';
import { maxAbsDifference, mulberry32 } from './helpers/numeric.js';

function randomMap(width: number, height: number, seed: number): FeatureMap {
  const random = mulberry32(seed);
  // ReLU'd like the per-layer maps: some exact zeros.
  return { width, height, data: Float32Array.from({ length: width * height }, () => Math.max(0, random() * 4 - 1)) };
}

/** The aggregation in tfjs ops. */
function aggregateWithTf(maps: readonly FeatureMap[], width: number, height: number): Float32Array {
  return tf.tidy(() => {
    const resized = maps.map((map) => {
      const tensor = tf.tensor4d(map.data, [1, map.height, map.width, 1]);
      const min = tf.min(tensor);
      const range = tf.sub(tf.max(tensor), min);
      const normalised = tf.where(tf.greater(range, 0), tf.div(tf.sub(tensor, min), range), tf.zerosLike(tensor)) as tf.Tensor4D;
      return tf.image.resizeBilinear(normalised, [height, width], false, true);
    });
    return tf.div(tf.addN(resized), maps.length).dataSync() as Float32Array;
  });
}

test('aggregateLayers equals the tfjs-ops aggregation to 1e-6 (three layers, 14x9, 7x5, 4x3; a constant map counts as 0)', async () => {
  await useBackend('cpu');
  const maps = [randomMap(7, 5, 1), randomMap(14, 9, 2), randomMap(4, 3, 3), { width: 2, height: 2, data: new Float32Array(4).fill(0.7) }];
  const aggregated = aggregateLayers(maps);
  assert.deepEqual([aggregated.width, aggregated.height], [14, 9], 'the finest resolution');
  const expected = aggregateWithTf(maps, 14, 9);
  const difference = maxAbsDifference(aggregated.data, expected);
  assert.ok(difference <= 1e-6, `max abs difference ${difference}`);
  // Not trivially equal: the maps differ, so the average is not any one of them.
  assert.ok(maxAbsDifference(aggregated.data, aggregateWithTf([maps[1]!], 14, 9)) > 0.05);
});
