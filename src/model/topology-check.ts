/**
 * A layers model's topology checked against its weights manifest before
 * tfjs-layers builds it. Building allocates and initialises every variable
 * the layer configs imply, before any weight is read: an 8 KB model.json
 * declaring a convolution with a million filters costs gigabytes and a
 * minute on wasm before tfjs notices that no weights match. Here every layer
 * of a class with parameters must find each of its weights in the manifest,
 * with the dimensions its config fixes (filters, units, kernel size, depth
 * multiplier...). The manifest's sizes are in turn checked against the
 * weight files, so what building allocates is bounded by what is on disk.
 *
 * Dimensions that come from the layer's input (a kernel's input channels, a
 * batch normalisation's width) are checked too where the channel count can
 * be followed from the configs alone: from an InputLayer's declared shape
 * through layers that set it (convolutions, dense) or keep it (activations,
 * pooling, normalisation...). Behind a Flatten, a Reshape or another layer
 * camviz does not follow, that dimension is left to tfjs, which compares
 * every variable's shape with the manifest when it loads the weights.
 */
import { CamvizError } from '../util/errors.js';
import type { ModelJson } from './io.js';

type Config = Record<string, unknown>;

/** A parameter a layer creates: its name and shape, null where the input decides; 'any' when even the rank does. */
interface ImpliedWeight {
  name: string;
  shape: (number | null)[] | 'any';
}

/** The channel count (last axis) of a tensor, or null when the configs alone do not tell it. */
type Channels = number | null;

interface LayerClass {
  /** The weights the layer creates when built on an input of `input` channels. */
  weights(config: Config, describe: string, input: Channels): ImpliedWeight[];
  /** Its output's channel count. */
  output(config: Config, describe: string, input: Channels): Channels;
}

/** One layer of a model's config: where its inputs come from, as far as it can be told. */
interface LayerNode {
  className: string;
  name: string | undefined;
  config: Config;
  /** Layer names feeding each of its inbound nodes (undefined: an input that cannot be followed). */
  inbound: (string | undefined)[][];
  /** The input's channel count its own config declares (an InputLayer, the first layer of a Sequential). */
  declaredInput: Channels | undefined;
  /** The layer itself, for nested models. */
  layer: Config;
}

interface ManifestWeight {
  name: string;
  shape: readonly number[];
}

/**
 * The most layers camviz builds a model of, nested models' included. tfjs
 * builds a layer chain recursively: one of 5,000 layers already overflows
 * the stack, and a 100,000-layer model.json took 4 s and 460 MB to fail so;
 * real models have a few thousand layers at most (NASNet-Large 1,041).
 */
export const MAX_LAYERS = 10_000;

/** Refuses a layers topology whose layers imply weights the manifest does not declare, or that has over MAX_LAYERS layers. */
export function checkTopologyAgainstManifest(modelJson: ModelJson, file: string): void {
  const model = kerasModelOf(modelJson.modelTopology);
  if (model === undefined) return; // a graph model, or not a model tfjs can deserialize at all
  const declared: ManifestWeight[] = modelJson.weightsManifest.flatMap((group) => group.weights);
  try {
    // Channels-first layers put the channels elsewhere than the last axis: their inputs are not followed.
    const followChannels = !JSON.stringify(model).includes('channels_first');
    checkModel(model, { declared, followChannels, seen: new Set<string>(), file, layers: 0 });
  } catch (error) {
    // Models nested thousands deep exhaust the stack (tfjs's own deserialisation would too).
    if (error instanceof RangeError) throw new CamvizError('model.json nests its models too deeply: refused', { file });
    throw error;
  }
}

interface CheckContext {
  declared: readonly ManifestWeight[];
  followChannels: boolean;
  /** Names of the layers with weights so far. */
  seen: Set<string>;
  file: string;
  /** Layers met so far, nested models' included. */
  layers: number;
}

