/**
 * The plain pictures the explanation methods hand to rendering: a map and a
 * gradient image, as typed arrays with their size. `cam/` produces them;
 * render only draws them.
 */

/** A single-channel map, row-major. */
export interface FeatureMap {
  width: number;
  height: number;
  data: Float32Array;
}

/** An input-space gradient, [height, width, 3] row-major, in the model input's channel order. */
export interface GradientImage {
  width: number;
  height: number;
  data: Float32Array;
}
