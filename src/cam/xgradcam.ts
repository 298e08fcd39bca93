/** XGrad-CAM (Fu et al. 2020): w_k = sum_hw(g A) / (sum_hw(A) + eps). */
import * as tf from '../engine/tf.js';
import { type GradientEvidence, GradientCamMethod, spatialSum } from './base.js';

/** pytorch-grad-cam's epsilon. */
const EPSILON = 1e-7;

export class XGradCam extends GradientCamMethod {
  readonly name = 'xgradcam';

  protected override channelWeights({ activations, gradients }: GradientEvidence): tf.Tensor2D {
    return tf.div(spatialSum(tf.mul(gradients, activations)), tf.add(spatialSum(activations), EPSILON));
  }
}
