/**
 * A map as the metrics read it: min-max normalised at its own resolution,
 * then upsampled bilinearly (half-pixel centres) to the model input, which
 * is what pytorch-grad-cam's `scale_cam_image` hands its metrics; and the
 * order in which the pixels count as most relevant.
 */
import type { FeatureMap } from '../render/maps.js';
import { minMaxNormalize } from '../render/normalize.js';
import { resizeBilinear } from '../render/resize.js';

/** The normalised map at the model input's `width` x `height`, values in [0, 1]. */
export function inputSaliency(map: FeatureMap, width: number, height: number): Float32Array {
  const normalised = minMaxNormalize(map.data);
  if (map.width === width && map.height === height) return normalised;
  return resizeBilinear(normalised, map.width, map.height, width, height);
}

/** Pixel indices, most relevant first; equal values in reading order, so that ties break the same way every run. */
export function relevanceOrder(saliency: Float32Array): Int32Array {
  return Int32Array.from(saliency.keys()).sort((a, b) => saliency[b]! - saliency[a]! || a - b);
}
