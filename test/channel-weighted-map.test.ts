/**
 * The host arithmetic the CAM base and planned runs share
 * (cam/channel-weighted-map.ts, executor/softmax.ts): hand-computed values
 * on tiny arrays, and the property planned runs rely on, that both layouts
 * give the same map to the bit (positions and channels not multiples of
 * the loops' four included).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { channelWeightedMap, spatialMeanOnHost } from '../src/cam/channel-weighted-map.js';
import { softmaxRows } from '../src/executor/softmax.js';

/** Deterministic values in [-1, 1). */
function values(count: number, seed: number): Float32Array {
  let state = seed;
  return Float32Array.from({ length: count }, () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 1073741824 - 1;
  });
}

/** NHWC [1, h, w, c] -> NCHW [1, c, h, w]. */
function toNchw(nhwc: Float32Array, height: number, width: number, channels: number): Float32Array {
  const out = new Float32Array(nhwc.length);
  for (let i = 0; i < height * width; i++) for (let k = 0; k < channels; k++) out[k * height * width + i] = nhwc[i * channels + k]!;
  return out;
}

test('the map of a 2x1 picture of 2 channels, by hand: ReLU(w0 a0 + w1 a1) per position', () => {
  // Positions (0, 0) and (0, 1); NHWC: [a0, a1] per position.
  const activations = Float32Array.from([1, 2, 3, -4]);
  const weights = Float32Array.from([0.5, -1]);
  const map = channelWeightedMap(activations, [1, 1, 2, 2], 3, weights);
  assert.deepEqual([map.width, map.height], [2, 1]);
  // 0.5 - 2 = -1.5 -> 0; 1.5 + 4 = 5.5.
  assert.deepEqual(Array.from(map.data), [0, 5.5]);
  assert.deepEqual(Array.from(channelWeightedMap(Float32Array.from([1, 3, 2, -4]), [1, 2, 1, 2], 1, weights).data), [0, 5.5]);
});

test('NCHW and NHWC give the same map to the bit, for sizes that are and are not multiples of four', () => {
  for (const [height, width, channels] of [[7, 7, 768], [3, 5, 7], [1, 1, 1], [2, 2, 4], [5, 3, 1001]] as const) {
    const nhwc = values(height * width * channels, height * 31 + channels);
    const weights = values(channels, channels + 7);
    const a = channelWeightedMap(nhwc, [1, height, width, channels], 3, weights);
    const b = channelWeightedMap(toNchw(nhwc, height, width, channels), [1, channels, height, width], 1, weights);
    assert.deepEqual([b.width, b.height], [a.width, a.height]);
    assert.deepEqual(Array.from(b.data), Array.from(a.data), `${height}x${width}x${channels}`);
    // Against a sum in double written plainly: rounded once, after ReLU.
    for (let i = 0; i < height * width; i++) {
      let sum = 0;
      for (let k = 0; k < channels; k++) sum += weights[k]! * nhwc[i * channels + k]!;
      assert.equal(a.data[i], Math.fround(Math.max(0, sum)), `${height}x${width}x${channels} position ${i}`);
    }
  }
});

test('a NaN activation stays NaN in the map (as tf.relu leaves it); mismatched weights are refused', () => {
  const map = channelWeightedMap(Float32Array.from([Number.NaN, 1]), [1, 1, 1, 2], 3, Float32Array.from([1, 1]));
  assert.ok(Number.isNaN(map.data[0]));
  assert.throws(() => channelWeightedMap(new Float32Array(4), [1, 1, 2, 2], 3, new Float32Array(3)), /do not take 3 channel weights/);
});

test('spatial means per image and channel, by hand; a gradient the same at every position is its own mean to the bit', () => {
  // [2, 1, 2, 3]: image 0 positions [1, 2, 3], [3, 4, 5]; image 1 [0, 0, 1], [2, -2, 1].
  const means = spatialMeanOnHost(Float32Array.from([1, 2, 3, 3, 4, 5, 0, 0, 1, 2, -2, 1]), [2, 1, 2, 3]);
  assert.deepEqual(Array.from(means), [2, 3, 4, 1, -1, 1]);
  const channels = 9;
  const perChannel = values(channels, 3).map((value) => value * 1e-3);
  const positions = 49;
  const constant = new Float32Array(positions * channels);
  for (let i = 0; i < positions; i++) constant.set(perChannel, i * channels);
  assert.deepEqual(Array.from(spatialMeanOnHost(constant, [1, 7, 7, channels])), Array.from(perChannel));
});

test('softmax rows, by hand and against a plain double softmax; each row on its own', () => {
  const rows = softmaxRows(Float32Array.from([0, Math.log(3), 5, 5]), 2);
  assert.deepEqual(Array.from(rows), [0.25, 0.75, 0.5, 0.5].map(Math.fround));
  const scores = values(1001, 11).map((value) => value * 20);
  const got = softmaxRows(scores, 1001);
  const max = Math.max(...scores);
  const sum = scores.reduce((total, score) => total + Math.exp(score - max), 0);
  scores.forEach((score, i) => assert.equal(got[i], Math.fround(Math.exp(score - max) / sum)));
  // Large scores do not overflow: the row's maximum is taken out first.
  assert.deepEqual(Array.from(softmaxRows(Float32Array.from([1000, 1000]), 2)), [0.5, 0.5]);
});
