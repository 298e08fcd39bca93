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
 * batch normalisation's width) are left to tfjs, which compares every
 * variable's shape with the manifest when it loads the weights.
 */
import { CamvizError } from '../util/errors.js';
import type { ModelJson } from './io.js';

type Config = Record<string, unknown>;

/** A parameter a layer creates: its name and shape, null where the input decides; 'any' when even the rank does. */
interface ImpliedWeight {
  name: string;
  shape: (number | null)[] | 'any';
}

type WeightsOfLayer = (config: Config, describe: string) => ImpliedWeight[];

interface ManifestWeight {
  name: string;
  shape: readonly number[];
}

/** Refuses a layers topology whose layers imply weights the manifest does not declare. */
export function checkTopologyAgainstManifest(modelJson: ModelJson, file: string): void {
  const model = kerasModelOf(modelJson.modelTopology);
  if (model === undefined) return; // a graph model, or not a model tfjs can deserialize at all
  const declared: ManifestWeight[] = modelJson.weightsManifest.flatMap((group) => group.weights);
  const seen = new Set<string>();
  for (const layer of layersOf(model)) {
    const className = stringField(layer, 'class_name', 'className') ?? '?';
    const weightsOf = WEIGHTS_BY_CLASS[className];
    if (weightsOf === undefined) continue;
    const config = recordOf(layer['config']);
    const name = stringField(config, 'name') ?? stringField(layer, 'name');
    if (name === undefined) throw new CamvizError(`a ${className} layer has no name: refused`, { file });
    const describe = `layer '${name}' (${className})`;
    // Weights are found by layer name: two layers of one name would share one entry.
    if (seen.has(name)) throw new CamvizError(`${describe} shares its name with another layer with weights: refused`, { file });
    seen.add(name);
    for (const weight of impliedWeights(weightsOf, config, describe, file)) checkDeclared(weight, `${name}/${weight.name}`, declared, describe, file);
  }
}

/** A config value that fixes a weight's shape but is no size; turned into a CamvizError naming the file. */
class InvalidConfig extends Error {}

function impliedWeights(weightsOf: WeightsOfLayer, config: Config, describe: string, file: string): ImpliedWeight[] {
  try {
    return weightsOf(config, describe);
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

/** Every layer of a model, nested models' layers included (in place of the nested model). */
function layersOf(model: Config): Config[] {
  const config = model['config'];
  // Old Sequential configs are the list of layers itself.
  const list = Array.isArray(config) ? config : recordOf(config)['layers'];
  if (!Array.isArray(list)) return [];
  return list.map(recordOf).flatMap((layer) => {
    const className = stringField(layer, 'class_name', 'className');
    return className !== undefined && MODEL_CLASSES.has(className) ? layersOf(layer) : [layer];
  });
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

const convolution = (rank: number, transposed: boolean): WeightsOfLayer => (config, describe) => {
  const kernel = sizes(config, 'kernel_size', rank, describe);
  const filters = positiveInteger(config, 'filters', describe);
  return [
    { name: 'kernel', shape: transposed ? [...kernel, filters, null] : [...kernel, null, filters] },
    ...(flag(config, 'use_bias') ? [{ name: 'bias', shape: [filters] }] : []),
  ];
};

const depthwise: WeightsOfLayer = (config, describe) => [
  { name: 'depthwise_kernel', shape: [...sizes(config, 'kernel_size', 2, describe), null, positiveInteger(config, 'depth_multiplier', describe, 1)] },
  ...(flag(config, 'use_bias') ? [{ name: 'bias', shape: [null] }] : []),
];

const separable = (rank: number): WeightsOfLayer => (config, describe) => {
  const filters = positiveInteger(config, 'filters', describe);
  return [
    { name: 'depthwise_kernel', shape: [...sizes(config, 'kernel_size', rank, describe), null, positiveInteger(config, 'depth_multiplier', describe, 1)] },
    { name: 'pointwise_kernel', shape: [...Array<number>(rank).fill(1), null, filters] },
    ...(flag(config, 'use_bias') ? [{ name: 'bias', shape: [filters] }] : []),
  ];
};

const normalisation = (moving: boolean): WeightsOfLayer => (config) => [
  ...(flag(config, 'scale') ? [{ name: 'gamma', shape: [null] }] : []),
  ...(flag(config, 'center') ? [{ name: 'beta', shape: [null] }] : []),
  ...(moving ? [{ name: 'moving_mean', shape: [null] }, { name: 'moving_variance', shape: [null] }] : []),
];

/** Layer classes of tfjs-layers that create weights when built, and the weights they create. */
const WEIGHTS_BY_CLASS: Record<string, WeightsOfLayer> = {
  Conv1D: convolution(1, false),
  Conv2D: convolution(2, false),
  Conv3D: convolution(3, false),
  Conv2DTranspose: convolution(2, true),
  Conv3DTranspose: convolution(3, true),
  DepthwiseConv2D: depthwise,
  SeparableConv1D: separable(1),
  SeparableConv2D: separable(2),
  Dense: (config, describe) => {
    const units = positiveInteger(config, 'units', describe);
    return [{ name: 'kernel', shape: [null, units] }, ...(flag(config, 'use_bias') ? [{ name: 'bias', shape: [units] }] : [])];
  },
  Embedding: (config, describe) => [
    { name: 'embeddings', shape: [positiveInteger(config, 'input_dim', describe), positiveInteger(config, 'output_dim', describe)] },
  ],
  BatchNormalization: normalisation(true),
  LayerNormalization: normalisation(false),
  PReLU: () => [{ name: 'alpha', shape: 'any' }],
};
