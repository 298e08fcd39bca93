/**
 * Eigen-CAM (Muhammad & Yeasin 2020): the first principal component of the
 * activations, whatever the class; no gradients.
 */
import type * as tf from '../engine/tf.js';
import { ActivationCamMethod, type Evidence } from './base.js';

export class EigenCam extends ActivationCamMethod {
  readonly name = 'eigencam';

  /** The activations themselves: Eigen-CAM weighs nothing. */
  protected override weightedActivations(evidence: Evidence): tf.Tensor4D {
    return evidence.activations;
  }

  /** Always the principal component, with or without --eigen-smooth. */
  protected override projects(): boolean {
    return true;
  }
}
