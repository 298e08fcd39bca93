/**
 * Drawing an input-space gradient (guided backprop, Guided Grad-CAM) as a
 * picture of the original image.
 */
import type { ImageGeometry } from '../image/geometry.js';
import type { GradientImage } from './maps.js';
import { argmax } from './normalize.js';
import { mapToOriginal } from './resize.js';

/**
 * pytorch-grad-cam's `deprocess_image`: standardise, scale by 0.1, centre
 * on 0.5, clip to [0, 1]; as 0-255 bytes.
 */
export function deprocessGradient(gradient: Float32Array): Uint8Array {
  let mean = 0;
  for (const value of gradient) mean += value;
  mean /= gradient.length;
  let variance = 0;
  for (const value of gradient) variance += (value - mean) ** 2;
  const std = Math.sqrt(variance / gradient.length);
  const out = new Uint8Array(gradient.length);
  for (let i = 0; i < gradient.length; i++) {
    const value = ((gradient[i]! - mean) / (std + 1e-5)) * 0.1 + 0.5;
    out[i] = Math.round(Math.min(1, Math.max(0, value)) * 255);
  }
  return out;
}

/**
 * The deprocessed gradient resampled onto the original image's pixels, as
 * RGB bytes; `caffe` preprocessing feeds BGR, so its gradients are reordered.
 */
export function gradientPicture(gradient: GradientImage, geometry: ImageGeometry, preprocess: string | undefined): Uint8Array {
  const bytes = deprocessGradient(displayOrder(gradient.data, preprocess));
  const pixels = geometry.original.width * geometry.original.height;
  const out = new Uint8Array(pixels * 3);
  const channel = new Float32Array(gradient.width * gradient.height);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < channel.length; i++) channel[i] = bytes[i * 3 + c]!;
    const resampled = mapToOriginal(channel, gradient.width, gradient.height, geometry);
    for (let i = 0; i < pixels; i++) out[i * 3 + c] = Math.round(Math.min(255, Math.max(0, resampled[i]!)));
  }
  return out;
}

/** Where the gradient is strongest (largest per-pixel norm), in original pixels. */
export function gradientPeak(gradient: GradientImage, geometry: ImageGeometry): { x: number; y: number } {
  const { data } = gradient;
  const magnitude = new Float32Array(gradient.width * gradient.height);
  for (let i = 0; i < magnitude.length; i++) magnitude[i] = Math.hypot(data[i * 3]!, data[i * 3 + 1]!, data[i * 3 + 2]!);
  return argmax(mapToOriginal(magnitude, gradient.width, gradient.height, geometry), geometry.original.width)!;
}

/** Input-space gradients in RGB order (caffe preprocessing feeds BGR). */
function displayOrder(gradient: Float32Array, preprocess: string | undefined): Float32Array {
  if (preprocess !== 'caffe') return gradient;
  const out = new Float32Array(gradient.length);
  for (let i = 0; i < gradient.length; i += 3) {
    out[i] = gradient[i + 2]!;
    out[i + 1] = gradient[i + 1]!;
    out[i + 2] = gradient[i]!;
  }
  return out;
}
