/**
 * Keras layers that tfjs-layers 4.22 deserialises but computes otherwise
 * than Keras (or cannot differentiate) get, in the models camviz's loader
 * reads (Keras files, TF.js layers model.json), a subclass of tfjs-layers'
 * class that computes them as Keras does: the topology names that class
 * before tfjs-layers deserialises it. It has to be a class the deserialiser
 * finds by name: tfjs-layers builds the layers from their config's class
 * names and takes each one's static output shape as it goes (a Dense after
 * a Flatten gets its kernel's shape from it), so patching the layers once
 * the model is built is too late; and loadLayersModel's customObjects do
 * not reach the layers of a Sequential model (tfjs-layers drops them
 * there). So each substitute is registered with
 * tf.serialization.registerClass, under a name of its own that only
 * camviz's loader writes: tfjs-layers' own class is not replaced, and any
 * other tfjs-layers model in the process (a library user's own) computes
 * as before. The substitutes' getClassName() is Keras' class: fusion, the
 * ONNX writer and layer listings see that class.
 */
import * as tf from '../engine/tf.js';

export type LayerConfig = Record<string, unknown>;

/** A Keras class whose layers, when `applies` to their config, camviz's loader gives the class registered as `className`. */
export interface LayerSubstitute {
  readonly kerasClassName: string;
  readonly className: string;
  applies(config: LayerConfig): boolean;
}

function isRecord(value: unknown): value is LayerConfig {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Whether a convolution's config (Keras' snake_case or tfjs' camelCase) has a dilation rate above 1. */
export function isDilatedConfig(config: LayerConfig): boolean {
  const rate = config['dilation_rate'] ?? config['dilationRate'];
  const rates = Array.isArray(rate) ? rate : [rate];
  return rates.some((value) => typeof value === 'number' && value !== 1);
}

/**
 * `value` (a layers model's topology, or any part of it) with every layer a
 * substitute applies to given that substitute's class, wherever it is
 * (nested models, wrappers); the same object where there is none, a copy
 * otherwise (the topology read stays as it was).
 */
function rewritten(value: unknown, substitutes: readonly LayerSubstitute[]): unknown {
  if (Array.isArray(value)) {
    const items = value.map((item) => rewritten(item, substitutes));
    return items.some((item, i) => item !== value[i]) ? items : value;
  }
  if (!isRecord(value)) return value;
  const entries = Object.entries(value).map(([key, item]) => [key, rewritten(item, substitutes)] as const);
  const changed = entries.some(([key, item]) => item !== value[key]);
  const copy = changed ? Object.fromEntries(entries) : value;
  const config = copy['config'];
  const substitute = substitutes.find((candidate) => candidate.kerasClassName === copy['class_name']);
  if (substitute === undefined || !isRecord(config) || !substitute.applies(config)) return copy;
  return { ...copy, class_name: substitute.className };
}

/** A layers model's artifacts with the layers `substitutes` apply to given their classes (see the top of this file). */
export function withLayerSubstitutes(artifacts: tf.io.ModelArtifacts, substitutes: readonly LayerSubstitute[]): tf.io.ModelArtifacts {
  const topology = artifacts.modelTopology;
  if (!isRecord(topology)) return artifacts;
  const topologyRewritten = rewritten(topology, substitutes);
  return topologyRewritten === topology ? artifacts : { ...artifacts, modelTopology: topologyRewritten as LayerConfig };
}

/** What convolutionCall reads of a tfjs-layers convolution layer (its typings keep some of it protected). */
export interface ConvolutionLayer {
  readonly name: string;
  readonly dataFormat: string;
  readonly useBias: boolean;
  readonly bias: { read(): tf.Tensor } | null;
  readonly activation: { apply(x: tf.Tensor): tf.Tensor };
}

/**
 * A substitute convolution's call as tfjs-layers' own makes it, around
 * `convolve` of the NHWC input (where the substitute differs): one input,
 * channels-first data transposed in and out, then the bias and the
 * activation.
 */
export function convolutionCall(layer: ConvolutionLayer, kerasClassName: string, inputs: tf.Tensor | tf.Tensor[], convolve: (nhwc: tf.Tensor4D) => tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const input = Array.isArray(inputs) ? inputs[0] : inputs;
    if (input === undefined || (Array.isArray(inputs) && inputs.length !== 1)) throw new Error(`${kerasClassName} '${layer.name}' takes one input`);
    const channelsFirst = layer.dataFormat === 'channelsFirst';
    let output = convolve((channelsFirst ? tf.transpose(input, [0, 2, 3, 1]) : input) as tf.Tensor4D);
    if (layer.useBias && layer.bias !== null) output = tf.add(output, layer.bias.read());
    if (channelsFirst) output = tf.transpose(output, [0, 3, 1, 2]);
    return layer.activation.apply(output);
  });
}