function checkModel(model: Config, context: CheckContext): void {
  const outputs = new Map<string, Channels>();
  for (const node of layerNodesOf(model)) {
    context.layers += 1;
    if (context.layers > MAX_LAYERS) throw new CamvizError(`model.json declares more than ${MAX_LAYERS.toLocaleString('en')} layers: refused`, { file: context.file });
    if (MODEL_CLASSES.has(node.className)) {
      checkModel(node.layer, context);
      continue;
    }
    const input = context.followChannels ? inputChannels(node, outputs) : null;
    const layerClass = LAYER_CLASSES[node.className];
    const describe = `layer '${node.name ?? '?'}' (${node.className})`;
    const output = refusingInvalid(context.file, () => {
      if (layerClass !== undefined) checkLayer(node, layerClass, describe, input, context);
      return layerClass !== undefined ? layerClass.output(node.config, describe, input) : CHANNELS_KEPT.has(node.className) ? input : null;
    });
    if (node.name !== undefined) outputs.set(node.name, output);
  }
}

function checkLayer(node: LayerNode, layerClass: LayerClass, describe: string, input: Channels, context: CheckContext): void {
  const { file } = context;
  if (node.name === undefined) throw new CamvizError(`a ${node.className} layer has no name: refused`, { file });
  // Weights are found by layer name: two layers of one name would share one entry.
  if (context.seen.has(node.name)) throw new CamvizError(`${describe} shares its name with another layer with weights: refused`, { file });
  context.seen.add(node.name);
  for (const weight of layerClass.weights(node.config, describe, input)) {
    checkDeclared(weight, `${node.name}/${weight.name}`, context.declared, describe, file);
  }
}

/** The channels a layer's input has: the same on every inbound node, or null. */
function inputChannels(node: LayerNode, outputs: ReadonlyMap<string, Channels>): Channels {
  if (node.declaredInput !== undefined) return node.declaredInput;
  // Layers are listed in topological order: a producer not seen yet is one that cannot be followed.
  const perNode = node.inbound.map((producers) => merged(node, producers.map((name) => (name === undefined ? null : (outputs.get(name) ?? null)))));
  const first = perNode[0];
  return first !== undefined && first !== null && perNode.every((channels) => channels === first) ? first : null;
}

/** The channels of a layer's several inputs seen as one. */
function merged(node: LayerNode, inputs: Channels[]): Channels {
  if (inputs.length === 1) return inputs[0]!;
  if (inputs.length === 0 || inputs.some((channels) => channels === null)) return null;
  const known = inputs as number[];
  if (node.className === 'Concatenate') return (field(node.config, 'axis') ?? -1) === -1 ? known.reduce((sum, channels) => sum + channels, 0) : null;
  // Element-wise merges (Add, Multiply...) of equal channels; broadcasting is not followed.
  return CHANNELS_KEPT.has(node.className) && known.every((channels) => channels === known[0]) ? known[0]! : null;
}

/** A config value that fixes a weight's shape but is no size; turned into a CamvizError naming the file. */
class InvalidConfig extends Error {}

/** Runs `work`, turning an InvalidConfig into a CamvizError naming `file`. */
function refusingInvalid<T>(file: string, work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (error instanceof InvalidConfig) throw new CamvizError(error.message, { file });
    throw error;
  }
}

function checkDeclared(weight: ImpliedWeight, fullName: string, declared: readonly ManifestWeight[], describe: string, file: string): void {
  // Nested models' weights may carry the outer model's scope in front.
  const entries = declared.filter((entry) => entry.name === fullName || entry.name.endsWith(`/${fullName}`));
  const needs = `${describe} needs a ${weight.name} of ${formatShape(weight.shape)}`;
  if (entries.length === 0) throw new CamvizError(`${needs} that the weightsManifest does not list: refused`, { file });
  if (weight.shape === 'any' || entries.some((entry) => fits(weight.shape as (number | null)[], entry.shape))) return;
  throw new CamvizError(`${needs} but the weightsManifest declares ${formatShape([...entries[0]!.shape])}: refused`, { file });
}

function fits(implied: readonly (number | null)[], declared: readonly number[]): boolean {
  return implied.length === declared.length && implied.every((dim, i) => dim === null || dim === declared[i]);
}

function formatShape(shape: readonly (number | null)[] | 'any'): string {
  return shape === 'any' ? 'any shape' : `[${shape.map((dim) => (dim === null ? '?' : String(dim))).join(', ')}]`;
}

const MODEL_CLASSES = new Set(['Model', 'Functional', 'Sequential']);

