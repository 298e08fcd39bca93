/** Grad-CAM (Selvaraju et al. 2017): w_k = spatial mean of dY/dA_k. */
import * as tf from '../engine/tf.js';
import { type GradientEvidence, GradientCamMethod } from './base.js';
import { spatialMeanOnHost } from './channel-weighted-map.js';

export class GradCam extends GradientCamMethod {
  readonly name = 'gradcam';

  /** Taken in double: a gradient the same at every position (a pooled linear head's) is then its own mean to the bit, as a planned run takes it. */
  protected override channelWeights({ gradients }: GradientEvidence): tf.Tensor2D {
    const [batch, , , channels] = gradients.shape;
    return tf.tensor2d(spatialMeanOnHost(gradients.dataSync() as Float32Array, gradients.shape), [batch, channels]);
  }
}
