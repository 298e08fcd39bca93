/**
 * HiResCAM (Draelos & Carin 2020): the gradient weighs each activation
 * element itself, without spatial averaging: cam = sum_k g_k * A_k.
 */
import * as tf from '../engine/tf.js';
import { type CamEvidence, CamMethod } from './base.js';

export class HiResCam extends CamMethod {
  readonly name = 'hirescam';

  protected channelWeights(): tf.Tensor2D {
    throw new Error('HiResCAM weighs elements, not channels');
  }

  protected override weightedActivations(evidence: CamEvidence): tf.Tensor4D {
    return tf.mul(evidence.gradients!, evidence.activations);
  }
}
