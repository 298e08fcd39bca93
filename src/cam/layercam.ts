/**
 * LayerCAM (Jiang et al. 2021): each element weighted by its positive
 * gradient: cam = sum_k ReLU(g_k) * A_k. Works at shallow layers too.
 */
import * as tf from '../engine/tf.js';
import { type GradientEvidence, GradientCamMethod } from './base.js';

export class LayerCam extends GradientCamMethod {
  readonly name = 'layercam';

  protected override weightedActivations(evidence: GradientEvidence): tf.Tensor4D {
    return tf.mul(tf.relu(evidence.gradients), evidence.activations);
  }
}
