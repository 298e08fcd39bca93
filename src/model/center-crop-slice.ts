/**
 * Keras' CenterCrop (to a size no larger than its input), which
 * tfjs-layers 4.22 computes with cropAndResize: tfjs has no gradient for
 * CropAndResize, so no gradient CAM, input gradient or guided backprop
 * reached below the layer. A centre crop is a slice, and a slice has a
 * gradient. tfjs-layers also starts a crop one column in when the input is
 * one column wider than the crop, where Keras (half the excess, rounded
 * down) starts at the first.
 *
 * camviz's loader gives every CenterCrop of the models it reads this
 * subclass (a layer substitute, see layer-substitutes.ts), which slices at
 * Keras' offsets. A target larger than the input along either axis is left
 * to tfjs-layers' call (which fails on it in 4.22).
 */
import type { CenterCrop } from '@tensorflow/tfjs-layers/dist/layers/preprocessing/center_crop.js';
import type { Kwargs } from '@tensorflow/tfjs-layers/dist/types.js';
import * as tf from '../engine/tf.js';
import { tfjsLayerClass } from '../engine/tfl.js';
import type { LayerSubstitute } from './layer-substitutes.js';

const KERAS_CLASS_NAME = 'CenterCrop';

/** The fields of tfjs-layers' CenterCrop that its typings keep private. */
interface PrivateFields {
  height: number;
  width: number;
}

/** tfjs-layers' own CenterCrop (see tfjsLayerClass). */
const TfjsCenterCrop = tfjsLayerClass<typeof CenterCrop>(KERAS_CLASS_NAME);

/** Keras' first row or column of a crop to `target` of `size`: half the excess, rounded down (tf.keras: tf.cast(diff / 2, tf.int32)). */
export function kerasCropOffset(size: number, target: number): number {
  return Math.floor((size - target) / 2);
}

class CenterCropAsSlice extends TfjsCenterCrop {
  static override className = 'CamvizCenterCrop';

  /** It is Keras' CenterCrop. */
  override getClassName(): string {
    return KERAS_CLASS_NAME;
  }

  /** The crop as a slice of H and W (the last three axes are H, W, C, rank 3 or 4). */
  override call(inputs: tf.Tensor3D | tf.Tensor4D, kwargs: Kwargs): tf.Tensor | tf.Tensor[] {
    const input = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor | undefined;
    if (input === undefined || (Array.isArray(inputs) && inputs.length !== 1)) throw new Error(`CenterCrop '${this.name}' takes one input`);
    const { height, width } = this as unknown as PrivateFields;
    const rank = input.shape.length;
    const [inHeight = 0, inWidth = 0] = input.shape.slice(rank - 3);
    if (height > inHeight || width > inWidth) return super.call(inputs, kwargs);
    const begin = input.shape.map((_, axis) => (axis === rank - 3 ? kerasCropOffset(inHeight, height) : axis === rank - 2 ? kerasCropOffset(inWidth, width) : 0));
    const size = input.shape.map((_, axis) => (axis === rank - 3 ? height : axis === rank - 2 ? width : -1));
    return tf.slice(input, begin, size);
  }
}

tf.serialization.registerClass(CenterCropAsSlice);

/** Every CenterCrop, sliced at Keras' offsets (see the top of this file). */
export const CENTER_CROP_SLICE: LayerSubstitute = { kerasClassName: KERAS_CLASS_NAME, className: CenterCropAsSlice.className, applies: () => true };
