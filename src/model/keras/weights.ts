/**
 * Keras weights as TF.js weight specs and one buffer, named the way
 * tfjs-layers looks them up (`<layer>/<variable>`), so that the model is
 * then built and filled by tfjs-layers' own loader, which checks every
 * shape. Legacy `.h5` files name each weight (`weight_names`); Keras 3's
 * `model.weights.h5` numbers them (`layers/<name>/vars/N`), in the order
 * the layer creates them.
 *
 * The large weights are not copied out of the HDF5 file: tfjs is handed
 * the file's own bytes, with the stretches between them (object headers,
 * small weights, other data) declared as weights of the 'optimizer' group,
 * which tfjs-layers decodes and drops without assigning them to the model.
 * tfjs copies each weight out of its buffer anyway; a packed copy first
 * would be a second pass over every weight (a 10 MB MobileNet: 10-20 ms
 * here, most of it touching fresh memory).
 */
import type * as tf from '../../engine/tf.js';
import { CamvizError } from '../../util/errors.js';
import type { KerasLayerInfo } from './config.js';
import type { Hdf5Dataset, Hdf5File } from './hdf5.js';

type WeightsManifestEntry = tf.io.WeightsManifestEntry;

export interface NamedWeights {
  /** The model's weights, in the model's order: its manifest. */
  specs: WeightsManifestEntry[];
  /** What tfjs decodes `data` with: `specs` in the order of their bytes, and the stretches between them. */
  dataSpecs: WeightsManifestEntry[];
  data: ArrayBuffer[];
}

interface NamedValue {
  name: string;
  shape: number[];
  dataset: Hdf5Dataset;
}

/** Stretches of the file between weights are decoded by tfjs as one byte per element, then dropped. */
const SKIPPED_GROUP = 'optimizer';
/**
 * Smaller weights (biases, batch-normalisation parameters) are packed
 * rather than read in place: copying a few KiB costs less than the tensor
 * tfjs makes of each stretch skipped around them (MobileNet: 137 such
 * tensors, 2-4 ms, against 11 with this).
 */
const IN_PLACE_MIN_BYTES = 64 * 1024;

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
      weights.push({ name: tfjsWeightName(weightName), shape: dataset.shape, dataset });
    }
  }
  return inPlace(h5, weights);
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
      weights.push({ name: `${layer.path.split('/').at(-1)}/${variable}`, shape: dataset.shape, dataset });
    });
  }
  return inPlace(h5, weights);
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

const specOf = (weight: NamedValue): WeightsManifestEntry => ({ name: weight.name, shape: weight.shape, dtype: 'float32' });
const byteLengthOf = (weight: NamedValue): number => 4 * weight.shape.reduce((product, dim) => product * dim, 1);

/**
 * The weights as tfjs reads them: the large ones stored as plain float32
 * where they lie in the file (in the order of their bytes, the stretches
 * between them skipped), the others (small, chunked, float64, or
 * overlapping another: a lying file) packed, before the file's bytes.
 * When the file holds more besides the weights before the last of them
 * than the weights themselves, all are packed: tfjs would copy the
 * skipped bytes too.
 */
function inPlace(h5: Hdf5File, weights: readonly NamedValue[]): NamedWeights {
  const specs = weights.map(specOf);
  const inFile = inFileOrder(weights);
  if (inFile.weights.size === 0 || inFile.skippedBytes > inFile.weightBytes) return { specs, dataSpecs: specs, data: [packed(weights)] };
  const rest = weights.filter((weight) => !inFile.weights.has(weight));
  if (rest.length === 0) return { specs, dataSpecs: inFile.specs, data: [h5.buffer] };
  // The packed rest first: after the file's bytes, it would have to be reached by skipping all that follows the last weight (optimizer state).
  // The empty last buffer: tfjs (CompositeArrayBuffer) takes buffers whose sizes all match but for the last one's as uniform, and would then look for the file's bytes at multiples of the first buffer's size.
  return { specs, dataSpecs: [...rest.map(specOf), ...inFile.specs], data: [packed(rest), h5.buffer, new ArrayBuffer(0)] };
}

/** The large contiguous float32 weights in the order of their bytes, each after a spec skipping the bytes before it; overlapping ones left out. */
function inFileOrder(weights: readonly NamedValue[]): { specs: WeightsManifestEntry[]; weights: Set<NamedValue>; weightBytes: number; skippedBytes: number } {
  const located = weights
    .filter((weight) => byteLengthOf(weight) >= IN_PLACE_MIN_BYTES)
    .map((weight) => ({ weight, at: weight.dataset.float32At() }))
    .filter((entry): entry is { weight: NamedValue; at: number } => entry.at !== undefined)
    .sort((a, b) => a.at - b.at);
  const specs: WeightsManifestEntry[] = [];
  const inFile = new Set<NamedValue>();
  let end = 0;
  let skipped = 0;
  for (const { weight, at } of located) {
    if (at < end) continue;
    if (at > end) specs.push(skippedBytes(specs.length, at - end));
    skipped += at - end;
    specs.push(specOf(weight));
    inFile.add(weight);
    end = at + byteLengthOf(weight);
  }
  return { specs, weights: inFile, weightBytes: end - skipped, skippedBytes: skipped };
}

function skippedBytes(index: number, length: number): WeightsManifestEntry {
  return { name: `camviz_skipped_bytes_${index}`, shape: [length], dtype: 'bool', group: SKIPPED_GROUP };
}

/** The weights' values one after another, copied. */
function packed(weights: readonly NamedValue[]): ArrayBuffer {
  const data = new Float32Array(weights.reduce((sum, weight) => sum + byteLengthOf(weight) / 4, 0));
  let offset = 0;
  for (const weight of weights) {
    const values = weight.dataset.read();
    data.set(values, offset);
    offset += values.length;
  }
  return data.buffer;
}

function stringList(value: unknown, what: string, file: string): string[] {
  if (Array.isArray(value) && value.every((item) => typeof item === 'string')) return value as string[];
  throw new CamvizError(`${what} is not a list of names`, { file });
}
