/**
 * The classifier's targets: the pre-softmax score (logit) of a class
 * (ClassifierOutputTarget, the default) and its softmax probability
 * (ClassifierOutputSoftmaxTarget; `--score prob` is the same target).
 */
import type * as tf from '../../engine/tf.js';
import type { Executor } from '../../executor/executor.js';
import type { ForwardValues } from '../../executor/network.js';
import type { ScoreKind } from '../names.js';
import { type Target, type TargetRecord, classUnits } from './target.js';

/** What the classifier's targets share: the unit is a class, the probability the model's. */
abstract class ClassifierTarget implements Target {
  abstract readonly kind: string;
  readonly layers = [];

  abstract scores(values: ForwardValues): tf.Tensor2D;

  probabilities(values: ForwardValues): tf.Tensor2D {
    return values.probabilities;
  }

  units(network: Executor): number | undefined {
    return classUnits(network);
  }

  describe(unit: number): TargetRecord {
    return { kind: this.kind, class: unit };
  }
}

/** The logit of a class: linear in the class scores. */
export class ClassTarget extends ClassifierTarget {
  readonly kind = 'class';
  readonly classScoreWeight = 1;

  scores(values: ForwardValues): tf.Tensor2D {
    return values.scores;
  }
}

/** The probability of a class: not linear in the class scores (no closed form). */
export class ProbTarget extends ClassifierTarget {
  readonly kind = 'prob';

  scores(values: ForwardValues): tf.Tensor2D {
    return values.probabilities;
  }
}

/** The target `--score` names: one code path for `--score prob` and `--target prob`. */
export function scoreTarget(score: ScoreKind): Target {
  return score === 'prob' ? new ProbTarget() : new ClassTarget();
}
