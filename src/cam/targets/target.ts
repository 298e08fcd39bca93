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
import type { Executor } from '../../executor/executor.js';
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
  /**
   * How many units the target offers on `network` (the width of `scores`),
   * as the model's graph gives it before any pass; undefined when a
   * dimension is known only once the model runs. Classes beyond them are
   * refused before any work (ClassChooser); without this method, at the
   * first pass.
   */
  units?(network: Executor): number | undefined;
  /** Unit `unit` as the manifest records it. */
  describe(unit: number): TargetRecord;
}

/** The shape of graph value `key` as the node making it gives it; empty when no node makes it (a model input). */
export function valueShape(network: Executor, key: string): readonly (number | null)[] {
  const node = network.graph.producer(key);
  return node?.outputShapes[Math.max(0, node.outputs.indexOf(key))] ?? [];
}

/** The units of one image of an output shape [batch, ...]; undefined when a dimension is unknown. */
export function unitCount(shape: readonly (number | null)[]): number | undefined {
  const dims = shape.slice(1);
  if (dims.some((dim) => dim === null)) return undefined;
  return dims.reduce<number>((product, dim) => product * (dim as number), 1);
}

/** The units of the model's class head (or, without one, of its output): what class, prob and sigmoid targets explain. */
export function classUnits(network: Executor): number | undefined {
  return unitCount(valueShape(network, network.score.outputKey));
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
