/**
 * The shared base of the class-activation-map methods (torchcam's shape):
 * it owns the hook lifecycle — register a forward hook (activations A) and a
 * gradient hook (dY/dA) on each target layer, run one forward pass and one
 * backward pass per class, collect, and always remove the hooks — and turns
 * each method's channel weights into maps. A method only says how the
 * channel weights, or the map, are computed (pytorch-grad-cam's split
 * between "activations and gradients" and "what to do with them").
 */
import * as tf from '../engine/tf.js';
import { type HookSpec, withHooksSync } from '../hooks/hooks.js';
import type { GraphNode } from '../executor/graph.js';
import { type ForwardValues, type Network, type Objective, disposeValues } from '../executor/network.js';
import { firstPrincipalProjection } from './projection.js';
import type { ScoreKind } from './names.js';

export type { ScoreKind } from './names.js';

/**
 * Which classes to explain: the same classes for every image, each image's
 * own list (`perImage[image][rank]`, equal lengths), or each image's top k.
 */
export type ClassRequest =
  | { kind: 'explicit'; classes: readonly number[] }
  | { kind: 'perImage'; classes: readonly (readonly number[])[] }
  | { kind: 'top'; k: number };

export interface CamRequest {
  /** Preprocessed batch [B, H, W, 3]. */
  input: tf.Tensor4D;
  /** Target layers; several give per-layer maps normalised and averaged. */
  layers: readonly GraphNode[];
  classes: ClassRequest;
  score?: ScoreKind;
  /** Replace the channel sum by the first principal component of the weighted activations. */
  eigenSmooth?: boolean;
}

/** A single-channel map, row-major. */
export interface FeatureMap {
  width: number;
  height: number;
  data: Float32Array;
}

export interface CamResult {
  image: number;
  classIndex: number;
  /** The class's pre-softmax score. */
  score: number;
  probability: number;
  /** Per target layer: ReLU(map) at that layer's resolution, not normalised. */
  layerMaps: FeatureMap[];
  /**
   * The map the outputs show: for one layer, its raw map; for several, the
   * average of the per-layer min-max normalised maps at the finest layer's
   * resolution (pytorch-grad-cam's aggregation).
   */
  map: FeatureMap;
}

/** Everything a method may use to weigh one layer's channels for one class. */
export interface CamEvidence {
  node: GraphNode;
  /** [B, h, w, C] */
  activations: tf.Tensor4D;
  /** dY/dA [B, h, w, C]; absent for gradient-free methods. */
  gradients?: tf.Tensor4D;
  /** The class of each image of the batch for this map. */
  classes: readonly number[];
  network: Network;
  input: tf.Tensor4D;
  score: ScoreKind;
}

export abstract class CamMethod {
  /** The name used on the command line and in file names. */
  abstract readonly name: string;
  /** Whether `compute` needs a backward pass. */
  readonly usesGradients: boolean = true;

  /** Channel weights [B, C] for one layer and class. */
  protected abstract channelWeights(evidence: CamEvidence): tf.Tensor2D;

  /** Activations weighted per channel [B, h, w, C]; HiResCAM and LayerCAM weigh per element. */
  protected weightedActivations(evidence: CamEvidence): tf.Tensor4D {
    const weights = this.channelWeights(evidence);
    const [batch, channels] = weights.shape;
    return tf.mul(evidence.activations, tf.reshape(weights, [batch, 1, 1, channels]));
  }

  /** The class map [B, h, w] before ReLU. */
  protected classMap(evidence: CamEvidence, eigenSmooth: boolean): tf.Tensor3D {
    const weighted = this.weightedActivations(evidence);
    return eigenSmooth ? firstPrincipalProjection(weighted) : tf.sum(weighted, 3);
  }

  /** Releases what a method cached between classes of one request. */
  protected reset(): void {}

