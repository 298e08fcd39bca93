/**
 * Binary and multi-label heads (BinaryClassifierOutputTarget): Y is the
 * logit of output unit k, or, for the negative class of a single-unit head
 * (`--class neg`), the logit negated: sigmoid(-z) = 1 - sigmoid(z) is the
 * probability of the negative class, and -z its logit.
 */
import * as tf from '../../engine/tf.js';
import type { Executor } from '../../executor/executor.js';
import type { ForwardValues } from '../../executor/network.js';
import { type Target, type TargetRecord, classUnits } from './target.js';

export class SigmoidTarget implements Target {
  readonly kind = 'sigmoid';
  readonly layers = [];
  /** Y = +-logit: linear in the class scores. */
  readonly classScoreWeight: number;

  constructor(readonly negated = false) {
    this.classScoreWeight = negated ? -1 : 1;
  }

  scores(values: ForwardValues): tf.Tensor2D {
    return this.negated ? tf.neg(values.scores) : values.scores;
  }

  /** sigmoid(+-logit), whatever activation the model applies (a model may output logits for a sigmoid loss). */
  probabilities(values: ForwardValues): tf.Tensor2D {
    return tf.sigmoid(this.scores(values));
  }

  units(network: Executor): number | undefined {
    return classUnits(network);
  }

  describe(unit: number): TargetRecord {
    return { kind: this.kind, class: unit, negated: this.negated };
  }
}
