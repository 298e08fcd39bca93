/**
 * Keras weights as TF.js weight specs and one buffer, named the way
 * tfjs-layers looks them up (`<layer>/<variable>`), so that the model is
 * then built and filled by tfjs-layers' own loader, which checks every
 * shape. Legacy `.h5` files name each weight (`weight_names`); Keras 3's
 * `model.weights.h5` numbers them (`layers/<name>/vars/N`), in the order
 * the layer creates them.
 */
import type * as tf from '../../engine/tf.js';
import { CamvizError } from '../../util/errors.js';
import type { KerasLayerInfo } from './config.js';
import type { Hdf5File } from './hdf5.js';

type WeightsManifestEntry = tf.io.WeightsManifestEntry;

export interface NamedWeights {
  specs: WeightsManifestEntry[];
  data: ArrayBuffer;
}

interface NamedValue {
  name: string;
  shape: number[];
  values: Float32Array;
}

/** Legacy full-model HDF5: `model_weights/<layer>/...`, in the order of `weight_names`. */
export function legacyWeights(h5: Hdf5File): NamedWeights {
  const layerNames = stringList(h5.attribute('model_weights', 'layer_names'), 'model_weights layer_names', h5.file);
  const weights: NamedValue[] = [];
  for (const layer of layerNames) {
    const group = `model_weights/${layer}`;
    const names = stringList(h5.attribute(group, 'weight_names') ?? [], `${group} weight_names`, h5.file);
    for (const weightName of names) {
      const dataset = h5.dataset(`${group}/${weightName}`);
      if (dataset === undefined) throw new CamvizError(`layer '${layer}' lists weight '${weightName}' but the file does not hold it`, { file: h5.file });
      weights.push({ name: tfjsWeightName(weightName), shape: dataset.shape, values: dataset.read() });
    }
  }
  return packed(weights);
}

/** Keras 2 writes `conv2d/kernel:0`, Keras 3 `sequential/conv2d/kernel`: tfjs wants `conv2d/kernel`. */
function tfjsWeightName(weightName: string): string {
  return weightName.split('/').slice(-2).join('/').replace(/:\d+$/, '');
}

/** Keras 3 `model.weights.h5`: `layers/<name>/vars/N` (nested: `layers/<outer>/layers/<inner>/vars/N`). */
export function kerasV3Weights(h5: Hdf5File, layers: readonly KerasLayerInfo[]): NamedWeights {
  checkNoStrayLayers(h5, layers);
  const weights: NamedValue[] = [];
  for (const layer of layers) {
    const group = `layers/${layer.path.split('/').join('/layers/')}/vars`;
    const held = h5.members(group);
    const names = variableNames(layer);
    if (held.length !== names.length) {
      const problem = held.length < names.length ? 'misses weights' : 'has extra weights';
      throw new CamvizError(`layer '${layer.path}' (${layer.className}) ${problem}: the file holds ${held.length}, the layer needs ${names.length} (${names.join(', ') || 'none'})`, { file: h5.file });
    }
    names.forEach((variable, i) => {
      const dataset = h5.dataset(`${group}/${i}`);
      if (dataset === undefined) throw new CamvizError(`layer '${layer.path}' has no weight ${group}/${i}`, { file: h5.file });
      weights.push({ name: `${layer.path.split('/').at(-1)}/${variable}`, shape: dataset.shape, values: dataset.read() });
    });
  }
  return packed(weights);
}

/** Weights for a layer the config does not have mean the config and the weights are from different models. */
function checkNoStrayLayers(h5: Hdf5File, layers: readonly KerasLayerInfo[]): void {
  const known = new Set(layers.map((layer) => layer.path.split('/')[0]!));
  for (const name of h5.members('layers')) {
    if (!known.has(name) && h5.members(`layers/${name}/vars`).length > 0) {
      throw new CamvizError(`the weights hold layer '${name}', which the model config does not have (extra weights)`, { file: h5.file });
    }
  }
}

/** The variables a layer creates, in creation order (Keras numbers them in that order). */
function variableNames(layer: KerasLayerInfo): string[] {
  const { config } = layer;
  const bias = config['use_bias'] === false ? [] : ['bias'];
  const scale = config['scale'] === false ? [] : ['gamma'];
  const center = config['center'] === false ? [] : ['beta'];
  switch (layer.className) {
    case 'Dense':
    case 'Conv1D':
    case 'Conv2D':
    case 'Conv3D':
    case 'Conv2DTranspose':
    case 'Conv3DTranspose':
      return ['kernel', ...bias];
    case 'DepthwiseConv2D':
      return ['depthwise_kernel', ...bias];
    case 'SeparableConv1D':
    case 'SeparableConv2D':
      return ['depthwise_kernel', 'pointwise_kernel', ...bias];
    case 'BatchNormalization':
      return [...scale, ...center, 'moving_mean', 'moving_variance'];
    case 'LayerNormalization':
      return [...scale, ...center];
    case 'Embedding':
      return ['embeddings'];
    case 'PReLU':
      return ['alpha'];
    default:
      return [];
  }
}

function packed(weights: readonly NamedValue[]): NamedWeights {
  const total = weights.reduce((sum, weight) => sum + weight.values.length, 0);
  const data = new Float32Array(total);
  let offset = 0;
  const specs = weights.map((weight) => {
    data.set(weight.values, offset);
    offset += weight.values.length;
    return { name: weight.name, shape: weight.shape, dtype: 'float32' as const };
  });
  return { specs, data: data.buffer };
}

function stringList(value: unknown, what: string, file: string): string[] {
  if (Array.isArray(value) && value.every((item) => typeof item === 'string')) return value as string[];
  throw new CamvizError(`${what} is not a list of names`, { file });
}
