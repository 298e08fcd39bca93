/**
 * The shared TF.js layers MobileNet v1 0.75 rebuilt as a TF.js graph model
 * (one TF node per Keras layer operation, BatchNorm as FusedBatchNormV3,
 * name scopes `MobilenetV1/<block>`), with the same weights: its
 * predictions, Grad-CAM / Grad-CAM++ / LayerCAM maps and feature map at
 * `conv_pw_13_relu`'s equivalent equal the layers model's, on wasm.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../src/engine/backend.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { type LoadedImage, loadImage } from '../src/image/image.js';
import { explain } from '../src/explain.js';
import { classProbabilities, inputTensor } from '../src/model/predict.js';
import { camTargets } from '../src/cam/request.js';
import { imagePath, mobilenetDir, skipWithoutSharedAssets } from './helpers/assets.js';
import { maxAbsDifference } from './helpers/numeric.js';
import { layersAsGraph, writeGraphModel } from './helpers/graph-model.js';

describe('MobileNet v1 as a TF.js graph model equals the layers model on wasm', { skip: skipWithoutSharedAssets }, () => {
  let folder: string;
  let layers: CamvizModel;
  let graph: CamvizModel;
  const images = new Map<string, LoadedImage>();
  before(async () => {
    await useBackend('wasm');
    folder = await mkdtemp(join(tmpdir(), 'camviz-tfgraph-mobilenet-'));
    layers = await loadModel(mobilenetDir);
    const { nodes, weights } = layersAsGraph(layers.layersModel!);
    graph = await loadModel(await writeGraphModel(folder, nodes, weights), { preprocess: layers.meta.preprocess });
    for (const name of ['both.png', 'dog_cat.jpg']) images.set(name, await loadImage(imagePath(name), { size: layers.meta.inputSize }));
  });
  after(async () => {
    layers?.dispose();
    graph?.dispose();
    if (folder !== undefined) await rm(folder, { recursive: true, force: true });
  });

  test('the default CAM target is the last Relu6 before the spatial Mean; the scores are the Softmax input', () => {
    assert.equal(camTargets(graph, [])[0]!.path, 'MobilenetV1/conv_pw_13/Relu6');
    assert.equal(graph.network().score.scoreLayer, 'MobilenetV1/conv_preds/BiasAdd');
    assert.equal(camTargets(graph, ['MobilenetV1/conv_pw_13'])[0]!.path, 'MobilenetV1/conv_pw_13/Relu6');
  });

  test('the executor fuses each conv + FusedBatchNormV3 + Relu6 as it fuses the layers model (27 chains)', () => {
    // The layers model's ReLU6 is an Activation layer, the graph's a Relu6 node (class ReLU): compare the convs and the chain lengths.
    const chains = (model: CamvizModel): string[] => model.network().graph.fusedChains().map((chain) => `${chain.nodes[0]!.layer.getClassName()} x${chain.nodes.length}`);
    assert.equal(chains(graph).length, 27);
    assert.deepEqual(chains(graph), chains(layers));
  });

  for (const name of ['both.png', 'dog_cat.jpg']) {
    test(`${name}: the same probabilities, and Grad-CAM, Grad-CAM++, LayerCAM and CAM maps at conv_pw_13_relu (1e-4)`, async () => {
      const image = images.get(name)!;
      const [fromGraph] = await classProbabilities(graph, [image.input]);
      const [fromLayers] = await classProbabilities(layers, [image.input]);
      assert.ok(maxAbsDifference(fromGraph!, fromLayers!) <= 1e-4, `probabilities differ by ${maxAbsDifference(fromGraph!, fromLayers!)}`);
      const top = [...fromLayers!.keys()].sort((a, b) => fromLayers![b]! - fromLayers![a]!)[0]!;
      for (const method of ['gradcam', 'gradcampp', 'layercam', 'cam']) {
        const classes = [top, 281];
        const [graphMaps] = await explain(graph, [image], { method, classes, layers: ['MobilenetV1/conv_pw_13'] });
        const [layersMaps] = await explain(layers, [image], { method, classes, layers: ['conv_pw_13_relu'] });
        layersMaps!.forEach((expected, i) => {
          const actual = graphMaps![i]!;
          assert.equal(actual.classIndex, expected.classIndex);
          const peak = Math.max(...expected.map!.data);
          assert.ok(peak > 0);
          const difference = maxAbsDifference(actual.map!.data, expected.map!.data);
          assert.ok(difference <= 1e-4 * peak, `${method} class ${expected.classIndex}: ${difference} of peak ${peak}`);
        });
      }
    });
  }

  test('guided backprop (gradient hooks gating every Relu6 node) gives the input gradient of the layers model (1e-4 of its maximum)', async () => {
    const image = images.get('both.png')!;
    const gradientOf = async (model: CamvizModel): Promise<Float32Array> => (await explain(model, [image], { method: 'guidedbackprop', classes: [281] }))[0]![0]!.gradient!.data;
    const expected = await gradientOf(layers);
    const peak = expected.reduce((max, value) => Math.max(max, Math.abs(value)), 0);
    const difference = maxAbsDifference(await gradientOf(graph), expected);
    assert.ok(peak > 0 && difference <= 1e-4 * peak, `max abs difference ${difference} of peak ${peak}`);
  });

  // The layers model runs BatchNorm folded into its conv (the executor's fusion), the graph as FusedBatchNormV3: float32 rounding differs.
  test('the feature map at MobilenetV1/conv_pw_13 equals conv_pw_13_relu (1e-4 of its maximum)', async () => {
    const image = images.get('both.png')!;
    const valueAt = async (model: CamvizModel, layer: string): Promise<Float32Array> => {
      const [node] = camTargets(model, [layer]);
      const input = inputTensor(model, [image.input]);
      const values = await model.network().forward(input, { layers: [node!] });
      const activation = values.layers.get(node!.path)!;
      assert.deepEqual(activation.shape, [1, 7, 7, 768]);
      const data = activation.dataSync() as Float32Array;
      tf.dispose([input, values.output, values.scores, values.probabilities, ...values.layers.values()]);
      return data;
    };
    const expected = await valueAt(layers, 'conv_pw_13_relu');
    const peak = expected.reduce((max, value) => Math.max(max, Math.abs(value)), 0);
    const difference = maxAbsDifference(await valueAt(graph, 'MobilenetV1/conv_pw_13'), expected);
    assert.ok(peak > 0 && difference <= 1e-4 * peak, `max abs difference ${difference} of peak ${peak}`);
  });
});
