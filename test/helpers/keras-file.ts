/**
 * A TF.js layers model written as Keras 3 saves a model (`.keras`: a zip of
 * metadata.json, config.json and model.weights.h5 with
 * `layers/<name>/vars/N` in each layer's weight order), with the test HDF5
 * and zip writers. The same network and weights in both formats, for
 * parity tests and for the load-time benchmark.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CamvizModel } from '../../src/model/load.js';
import { type Hdf5Group, group, writeHdf5 } from './hdf5-writer.js';
import { zipOf } from './zip.js';

/** The bytes of a `.keras` file holding `model` (loaded from the TF.js layers folder `folder`): its (Keras 2) config, its weights. */
export function kerasFileOf(model: CamvizModel, folder: string): Buffer {
  const layersModel = model.layersModel;
  if (layersModel === undefined) throw new Error('kerasFileOf needs a TF.js layers model');
  const layers: Record<string, Hdf5Group> = {};
  for (const layer of layersModel.layers) {
    const vars: Record<string, { shape: number[]; data: Float32Array }> = {};
    layer.getWeights().forEach((weight, i) => {
      vars[String(i)] = { shape: weight.shape, data: weight.dataSync() as Float32Array };
    });
    layers[layer.name] = group({ vars: group(vars) });
  }
  const config = (JSON.parse(readFileSync(join(folder, 'model.json'), 'utf8')) as { modelTopology: { model_config: unknown } }).modelTopology.model_config;
  return zipOf([
    { name: 'metadata.json', data: Buffer.from(JSON.stringify({ keras_version: '3.10.0' })) },
    { name: 'config.json', data: Buffer.from(JSON.stringify(config)) },
    { name: 'model.weights.h5', data: writeHdf5(group({ layers: group(layers), vars: group() })) },
  ]);
}
