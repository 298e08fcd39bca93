/**
 * Grad-CAM++ (Chattopadhyay et al. 2018), with pytorch-grad-cam's closed
 * form for the exponential score: alpha = g^2 / (2 g^2 + sum_hw(A) g^3 + eps),
 * 0 where g = 0; w_k = sum_hw ReLU(g) alpha.
 */
import * as tf from '../engine/tf.js';
import { type GradientEvidence, GradientCamMethod, spatialSum } from './base.js';

/** pytorch-grad-cam's epsilon. */
const EPSILON = 1e-6;

export class GradCamPlusPlus extends GradientCamMethod {
  readonly name = 'gradcampp';

  /** w_k [B, C]. */
  protected override channelWeights(evidence: GradientEvidence): tf.Tensor2D {
    return tf.tidy(() => {
      const grads = evidence.gradients;
      const [batch, , , channels] = grads.shape;
      const squared = tf.square(grads);
      const cubed = tf.mul(squared, grads);
      const activationSum = tf.reshape(spatialSum(evidence.activations), [batch, 1, 1, channels]);
      const alpha = tf.div(squared, tf.add(tf.add(tf.mul(squared, 2), tf.mul(activationSum, cubed)), EPSILON));
      const gatedAlpha = tf.where(tf.notEqual(grads, 0), alpha, tf.zerosLike(alpha));
      return spatialSum(tf.mul(tf.relu(grads), gatedAlpha));
    });
  }
}
