/**
 * tfjs-layers, loaded with `require` for the same start-up reason as
 * `./tf.ts`.
 */
import { createRequire } from 'node:module';
import type * as Core from '@tensorflow/tfjs-core';
import type * as Layers from '@tensorflow/tfjs-layers';
import { decodeWeightViews } from './weight-views.js';
import * as tf from './tf.js';

export type * from '@tensorflow/tfjs-layers';

const require = createRequire(import.meta.url);
const layersPackage = require('@tensorflow/tfjs-layers') as typeof Layers;

/** The LayersModel class as a value (for instanceof); `tfl.LayersModel` is the type. */
export const LayersModelClass = layersPackage.LayersModel;

export const { loadLayersModel } = layersPackage;

/** What the ONNX importer needs to build a functional model of its own layers. */
export const { input, model } = layersPackage;
/** The base class of layers, as a value (to extend); `tfl.layers.Layer` is the type. */
export const LayerClass = layersPackage.layers.Layer;

type DecodeWeights = (data: Core.io.WeightData, specs: Core.io.WeightsManifestEntry[]) => Core.NamedTensorMap;

/** The weight buffers (model artifacts' weightData) `decodedAsViews` marked. */
const viewedWeightData = new WeakSet<object>();
let decodeHooked = false;

/**
 * Marks a model's weight buffers (its artifacts' weightData, the weight
 * files in manifest order) to be decoded as views of themselves rather than
 * copied out weight by weight (./weight-views.ts), and returns them.
 * tfjs-layers' loadLayersModel and tfjs-converter's loadGraphModel decode
 * weights through tfjs-core's `io.decodeWeights`, with no other way in: that
 * one entry is wrapped, once, and the wrapper hands every buffer list it did
 * not mark to tfjs' own function, so other loads are untouched. The buffers
 * must not be written afterwards: the weights are them.
 */
export function decodedAsViews(weightData: ArrayBuffer[]): ArrayBuffer[] {
  hookDecodeWeights();
  viewedWeightData.add(weightData);
  return weightData;
}

function hookDecodeWeights(): void {
  if (decodeHooked) return;
  const io = (require('@tensorflow/tfjs-core') as typeof Core).io as unknown as { decodeWeights: DecodeWeights };
  const tfjsDecode = io.decodeWeights;
  io.decodeWeights = (data, specs) =>
    Array.isArray(data) && viewedWeightData.has(data) ? decodeWeightViews(data, specs, tfjsDecode) : tfjsDecode(data, specs);
  decodeHooked = true;
}

/** tfjs-layers' Zeros initializer, as sharedZerosLoad patches it (its prototype's `apply`). */
interface ZerosInitializer {
  apply(shape: number[], dtype?: Core.DataType): Core.Tensor;
}

/** The shared zeros of sharedZerosLoad (grown, never written). */
let sharedZeros = new Float32Array(0);

/** Loads under way in sharedZerosLoad, and the initializer's own `apply` while any is. */
let zerosLoads = 0;
let ownZerosApply: ZerosInitializer['apply'] | undefined;

/**
 * Runs `load`, a tfjs-layers load of a model whose weights are then all set
 * from its files (loadLayersModel), with the zeros tfjs-layers first makes
 * every weight as (its "fast weight init") taken as views of one shared,
 * never-written buffer on the cpu backend, rather than a fresh array each:
 * filling those arrays with zeros cost 5-9 ms of a MobileNet v1 cold start
 * (its 10 MB of weights), only for them to be replaced by the loaded values
 * a moment later. tfjs never writes a tensor's values in place, and the cpu
 * backend keeps the array a tensor is made from, so the views cost nothing
 * and stay zeros (unless someone writes into the array a tensor's
 * `dataSync()` returns, which tfjs forbids). Other dtypes and backends are
 * made as before. Loads may overlap: the initializer is itself again when
 * the last one ends; meanwhile any layer built in this thread (not only the
 * loads') gets shared zeros.
 */
export async function sharedZerosLoad<T>(load: () => Promise<T>): Promise<T> {
  const prototype = Object.getPrototypeOf(layersPackage.initializers.zeros()) as ZerosInitializer;
  if (zerosLoads++ === 0) {
    const own = prototype.apply;
    ownZerosApply = own;
    prototype.apply = function (this: ZerosInitializer, shape, dtype) {
      if ((dtype ?? 'float32') !== 'float32' || tf.getBackend() !== 'cpu') return own.call(this, shape, dtype);
      const size = shape.reduce((product, dim) => product * dim, 1);
      if (sharedZeros.length < size) sharedZeros = new Float32Array(size);
      return tf.tensor(sharedZeros.subarray(0, size), shape, 'float32');
    };
  }
  try {
    return await load();
  } finally {
    if (--zerosLoads === 0 && ownZerosApply !== undefined) {
      prototype.apply = ownZerosApply;
      ownZerosApply = undefined;
    }
  }
}

/**
 * tfjs-layers' class registered under `className` (its own layers register
 * themselves when tfjs-layers loads): importing a layer's module directly
 * would load a second tfjs-layers. Undefined when none is.
 */
export function registeredLayerClass(className: string): (abstract new (...args: never[]) => object) | undefined {
  const registered = tf.serialization.SerializationMap.getMap().classNameMap[className];
  return registered?.[0] as unknown as (abstract new (...args: never[]) => object) | undefined;
}

/** tfjs-layers' own class `className` as `T` (registeredLayerClass), for a subclass of it; throws where tfjs-layers registers none. */
export function tfjsLayerClass<T>(className: string): T {
  const registered = registeredLayerClass(className);
  if (registered === undefined) throw new Error(`tfjs-layers registers no ${className} class`);
  return registered as unknown as T;
}

/** Whether `layer` is exactly tfjs-layers' own class `className` (not a subclass, not camviz's imported node layers showing that class name). */
export function isTfjsLayersOwn(layer: object, className: string): boolean {
  const own = registeredLayerClass(className);
  return own !== undefined && Object.getPrototypeOf(layer) === own.prototype;
}
