/**
 * Eigen-CAM (Muhammad & Yeasin 2020): the first principal component of the
 * activations, whatever the class; no gradients.
 */
import type * as tf from '../engine/tf.js';
import { type CamEvidence, CamMethod } from './base.js';
import { firstPrincipalProjection } from './projection.js';

export class EigenCam extends CamMethod {
  readonly name = 'eigencam';
  override readonly usesGradients = false;

  protected channelWeights(): tf.Tensor2D {
    throw new Error('Eigen-CAM has no channel weights');
  }

  protected override classMap(evidence: CamEvidence): tf.Tensor3D {
    return firstPrincipalProjection(evidence.activations);
  }
}
