/**
 * Confidence change, as pytorch-grad-cam's `CamMultImageConfidenceChange`
 * (the per-image term of Chattopadhay et al.'s Average Drop / Increase):
 * the model input multiplied by the normalised map, and
 * p(class | input x map) - p(class | input). Negative: the map kept less
 * than the model needed; positive: masking out the rest helped.
 */
import type { MetricValues } from './names.js';
import type { InputImage, Measurement } from './types.js';

/** The input multiplied, in every channel, by the map at input size. */
export function multiplyByMap(image: InputImage, saliency: Float32Array): Float32Array {
  const { pixels, channels } = image;
  const out = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) out[i] = pixels[i]! * saliency[Math.floor(i / channels)]!;
  return out;
}

export function confidenceChange(image: InputImage, saliency: Float32Array, original: number): Measurement {
  return {
    images: [() => multiplyByMap(image, saliency)],
    finish: ([masked]): MetricValues => ({ confidenceChange: masked! - original }),
  };
}