  /**
   * Maps for every image and requested class: result[image][k]. Runs one
   * forward pass, then one backward pass per class rank k (all images of
   * the batch together), with hooks removed afterwards whatever happens.
   */
  compute(network: Network, request: CamRequest): CamResult[][] {
    const score = request.score ?? 'logit';
    const batch = request.input.shape[0];
    const capture = this.capture(network, request, score);
    try {
      const results: CamResult[][] = Array.from({ length: batch }, () => []);
      capture.classes.forEach((classes, rank) => {
        const layerMaps = request.layers.map((node, layer) =>
          this.layerMaps({
            node,
            activations: capture.activations[layer]!,
            ...(this.usesGradients ? { gradients: capture.gradients[layer]![rank]! } : {}),
            classes,
            network,
            input: request.input,
            score,
          }, request.eigenSmooth ?? false),
        );
        for (let image = 0; image < batch; image++) {
          const maps = layerMaps.map((perImage) => perImage[image]!);
          const classIndex = classes[image]!;
          results[image]!.push({
            image,
            classIndex,
            score: capture.scores[image]![classIndex]!,
            probability: capture.probabilities[image]![classIndex]!,
            layerMaps: maps,
            map: maps.length === 1 ? maps[0]! : aggregateLayers(maps),
          });
        }
      });
      return results;
    } finally {
      tf.dispose([...capture.activations, ...capture.gradients.flat()]);
      this.reset();
    }
  }

  private layerMaps(evidence: CamEvidence, eigenSmooth: boolean): FeatureMap[] {
    const maps = tf.tidy(() => tf.relu(this.classMap(evidence, eigenSmooth)));
    try {
      const [batch, height, width] = maps.shape;
      const data = maps.dataSync() as Float32Array;
      const size = height * width;
      return Array.from({ length: batch }, (_, i) => ({ width, height, data: data.slice(i * size, (i + 1) * size) }));
    } finally {
      maps.dispose();
    }
  }

  /**
   * The hook lifecycle: forward hooks keep each target's activations,
   * gradient hooks keep dY/dA once per class rank; the hooks are removed
   * before this returns or throws.
   */
  private capture(network: Network, request: CamRequest, score: ScoreKind): Capture {
    const activations: (tf.Tensor4D | undefined)[] = request.layers.map(() => undefined);
    const gradients: tf.Tensor4D[][] = request.layers.map(() => []);
    const hooks: HookSpec[] = request.layers.map((node, i) => ({
      layer: node.layer,
      forward: (_layer, _inputs, output) => {
        activations[i]?.dispose();
        activations[i] = tf.keep((output as tf.Tensor4D).clone());
      },
      ...(this.usesGradients
        ? {
            gradient: (grad: tf.Tensor) => {
              gradients[i]!.push(tf.keep(grad.clone()) as tf.Tensor4D);
            },
          }
        : {}),
    }));
    const classes = new ClassChooser(request.classes, request.input.shape[0]);
    try {
      const values = withHooksSync(hooks, () => this.run(network, request, classes, score));
      try {
        return {
          activations: activations.map((tensor, i) => {
            if (tensor === undefined) throw new Error(`layer ${request.layers[i]!.path} did not run`);
            return tensor;
          }),
          gradients,
          classes: classes.ranks(values.probabilities),
          scores: rowsOf(values.scores),
          probabilities: rowsOf(values.probabilities),
        };
      } finally {
        disposeValues(values);
      }
    } catch (error) {
      tf.dispose([...activations.filter((tensor): tensor is tf.Tensor4D => tensor !== undefined), ...gradients.flat()]);
      throw error;
    }
  }

  private run(network: Network, request: CamRequest, classes: ClassChooser, score: ScoreKind): ForwardValues {
    if (!this.usesGradients) return network.forward(request.input, { layers: request.layers });
    const objectives: Objective[] = Array.from({ length: classes.count }, (_, rank) => (values) =>
      classScoreSum(score === 'prob' ? values.probabilities : values.scores, classes.forRank(rank, values.probabilities)),
    );
    const result = network.backward(request.input, objectives, { sources: request.layers });
    tf.dispose(result.gradients.flat());
    return result.values;
  }
}

