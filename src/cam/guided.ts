/**
 * Guided backpropagation (Springenberg et al. 2015) and Guided Grad-CAM
 * (Selvaraju et al. 2017). The gradient of the class score with respect to
 * the input image, where every ReLU passes only positive gradient at
 * positive input. The gating is a gradient hook on each ReLU-family layer's
 * output that keeps the positive part (the layer's own ReLU backward then
 * applies the positive-input part), so any layer with a ReLU or ReLU6
 * activation, standalone or fused into a Conv/Dense, is covered. As in
 * pytorch-grad-cam, only ReLU-type activations are gated (not LeakyReLU).
 */
import * as tf from '../engine/tf.js';
import { type HookSpec, withHooksSync } from '../hooks/hooks.js';
import type { GraphNode } from '../executor/graph.js';
import { type Network, disposeValues } from '../executor/network.js';
import { ClassChooser, type ClassRequest, type ScoreKind, classScoreSum, rowsOf } from './base.js';

export interface GuidedResult {
  image: number;
  classIndex: number;
  score: number;
  probability: number;
  /** d(score)/d(input) with guided ReLUs, [H, W, 3] row-major, input channel order. */
  gradient: Float32Array;
  width: number;
  height: number;
}

const RELU_FAMILY = new Set(['relu', 'relu6']);

export function isReluLike(node: GraphNode): boolean {
  const className = node.layer.getClassName();
  if (className === 'ReLU') return true;
  const activation = (node.layer as unknown as { activation?: { getClassName(): string } }).activation;
  return activation !== undefined && RELU_FAMILY.has(activation.getClassName());
}

/** Guided-backprop input gradients for every image and class rank: result[image][rank]. */
export function guidedBackprop(network: Network, input: tf.Tensor4D, classRequest: ClassRequest, score: ScoreKind = 'logit'): GuidedResult[][] {
  const [batch, height, width] = input.shape;
  const hooks: HookSpec[] = network.graph.nodes.filter(isReluLike).map((node) => ({
    layer: node.layer,
    gradient: (grad: tf.Tensor) => tf.relu(grad),
  }));
  const classes = new ClassChooser(classRequest, batch);
  const result = withHooksSync(hooks, () =>
    network.backward(
      input,
      Array.from({ length: classes.count }, (_, rank) => (values) =>
        classScoreSum(score === 'prob' ? values.probabilities : values.scores, classes.forRank(rank, values.probabilities)),
      ),
      { sources: 'input' },
    ),
  );
  try {
    const ranks = classes.ranks(result.values.probabilities);
    const scores = rowsOf(result.values.scores);
    const probabilities = rowsOf(result.values.probabilities);
    const size = height * width * 3;
    const perImage: GuidedResult[][] = Array.from({ length: batch }, () => []);
    result.gradients.forEach(([gradient], rank) => {
      const data = gradient!.dataSync() as Float32Array;
      for (let image = 0; image < batch; image++) {
        const classIndex = ranks[rank]![image]!;
        perImage[image]!.push({
          image,
          classIndex,
          score: scores[image]![classIndex]!,
          probability: probabilities[image]![classIndex]!,
          gradient: data.slice(image * size, (image + 1) * size),
          width,
          height,
        });
      }
    });
    return perImage;
  } finally {
    tf.dispose(result.gradients.flat());
    disposeValues(result.values);
  }
}

/**
 * Guided Grad-CAM: the guided gradient times the normalised Grad-CAM map
 * upsampled to the input size (pytorch-grad-cam: `cam_mask * gb`).
 */
export function guidedGradCam(guided: GuidedResult, camAtInput: Float32Array): Float32Array {
  const out = new Float32Array(guided.gradient.length);
  for (let pixel = 0; pixel < camAtInput.length; pixel++) {
    const weight = camAtInput[pixel]!;
    out[pixel * 3] = guided.gradient[pixel * 3]! * weight;
    out[pixel * 3 + 1] = guided.gradient[pixel * 3 + 1]! * weight;
    out[pixel * 3 + 2] = guided.gradient[pixel * 3 + 2]! * weight;
  }
  return out;
}

/**
 * pytorch-grad-cam's `deprocess_image`: standardise, scale by 0.1, centre
 * on 0.5, clip to [0, 1]; as 0-255 bytes.
 */
export function deprocessGradient(gradient: Float32Array): Uint8Array {
  let mean = 0;
  for (const value of gradient) mean += value;
  mean /= gradient.length;
  let variance = 0;
  for (const value of gradient) variance += (value - mean) ** 2;
  const std = Math.sqrt(variance / gradient.length);
  const out = new Uint8Array(gradient.length);
  for (let i = 0; i < gradient.length; i++) {
    const value = ((gradient[i]! - mean) / (std + 1e-5)) * 0.1 + 0.5;
    out[i] = Math.round(Math.min(1, Math.max(0, value)) * 255);
  }
  return out;
}
