/**
 * A Keras model config (Keras 2 or 3) as the Keras 2 topology tfjs-layers
 * deserialises. Keras 3 writes the same layers differently: `batch_shape`
 * for `batch_input_shape`, dtype policies as objects, `module` and
 * `registered_name` beside each class name, and inbound nodes as
 * `args`/`kwargs` holding tensors with a `keras_history`. What cannot run
 * here is refused before anything is built: `Lambda` layers (Python
 * bytecode) and classes tfjs-layers does not know.
 */
import { createRequire } from 'node:module';
import type * as Core from '@tensorflow/tfjs-core';
import { CamvizError } from '../../util/errors.js';

type Json = Record<string, unknown>;

const { serialization } = createRequire(import.meta.url)('@tensorflow/tfjs-core') as typeof Core;

/** Keys that only Keras 3 writes and that tfjs-layers would not understand (or only needs for training). */
const DROPPED_KEYS = new Set(['module', 'registered_name', 'build_config', 'compile_config', 'shared_object_id']);
/** Training-only settings whose Keras 3 class names tfjs does not share (L2 vs L1L2...). */
const TRAINING_ONLY = ['kernel_regularizer', 'bias_regularizer', 'activity_regularizer', 'depthwise_regularizer', 'pointwise_regularizer', 'beta_regularizer', 'gamma_regularizer', 'embeddings_regularizer', 'kernel_constraint', 'bias_constraint', 'depthwise_constraint', 'pointwise_constraint', 'beta_constraint', 'gamma_constraint', 'embeddings_constraint'];
const MODEL_CLASSES = new Set(['Sequential', 'Functional', 'Model']);

/** One layer of the model (nested models' layers included), as `outer/inner` path and class. */
export interface KerasLayerInfo {
  path: string;
  className: string;
  config: Json;
}

/** The translated model config and every (non-model) layer in it, nested ones by path. */
export interface TranslatedConfig {
  topology: Json;
  layers: KerasLayerInfo[];
}

export function translateModelConfig(modelConfig: unknown, file: string): TranslatedConfig {
  const layers: KerasLayerInfo[] = [];
  const model = record(modelConfig, 'the model config', file);
  try {
    return { topology: translateModel(model, '', layers, file), layers };
  } catch (error) {
    // Configs nested thousands deep exhaust the stack: one line, not a RangeError without the file.
    if (error instanceof RangeError) throw new CamvizError('the model config nests too deeply: refused', { file });
    throw error;
  }
}

function translateModel(model: Json, prefix: string, layers: KerasLayerInfo[], file: string): Json {
  const className = String(model['class_name']);
  const config = record(model['config'], prefix === '' ? "the model config's config" : `the config of model '${prefix}'`, file);
  const list = config['layers'];
  if (!Array.isArray(list)) throw new CamvizError(prefix === '' ? 'the model config has no layer list' : `model '${prefix}' has no layer list`, { file });
  const translatedLayers = list.map((layer) => translateLayer(record(layer, 'a layer of the model config', file), prefix, layers, file));
  const translated: Json = { ...cleaned(config), layers: translatedLayers };
  for (const key of ['input_layers', 'output_layers']) {
    if (config[key] !== undefined) translated[key] = tensorList(config[key]);
  }
  // tfjs registers Keras 3's 'Functional' too, but 'Model' is what every tfjs version reads.
  return { class_name: className === 'Functional' ? 'Model' : className, config: translated };
}

function translateLayer(layer: Json, prefix: string, layers: KerasLayerInfo[], file: string): Json {
  const className = String(layer['class_name']);
  const config = record(layer['config'], `the config of a ${className} layer`, file);
  const name = String(config['name'] ?? layer['name'] ?? '?');
  const path = prefix === '' ? name : `${prefix}/${name}`;
  const translated: Json = MODEL_CLASSES.has(className) ? translateModel(layer, path, layers, file) : translateOwnLayer(className, config, path, layers, file);
  if (layer['name'] !== undefined) translated['name'] = layer['name'];
  if (layer['inbound_nodes'] !== undefined) translated['inbound_nodes'] = inboundNodes(layer['inbound_nodes']);
  return translated;
}

function translateOwnLayer(className: string, config: Json, path: string, layers: KerasLayerInfo[], file: string): Json {
  checkRunnable(className, path, file);
  const translated = cleaned(config);
  if (translated['batch_shape'] !== undefined) {
    translated['batch_input_shape'] = translated['batch_shape'];
    delete translated['batch_shape'];
  }
  for (const key of TRAINING_ONLY) if (key in translated) translated[key] = null;
  layers.push({ path, className, config: translated });
  return { class_name: className, config: translated };
}

function checkRunnable(className: string, path: string, file: string): void {
  if (className === 'Lambda') {
    throw new CamvizError(`layer '${path}' is a Lambda layer: its function is Python bytecode, which cannot run outside Python; rebuild the model without it`, { file });
  }
  if (serialization.SerializationMap.getMap().classNameMap[className] === undefined) {
    throw new CamvizError(
      `layer '${path}' has class '${className}', which camviz does not know; a library user can register a custom layer with tf.serialization.registerClass before loadModel`,
      { file },
    );
  }
}

/** A config without Keras 3's extra keys, dtype policies as dtype names, recursively. */
function cleaned(config: Json): Json {
  const out: Json = {};
  for (const [key, value] of Object.entries(config)) {
    if (DROPPED_KEYS.has(key)) continue;
    out[key] = key === 'dtype' ? dtypeName(value) : cleanedValue(value);
  }
  return out;
}

function cleanedValue(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(cleanedValue);
  if (typeof value === 'object' && value !== null) return cleaned(value as Json);
  return value;
}

/** Keras 3's `{class_name: 'DTypePolicy', config: {name}}` as the dtype tfjs computes in. */
function dtypeName(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  const name = (value as { config?: { name?: unknown } }).config?.name;
  // Mixed-precision policies keep float32 variables: tfjs computes in float32.
  return typeof name === 'string' && !name.startsWith('mixed_') ? name : 'float32';
}

/** `[name, node, tensor]` or a list of them, always as a list. */
function tensorList(value: unknown): unknown {
  return Array.isArray(value) && typeof value[0] === 'string' ? [value] : value;
}

/** Keras 3 `{args, kwargs}` nodes as Keras 2 `[[layer, node, tensor, kwargs], ...]` lists; Keras 2 nodes as they are. */
function inboundNodes(nodes: unknown): unknown {
  if (!Array.isArray(nodes)) return nodes;
  return nodes.map((node) => {
    if (Array.isArray(node)) return node;
    const { args } = (node ?? {}) as { args?: unknown };
    return kerasTensorsIn(args).map((history) => [...history, {}]);
  });
}

/** Every `keras_history` [layer, node, tensor] in a node's arguments, in order. */
function kerasTensorsIn(value: unknown): [string, number, number][] {
  if (Array.isArray(value)) return value.flatMap(kerasTensorsIn);
  if (typeof value !== 'object' || value === null) return [];
  const item = value as Json;
  const history = (item['config'] as Json | undefined)?.['keras_history'];
  if (item['class_name'] === '__keras_tensor__' && Array.isArray(history)) return [history.slice(0, 3) as [string, number, number]];
  return [];
}

function record(value: unknown, what: string, file: string): Json {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Json;
  throw new CamvizError(`${what} is not a JSON object`, { file });
}
