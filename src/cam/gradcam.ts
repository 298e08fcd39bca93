/** Grad-CAM (Selvaraju et al. 2017): w_k = spatial mean of dY/dA_k. */
import type * as tf from '../engine/tf.js';
import { type GradientEvidence, GradientCamMethod, spatialMean, weighChannels } from './base.js';

export class GradCam extends GradientCamMethod {
  readonly name = 'gradcam';

  protected weightedActivations(evidence: GradientEvidence): tf.Tensor4D {
    return weighChannels(evidence.activations, spatialMean(evidence.gradients));
  }
}
