/**
 * Inference-time fusion of Conv2D / DepthwiseConv2D -> BatchNormalization ->
 * ReLU/ReLU6/LeakyReLU chains into one fused kernel: BatchNorm is folded
 * into the convolution's weights and bias, and the activation runs inside
 * the convolution (XNNPACK does conv + bias + clamp in one pass). tfjs-layers
 * runs the three layers as separate kernels with three passes over memory.
 *
 * Folded weights are computed on first use and cached; call
 * `LayerGraph.dispose()` (or `FusedChain.dispose()`) after changing weights.
 */
import * as tf from '../engine/tf.js';
import { isTfjsLayersOwn } from '../engine/tfl.js';
import type { GraphNode, Layer } from './graph.js';

type FusedActivation = 'linear' | 'relu' | 'relu6' | 'leakyrelu';

interface ConvView {
  kernel?: { read(): tf.Tensor };
  depthwiseKernel?: { read(): tf.Tensor };
  bias?: { read(): tf.Tensor } | null;
  strides: number[];
  padding: 'valid' | 'same' | 'causal';
  dataFormat: 'channelsFirst' | 'channelsLast';
  activation: { getClassName(): string };
  rank?: number;
}

interface BatchNormView {
  axis: number | number[];
  epsilon: number;
  center: boolean;
  scale: boolean;
  gamma?: { read(): tf.Tensor };
  beta?: { read(): tf.Tensor };
  movingMean: { read(): tf.Tensor };
  movingVariance: { read(): tf.Tensor };
}

interface GraphView {
  readonly nodes: readonly GraphNode[];
  consumers(key: string): readonly GraphNode[];
  readonly outputKeys: readonly string[];
}

export class FusedChain {
  readonly nodes: readonly GraphNode[];
  private readonly activation: FusedActivation;
  private readonly leakyAlpha: number;
  private folded: FusedWeights | undefined;

  constructor(nodes: GraphNode[], activation: FusedActivation, leakyAlpha: number) {
    this.nodes = nodes;
    this.activation = activation;
    this.leakyAlpha = leakyAlpha;
  }

  apply(x: tf.Tensor): tf.Tensor {
    const layer = this.nodes[0]!.layer;
    const conv = layer as unknown as ConvView;
    const { filter, bias } = this.weights();
    const args = {
      x: x as tf.Tensor4D,
      filter,
      bias,
      strides: conv.strides as [number, number],
      pad: conv.padding as 'valid' | 'same',
      // The rate the unfused layer computes with, so that fused and unfused agree.
      dilations: computedDilations(layer),
      activation: this.activation,
      ...(this.activation === 'leakyrelu' ? { leakyreluAlpha: this.leakyAlpha } : {}),
    };
    return isDepthwise(conv) ? tf.fused.depthwiseConv2d(args) : tf.fused.conv2d(args);
  }

  dispose(): void {
    // The conv layer's own kernel and bias are the layer's to free.
    if (this.folded?.ownsFilter === true) this.folded.filter.dispose();
    if (this.folded?.ownsBias === true) this.folded.bias.dispose();
    this.folded = undefined;
  }

  private weights(): FusedWeights {
    if (this.folded === undefined) {
      this.folded = tf.tidy(() => {
        const folded = foldBatchNorm(this.nodes);
        return { ...folded, filter: tf.keep(folded.filter), bias: tf.keep(folded.bias) };
      });
    }
    return this.folded;
  }
}

/** A chain's fused weights, and which of them the chain made (the others are the conv layer's own). */
interface FusedWeights {
  readonly filter: tf.Tensor4D;
  readonly bias: tf.Tensor1D;
  readonly ownsFilter: boolean;
  readonly ownsBias: boolean;
}

function isDepthwise(conv: ConvView): boolean {
  return conv.depthwiseKernel !== undefined && conv.kernel === undefined;
}

/** Conv weights with the following BatchNorm (if any) folded in. */
function foldBatchNorm(nodes: readonly GraphNode[]): FusedWeights {
  const conv = nodes[0]!.layer as unknown as ConvView;
  const depthwise = isDepthwise(conv);
  const kernel = (depthwise ? conv.depthwiseKernel! : conv.kernel!).read() as tf.Tensor4D;
  const outChannels = depthwise ? kernel.shape[2] * kernel.shape[3] : kernel.shape[3];
  const convBias = conv.bias ? (conv.bias.read() as tf.Tensor1D) : (tf.zeros([outChannels]) as tf.Tensor1D);
  const batchNorm = nodes.map((node) => node.layer).find(isBatchNorm);
  // Without a BatchNorm the layer's own kernel and bias are the fused weights: a clone would be a
  // second copy of them on the wasm backend (its Identity kernel copies), as large as the model's convs.
  if (batchNorm === undefined) return { filter: kernel, bias: convBias, ownsFilter: false, ownsBias: !conv.bias };
  const bn = batchNorm as unknown as BatchNormView;
  const gamma = bn.scale && bn.gamma ? bn.gamma.read() : tf.ones([outChannels]);
  const beta = bn.center && bn.beta ? bn.beta.read() : tf.zeros([outChannels]);
  const scale = tf.div(gamma, tf.sqrt(tf.add(bn.movingVariance.read(), bn.epsilon)));
  // Depthwise output channel c*m + k comes from kernel[:, :, c, k].
  const scaleShape = depthwise ? [1, 1, kernel.shape[2], kernel.shape[3]] : [1, 1, 1, outChannels];
  const filter = tf.mul(kernel, tf.reshape(scale, scaleShape)) as tf.Tensor4D;
  const bias = tf.add(tf.mul(tf.sub(convBias, bn.movingMean.read()), scale), beta) as tf.Tensor1D;
  return { filter, bias, ownsFilter: true, ownsBias: true };
}

