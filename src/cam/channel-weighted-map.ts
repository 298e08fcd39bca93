/**
 * The map of a method that weighs each channel (Grad-CAM, Grad-CAM++,
 * XGrad-CAM, CAM, Score-CAM): ReLU(Σ_k w_k · A_k), on plain arrays. One
 * arithmetic for the CAM base (base.ts, activations [1, h, w, C]) and for
 * a planned run (tasks/planned-cam.ts, ONNX Runtime's [1, C, h, w]), which
 * loads no tfjs: each position's sum is taken in double, channel by
 * channel in order, and rounded to float32 once, so that both layouts give
 * the same map to the bit, and a one-image run from a plan writes the
 * PNG a folder run writes.
 */
import type { FeatureMap } from '../render/maps.js';

/**
 * The map of one image's activations `activations` ([1, a, b, c], the
 * channels on `channelAxis`: 1 for NCHW, 3 for NHWC) weighed per channel
 * by `weights`.
 */
export function channelWeightedMap(activations: Float32Array, dims: readonly [number, number, number, number], channelAxis: 1 | 3, weights: Float32Array): FeatureMap {
  const [, a, b, c] = dims;
  const [height, width, channels] = channelAxis === 1 ? [b, c, a] : [a, b, c];
  const positions = height * width;
  if (weights.length !== channels || activations.length !== positions * channels) throw new Error(`activations [${dims.join(', ')}] do not take ${weights.length} channel weights`);
  const sums = new Float64Array(positions);
  if (channelAxis === 1) {
    for (let k = 0; k < channels; k++) {
      const weight = weights[k]!;
      const plane = k * positions;
      for (let i = 0; i < positions; i++) sums[i] = sums[i]! + weight * activations[plane + i]!;
    }
  } else {
    // Four positions at a time: four independent sums, each still taken channel by channel in order.
    let i = 0;
    for (; i + 4 <= positions; i += 4) {
      const r0 = i * channels;
      const r1 = r0 + channels;
      const r2 = r1 + channels;
      const r3 = r2 + channels;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let k = 0; k < channels; k++) {
        const weight = weights[k]!;
        s0 += weight * activations[r0 + k]!;
        s1 += weight * activations[r1 + k]!;
        s2 += weight * activations[r2 + k]!;
        s3 += weight * activations[r3 + k]!;
      }
      sums[i] = s0;
      sums[i + 1] = s1;
      sums[i + 2] = s2;
      sums[i + 3] = s3;
    }
    for (; i < positions; i++) {
      let sum = 0;
      const row = i * channels;
      for (let k = 0; k < channels; k++) sum += weights[k]! * activations[row + k]!;
      sums[i] = sum;
    }
  }
  const data = new Float32Array(positions);
  // ReLU; a NaN stays one, as tf.relu leaves it.
  for (let i = 0; i < positions; i++) data[i] = sums[i]! < 0 ? 0 : sums[i]!;
  return { width, height, data };
}

/**
 * The spatial mean of each channel of NHWC `values` [B, h, w, C], per
 * image: [B * C], taken in double. A gradient the same at every position
 * (a pooled linear head's: executor/closed-form.ts) is its own mean to the
 * bit, as a planned run takes it.
 */
export function spatialMeanOnHost(values: Float32Array, [batch, height, width, channels]: readonly [number, number, number, number]): Float32Array {
  const positions = height * width;
  const means = new Float32Array(batch * channels);
  const end = positions * channels;
  for (let image = 0; image < batch; image++) {
    const image0 = image * end;
    const out = image * channels;
    // Four channels at a time: four independent sums, each still taken position by position in order.
    let k = 0;
    for (; k + 4 <= channels; k += 4) {
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let i = image0 + k; i < image0 + end; i += channels) {
        s0 += values[i]!;
        s1 += values[i + 1]!;
        s2 += values[i + 2]!;
        s3 += values[i + 3]!;
      }
      means[out + k] = s0 / positions;
      means[out + k + 1] = s1 / positions;
      means[out + k + 2] = s2 / positions;
      means[out + k + 3] = s3 / positions;
    }
    for (; k < channels; k++) {
      let sum = 0;
      for (let i = image0 + k; i < image0 + end; i += channels) sum += values[i]!;
      means[out + k] = sum / positions;
    }
  }
  return means;
}
