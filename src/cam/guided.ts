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
import { type HookSpec, withHooks } from '../hooks/hooks.js';
import type { GraphNode } from '../executor/graph.js';
import type { Executor } from '../executor/executor.js';
import { disposeValues } from '../executor/network.js';
import type { FeatureMap, GradientImage } from '../render/maps.js';
import { minMaxNormalize } from '../render/normalize.js';
import { resizeBilinear } from '../render/resize.js';
import { ClassChooser, type ClassRequest, type ExplainedClass } from './classes.js';
import { type TargetLike, asTarget } from './targets/index.js';

export interface GuidedResult extends ExplainedClass {
  /** d(score)/d(input) with guided ReLUs, at input size. */
  gradient: GradientImage;
}

const RELU_FAMILY = new Set(['relu', 'relu6']);

export function isReluLike(node: GraphNode): boolean {
  const className = node.layer.getClassName();
  if (className === 'ReLU') return true;
  const activation = (node.layer as unknown as { activation?: { getClassName(): string } }).activation;
  return activation !== undefined && RELU_FAMILY.has(activation.getClassName());
}

/**
 * Guided-backprop input gradients for every image and class rank:
 * result[image][rank]. The gradient hooks only gate the ReLUs; the input
 * gradient is the executor's.
 */
export async function guidedBackprop(network: Executor, input: tf.Tensor4D, classRequest: ClassRequest, target: TargetLike = 'logit'): Promise<GuidedResult[][]> {
  const [batch, height, width] = input.shape;
  const hooks: HookSpec[] = network.graph.nodes.filter(isReluLike).map((node) => ({
    layer: node.layer,
    gradient: (grad: tf.Tensor) => tf.relu(grad),
  }));
  const classes = new ClassChooser(classRequest, batch, asTarget(target).units?.(network));
  const result = await withHooks(hooks, () => network.backward(input, classes.objectives(target), { sources: 'input', layers: asTarget(target).layers }));
  try {
    const explained = classes.explained(result.values, target);
    const size = height * width * 3;
    // One read per class rank: the batch's gradients of that rank's objective.
    const perRank = result.gradients.map(([gradient]) => gradient!.dataSync() as Float32Array);
    return explained.map((perImage, image) =>
      perImage.map((explainedClass, rank) => ({
        ...explainedClass,
        gradient: { width, height, data: perRank[rank]!.slice(image * size, (image + 1) * size) },
      })),
    );
  } finally {
    tf.dispose(result.gradients.flat());
    disposeValues(result.values);
  }
}

/**
 * Guided Grad-CAM: the guided gradient times the Grad-CAM map, upsampled to
 * the input size and min-max normalised (pytorch-grad-cam: `cam_mask * gb`).
 */
export function guidedGradCam(gradient: GradientImage, map: FeatureMap): GradientImage {
  const { width, height } = gradient;
  const camAtInput = minMaxNormalize(resizeBilinear(map.data, map.width, map.height, width, height));
  const data = new Float32Array(gradient.data.length);
  for (let pixel = 0; pixel < camAtInput.length; pixel++) {
    const weight = camAtInput[pixel]!;
    data[pixel * 3] = gradient.data[pixel * 3]! * weight;
    data[pixel * 3 + 1] = gradient.data[pixel * 3 + 1]! * weight;
    data[pixel * 3 + 2] = gradient.data[pixel * 3 + 2]! * weight;
  }
  return { width, height, data };
}