/** The Keras model description inside modelTopology (`model_config`, or the topology itself). */
function kerasModelOf(topology: Config): Config | undefined {
  const model = recordOf(topology['model_config'] ?? topology['modelConfig'] ?? topology);
  const className = stringField(model, 'class_name', 'className');
  return className !== undefined && MODEL_CLASSES.has(className) ? model : undefined;
}

/** A model's own layers in their listed order (Keras lists them topologically), nested models as one node each. */
function layerNodesOf(model: Config): LayerNode[] {
  const config = model['config'];
  // Old Sequential configs are the list of layers itself.
  const list = Array.isArray(config) ? config : recordOf(config)['layers'];
  if (!Array.isArray(list)) return [];
  const sequential = stringField(model, 'class_name', 'className') === 'Sequential';
  const layers = list.map(recordOf);
  return layers.map((layer, i) => {
    const layerConfig = recordOf(layer['config']);
    const previous = i === 0 ? undefined : (stringField(recordOf(layers[i - 1]!['config']), 'name') ?? stringField(layers[i - 1]!, 'name'));
    const inbound = sequential ? (i === 0 ? [] : [[previous]]) : inboundNodesOf(layer);
    const className = stringField(layer, 'class_name', 'className') ?? '?';
    // Only where tfjs builds the model's input from it: elsewhere in a functional model the inbound tensor counts.
    const shape = className === 'InputLayer' || (sequential && i === 0) ? field(layerConfig, 'batch_input_shape') : undefined;
    const declaredInput = Array.isArray(shape) ? positiveOrNull(shape.at(-1)) : undefined;
    return {
      className,
      name: stringField(layerConfig, 'name') ?? stringField(layer, 'name'),
      config: layerConfig,
      inbound,
      declaredInput,
      layer,
    };
  });
}

/** Keras's `inbound_nodes`: per node, a list of [layer name, node index, tensor index, kwargs]. */
function inboundNodesOf(layer: Config): (string | undefined)[][] {
  const nodes = layer['inbound_nodes'] ?? layer['inboundNodes'];
  if (!Array.isArray(nodes)) return [];
  return nodes.map((node) =>
    Array.isArray(node)
      ? node.map((entry) => (Array.isArray(entry) && typeof entry[0] === 'string' && entry[2] === 0 ? entry[0] : undefined))
      : [undefined],
  );
}

function positiveOrNull(value: unknown): Channels {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : null;
}

function recordOf(value: unknown): Config {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Config) : {};
}

/** A string field under its Python (model.json) or TypeScript name. */
function stringField(record: Config, ...keys: string[]): string | undefined {
  const value = keys.map((key) => record[key]).find((candidate) => candidate !== undefined);
  return typeof value === 'string' ? value : undefined;
}

function field(config: Config, pythonName: string): unknown {
  if (pythonName in config) return config[pythonName];
  return config[pythonName.replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase())];
}

function positiveInteger(config: Config, key: string, describe: string, fallback?: number): number {
  const value = field(config, key) ?? fallback;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return value;
  throw new InvalidConfig(`${describe} has no valid ${key} (${JSON.stringify(value) ?? 'missing'}): refused`);
}

/** A size given as one number or one per spatial dimension (kernel_size). */
function sizes(config: Config, key: string, rank: number, describe: string): number[] {
  const value = field(config, key);
  const list = typeof value === 'number' ? Array<number>(rank).fill(value) : value;
  if (Array.isArray(list) && list.length === rank && list.every((dim) => typeof dim === 'number' && Number.isSafeInteger(dim) && dim > 0)) {
    return list as number[];
  }
  throw new InvalidConfig(`${describe} has no valid ${key} (${JSON.stringify(value) ?? 'missing'}): refused`);
}

const flag = (config: Config, key: string): boolean => field(config, key) !== false;

const times = (channels: Channels, factor: number): Channels => (channels === null ? null : channels * factor);

const convolution = (rank: number, transposed: boolean): LayerClass => ({
  weights: (config, describe, input) => {
    const kernel = sizes(config, 'kernel_size', rank, describe);
    const filters = positiveInteger(config, 'filters', describe);
    return [
      { name: 'kernel', shape: transposed ? [...kernel, filters, input] : [...kernel, input, filters] },
      ...(flag(config, 'use_bias') ? [{ name: 'bias', shape: [filters] }] : []),
    ];
  },
  output: (config, describe) => positiveInteger(config, 'filters', describe),
});

