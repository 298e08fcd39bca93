/** XGrad-CAM (Fu et al. 2020): w_k = sum_hw(g A) / (sum_hw(A) + eps). */
import * as tf from '../engine/tf.js';
import { type CamEvidence, CamMethod, spatialSum } from './base.js';

/** pytorch-grad-cam's epsilon. */
const EPSILON = 1e-7;

export class XGradCam extends CamMethod {
  readonly name = 'xgradcam';

  protected channelWeights(evidence: CamEvidence): tf.Tensor2D {
    return tf.tidy(() =>
      tf.div(spatialSum(tf.mul(evidence.gradients!, evidence.activations)), tf.add(spatialSum(evidence.activations), EPSILON)),
    );
  }
}
