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
import { type ColormapName, applyColormap, colormapIndex, sharedLut } from './colormap.js';

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
  const colormap = options.colormap ?? DEFAULT_OVERLAY_COLORMAP;
  const blend = colourBlendTableWhenReused(alpha, colormap);
  if (blend === undefined) return blendThroughColormap(image, heat, pixels, blendTable(alpha), sharedLut(colormap), result);
  // Every read below is in range (sizes checked above; the table index is
  // below 256 * 768 by construction), so the per-pixel typed-array reads
  // carry `!` rather than an undefined check.
  for (let i = 0, o = 0; i < pixels; i++, o += 3) {
    const k = colormapIndex(heat[i]!) * 768;
    result[o] = blend[k | image[o]!]!;
    result[o + 1] = blend[(k + 256) | image[o + 1]!]!;
    result[o + 2] = blend[(k + 512) | image[o + 2]!]!;
  }
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

let cachedAlpha = Number.NaN;
let cachedTable = new Uint8Array(0);

/**
 * All 256 x 256 blends of an image byte (high 8 bits of the index) with a
 * heat byte (low 8 bits) for one alpha, so the per-pixel work is a lookup.
 */
function blendTable(alpha: number): Uint8Array {
  if (!(alpha >= 0 && alpha <= 1)) throw new RangeError(`alpha must be in 0..1, got ${alpha}`);
  if (alpha === cachedAlpha) return cachedTable;
  const table = new Uint8Array(256 * 256);
  const keep = 1 - alpha;
  for (let image = 0; image < 256; image++) {
    for (let heat = 0; heat < 256; heat++) {
      // The 1e-9 makes blends that are exact halves in decimal round up even
      // though alpha has no exact binary form (0.7 * 5 = 3.4999999999999996).
      table[(image << 8) | heat] = Math.floor(keep * image + alpha * heat + 0.5 + 1e-9);
    }
  }
  cachedAlpha = alpha;
  cachedTable = table;
  return table;
}

/**
 * The blend of the first overlay of some options: the colormap's entry, then
 * blendTable (six lookups a pixel). The same values as colourBlendTable's.
 */
function blendThroughColormap(image: Uint8Array, heat: Float32Array, pixels: number, blend: Uint8Array, lut: Uint8Array, result: Uint8Array): Uint8Array {
  // In range by construction (see overlayHeatmap): `!` rather than undefined checks.
  for (let i = 0, o = 0; i < pixels; i++, o += 3) {
    const k = colormapIndex(heat[i]!) * 3;
    result[o] = blend[(image[o]! << 8) | lut[k]!]!;
    result[o + 1] = blend[(image[o + 1]! << 8) | lut[k + 1]!]!;
    result[o + 2] = blend[(image[o + 2]! << 8) | lut[k + 2]!]!;
  }
  return result;
}

let cachedColourKey = '';
let cachedColourTable = new Uint8Array(0);
/** The options of the last overlay made without the per-colour table. */
let onceUsedColourKey = '';

/**
 * The per-colour table of these options from their second overlay in a
 * row on; undefined for the first. Building it costs about 7 ms in a fresh
 * process (196,608 entries, before the JIT has warmed up), more than it
 * saves on one photo (0.6-0.8 ms): a one-image run never builds it, a
 * folder run builds it at its second image.
 */
function colourBlendTableWhenReused(alpha: number, colormap: ColormapName): Uint8Array | undefined {
  const key = `${alpha} ${colormap}`;
  if (key === cachedColourKey) return cachedColourTable;
  if (key !== onceUsedColourKey) {
    onceUsedColourKey = key;
    return undefined;
  }
  return colourBlendTable(alpha, colormap);
}

/**
 * blendTable rearranged per colormap entry and channel: entry k's channel c
 * blended with image byte b is at ((3k + c) << 8) | b (192 KiB). A pixel
 * then takes three lookups instead of six (the colormap's and the blend's):
 * 1.0-1.2 ms an overlay of the bench's photos instead of 1.8 (CPU). The
 * values are blendTable's, so the pixels are the same.
 */
function colourBlendTable(alpha: number, colormap: ColormapName): Uint8Array {
  const key = `${alpha} ${colormap}`;
  if (key === cachedColourKey) return cachedColourTable;
  const blend = blendTable(alpha);
  const lut = sharedLut(colormap);
  const table = new Uint8Array(lut.length * 256);
  for (let j = 0; j < lut.length; j++) {
    const heat = lut[j]!;
    for (let image = 0; image < 256; image++) table[(j << 8) | image] = blend[(image << 8) | heat]!;
  }
  cachedColourKey = key;
  cachedColourTable = table;
  return table;
}
