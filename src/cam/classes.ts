/**
 * Class selection, in one place: which class (unit of the target) each
 * image explains at each rank (given classes, or each image's top k from
 * the forward pass), the objectives that differentiate them, and their
 * scores.
 */
import * as tf from '../engine/tf.js';
import type { ForwardValues, Objective, ScoreTerm } from '../executor/network.js';
import { outputRows, topClassIndices } from '../model/predict.js';
import { type Target, type TargetLike, asTarget, ownRows } from './targets/index.js';

/** What the class score Y is: the pre-softmax logit (default) or the probability. */
import type { ScoreKind } from './names.js';

export type { ScoreKind };

/**
 * Which classes to explain: the same classes for every image, each image's
 * own list (`perImage[image][rank]`, equal lengths), or each image's top k.
 */
export type ClassRequest =
  | { kind: 'explicit'; classes: readonly number[] }
  | { kind: 'perImage'; classes: readonly (readonly number[])[] }
  | { kind: 'top'; k: number };

/** One explained class of one image, with the model's score and probability for it. */
export interface ExplainedClass {
  image: number;
  /** The explained unit of the target: a class, an output unit, a segmentation class (0 for similarity). */
  classIndex: number;
  /** The target's Y: the class's pre-softmax score for the default target. */
  score: number;
  /** The probability that goes with Y; null for targets without one (output, region, similarity, functions). */
  probability: number | null;
}

/**
 * The classes of each rank: explicit ones, or the top k of each image,
 * read from the first forward pass's probabilities.
 */
export class ClassChooser {
  private chosen: number[][] | undefined;
  readonly count: number;

  constructor(
    request: ClassRequest,
    private readonly batch: number,
  ) {
    if (request.kind === 'top') {
      this.count = request.k;
    } else if (request.kind === 'explicit') {
      this.count = request.classes.length;
      this.chosen = request.classes.map((index) => new Array<number>(batch).fill(index));
    } else {
      if (request.classes.length !== batch) throw new Error(`classes for ${request.classes.length} images, batch of ${batch}`);
      this.count = request.classes[0]?.length ?? 0;
      this.chosen = Array.from({ length: this.count }, (_, rank) => request.classes.map((classes) => classes[rank]!));
    }
  }

  /** Whether the classes are known without running the model (not a top-k request). */
  get known(): boolean {
    return this.chosen !== undefined;
  }

  /** [rank][image]; a top-k request needs the probabilities of the first forward pass. */
  ranks(probabilities?: tf.Tensor2D): number[][] {
    if (this.chosen === undefined) {
      if (probabilities === undefined) throw new Error('top-k classes need the model output');
      const tops = outputRows(probabilities).map((row) => topClassIndices(row, this.count));
      this.chosen = Array.from({ length: this.count }, (_, rank) => tops.map((top) => top[rank]!));
    }
    return this.chosen;
  }

  /** [image][rank] */
  perImage(probabilities?: tf.Tensor2D): number[][] {
    const ranks = this.ranks(probabilities);
    return Array.from({ length: this.batch }, (_, image) => ranks.map((classes) => classes[image]!));
  }

  /**
   * One objective per rank: the target's Y summed over the batch, each
   * image at its own class of that rank. Targets linear in the class scores
   * (class, sigmoid) say so through `scoreTerms`.
   */
  objectives(target: TargetLike): Objective[] {
    const resolved = asTarget(target);
    return Array.from({ length: this.count }, (_, rank) => {
      const objective = (values: ForwardValues): tf.Scalar =>
        tf.tidy(() => classScoreSum(resolved.scores(values, ownRows(this.batch)), this.rankedBy(values, resolved)[rank]!));
      const weight = resolved.classScoreWeight;
      if (weight === undefined) return objective;
      const scoreTerms = (values: ForwardValues): ScoreTerm[] =>
        this.rankedBy(values, resolved)[rank]!.map((classIndex, image) => ({ image, classIndex, weight }));
      return Object.assign(objective, { scoreTerms });
    });
  }

  /** [image][rank]: each explained class with the target's score and probability in `values`. */
  explained(values: ForwardValues, target: TargetLike = 'logit'): ExplainedClass[][] {
    const resolved = asTarget(target);
    const ranks = this.rankedBy(values, resolved);
    const classes = Array.from({ length: this.batch }, (_, image) => ranks.map((perImage) => perImage[image]!));
    // Tensors out of the scope, rows read after it: tidy walks every number of a returned array looking for tensors.
    const [scoreTensor, probabilityTensor] = tf.tidy(() => [resolved.scores(values, ownRows(this.batch)), resolved.probabilities?.(values)]);
    let scores: Float32Array[];
    let probabilities: Float32Array[] | undefined;
    try {
      scores = outputRows(scoreTensor!);
      probabilities = probabilityTensor === undefined ? undefined : outputRows(probabilityTensor);
    } finally {
      tf.dispose([scoreTensor!, ...(probabilityTensor === undefined ? [] : [probabilityTensor])]);
    }
    return classes.map((perRank, image) =>
      perRank.map((classIndex) => ({
        image,
        classIndex,
        score: scores[image]![classIndex]!,
        probability: probabilities?.[image]?.[classIndex] ?? null,
      })),
    );
  }

  /** The ranks, a top-k request resolved by the target's probabilities (or, without them, its scores). */
  private rankedBy(values: ForwardValues, target: Target): number[][] {
    if (this.chosen !== undefined) return this.chosen;
    return tf.tidy(() => this.ranks(target.probabilities?.(values) ?? target.scores(values, ownRows(this.batch))));
  }
}

/** Y summed over the batch, each image at its own class: one backward pass serves them all. */
export function classScoreSum(scores: tf.Tensor2D, classes: readonly number[]): tf.Scalar {
  return tf.tidy(() => {
    return tf.sum(tf.mul(scores, classMask(classes, scores.shape[1])));
  });
}

/**
 * Row i is one-hot at classes[i] ([B, N] float32). Built by comparison, not
 * `tf.oneHot`, which refuses a depth of 1: a single-unit (sigmoid) head has
 * one class.
 */
export function classMask(classes: readonly number[], count: number): tf.Tensor2D {
  return tf.tidy(() => {
    const wanted = tf.reshape(tf.tensor1d(classes as number[], 'int32'), [-1, 1]);
    return tf.cast(tf.equal(wanted, tf.range(0, count, 1, 'int32')), 'float32') as tf.Tensor2D;
  });
}