const depthMultiplier = (config: Config, describe: string): number => positiveInteger(config, 'depth_multiplier', describe, 1);

const depthwise: LayerClass = {
  weights: (config, describe, input) => [
    { name: 'depthwise_kernel', shape: [...sizes(config, 'kernel_size', 2, describe), input, depthMultiplier(config, describe)] },
    ...(flag(config, 'use_bias') ? [{ name: 'bias', shape: [times(input, depthMultiplier(config, describe))] }] : []),
  ],
  output: (config, describe, input) => times(input, depthMultiplier(config, describe)),
};

const separable = (rank: number): LayerClass => ({
  weights: (config, describe, input) => {
    const filters = positiveInteger(config, 'filters', describe);
    const multiplier = depthMultiplier(config, describe);
    return [
      { name: 'depthwise_kernel', shape: [...sizes(config, 'kernel_size', rank, describe), input, multiplier] },
      { name: 'pointwise_kernel', shape: [...Array<number>(rank).fill(1), times(input, multiplier), filters] },
      ...(flag(config, 'use_bias') ? [{ name: 'bias', shape: [filters] }] : []),
    ];
  },
  output: (config, describe) => positiveInteger(config, 'filters', describe),
});

const normalisation = (moving: boolean): LayerClass => ({
  weights: (config, _describe, input) => {
    // One dimension per normalised axis (a LayerNormalization over [H, W, C] has a gamma of [H, W, C]); only the last axis' is the channel count.
    const axis = field(config, 'axis') ?? -1;
    const shape = (Array.isArray(axis) ? axis : [axis]).map((one) => (one === -1 ? input : null));
    return [
      ...(flag(config, 'scale') ? [{ name: 'gamma', shape }] : []),
      ...(flag(config, 'center') ? [{ name: 'beta', shape }] : []),
      ...(moving ? [{ name: 'moving_mean', shape }, { name: 'moving_variance', shape }] : []),
    ];
  },
  output: (_config, _describe, input) => input,
});

/** Layer classes of tfjs-layers that create weights when built: the weights they create, and their output's channels. */
const LAYER_CLASSES: Record<string, LayerClass> = {
  Conv1D: convolution(1, false),
  Conv2D: convolution(2, false),
  Conv3D: convolution(3, false),
  Conv2DTranspose: convolution(2, true),
  Conv3DTranspose: convolution(3, true),
  DepthwiseConv2D: depthwise,
  SeparableConv1D: separable(1),
  SeparableConv2D: separable(2),
  Dense: {
    weights: (config, describe, input) => {
      const units = positiveInteger(config, 'units', describe);
      return [{ name: 'kernel', shape: [input, units] }, ...(flag(config, 'use_bias') ? [{ name: 'bias', shape: [units] }] : [])];
    },
    output: (config, describe) => positiveInteger(config, 'units', describe),
  },
  Embedding: {
    weights: (config, describe) => [
      { name: 'embeddings', shape: [positiveInteger(config, 'input_dim', describe), positiveInteger(config, 'output_dim', describe)] },
    ],
    output: (config, describe) => positiveInteger(config, 'output_dim', describe),
  },
  BatchNormalization: normalisation(true),
  LayerNormalization: normalisation(false),
  PReLU: { weights: () => [{ name: 'alpha', shape: 'any' }], output: (_config, _describe, input) => input },
};

/** Layers without weights whose output has the channels of their input (for merges: of their inputs merged, see `merged`). */
const CHANNELS_KEPT = new Set([
  'InputLayer',
  'Activation', 'ReLU', 'LeakyReLU', 'ELU', 'Softmax', 'ThresholdedReLU',
  'Dropout', 'SpatialDropout1D', 'SpatialDropout2D', 'GaussianNoise', 'GaussianDropout', 'AlphaDropout',
  'MaxPooling1D', 'MaxPooling2D', 'MaxPooling3D', 'AveragePooling1D', 'AveragePooling2D', 'AveragePooling3D',
  'GlobalMaxPooling1D', 'GlobalMaxPooling2D', 'GlobalAveragePooling1D', 'GlobalAveragePooling2D',
  'ZeroPadding2D', 'Cropping2D', 'UpSampling2D', 'Masking',
  'Add', 'Subtract', 'Multiply', 'Average', 'Maximum', 'Minimum', 'Concatenate',
]);
