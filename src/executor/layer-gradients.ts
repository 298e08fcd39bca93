/**
 * The gradient rules each layer runs under in camviz's executor
 * (engine/tensorflow-gradients.ts): TensorFlow's for every layer, plus two
 * that depend on what the layer is and so cannot be registered for all:
 * - a dilated Conv2D / DepthwiseConv2D (tfjs-layers' Conv2D, a graph
 *   model's _FusedConv2D) runs tf.fused, whose recorded op carries no
 *   geometry: the layer's fields give it, with the rate it computes with
 *   (fusion.ts' computedDilations: tfjs-layers' own DepthwiseConv2D ignores its);
 * - tfjs-layers' ReLU with maxValue 6 is Keras' ReLU(max_value=6), which
 *   TensorFlow computes as relu6: its ClipByValue gets Relu6Grad's rule,
 *   where a clip_by_value elsewhere keeps its own.
 * Worked out once per layer: the executor asks for every layer of every pass.
 */
import * as tf from '../engine/tf.js';
import { type ConvPadding, fusedDilatedConvGradConfig } from '../engine/dilated-conv.js';
import { RELU6_CLIP_GRADIENT, TENSORFLOW_GRADIENTS } from '../engine/tensorflow-gradients.js';
import { isTfjsLayersOwn } from '../engine/tfl.js';
import { computedDilations } from './fusion.js';
import type { Layer } from './graph.js';

/** The fields of tfjs-layers' Conv2D / DepthwiseConv2D (and of a graph model's conv view) that give its geometry. */
interface ConvFields {
  strides?: number | number[];
  padding?: ConvPadding | 'causal';
  dataFormat?: 'channelsFirst' | 'channelsLast';
}

const rulesByLayer = new WeakMap<Layer, readonly tf.GradConfig[]>();

/** The rules `layer` runs under. */
export function gradientRulesOf(layer: Layer): readonly tf.GradConfig[] {
  let rules = rulesByLayer.get(layer);
  if (rules === undefined) {
    rules = [...TENSORFLOW_GRADIENTS, ...layerSpecificRules(layer)];
    rulesByLayer.set(layer, rules);
  }
  return rules;
}

function layerSpecificRules(layer: Layer): tf.GradConfig[] {
  const name = layer.getClassName();
  if (name === 'ReLU' && isRelu6Layer(layer)) return [RELU6_CLIP_GRADIENT];
  if (name === 'Conv2D' || name === 'DepthwiseConv2D') {
    const fused = fusedDilatedRule(layer as unknown as ConvFields, computedDilations(layer), name === 'DepthwiseConv2D');
    return fused === undefined ? [] : [fused];
  }
  return [];
}

/** tfjs-layers' own ReLU(maxValue: 6) (imported node layers that show the class compute theirs otherwise: a Relu6 kernel, a custom gradient). */
function isRelu6Layer(layer: Layer): boolean {
  return isTfjsLayersOwn(layer, 'ReLU') && (layer as unknown as { maxValue?: number | null }).maxValue === 6;
}

/** The fused op's rule for a dilated conv layer whose geometry tfjs' fused kernels take (unit strides, NHWC, 'same' / 'valid' / explicit pads). */
function fusedDilatedRule(conv: ConvFields, dilations: [number, number], depthwise: boolean): tf.GradConfig | undefined {
  const pair = (value: number | number[] | undefined): number[] => (Array.isArray(value) ? value : [value ?? 1, value ?? 1]);
  if (dilations.every((rate) => rate === 1) || pair(conv.strides).some((stride) => stride !== 1)) return undefined;
  if (conv.dataFormat === 'channelsFirst' || conv.padding === undefined || conv.padding === 'causal') return undefined;
  return fusedDilatedConvGradConfig({ padding: conv.padding, dilations, depthwise });
}
