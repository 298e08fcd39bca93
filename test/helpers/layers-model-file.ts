/**
 * Writes a tfjs-layers model as a TF.js layers model folder (model.json +
 * weights.bin), as tensorflowjs_converter would, for tests that load it
 * through camviz's `--model <folder>`.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';

export async function saveLayersModel(model: tfl.LayersModel, folder: string): Promise<void> {
  await mkdir(folder, { recursive: true });
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const data = artifacts.weightData!;
      const parts = Array.isArray(data) ? data : [data];
      await writeFile(join(folder, 'weights.bin'), Buffer.concat(parts.map((part) => Buffer.from(part))));
      const manifest = [{ paths: ['weights.bin'], weights: artifacts.weightSpecs! }];
      await writeFile(join(folder, 'model.json'), JSON.stringify({ format: 'layers-model', modelTopology: artifacts.modelTopology, weightsManifest: manifest }));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
}
