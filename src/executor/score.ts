/**
 * Where a classifier's class scores are. CAM methods differentiate the
 * pre-softmax score (the logit), not the probability: the probability of
 * one class also depends on every other logit, and saturates.
 */
import type { GraphNode, LayerGraph } from './graph.js';
import { preActivationKey } from './graph.js';

export type OutputActivation = 'softmax' | 'sigmoid' | 'none';

export interface ScoreLocation {
  /** Graph key of the pre-activation scores. */
  scoreKey: string;
  /** Graph key of the model output (probabilities, or the scores themselves). */
  outputKey: string;
  /** What turns scores into the output probabilities. */
  activation: OutputActivation;
  /** The layer that produces the scores (named in `camviz layers`). */
  scoreLayer: string;
  /** A node that must run with its activation split off to expose the scores. */
  splitNode?: number;
}

/** Layers that only reshape or pass values through at inference time. */
const PASS_THROUGH = new Set(['Reshape', 'Flatten', 'Dropout', 'SpatialDropout1D', 'SpatialDropout2D', 'GaussianNoise', 'GaussianDropout', 'AlphaDropout', 'Permute']);

interface ActivationView {
  activation?: { getClassName(): string };
}

function activationName(node: GraphNode): string | undefined {
  return (node.layer as unknown as ActivationView).activation?.getClassName();
}

/**
 * A layer that is nothing but the output activation: Keras' Softmax layer,
 * and the ONNX importer's Softmax and Sigmoid nodes (a binary or
 * multi-label PyTorch export ends in `torch.sigmoid`).
 */
const ACTIVATION_LAYERS: Readonly<Record<string, OutputActivation>> = { Softmax: 'softmax', Sigmoid: 'sigmoid' };

/**
 * Finds the model's final softmax (or sigmoid), even behind Reshape/Flatten
 * layers (MobileNet v1: conv_preds -> act_softmax -> reshape_2). With
 * `scoreLayerName`, that layer's output is the score and the output
 * activation is whatever lies between it and the output.
 */
export function locateScores(graph: LayerGraph, scoreLayerName?: string): ScoreLocation {
  const outputKey = graph.outputKeys[0];
  if (outputKey === undefined) throw new Error('model has no output');
  if (scoreLayerName !== undefined) return namedScoreLayer(graph, outputKey, scoreLayerName);
  let key = outputKey;
  for (;;) {
    const node = graph.producer(key);
    if (node === undefined) break;
    const className = node.layer.getClassName();
    const layerActivation = ACTIVATION_LAYERS[className];
    if (layerActivation !== undefined && node.inputs.length === 1) {
      return { scoreKey: node.inputs[0]!, outputKey, activation: layerActivation, scoreLayer: producerName(graph, node.inputs[0]!) };
    }
    const fn = activationName(node);
    if (fn === 'softmax' || fn === 'sigmoid') {
      if (className === 'Activation') {
        return { scoreKey: node.inputs[0]!, outputKey, activation: fn, scoreLayer: producerName(graph, node.inputs[0]!) };
      }
      return { scoreKey: preActivationKey(node.outputs[0]!), outputKey, activation: fn, scoreLayer: node.path, splitNode: node.index };
    }
    if (!(PASS_THROUGH.has(className) || (className === 'Activation' && fn === 'linear')) || node.inputs.length !== 1) break;
    key = node.inputs[0]!;
  }
  return { scoreKey: outputKey, outputKey, activation: 'none', scoreLayer: producerName(graph, outputKey) };
}

function namedScoreLayer(graph: LayerGraph, outputKey: string, name: string): ScoreLocation {
  const node = graph.findNodes(name).at(-1);
  if (node === undefined) throw new Error(`score layer '${name}' is not in the model`);
  const scoreKey = node.outputs[0]!;
  let activation: OutputActivation = 'none';
  let key = outputKey;
  while (key !== scoreKey) {
    const producer = graph.producer(key);
    if (producer === undefined || producer.inputs.length !== 1) break;
    const fn = ACTIVATION_LAYERS[producer.layer.getClassName()] ?? activationName(producer);
    if (fn === 'softmax' || fn === 'sigmoid') activation = fn;
    key = producer.inputs[0]!;
  }
  return { scoreKey, outputKey, activation, scoreLayer: node.path };
}

function producerName(graph: LayerGraph, key: string): string {
  return graph.producer(key)?.path ?? 'input';
}
