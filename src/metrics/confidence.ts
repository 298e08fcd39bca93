/**
 * Confidence change, as pytorch-grad-cam's `CamMultImageConfidenceChange`
 * (the per-image term of Chattopadhay et al.'s Average Drop / Increase):
 * the model input multiplied by the normalised map, and
 * p(class | input x map) - p(class | input). Negative: the map kept less
 * than the model needed; positive: masking out the rest helped.
 */
import type { MetricValues } from './names.js';
import type { PreprocessedImage, Measurement } from './types.js';

/** The input multiplied, in every channel, by the map at input size, written into `out`. */
export function multiplyByMap(image: PreprocessedImage, saliency: Float32Array, out: Float32Array): void {
  const { pixels, channels } = image;
  for (let i = 0; i < pixels.length; i++) out[i] = pixels[i]! * saliency[Math.floor(i / channels)]!;
}

export function confidenceChange(image: PreprocessedImage, saliency: Float32Array, original: number): Measurement {
  return {
    images: [(out) => multiplyByMap(image, saliency, out)],
    finish: ([masked]): MetricValues => ({ confidenceChange: masked! - original }),
  };
}
