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
import { UsageError } from '../util/errors.js';

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

  /**
   * @param units the target's units as the model's graph gives them
   *   (Target.units): classes beyond them are refused here, before any
   *   pass; when unknown, by `explained`, at the first pass.
   */
  constructor(
    request: ClassRequest,
    private readonly batch: number,
    private readonly units?: number,
  ) {
    checkClassRequest(request, units);
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
      // The count of objectives is fixed before the pass: more ranks than units gave classes of undefined (null in the records).
      const units = probabilities.shape[1];
      if (this.count > units) throw new UsageError(`top-k ${this.count} is more than the target's ${units} unit${units === 1 ? '' : 's'}`);
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
    if (this.units === undefined) refuseClassesBeyond(classes.flat(), scoreTensor!.shape[1]);
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

/**
 * A request's classes are whole numbers of at least 0 and below the
 * target's `units` (when known), and a top-k asks for at least one: the
 * library's callers give them unchecked (a k of 0 failed as "backward()
 * needs at least one objective", a class of 1.5 gave a map with a null
 * score).
 */
function checkClassRequest(request: ClassRequest, units: number | undefined): void {
  if (request.kind === 'top') {
    if (!(Number.isInteger(request.k) && request.k >= 1)) throw new UsageError(`top-k ${request.k} must be a whole number of at least 1`);
    return;
  }
  const classes: readonly number[] = request.kind === 'explicit' ? request.classes : request.classes.flat();
  const bad = classes.find((classIndex) => !(Number.isInteger(classIndex) && classIndex >= 0));
  if (bad !== undefined) throw new UsageError(`class ${bad} is not a class index (a whole number of at least 0)`);
  if (request.kind === 'explicit' && request.classes.length === 0) throw new UsageError('no class to explain: give at least one');
  if (units !== undefined) refuseClassesBeyond(classes, units);
}

/**
 * A class beyond the target's units is a usage error, for every method:
 * Score-CAM read it as undefined (a map with a score of null), the gradient
 * methods failed on its objective with a plain Error, after their passes.
 * Eigen-CAM, whose map no class changes, refuses it too: the class still
 * names its record (its score and probability) and its file.
 */
function refuseClassesBeyond(classes: readonly number[], units: number): void {
  const beyond = classes.find((classIndex) => classIndex >= units);
  if (beyond !== undefined) throw new UsageError(`class ${beyond} is out of range: the target has ${units} unit${units === 1 ? '' : 's'} (0-${units - 1})`);
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
