/**
 * What the metric files share: an image in model-input space, and one
 * metric's measurement of one map as perturbed images to run plus a rule
 * turning their class probabilities into values.
 */
import type { MetricValues } from './names.js';

/** One preprocessed image, row-major [height, width, channels] (the model's NHWC input). */
export interface PreprocessedImage {
  pixels: Float32Array;
  width: number;
  height: number;
  channels: number;
}

/** The class probabilities of the images every curve of an image starts or ends at. */
export interface ReferenceProbabilities {
  /** The image as it is. */
  original: number;
  /** Every pixel at zero (deletion's end). */
  zeros: number;
  /** The blurred copy (insertion's start). */
  blurred: number;
}

/** Writes one model input into `out` (its place in a batch): images are built when their batch runs, so that only a batch of them is held at once. */
export type ImageWriter = (out: Float32Array) => void;

/**
 * One metric on one map: the perturbed images it needs and how the class
 * probabilities of those images, in order, become its values.
 */
export interface Measurement {
  readonly images: readonly ImageWriter[];
  finish(probabilities: readonly number[]): MetricValues;
}

