/**
 * What a CAM method differentiates: a target turns a forward pass's values
 * into the scalar Y of each image (pytorch-grad-cam's targets:
 * ClassifierOutputTarget, ClassifierOutputSoftmaxTarget,
 * BinaryClassifierOutputTarget, SemanticSegmentationTarget,
 * SimilarityToConceptTarget). A target offers one Y per "unit" it can
 * explain (a class, an output unit, a segmentation class); the class
 * request picks the unit of each image, as `--class` does.
 */
import * as tf from '../../engine/tf.js';
import type { ForwardValues } from '../../executor/network.js';
import type { GraphNode } from '../../executor/graph.js';
import type { TargetRecord } from './spec.js';

export type { TargetRecord };

export interface Target {
  /** The target's name, as `--target` spells it (`function` for a user's function). */
  readonly kind: string;
  /**
   * Y of every row of `values` for every unit [rows, units]. `rows[i]` is
   * the image of the request that row i shows (Score-CAM's masked passes
   * show one image many times); targets that depend on the image (region)
   * read it.
   */
  scores(values: ForwardValues, rows: readonly number[]): tf.Tensor2D;
  /** The probability that goes with each score [rows, units], for targets that have one (class, prob, sigmoid). */
  probabilities?(values: ForwardValues): tf.Tensor2D;
  /**
   * When Y is `weight` times the unit's pre-activation class score
   * (`ForwardValues.scores`): the weight. Objectives of such targets carry
   * `scoreTerms`, which an executor may differentiate in closed form.
   */
  readonly classScoreWeight?: number;
  /** Layers the target reads (similarity's embedding): every pass fetches them. */
  readonly layers: readonly GraphNode[];
  /** Unit `unit` as the manifest records it. */
  describe(unit: number): TargetRecord;
}

/** [0, 1, ..., count - 1]: each row shows its own image. */
export function ownRows(count: number): number[] {
  return Array.from({ length: count }, (_, row) => row);
}

/** The number of rows (images) of a forward pass. */
export function rowCount(values: ForwardValues): number {
  return values.scores.shape[0];
}

/** A tensor as [rows, everything else]. */
export function flatRows(tensor: tf.Tensor, rows: number): tf.Tensor2D {
  return tf.reshape(tensor, [rows, -1]) as tf.Tensor2D;
}
