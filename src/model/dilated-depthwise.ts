/**
 * Keras' DepthwiseConv2D with a dilation rate above 1 (DeepLabV3+ on
 * MobileNetV2 or Xception, many segmentation networks), which tfjs-layers
 * 4.22 deserialises but computes undilated: its `call` passes no dilation
 * to tfjs' depthwiseConv2d ("TODO(cais): Add support for dilation"), and
 * its `computeOutputShape` leaves the rate out too, so with 'valid'
 * padding its static output is (k - 1)·(rate - 1) rows and columns too
 * large, and the layers after it are built for that wrong size.
 *
 * camviz's loader gives such layers of the models it reads (Keras files,
 * TF.js layers model.json) this subclass instead, which computes and
 * shapes the dilated convolution as Keras does (a layer substitute, see
 * layer-substitutes.ts for why a class registered under a name of its own).
 *
 * tfjs-layers' own DepthwiseConv2D keeps computing undilated; camviz's
 * executor refuses a model with one of rate above 1 (a model built in
 * memory and handed to camviz: executor/network.ts), and
 * `computedDilations` (executor/fusion.ts) gives the ONNX writer the rate
 * such a layer really computes with. SeparableConv2D needs none of this: tfjs-layers passes
 * its rate to tfjs' separableConv2d and to its output shape.
 */
import type { DepthwiseConv2D } from '@tensorflow/tfjs-layers/dist/layers/convolutional_depthwise.js';
import type { Kwargs } from '@tensorflow/tfjs-layers/dist/types.js';
import * as tf from '../engine/tf.js';
import { tfjsLayerClass } from '../engine/tfl.js';
import { type ConvolutionLayer, type LayerSubstitute, convolutionCall, isDilatedConfig } from './layer-substitutes.js';

/** The name camviz's loader gives a dilated DepthwiseConv2D's class in a topology. */
const DILATED_DEPTHWISE_CLASS_NAME = 'CamvizDilatedDepthwiseConv2D';

const KERAS_CLASS_NAME = 'DepthwiseConv2D';

type Shape = (number | null)[];

/** The fields of tfjs-layers' DepthwiseConv2D that its typings keep private. */
interface PrivateFields {
  depthwiseKernel: { read(): tf.Tensor };
  depthMultiplier: number;
}

/** tfjs-layers' own DepthwiseConv2D (see tfjsLayerClass). */
const TfjsDepthwiseConv2D = tfjsLayerClass<typeof DepthwiseConv2D>(KERAS_CLASS_NAME);

/** Keras' conv_output_length: a dilated kernel spans (k - 1)·rate + 1 inputs. */
function outputLength(inputLength: number | null, kernel: number, padding: string, stride: number, dilation: number): number | null {
  if (inputLength === null) return null;
  const span = (kernel - 1) * dilation + 1;
  const length = padding === 'same' ? inputLength : inputLength - span + 1;
  return Math.ceil(length / stride);
}

class DilatedDepthwiseConv2D extends TfjsDepthwiseConv2D {
  static override className = DILATED_DEPTHWISE_CLASS_NAME;

  constructor(args: ConstructorParameters<typeof DepthwiseConv2D>[0]) {
    super(args);
    // TensorFlow refuses both too (tf.nn.depthwise_conv2d: strides > 1 with rate > 1), so Keras never saves it.
    if (this.strides.some((stride) => stride !== 1) && this.dilationRate.some((rate) => rate !== 1)) {
      throw new Error(`DepthwiseConv2D '${this.name}' has strides ${JSON.stringify(this.strides)} and dilation rate ${JSON.stringify(this.dilationRate)}: one of them must be 1`);
    }
  }

  /** It is Keras' DepthwiseConv2D, computed as Keras does: fusion, the ONNX writer, layer listings and a saved config see that class. */
  override getClassName(): string {
    return KERAS_CLASS_NAME;
  }

  /** tfjs-layers' own call, with the dilation passed on: the convolution, the bias, the activation. */
  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return convolutionCall(this as unknown as ConvolutionLayer, KERAS_CLASS_NAME, inputs, (nhwc) => {
      const kernel = (this as unknown as PrivateFields).depthwiseKernel.read() as tf.Tensor4D;
      const [rows = 1, columns = rows] = this.dilationRate;
      return tf.depthwiseConv2d(nhwc, kernel, this.strides as [number, number], this.padding === 'same' ? 'same' : 'valid', 'NHWC', [rows, columns]);
    });
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
    const channelsFirst = this.dataFormat === 'channelsFirst';
    const [batch, a = null, b = null, c = null] = shape;
    const [height, width, channels] = channelsFirst ? [b, c, a] : [a, b, c];
    const multiplier = (this as unknown as PrivateFields).depthMultiplier;
    const outChannels = channels === null ? null : channels * multiplier;
    const [outHeight, outWidth] = [0, 1].map((axis) => outputLength(axis === 0 ? height : width, this.kernelSize[axis]!, this.padding, this.strides[axis]!, this.dilationRate[axis]!));
    return channelsFirst ? [batch ?? null, outChannels, outHeight!, outWidth!] : [batch ?? null, outHeight!, outWidth!, outChannels];
  }
}

tf.serialization.registerClass(DilatedDepthwiseConv2D);

/** A dilated DepthwiseConv2D computed dilated (see the top of this file). */
export const DILATED_DEPTHWISE: LayerSubstitute = { kerasClassName: KERAS_CLASS_NAME, className: DILATED_DEPTHWISE_CLASS_NAME, applies: isDilatedConfig };
