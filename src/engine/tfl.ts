/**
 * tfjs-layers, loaded with `require` for the same start-up reason as
 * `./tf.ts`.
 */
import { createRequire } from 'node:module';
import type * as Layers from '@tensorflow/tfjs-layers';

export type * from '@tensorflow/tfjs-layers';

const layersPackage = createRequire(import.meta.url)('@tensorflow/tfjs-layers') as typeof Layers;

/** The LayersModel class as a value (for instanceof); `tfl.LayersModel` is the type. */
export const LayersModelClass = layersPackage.LayersModel;

export const { loadLayersModel } = layersPackage;

/** What the ONNX importer needs to build a functional model of its own layers. */
export const { input, model } = layersPackage;
/** The base class of layers, as a value (to extend); `tfl.layers.Layer` is the type. */
export const LayerClass = layersPackage.layers.Layer;
