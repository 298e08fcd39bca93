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
import type * as tfl from '@tensorflow/tfjs-layers';
import { useBackend } from '../src/engine/backend.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { type LoadedImage, loadImage } from '../src/image/image.js';
import { explain } from '../src/explain.js';
import { classProbabilities, inputTensor } from '../src/model/predict.js';
import { camTargets } from '../src/cam/request.js';
import { imagePath, mobilenetDir, skipWithoutSharedAssets } from './helpers/assets.js';
import { maxAbsDifference } from './helpers/numeric.js';
import { type GraphNodeSpec, type GraphWeight, attr, convAttrs, placeholder, writeGraphModel } from './helpers/graph-model.js';

interface LayerConfig {
  strides?: number[];
  padding?: string;
  activation?: string;
  useBias?: boolean;
  targetShape?: number[];
  epsilon?: number;
}

/** The Keras block a layer belongs to (`conv_pw_13_bn` -> `conv_pw_13`), as a TF name scope. */
const scopeOf = (layer: string): string => `MobilenetV1/${layer.replace(/_(bn|relu)$/, '')}`;

/** The layers model as GraphDef nodes and weights: one node per operation of each Keras layer. */
function asGraph(model: tfl.LayersModel): { nodes: GraphNodeSpec[]; weights: GraphWeight[] } {
  const nodes: GraphNodeSpec[] = [placeholder('input', [-1, 224, 224, 3])];
  const weights: GraphWeight[] = [];
  let current = 'input';
  const add = (name: string, op: string, inputs: string[], nodeAttr: Record<string, unknown>): void => {
    nodes.push({ name, op, input: [current, ...inputs], attr: nodeAttr });
    current = name;
  };
  const weight = (name: string, tensor: tf.Tensor): string => {
    weights.push({ name, shape: tensor.shape, dtype: 'float32', data: tensor.dataSync() });
    return name;
  };
  for (const layer of model.layers.slice(1)) {
    const config = layer.getConfig() as LayerConfig;
    const scope = scopeOf(layer.name);
    const values = layer.getWeights();
    switch (layer.getClassName()) {
      case 'Conv2D':
      case 'DepthwiseConv2D': {
        const depthwise = layer.getClassName() === 'DepthwiseConv2D';
        const padding = config.padding === 'same' ? 'SAME' : 'VALID';
        add(`${scope}/${depthwise ? 'depthwise' : 'Conv2D'}`, depthwise ? 'DepthwiseConv2dNative' : 'Conv2D', [weight(`${scope}/weights`, values[0]!)], convAttrs(padding, config.strides![0]));
        if (config.useBias === true) add(`${scope}/BiasAdd`, 'BiasAdd', [weight(`${scope}/biases`, values[1]!)], { T: attr.float, data_format: attr.string('NHWC') });
        break;
      }
      case 'BatchNormalization': {
        const [gamma, beta, mean, variance] = values;
        const inputs = [weight(`${scope}/BatchNorm/gamma`, gamma!), weight(`${scope}/BatchNorm/beta`, beta!), weight(`${scope}/BatchNorm/moving_mean`, mean!), weight(`${scope}/BatchNorm/moving_variance`, variance!)];
        add(`${scope}/BatchNorm/FusedBatchNormV3`, 'FusedBatchNormV3', inputs, { T: attr.float, U: attr.float, epsilon: attr.number(config.epsilon!), is_training: attr.bool(false), data_format: attr.string('NHWC') });
        break;
      }
      case 'Activation':
        if (config.activation === 'relu6') add(`${scope}/Relu6`, 'Relu6', [], { T: attr.float });
        else if (config.activation === 'softmax') add(`${scope}/Softmax`, 'Softmax', [], { T: attr.float });
        else throw new Error(`activation ${config.activation} of ${layer.name} is not translated`);
        break;
      case 'GlobalAveragePooling2D':
        weights.push({ name: `${scope}/axes`, shape: [2], dtype: 'int32', data: [1, 2] });
        add(`${scope}/Mean`, 'Mean', [`${scope}/axes`], { T: attr.float, keep_dims: attr.bool(false), Tidx: { type: 'DT_INT32' } });
        break;
      case 'Reshape': {
        const shape = [-1, ...config.targetShape!];
        weights.push({ name: `${scope}/shape`, shape: [shape.length], dtype: 'int32', data: shape });
        add(`${scope}/Reshape`, 'Reshape', [`${scope}/shape`], { T: attr.float, Tshape: { type: 'DT_INT32' } });
        break;
      }
      case 'Dropout':
        add(`${scope}/Identity`, 'Identity', [], { T: attr.float });
        break;
      default:
        throw new Error(`layer ${layer.name} (${layer.getClassName()}) is not translated`);
    }
  }
  add('MobilenetV1/Predictions', 'Identity', [], { T: attr.float });
  return { nodes, weights };
}

describe('MobileNet v1 as a TF.js graph model equals the layers model on wasm', { skip: skipWithoutSharedAssets }, () => {
  let folder: string;
  let layers: CamvizModel;
  let graph: CamvizModel;
  const images = new Map<string, LoadedImage>();
  before(async () => {
    await useBackend('wasm');
    folder = await mkdtemp(join(tmpdir(), 'camviz-tfgraph-mobilenet-'));
    layers = await loadModel(mobilenetDir);
    const { nodes, weights } = asGraph(layers.layersModel!);
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

  for (const name of ['both.png', 'dog_cat.jpg']) {
    test(`${name}: the same probabilities, and Grad-CAM, Grad-CAM++ and LayerCAM maps at conv_pw_13_relu (1e-4)`, () => {
      const image = images.get(name)!;
      const [fromGraph] = classProbabilities(graph, [image.input]);
      const [fromLayers] = classProbabilities(layers, [image.input]);
      assert.ok(maxAbsDifference(fromGraph!, fromLayers!) <= 1e-4, `probabilities differ by ${maxAbsDifference(fromGraph!, fromLayers!)}`);
      const top = [...fromLayers!.keys()].sort((a, b) => fromLayers![b]! - fromLayers![a]!)[0]!;
      for (const method of ['gradcam', 'gradcampp', 'layercam']) {
        const classes = [top, 281];
        const [graphMaps] = explain(graph, [image], { method, classes, layers: ['MobilenetV1/conv_pw_13'] });
        const [layersMaps] = explain(layers, [image], { method, classes, layers: ['conv_pw_13_relu'] });
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

  // The layers model runs BatchNorm folded into its conv (the executor's fusion), the graph as FusedBatchNormV3: float32 rounding differs.
  test('the feature map at MobilenetV1/conv_pw_13 equals conv_pw_13_relu (1e-4 of its maximum)', () => {
    const image = images.get('both.png')!;
    const valueAt = (model: CamvizModel, layer: string): Float32Array => {
      const [node] = camTargets(model, [layer]);
      const input = inputTensor(model, [image.input]);
      const values = model.network().forward(input, { layers: [node!] });
      const activation = values.layers.get(node!.path)!;
      assert.deepEqual(activation.shape, [1, 7, 7, 768]);
      const data = activation.dataSync() as Float32Array;
      tf.dispose([input, values.output, values.scores, values.probabilities, ...values.layers.values()]);
      return data;
    };
    const expected = valueAt(layers, 'conv_pw_13_relu');
    const peak = expected.reduce((max, value) => Math.max(max, Math.abs(value)), 0);
    const difference = maxAbsDifference(valueAt(graph, 'MobilenetV1/conv_pw_13'), expected);
    assert.ok(peak > 0 && difference <= 1e-4 * peak, `max abs difference ${difference} of peak ${peak}`);
  });
});
