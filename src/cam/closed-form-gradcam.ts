/**
 * Grad-CAM through a pooled linear head, in closed form on plain arrays:
 * what a planned run computes (tasks/planned-cam.ts), which loads no tfjs.
 * Through global average pooling and a linear classifier, dY/dA_k is the
 * same at every position of channel k (executor/closed-form.ts), so its
 * spatial mean, Grad-CAM's weight w_k, is that value, and the map is
 * ReLU(Σ_k w_k · A_k): the map gradcam.ts computes from the executor's
 * gradients, up to the order of float32 sums (within 1e-5 of the peak;
 * test/planned-run.test.ts).
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
  const data = new Float32Array(positions);
  if (channelAxis === 1) {
    for (let k = 0; k < channels; k++) {
      const weight = weights[k]!;
      const plane = k * positions;
      for (let i = 0; i < positions; i++) data[i] = data[i]! + weight * activations[plane + i]!;
    }
  } else {
    for (let i = 0; i < positions; i++) {
      let sum = 0;
      const row = i * channels;
      for (let k = 0; k < channels; k++) sum += weights[k]! * activations[row + k]!;
      data[i] = sum;
    }
  }
  // ReLU; a NaN (which the scores' check refuses before) would stay one.
  for (let i = 0; i < positions; i++) if (data[i]! < 0) data[i] = 0;
  return { width, height, data };
}
