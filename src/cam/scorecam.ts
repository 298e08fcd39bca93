/**
 * Score-CAM (Wang et al. 2020), gradient-free: each channel of the target
 * activations, upsampled to the input size and min-max normalised, masks
 * the input; the class score of each masked input, softmaxed over the
 * channels, weighs the channels. Masked inputs run in batches through the
 * fast (fused, hook-free) forward path; all classes of an image share the
 * same passes.
 */
import * as tf from '../engine/tf.js';
import { ActivationCamMethod, type CamRequest, type Evidence, weighChannels } from './base.js';
import type { Target } from './targets/index.js';
import type { Executor } from '../executor/executor.js';
import type { GraphNode } from '../executor/graph.js';
import { type ForwardValues, disposeValues } from '../executor/network.js';

export class ScoreCam extends ActivationCamMethod {
  readonly name = 'scorecam';
  /** Masked inputs per forward pass (pytorch-grad-cam uses 16). */
  batchSize = 32;
  /** [layer] -> per image: C x N scores of the masked inputs. */
  private readonly maskedScores = new Map<GraphNode, Float32Array[]>();

  protected weightedActivations(evidence: Evidence): tf.Tensor4D {
    return weighChannels(evidence.activations, this.channelWeights(evidence));
  }

  /** Scores every masked input of every target layer, before any class is weighed: the passes are the same for all classes. */
  protected override async prepare(network: Executor, request: CamRequest, values: ForwardValues, target: Target): Promise<void> {
    for (const node of request.layers) {
      const activations = values.layers.get(node.path);
      if (activations?.rank !== 4) throw new Error(`layer ${node.path} gives no 4-D feature map`);
      this.maskedScores.set(node, await this.scoreMaskedInputs(network, activations as tf.Tensor4D, request.input, target));
    }
  }

  /** softmax over the channels of the masked inputs' target scores [B, C]. */
  private channelWeights(evidence: Evidence): tf.Tensor2D {
    const perImage = this.maskedScores.get(evidence.node);
    if (perImage === undefined) throw new Error(`Score-CAM: layer ${evidence.node.path} was not prepared`);
    const channels = evidence.activations.shape[3];
    return tf.tidy(() => {
      const rows = perImage.map((scores, image) => {
        const classes = scores.length / channels;
        const classIndex = evidence.classes[image]!;
        return Float32Array.from({ length: channels }, (_, channel) => scores[channel * classes + classIndex]!);
      });
      return tf.softmax(tf.tensor2d(rows.map((row) => Array.from(row))));
    });
  }

  protected override reset(): void {
    this.maskedScores.clear();
  }

  /** Per image: the target's scores of its masked inputs, C x units. */
  private async scoreMaskedInputs(network: Executor, activations: tf.Tensor4D, input: tf.Tensor4D, target: Target): Promise<Float32Array[]> {
    const [batch, height, width, channels] = activations.shape;
    const [, inputHeight, inputWidth, inputChannels] = input.shape;
    const results: Float32Array[] = [];
    for (let image = 0; image < batch; image++) {
      const chunks: Float32Array[] = [];
      for (let first = 0; first < channels; first += this.batchSize) {
        const count = Math.min(this.batchSize, channels - first);
        const maskedInputs = tf.tidy(() => {
          const maps = tf.slice(activations, [image, 0, 0, first], [1, height, width, count]);
          // pytorch-grad-cam upsamples with torch.nn.UpsamplingBilinear2d,
          // which aligns corners (the Score-CAM authors' code does not).
          const upsampled = tf.image.resizeBilinear(maps, [inputHeight, inputWidth], true, false);
          const min = tf.min(upsampled, [1, 2], true);
          const range = tf.sub(tf.max(upsampled, [1, 2], true), min);
          const normalised = tf.where(tf.greater(range, 0), tf.div(tf.sub(upsampled, min), tf.maximum(range, 1e-12)), tf.zerosLike(upsampled));
          const masks = tf.transpose(normalised, [3, 1, 2, 0]);
          const picture = tf.slice(input, [image, 0, 0, 0], [1, inputHeight, inputWidth, inputChannels]);
          return tf.mul(masks, picture) as tf.Tensor4D;
        });
        try {
          const values = await network.forward(maskedInputs, { layers: target.layers });
          try {
            // Every masked input shows this image (a region target reads its geometry).
            const rows = new Array<number>(count).fill(image);
            chunks.push(tf.tidy(() => target.scores(values, rows).dataSync() as Float32Array));
          } finally {
            disposeValues(values);
          }
        } finally {
          maskedInputs.dispose();
        }
      }
      results.push(concat(chunks));
    }
    return results;
  }
}

function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