function isBatchNorm(layer: Layer): boolean {
  return layer.getClassName() === 'BatchNormalization';
}

/**
 * Chains `conv [-> batchnorm] [-> activation]` of at least two layers where
 * each intermediate output feeds only the next layer of the chain.
 */
export function findFusedChains(graph: GraphView): FusedChain[] {
  const outputs = new Set(graph.outputKeys);
  const onlyConsumer = (node: GraphNode): GraphNode | undefined => {
    if (node.outputs.length !== 1 || outputs.has(node.outputs[0]!)) return undefined;
    const consumers = graph.consumers(node.outputs[0]!);
    return consumers.length === 1 && consumers[0]!.inputs.length === 1 ? consumers[0] : undefined;
  };
  const chains: FusedChain[] = [];
  for (const node of graph.nodes) {
    if (!isFusableConv(node.layer)) continue;
    const convActivation = activationOfLayerFunction(node.layer);
    const members: GraphNode[] = [node];
    let next = onlyConsumer(node);
    if (next !== undefined && convActivation === 'linear' && isFoldableBatchNorm(next.layer, node)) {
      members.push(next);
      next = onlyConsumer(next);
    }
    let activation: FusedActivation | undefined = convActivation;
    let leakyAlpha = 0;
    if (next !== undefined && activation === 'linear') {
      const standalone = standaloneActivation(next.layer);
      if (standalone !== undefined) {
        members.push(next);
        activation = standalone.activation;
        leakyAlpha = standalone.alpha;
      }
    }
    if (activation === undefined || members.length < 2) continue;
    chains.push(new FusedChain(members, activation, leakyAlpha));
  }
  return chains;
}

function isFusableConv(layer: Layer): boolean {
  const name = layer.getClassName();
  if (name !== 'Conv2D' && name !== 'DepthwiseConv2D') return false;
  const conv = layer as unknown as ConvView;
  if (conv.dataFormat !== 'channelsLast' || conv.padding === 'causal') return false;
  const [dh, dw] = computedDilations(layer);
  const [sh, sw] = conv.strides;
  // tfjs' fused convolution refuses dilation together with stride > 1.
  return (dh === 1 && dw === 1) || (sh === 1 && sw === 1);
}

/** The conv layer's own activation if the fused kernel supports it. */
function activationOfLayerFunction(layer: Layer): FusedActivation | undefined {
  const name = (layer as unknown as ConvView).activation.getClassName();
  return name === 'linear' || name === 'relu' || name === 'relu6' ? name : undefined;
}

function isFoldableBatchNorm(layer: Layer, conv: GraphNode): boolean {
  if (!isBatchNorm(layer)) return false;
  const axis = (layer as unknown as BatchNormView).axis;
  const axes = Array.isArray(axis) ? axis : [axis];
  const rank = conv.outputShapes[0]?.length ?? 4;
  return axes.length === 1 && (axes[0] === -1 || axes[0] === rank - 1);
}

function standaloneActivation(layer: Layer): { activation: FusedActivation; alpha: number } | undefined {
  const name = layer.getClassName();
  if (name === 'Activation') {
    const fn = (layer as unknown as ConvView).activation.getClassName();
    return fn === 'relu' || fn === 'relu6' ? { activation: fn, alpha: 0 } : undefined;
  }
  if (name === 'ReLU') {
    const maxValue = (layer as unknown as { maxValue: number | null }).maxValue;
    if (maxValue == null) return { activation: 'relu', alpha: 0 };
    return maxValue === 6 ? { activation: 'relu6', alpha: 0 } : undefined;
  }
  if (name === 'LeakyReLU') {
    return { activation: 'leakyrelu', alpha: (layer as unknown as { alpha: number }).alpha };
  }
  return undefined;
}

/** The fields of a convolution layer that give its dilation. */
interface DilationFields {
  dilationRate?: number | readonly number[];
}

/** tfjs-layers' own classes that ignore their dilation rate (camviz's loader gives Keras' layers of them classes that apply it). */
const UNDILATED_CLASSES = ['DepthwiseConv2D', 'Conv2DTranspose'] as const;

/**
 * The dilation rate a layer's config gives but its call ignores (a
 * tfjs-layers DepthwiseConv2D or Conv2DTranspose with a rate above 1, in a
 * model built or loaded by tfjs-layers itself), or undefined.
 */
export function ignoredDilations(layer: object): [number, number] | undefined {
  if (!UNDILATED_CLASSES.some((className) => isTfjsLayersOwn(layer, className))) return undefined;
  const rate = dilationRateOf(layer);
  return rate.some((value) => value !== 1) ? rate : undefined;
}

/**
 * The dilation rate [rows, columns] a convolution layer computes with: its
 * `dilationRate`, except for tfjs-layers' own DepthwiseConv2D and
 * Conv2DTranspose, which compute undilated whatever the rate says (camviz's
 * loader gives the dilated ones of the models it reads classes that
 * dilate: model/layer-substitutes.ts). The fused kernels, the gradient
 * rules and the ONNX writer compute what the layer's own call does.
 */
export function computedDilations(layer: object): [number, number] {
  return UNDILATED_CLASSES.some((className) => isTfjsLayersOwn(layer, className)) ? [1, 1] : dilationRateOf(layer);
}

/** A convolution layer's `dilationRate` as [rows, columns]. */
function dilationRateOf(layer: object): [number, number] {
  const rate = (layer as DilationFields).dilationRate ?? 1;
  if (typeof rate === 'number') return [rate, rate];
  return [rate[0] ?? 1, rate[1] ?? rate[0] ?? 1];
}
