/**
 * LayerCAM (Jiang et al. 2021): each element weighted by its positive
 * gradient: cam = sum_k ReLU(g_k) * A_k. Works at shallow layers too.
 */
import * as tf from '../engine/tf.js';
import { type CamEvidence, CamMethod } from './base.js';

export class LayerCam extends CamMethod {
  readonly name = 'layercam';

  protected channelWeights(): tf.Tensor2D {
    throw new Error('LayerCAM weighs elements, not channels');
  }

  protected override weightedActivations(evidence: CamEvidence): tf.Tensor4D {
    return tf.mul(tf.relu(evidence.gradients!), evidence.activations);
  }
}
