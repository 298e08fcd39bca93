/**
 * An explanation as a picture of the original image: the map upsampled to
 * the original's pixels (bilinear, half-pixel centres), min-max normalised,
 * coloured and blended; or, for the guided methods, the deprocessed input
 * gradient resampled onto the original.
 */
import type { FeatureMap } from '../cam/base.js';
import { type GuidedResult, deprocessGradient, guidedGradCam } from '../cam/guided.js';
import type { ImageGeometry } from '../image/geometry.js';
import type { ColormapName } from './colormap.js';
import { argmax, minMaxNormalize } from './normalize.js';
import { DEFAULT_OVERLAY_ALPHA, DEFAULT_OVERLAY_COLORMAP, heatmapImage, overlayHeatmap } from './overlay.js';
import { mapToOriginal, resizeBilinear } from './resize.js';

export interface ExplanationImageOptions {
  colormap?: ColormapName;
  /** Weight of the heatmap in the blend. */
  alpha?: number;
  /** The coloured map alone, not blended. */
  heatmapOnly?: boolean;
  /** The model's preprocessing: `caffe` feeds BGR, so guided gradients are reordered. */
  preprocess?: string;
  /**
   * A buffer of the original's pixel count to upsample into, reused between
   * images by folder runs (allocating and zeroing it costs more than the
   * upsampling). The returned `heat` is then that buffer.
   */
  scratch?: Float32Array;
}

export interface ExplanationImage {
  width: number;
  height: number;
  rgb: Uint8Array;
  /** The normalised map at the original's size (absent for guided backprop alone). */
  heat?: Float32Array;
  /** Guided methods: the gradient shown (times the Grad-CAM map for Guided Grad-CAM), [H, W, 3] at input size. */
  gradient?: Float32Array;
  /** The maximum of the upsampled map (or of the guided gradient), in original pixels. */
  peak: { x: number; y: number };
}

export interface OriginalImage {
  original: { width: number; height: number; rgb: Uint8Array };
  geometry: ImageGeometry;
}

export function renderExplanation(
  map: FeatureMap | undefined,
  guided: GuidedResult | undefined,
  image: OriginalImage,
  options: ExplanationImageOptions = {},
): ExplanationImage {
  const { original, geometry } = image;
  if (map === undefined && guided === undefined) throw new Error('nothing to render: no map and no guided gradient');
  // Normalised in place: one buffer the size of the original, not two.
  const scratch = options.scratch?.length === original.width * original.height ? options.scratch : undefined;
  const upsampled = map === undefined ? undefined : mapToOriginal(map.data, map.width, map.height, geometry, scratch);
  const heat = upsampled === undefined ? undefined : minMaxNormalize(upsampled, upsampled);
  let rgb: Uint8Array;
  let gradient: Float32Array | undefined;
  if (guided !== undefined) {
    gradient = map === undefined ? guided.gradient : guidedGradCam(guided, mapAtInput(map, geometry));
    rgb = gradientToOriginal(displayOrder(gradient, options.preprocess), guided.width, guided.height, geometry);
  } else if (options.heatmapOnly) {
    rgb = heatmapImage(heat!, options.colormap ?? DEFAULT_OVERLAY_COLORMAP);
  } else {
    rgb = overlayHeatmap(original.rgb, heat!, original.width, original.height, {
      alpha: options.alpha ?? DEFAULT_OVERLAY_ALPHA,
      colormap: options.colormap ?? DEFAULT_OVERLAY_COLORMAP,
    });
  }
  const peak = heat === undefined ? gradientPeak(guided!, geometry) : argmax(heat, original.width)!;
  return {
    width: original.width,
    height: original.height,
    rgb,
    ...(heat === undefined ? {} : { heat }),
    ...(gradient === undefined ? {} : { gradient }),
    peak: { x: peak.x, y: peak.y },
  };
}

/** The normalised map at model-input resolution (for Guided Grad-CAM). */
function mapAtInput(map: FeatureMap, geometry: ImageGeometry): Float32Array {
  return minMaxNormalize(resizeBilinear(map.data, map.width, map.height, geometry.input.width, geometry.input.height));
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

/** A deprocessed gradient image resampled onto the original image's pixels. */
function gradientToOriginal(gradient: Float32Array, width: number, height: number, geometry: ImageGeometry): Uint8Array {
  const bytes = deprocessGradient(gradient);
  const pixels = geometry.original.width * geometry.original.height;
  const out = new Uint8Array(pixels * 3);
  const channel = new Float32Array(width * height);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < channel.length; i++) channel[i] = bytes[i * 3 + c]!;
    const resampled = mapToOriginal(channel, width, height, geometry);
    for (let i = 0; i < pixels; i++) out[i * 3 + c] = Math.round(Math.min(255, Math.max(0, resampled[i]!)));
  }
  return out;
}

/** Where the guided gradient is strongest, in original pixels. */
function gradientPeak(guided: GuidedResult, geometry: ImageGeometry): { x: number; y: number } {
  const magnitude = new Float32Array(guided.width * guided.height);
  for (let i = 0; i < magnitude.length; i++) {
    magnitude[i] = Math.hypot(guided.gradient[i * 3]!, guided.gradient[i * 3 + 1]!, guided.gradient[i * 3 + 2]!);
  }
  return argmax(mapToOriginal(magnitude, guided.width, guided.height, geometry), geometry.original.width)!;
}
