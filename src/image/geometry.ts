/**
 * How a model input was made from an original image, so that maps computed
 * at model resolution can be drawn back onto the original.
 */
export const RESIZE_MODES = ['stretch', 'crop', 'pad'] as const;
export type ResizeMode = (typeof RESIZE_MODES)[number];

/** Transparency is flattened onto (and `pad` pads with) this colour unless told otherwise. */
export const DEFAULT_BACKGROUND = '#ffffff';
/** Larger images are refused before decoding: a guard against decompression bombs. */
export const DEFAULT_MAX_PIXELS = 100_000_000;
/**
 * Larger images are decoded straight to this long side (the picture maps are
 * drawn on, and the model input is made from): an overlay at full resolution
 * of a 100 MP photo would be 300 MB of RGB, and no screen shows it whole.
 */
export const DEFAULT_MAX_OVERLAY_SIDE = 4096;

/** A rectangle in pixels; x, y is the top-left corner. Fractions allowed. */
export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface Size {
  width: number;
  height: number;
}

export interface ImageGeometry {
  mode: ResizeMode;
  /** The original image after EXIF orientation. */
  original: Size;
  /** The model input. */
  input: Size;
  /** The part of the original image the model sees (original pixels). */
  sourceBox: Box;
  /** Where `sourceBox` lands in the model input (input pixels). */
  inputBox: Box;
}

/**
 * `size` shrunk, keeping its aspect ratio, so that its long side is `maxSide`
 * when it is longer (0: no limit); otherwise unchanged.
 */
export function overlaySize(size: Size, maxSide: number): Size {
  const longSide = Math.max(size.width, size.height);
  if (maxSide === 0 || longSide <= maxSide) return { width: size.width, height: size.height };
  const scale = maxSide / longSide;
  const side = (length: number): number => Math.min(maxSide, Math.max(1, Math.round(length * scale)));
  return { width: side(size.width), height: side(size.height) };
}
