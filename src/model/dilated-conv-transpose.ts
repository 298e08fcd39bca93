/**
 * Keras' Conv2DTranspose with a dilation rate above 1, which tfjs-layers
 * 4.22 deserialises but computes undilated: its `call` hands tfjs'
 * conv2dTranspose (which takes no dilations) the kernel as it is, and its
 * `computeOutputShape` leaves the rate out, so with 'valid' padding its
 * output is (k - 1)·(rate - 1) rows and columns too small, and the layers
 * after it are built for that wrong size. Silently wrong values, where
 * Keras (TensorFlow's conv2d_transpose with `dilations`) dilates.
 *
 * camviz's loader gives such layers of the models it reads this subclass
 * (a layer substitute, see layer-substitutes.ts), which computes the
 * transposed convolution dilated (engine/dilated-conv.ts) with Keras'
 * output shape (keras.utils.conv_utils.deconv_output_length). Only with
 * unit strides: TensorFlow's atrous_conv2d_transpose, which Keras 2 runs
 * for a dilated layer, takes no strides, so a saved layer with both cannot
 * be computed as its file says; it is refused at load.
 *
 * tfjs-layers' own Conv2DTranspose keeps computing undilated; camviz's
 * executor refuses a model with one of rate above 1 (executor/network.ts),
 * and `computedDilations` (executor/fusion.ts) gives the ONNX writer the
 * rate it really computes with.
 */
import type { Conv2DTranspose } from '@tensorflow/tfjs-layers/dist/layers/convolutional.js';
import type { Kwargs } from '@tensorflow/tfjs-layers/dist/types.js';
import type { serialization } from '@tensorflow/tfjs-core';
import * as tf from '../engine/tf.js';
import { dilatedConv2dTranspose } from '../engine/dilated-conv.js';
import { tfjsLayerClass } from '../engine/tfl.js';
import { type ConvolutionLayer, type LayerSubstitute, convolutionCall, isDilatedConfig } from './layer-substitutes.js';

const KERAS_CLASS_NAME = 'Conv2DTranspose';

type Shape = (number | null)[];

/** tfjs-layers' own Conv2DTranspose (see tfjsLayerClass). */
const TfjsConv2DTranspose = tfjsLayerClass<typeof Conv2DTranspose>(KERAS_CLASS_NAME);

/** Keras' deconv_output_length (no output_padding): a dilated kernel spans (k - 1)·rate + 1 outputs. */
function deconvOutputLength(inputLength: number | null, kernel: number, padding: string, stride: number, dilation: number): number | null {
  if (inputLength === null) return null;
  const span = (kernel - 1) * dilation + 1;
  return padding === 'same' ? inputLength * stride : inputLength * stride + Math.max(span - stride, 0);
}

class DilatedConv2DTranspose extends TfjsConv2DTranspose {
  static override className = 'CamvizDilatedConv2DTranspose';

  constructor(args: ConstructorParameters<typeof Conv2DTranspose>[0]) {
    super(args);
    if (this.strides.some((stride) => stride !== 1)) {
      throw new Error(`Conv2DTranspose '${this.name}' has strides ${JSON.stringify(this.strides)} and dilation rate ${JSON.stringify(this.dilationRate)}: TensorFlow's dilated transposed convolution takes unit strides only`);
    }
  }

  /** It is Keras' Conv2DTranspose, computed as Keras does. */
  override getClassName(): string {
    return KERAS_CLASS_NAME;
  }

  /** tfjs-layers' own call with the convolution dilated: the transposed convolution, the bias, the activation. */
  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return convolutionCall(this as unknown as ConvolutionLayer, KERAS_CLASS_NAME, inputs, (nhwc) => {
      const [batch, height, width] = nhwc.shape;
      const [outHeight, outWidth] = this.spatialOutput(height, width) as [number, number];
      const [rows = 1, columns = rows] = this.dilationRate;
      return dilatedConv2dTranspose(nhwc, this.kernel.read() as tf.Tensor4D, [batch, outHeight, outWidth, this.filters], this.padding === 'same' ? 'same' : 'valid', [rows, columns]);
    });
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
    const channelsFirst = this.dataFormat === 'channelsFirst';
    const [batch = null, a = null, b = null, c = null] = shape;
    const [outHeight, outWidth] = this.spatialOutput(channelsFirst ? b : a, channelsFirst ? c : b);
    return channelsFirst ? [batch, this.filters, outHeight, outWidth] : [batch, outHeight, outWidth, this.filters];
  }

  /** tfjs-layers' getConfig drops the rate (its layer ignores it); this layer's is part of it. */
  override getConfig(): serialization.ConfigDict {
    return { ...super.getConfig(), dilationRate: this.dilationRate };
  }

  private spatialOutput(height: number | null, width: number | null): [number | null, number | null] {
    const length = (size: number | null, axis: 0 | 1): number | null => deconvOutputLength(size, this.kernelSize[axis]!, this.padding, this.strides[axis]!, this.dilationRate[axis]!);
    return [length(height, 0), length(width, 1)];
  }
}

tf.serialization.registerClass(DilatedConv2DTranspose);

/** A dilated Conv2DTranspose computed dilated (see the top of this file). */
export const DILATED_CONV_TRANSPOSE: LayerSubstitute = { kerasClassName: KERAS_CLASS_NAME, className: DilatedConv2DTranspose.className, applies: isDilatedConfig };
