/**
 * An explanation as a picture of the original image: the map upsampled to
 * the original's pixels (bilinear, half-pixel centres), min-max normalised,
 * coloured and blended; or, for the guided methods, the deprocessed input
 * gradient resampled onto the original. Only drawing: the map and the
 * gradient come computed (Guided Grad-CAM's product included).
 */
import type { ColormapName } from './colormap.js';
import { gradientPeak, gradientPicture } from './gradient.js';
import type { FeatureMap, GradientImage } from './maps.js';
import { minMaxNormalizeWithPeak } from './normalize.js';
import { DEFAULT_OVERLAY_ALPHA, DEFAULT_OVERLAY_COLORMAP, heatmapImage, overlayHeatmap } from './overlay.js';
import { mapToOriginalWithRange } from './resize.js';
import type { ImageGeometry } from '../image/geometry.js';

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
  /**
   * The caller needs the original's pixels no more (its last picture of
   * that image): the overlay is blended over them in place, rather than
   * into a new buffer the size of the photo (0.2 ms an image of the bench's
   * photos: allocating, zeroing and first touching it).
   */
  blendIntoOriginal?: boolean;
}

export interface ExplanationImage {
  width: number;
  height: number;
  rgb: Uint8Array;
  /** The normalised map at the original's size (absent for guided backprop alone). */
  heat?: Float32Array;
  /** The maximum of the upsampled map (else of the gradient's norm), in original pixels. */
  peak: { x: number; y: number };
}

export interface OriginalImage {
  original: { width: number; height: number; rgb: Uint8Array };
  geometry: ImageGeometry;
}

/**
 * The picture of one explanation: the gradient image when there is one
 * (guided methods), else the map, coloured and blended. The peak and `heat`
 * come from the map when there is one.
 */
export function renderExplanation(
  map: FeatureMap | undefined,
  gradient: GradientImage | undefined,
  image: OriginalImage,
  options: ExplanationImageOptions = {},
): ExplanationImage {
  const { original, geometry } = image;
  if (map === undefined && gradient === undefined) throw new Error('nothing to render: no map and no gradient');
  // Normalised in place: one buffer the size of the original, not two.
  const scratch = options.scratch?.length === original.width * original.height ? options.scratch : undefined;
  const upsampled = map === undefined ? undefined : mapToOriginalWithRange(map.data, map.width, map.height, geometry, scratch);
  const normalized = upsampled === undefined ? undefined : minMaxNormalizeWithPeak(upsampled.resampled, original.width, upsampled.resampled, upsampled.range);
  const heat = normalized?.normalized;
  let rgb: Uint8Array;
  if (gradient !== undefined) {
    rgb = gradientPicture(gradient, geometry, options.preprocess);
  } else if (options.heatmapOnly) {
    rgb = heatmapImage(heat!, options.colormap ?? DEFAULT_OVERLAY_COLORMAP);
  } else {
    rgb = overlayHeatmap(
      original.rgb,
      heat!,
      original.width,
      original.height,
      { alpha: options.alpha ?? DEFAULT_OVERLAY_ALPHA, colormap: options.colormap ?? DEFAULT_OVERLAY_COLORMAP },
      options.blendIntoOriginal === true ? original.rgb : undefined,
    );
  }
  const peak = normalized === undefined ? gradientPeak(gradient!, geometry) : normalized.peak;
  return {
    width: original.width,
    height: original.height,
    rgb,
    ...(heat === undefined ? {} : { heat }),
    peak: { x: peak.x, y: peak.y },
  };
}
