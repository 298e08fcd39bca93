/**
 * A layer class of the tests' own, which camviz's ONNX writer cannot know:
 * a per-channel learned scale (what Keras models' custom LayerScale layers
 * compute, ConvNeXt's among them). Registered for deserialisation, so a
 * saved model with it loads and runs on tfjs; the writer, which converts
 * Keras' own classes only, refuses it, and the engine falls back.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

export const UNWRITABLE_CLASS_NAME = 'TestChannelScale';

class TestChannelScale extends tfl.layers.Layer {
  static className = UNWRITABLE_CLASS_NAME;
  private scale: tfl.LayerVariable | undefined;

  override build(inputShape: tfl.Shape | tfl.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tfl.Shape;
    this.scale = this.addWeight('scale', [shape[shape.length - 1]!], 'float32', tfl.initializers.constant({ value: 0.5 }));
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => tf.mul(Array.isArray(inputs) ? inputs[0]! : inputs, this.scale!.read()));
  }
}
tf.serialization.registerClass(TestChannelScale);

/** A layer the ONNX writer refuses (see above), named `name`. */
export function unwritableLayer(name: string): tfl.layers.Layer {
  return new TestChannelScale({ name });
}
