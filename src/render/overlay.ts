/**
 * Heatmap over photo: out = (1 - alpha) * image + alpha * colour(heat), per
 * channel, rounded to the nearest byte.
 *
 * pytorch-grad-cam's show_cam_on_image also divides the blend by its maximum.
 * We do not: that rescales the brightness of the whole picture by whatever
 * its brightest blended pixel happens to be, so the same photo comes out
 * lighter or darker from image to image and method to method, and overlays
 * can no longer be compared side by side.
 */
import { type ColormapName, applyColormap } from './colormap.js';
import { overlayInto } from './kernels.js';

export interface OverlayOptions {
  /** Weight of the heatmap, 0..1; default 0.5. */
  alpha?: number;
  /** Default 'jet', as pytorch-grad-cam. */
  colormap?: ColormapName;
}

export const DEFAULT_OVERLAY_ALPHA = 0.5;
export const DEFAULT_OVERLAY_COLORMAP: ColormapName = 'jet';

/**
 * Blends `heat` (width * height values in 0..1, already at the image's size)
 * coloured by a colormap over `image` (packed RGB, 3 bytes a pixel).
 * Pass `out` to reuse a buffer; it may be `image` itself.
 */
export function overlayHeatmap(
  image: Uint8Array,
  heat: Float32Array,
  width: number,
  height: number,
  options: OverlayOptions = {},
  out?: Uint8Array,
): Uint8Array {
  const pixels = width * height;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`image size must be positive whole numbers, got ${width}x${height}`);
  }
  if (image.length !== pixels * 3) throw new RangeError(`image has ${image.length} bytes, expected ${pixels * 3} (RGB)`);
  if (heat.length !== pixels) throw new RangeError(`heatmap has ${heat.length} values, expected ${pixels}`);
  const result = out ?? new Uint8Array(pixels * 3);
  if (result.length !== pixels * 3) throw new RangeError(`output holds ${result.length} bytes, need ${pixels * 3}`);

  const alpha = options.alpha ?? DEFAULT_OVERLAY_ALPHA;
  if (!(alpha >= 0 && alpha <= 1)) throw new RangeError(`alpha must be in 0..1, got ${alpha}`);
  const colormap = options.colormap ?? DEFAULT_OVERLAY_COLORMAP;
  // Per channel Math.floor((1 - alpha) * byte + alpha * colour + 0.5 + 1e-9), in WebAssembly (kernels.ts). The 1e-9
  // makes blends that are exact halves in decimal round up even though alpha has no exact binary form (0.7 * 5 = 3.4999999999999996).
  overlayInto(image, heat, alpha, colormap, result);
  return result;
}

/** The heatmap alone (the `--heatmap-only` picture): `heat` coloured, packed RGB. */
export function heatmapImage(
  heat: Float32Array,
  colormap: ColormapName = DEFAULT_OVERLAY_COLORMAP,
  out?: Uint8Array,
): Uint8Array {
  return applyColormap(heat, colormap, out);
}