interface Capture {
  activations: tf.Tensor4D[];
  /** [layer][rank] */
  gradients: tf.Tensor4D[][];
  /** [rank][image] */
  classes: number[][];
  scores: Float32Array[];
  probabilities: Float32Array[];
}

/**
 * The classes of each rank: explicit ones, or the top k of each image,
 * read from the first forward pass's probabilities.
 */
export class ClassChooser {
  private chosen: number[][] | undefined;
  readonly count: number;

  constructor(request: ClassRequest, batch: number) {
    if (request.kind === 'top') {
      this.count = request.k;
    } else if (request.kind === 'explicit') {
      this.count = request.classes.length;
      this.chosen = request.classes.map((index) => new Array<number>(batch).fill(index));
    } else {
      if (request.classes.length !== batch) throw new Error(`classes for ${request.classes.length} images, batch of ${batch}`);
      this.count = request.classes[0]?.length ?? 0;
      this.chosen = Array.from({ length: this.count }, (_, rank) => request.classes.map((classes) => classes[rank]!));
    }
  }

  forRank(rank: number, probabilities: tf.Tensor2D): number[] {
    return this.ranks(probabilities)[rank]!;
  }

  ranks(probabilities: tf.Tensor2D): number[][] {
    if (this.chosen === undefined) {
      const rows = rowsOf(probabilities);
      const k = this.count;
      const tops = rows.map((row) => topIndices(row, k));
      this.chosen = Array.from({ length: k }, (_, rank) => tops.map((top) => top[rank]!));
    }
    return this.chosen;
  }
}

function topIndices(row: Float32Array, k: number): number[] {
  return Array.from(row.keys())
    .sort((a, b) => row[b]! - row[a]! || a - b)
    .slice(0, k);
}

/** Y summed over the batch, each image at its own class: one backward pass serves them all. */
export function classScoreSum(scores: tf.Tensor2D, classes: readonly number[]): tf.Scalar {
  return tf.tidy(() => {
    const mask = tf.oneHot(tf.tensor1d(classes as number[], 'int32'), scores.shape[1]);
    return tf.sum(tf.mul(scores, mask));
  });
}

export function rowsOf(matrix: tf.Tensor2D): Float32Array[] {
  const [rows, columns] = matrix.shape;
  const data = matrix.dataSync() as Float32Array;
  return Array.from({ length: rows }, (_, i) => data.slice(i * columns, (i + 1) * columns));
}

/** Mean over the spatial axes: [B, h, w, C] -> [B, C]. */
export function spatialMean(tensor: tf.Tensor4D): tf.Tensor2D {
  return tf.mean(tensor, [1, 2]);
}

/** Sum over the spatial axes: [B, h, w, C] -> [B, C]. */
export function spatialSum(tensor: tf.Tensor4D): tf.Tensor2D {
  return tf.sum(tensor, [1, 2]);
}

/**
 * pytorch-grad-cam's multi-layer aggregation: each layer's map min-max
 * normalised, resized to the finest resolution, averaged.
 */
export function aggregateLayers(maps: readonly FeatureMap[]): FeatureMap {
  const finest = maps.reduce((best, map) => (map.width * map.height > best.width * best.height ? map : best));
  return tf.tidy(() => {
    const resized = maps.map((map) => {
      const tensor = tf.tensor4d(map.data, [1, map.height, map.width, 1]);
      const normalised = minMaxNormalised(tensor);
      return tf.image.resizeBilinear(normalised, [finest.height, finest.width], false, true);
    });
    const mean = tf.div(tf.addN(resized), maps.length);
    return { width: finest.width, height: finest.height, data: mean.dataSync() as Float32Array };
  });
}

function minMaxNormalised(tensor: tf.Tensor): tf.Tensor4D {
  const min = tf.min(tensor);
  const range = tf.sub(tf.max(tensor), min);
  return tf.where(tf.greater(range, 0), tf.div(tf.sub(tensor, min), tf.maximum(range, 1e-12)), tf.zerosLike(tensor)) as tf.Tensor4D;
}
