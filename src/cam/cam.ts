/**
 * CAM, the original (Zhou et al. 2016): for a head of global average
 * pooling and a linear classifier (Dense, or a 1x1 convolution, before or
 * after the pooling), the class's classifier weights weigh the channels.
 * No gradients are needed.
 */
import { wasmMatMul } from '../engine/wasm-matmul.js';
import * as tf from '../engine/tf.js';
import { UsageError } from '../util/errors.js';
import type { GraphNode } from '../executor/graph.js';
import type { Executor } from '../executor/executor.js';
import { ActivationCamMethod, type Evidence } from './base.js';
import { classMask } from './classes.js';
import { walkLinearHead } from '../executor/linear-head.js';

export class Cam extends ActivationCamMethod {
  readonly name = 'cam';

  protected override channelWeights(evidence: Evidence): tf.Tensor2D {
    return classifierWeights(evidence);
  }
}

/** The classifier's weights of each image's class, per channel [B, C]. */
function classifierWeights(evidence: Evidence): tf.Tensor2D {
  return tf.tidy(() => {
    const kernel = classifierKernel(evidence.network, evidence.node);
    const classes = kernel.shape[1];
    const columns = classMask(evidence.classes, classes);
    // [C, N] x [N, B] -> [C, B] -> [B, C]
    return tf.transpose(wasmMatMul(kernel, columns, false, true)) as tf.Tensor2D;
  });
}

interface KernelOwner {
  kernel?: { read(): tf.Tensor };
}

/**
 * The [C, N] classifier kernel between `target` and the class scores, when
 * that path is global average pooling plus one linear classifier (the walk
 * the ONNX Runtime executor's closed-form head uses too); or, when the
 * target's channels are the classes themselves and are only pooled
 * (network-in-network heads such as Darknet's), the identity.
 */
export function classifierKernel(network: Executor, target: GraphNode): tf.Tensor2D {
  const walk = walkLinearHead(network.graph, target.outputs[0]!, network.score);
  // A usage problem: this method at this layer; other methods work there.
  const fail = (why: string): never => {
    throw new UsageError(`CAM needs global average pooling and one linear classifier after '${target.path}': ${why}; use gradcam`);
  };
  if (!walk.ok) return fail(walk.why);
  if (walk.classifier === undefined) {
    const channels = target.outputShapes[0]?.at(-1);
    // A split classifier's scores are its pre-activation: the shape of its output.
    const classes = network.graph.producer(network.score.scoreKey.replace(/:pre$/, ''))?.outputShapes[0]?.at(-1);
    if (typeof channels !== 'number' || channels !== classes) return fail('no classifier found');
    const identity = new Float32Array(channels * channels);
    for (let c = 0; c < channels; c++) identity[c * channels + c] = 1;
    return tf.tensor2d(identity, [channels, channels]);
  }
  const kernel = (walk.classifier.layer as unknown as KernelOwner).kernel!.read();
  return tf.reshape(kernel, [kernel.shape[kernel.rank - 2]!, kernel.shape[kernel.rank - 1]!]);
}
