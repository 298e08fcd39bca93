/**
 * Keras' LayerNormalization without gamma (scale=False) or beta
 * (center=False), which tfjs-layers 4.22 computes but cannot
 * differentiate: its call hands tfjs' batchNorm a null scale or offset,
 * and the FusedBatchNorm op records that missing input, so any gradient
 * through the layer fails inside tfjs' tape ("Cannot read properties of
 * undefined"): Grad-CAM before such a layer, the input gradient, guided
 * backprop. A Vision Transformer's or ConvNeXt's normalisation exported
 * without its affine part has one.
 *
 * camviz's loader gives such layers this subclass (a layer substitute, see
 * layer-substitutes.ts), which hands batchNorm the constants the missing
 * weights stand for: ones for gamma, zeros for beta. The values are the
 * same (batchNorm without a scale multiplies by 1, without an offset adds
 * 0), and every input of the op is a tensor, so the tape differentiates
 * it. A layer with both weights is tfjs-layers' own.
 */
import type { LayerNormalization } from '@tensorflow/tfjs-layers/dist/layers/normalization.js';
import type { Kwargs } from '@tensorflow/tfjs-layers/dist/types.js';
import * as tf from '../engine/tf.js';
import { tfjsLayerClass } from '../engine/tfl.js';
import type { LayerConfig, LayerSubstitute } from './layer-substitutes.js';

const KERAS_CLASS_NAME = 'LayerNormalization';

/** The fields of tfjs-layers' LayerNormalization that its typings keep private. */
interface PrivateFields {
  /** The axes normalised over, non-negative once the layer is built. */
  axis: number[];
  gamma: { read(): tf.Tensor } | null;
  beta: { read(): tf.Tensor } | null;
}

/** tfjs-layers' own LayerNormalization (see tfjsLayerClass). */
const TfjsLayerNormalization = tfjsLayerClass<typeof LayerNormalization>(KERAS_CLASS_NAME);

class LayerNormalizationWithConstants extends TfjsLayerNormalization {
  static override className = 'CamvizLayerNormalization';

  /** It is Keras' LayerNormalization, computed as tfjs-layers does. */
  override getClassName(): string {
    return KERAS_CLASS_NAME;
  }

  /** tfjs-layers' call (moments over the axes, everything tiled to the input's shape, batchNorm), with the missing weights as constants. */
  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor | tf.Tensor[] {
    if (this.scale && this.center) return super.call(inputs, kwargs);
    return tf.tidy(() => {
      const input = Array.isArray(inputs) ? inputs[0] : inputs;
      if (input === undefined || (Array.isArray(inputs) && inputs.length !== 1)) throw new Error(`LayerNormalization '${this.name}' takes one input`);
      const { axis, gamma, beta } = this as unknown as PrivateFields;
      const { mean, variance } = tf.moments(input, axis, true);
      // A weight holds the normalised axes only: 1 on the others, then as large as the input (tfjs' batchNorm gradient does not broadcast).
      const parameterShape = input.shape.map((size, i) => (axis.includes(i) ? size : 1));
      const full = (value: tf.Tensor): tf.Tensor => tf.broadcastTo(value, input.shape);
      const parameter = (weight: { read(): tf.Tensor } | null, constant: number): tf.Tensor =>
        weight === null ? tf.fill(input.shape, constant) : full(tf.reshape(weight.read(), parameterShape));
      return tf.batchNorm(input, full(mean), full(variance), parameter(beta, 0), parameter(gamma, 1), this.epsilon);
    });
  }
}

tf.serialization.registerClass(LayerNormalizationWithConstants);

/** Whether a LayerNormalization's config leaves out gamma or beta. */
function lacksWeights(config: LayerConfig): boolean {
  return config['scale'] === false || config['center'] === false;
}

/** A LayerNormalization without gamma or beta, differentiable (see the top of this file). */
export const LAYER_NORM_CONSTANTS: LayerSubstitute = { kerasClassName: KERAS_CLASS_NAME, className: LayerNormalizationWithConstants.className, applies: lacksWeights };
