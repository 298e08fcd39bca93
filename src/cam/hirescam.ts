/**
 * HiResCAM (Draelos & Carin 2020): the gradient weighs each activation
 * element itself, without spatial averaging: cam = sum_k g_k * A_k.
 */
import * as tf from '../engine/tf.js';
import { type GradientEvidence, GradientCamMethod } from './base.js';

export class HiResCam extends GradientCamMethod {
  readonly name = 'hirescam';

  protected override weightedActivations(evidence: GradientEvidence): tf.Tensor4D {
    return tf.mul(evidence.gradients, evidence.activations);
  }
}
