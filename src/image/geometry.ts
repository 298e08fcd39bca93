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
