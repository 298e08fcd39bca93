/**
 * CAM, the original (Zhou et al. 2016): for a head of global average
 * pooling and a linear classifier (Dense, or a 1x1 convolution, before or
 * after the pooling), the class's classifier weights weigh the channels.
 * No gradients are needed.
 */
import * as tf from '../engine/tf.js';
import { UsageError } from '../util/errors.js';
import type { GraphNode } from '../executor/graph.js';
import type { Executor } from '../executor/executor.js';
import { ActivationCamMethod, type Evidence, weighChannels } from './base.js';
import { classMask } from './classes.js';

const PASS_THROUGH = new Set(['Reshape', 'Flatten', 'Dropout', 'SpatialDropout2D', 'GaussianNoise', 'GaussianDropout']);

export class Cam extends ActivationCamMethod {
  readonly name = 'cam';

  protected weightedActivations(evidence: Evidence): tf.Tensor4D {
    return weighChannels(evidence.activations, classifierWeights(evidence));
  }
}

/** The classifier's weights of each image's class, per channel [B, C]. */
function classifierWeights(evidence: Evidence): tf.Tensor2D {
  return tf.tidy(() => {
    const kernel = classifierKernel(evidence.network, evidence.node);
    const classes = kernel.shape[1];
    const columns = classMask(evidence.classes, classes);
    // [C, N] x [N, B] -> [C, B] -> [B, C]
    return tf.transpose(tf.matMul(kernel, columns, false, true)) as tf.Tensor2D;
  });
}

interface KernelOwner {
  kernel?: { read(): tf.Tensor };
  kernelSize?: number[];
  useBias?: boolean;
}

/**
 * The [C, N] classifier kernel between `target` and the class scores, when
 * that path is global average pooling plus one linear classifier; or, when
 * the target's channels are the classes themselves and are only pooled
 * (network-in-network heads such as Darknet's), the identity.
 */
export function classifierKernel(network: Executor, target: GraphNode): tf.Tensor2D {
  const graph = network.graph;
  const scoreKey = network.score.scoreKey.replace(/:pre$/, '');
  let key = target.outputs[0]!;
  let pooled = false;
  let classifier: GraphNode | undefined;
  const fail = (why: string): never => {
    // A usage problem: this method at this layer; other methods work there.
    throw new UsageError(`CAM needs global average pooling and one linear classifier after '${target.path}': ${why}; use gradcam`);
  };
  while (key !== scoreKey) {
    const consumers = graph.consumers(key);
    if (consumers.length !== 1) fail(`its output feeds ${consumers.length} layers`);
    const node = consumers[0]!;
    const className = node.layer.getClassName();
    if (className === 'GlobalAveragePooling2D') {
      if (pooled) fail('it is pooled twice');
      pooled = true;
    } else if (className === 'Dense' || (className === 'Conv2D' && isPointwise(node))) {
      if (classifier !== undefined) fail(`both ${classifier.path} and ${node.path} are classifiers`);
      classifier = node;
    } else if (!PASS_THROUGH.has(className) && !(className === 'Activation' && activationOf(node) === 'linear')) {
      fail(`${node.path} (${className}) is in the way`);
    }
    key = node.outputs[0]!;
  }
  if (!pooled) fail('no global average pooling found');
  if (classifier === undefined) {
    const channels = target.outputShapes[0]?.at(-1);
    const classes = graph.producer(scoreKey)?.outputShapes[0]?.at(-1);
    if (typeof channels !== 'number' || channels !== classes) return fail('no classifier found');
    const identity = new Float32Array(channels * channels);
    for (let c = 0; c < channels; c++) identity[c * channels + c] = 1;
    return tf.tensor2d(identity, [channels, channels]);
  }
  const kernel = (classifier.layer as unknown as KernelOwner).kernel!.read();
  return tf.reshape(kernel, [kernel.shape[kernel.rank - 2]!, kernel.shape[kernel.rank - 1]!]);
}

function isPointwise(node: GraphNode): boolean {
  const size = (node.layer as unknown as KernelOwner).kernelSize ?? [];
  return size.every((dim) => dim === 1);
}

function activationOf(node: GraphNode): string | undefined {
  return (node.layer as unknown as { activation?: { getClassName(): string } }).activation?.getClassName();
}
