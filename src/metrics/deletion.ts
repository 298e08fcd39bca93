/**
 * Deletion (Petsiuk et al. 2018, RISE's `CausalMetric` in 'del' mode): the
 * most relevant pixels first are set to the baseline, zero in model-input
 * space (RISE's `torch.zeros_like` substrate), in `steps` steps; the score
 * is the area under the class probability curve. Lower is better: a
 * faithful map names the pixels whose loss hurts most.
 */
import { causalCurve } from './curve.js';
import type { PreprocessedImage, Measurement, ReferenceProbabilities } from './types.js';

/** The input with every pixel deleted. */
export function deletedImage(image: PreprocessedImage): Float32Array {
  return new Float32Array(image.pixels.length);
}

export function deletion(image: PreprocessedImage, order: Int32Array, steps: number, references: ReferenceProbabilities): Measurement {
  const ends = { start: image.pixels, finish: deletedImage(image), first: references.original, last: references.zeros };
  return causalCurve(image, ends, order, steps, (auc) => ({ deletionAuc: auc }));
}
