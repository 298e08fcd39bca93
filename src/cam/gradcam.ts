/** Grad-CAM (Selvaraju et al. 2017): w_k = spatial mean of dY/dA_k. */
import type * as tf from '../engine/tf.js';
import { type CamEvidence, CamMethod, spatialMean } from './base.js';

export class GradCam extends CamMethod {
  readonly name = 'gradcam';

  protected channelWeights(evidence: CamEvidence): tf.Tensor2D {
    return spatialMean(evidence.gradients!);
  }
}
