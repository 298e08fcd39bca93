/**
 * The shared base of the class-activation-map methods (torchcam's split of
 * `_CAM` and `_GradCAM`). The base owns the lifecycle: it asks the executor
 * for one forward pass that returns the target layers' activations A (and,
 * for gradient methods, one backward pass per class rank that returns
 * dY/dA), gives each method the evidence it needs, and turns the method's
 * weighted activations into maps. A method only says how it weighs the
 * activations (pytorch-grad-cam's split between "activations and gradients"
 * and "what to do with them").
 */
import * as tf from '../engine/tf.js';
import type { GraphNode } from '../executor/graph.js';
import type { Executor } from '../executor/executor.js';
import { asGrid } from '../executor/grid-view.js';
import { type ForwardValues, disposeValues } from '../executor/network.js';
import type { FeatureMap } from '../render/maps.js';
import { minMaxNormalize } from '../render/normalize.js';
import { resizeBilinear } from '../render/resize.js';
import { ClassChooser, type ClassRequest, type ExplainedClass, type ScoreKind } from './classes.js';
import { channelWeightedMap } from './channel-weighted-map.js';
import { firstPrincipalProjection } from './projection.js';
import { type Target, type TargetLike, asTarget } from './targets/index.js';

export { type ClassRequest, type ExplainedClass, type ScoreKind, ClassChooser, classScoreSum } from './classes.js';
export type { FeatureMap } from '../render/maps.js';

export interface CamRequest {
  /** Preprocessed batch [B, H, W, 3]. */
  input: tf.Tensor4D;
  /** Target layers; several give per-layer maps normalised and averaged. */
  layers: readonly GraphNode[];
  classes: ClassRequest;
  /** What Y is (default: the class logit); `score: 'prob'` is the probability target. */
  target?: TargetLike;
  /** Kept for callers of the time before targets: `target` wins when both are given. */
  score?: ScoreKind;
  /** Replace the channel sum by the first principal component of the weighted activations. */
  eigenSmooth?: boolean;
  /** Aborting ends long work (Score-CAM's masked passes, aug-smooth's six versions) at its next pass, rejecting with the signal's reason. */
  signal?: AbortSignal;
}

export interface CamResult extends ExplainedClass {
  /** Per target layer: ReLU(map) at that layer's resolution, not normalised. */
  layerMaps: FeatureMap[];
  /**
   * The map the outputs show: for one layer, its raw map; for several, the
   * average of the per-layer min-max normalised maps at the finest layer's
   * resolution (pytorch-grad-cam's aggregation).
   */
  map: FeatureMap;
}

/** Everything a method may use to weigh one layer's activations for one class rank. */
export interface Evidence {
  node: GraphNode;
  /** [B, h, w, C] */
  activations: tf.Tensor4D;
  /** The class of each image of the batch for this map. */
  classes: readonly number[];
  network: Executor;
  input: tf.Tensor4D;
  /** What the maps explain. */
  target: Target;
}

/** The evidence of the gradient methods: dY/dA too. */
export interface GradientEvidence extends Evidence {
  /** dY/dA [B, h, w, C] */
  gradients: tf.Tensor4D;
}

/** What the executor returned for one request: forward values and, per class rank, per layer, dY/dA. */
interface Passes {
  values: ForwardValues;
  /** [rank][layer]; empty for gradient-free methods. */
  gradients: tf.Tensor[][];
}

export abstract class CamMethod<E extends Evidence = Evidence> {
  /** The name used on the command line and in file names. */
  abstract readonly name: string;

  /**
   * A method weighs the activations one of two ways. Most weigh each
   * channel: `channelWeights` gives w [B, C], and the base takes the map,
   * ReLU(Σ_k w_k A_k), on the host (channel-weighted-map.ts, the
   * arithmetic a planned run shares). A method that weighs each element
   * (HiResCAM, LayerCAM) or nothing (Eigen-CAM) gives `weightedActivations`
   * instead.
   */
  protected channelWeights?(evidence: E): tf.Tensor2D;

  /** The activations weighted per channel or per element [B, h, w, C]; their channel sum is the map. By default, per channel by `channelWeights`. */
  protected weightedActivations(evidence: E): tf.Tensor4D {
    if (this.channelWeights === undefined) throw new Error(`CAM method ${this.name} implements neither channelWeights nor weightedActivations`);
    return weighChannels(evidence.activations, this.channelWeights(evidence));
  }

  /** Whether the map is the first principal component of the weighted activations rather than their sum. */
  protected projects(eigenSmooth: boolean): boolean {
    return eigenSmooth;
  }

  /** The class map [B, h, w] before ReLU: the channel sum, or the first principal component, of the weighted activations. */
  protected classMap(evidence: E, eigenSmooth: boolean): tf.Tensor3D {
    const weighted = this.weightedActivations(evidence);
    return this.projects(eigenSmooth) ? firstPrincipalProjection(weighted) : tf.sum(weighted, 3);
  }

  /** Runs the passes the method needs through the executor. */
  protected abstract passes(network: Executor, request: CamRequest, classes: ClassChooser, target: Target): Promise<Passes>;

  /** The evidence of one layer for one class rank. */
  protected abstract evidence(base: Evidence, passes: Passes, rank: number, layer: number): E;

  /** Releases what a method cached between classes of one request. */
  protected reset(): void {}

  /**
   * Maps for every image and requested class: result[image][k]. Runs one
   * forward pass, or (gradient methods) one backward pass per class rank
   * k, all images of the batch together.
   */
  async compute(network: Executor, request: CamRequest): Promise<CamResult[][]> {
    const target = requestTarget(request);
    const chooser = new ClassChooser(request.classes, request.input.shape[0], target.units?.(network));
    const passes = await this.passes(network, request, chooser, target);
    try {
      const explained = chooser.explained(passes.values, target);
      const activations = request.layers.map((node) => activationsOf(passes.values, node));
      const results: CamResult[][] = explained.map(() => []);
      chooser.ranks().forEach((classes, rank) => {
        const layerMaps = request.layers.map((node, layer) =>
          this.layerMaps(
            this.evidence({ node, activations: activations[layer]!, classes, network, input: request.input, target }, passes, rank, layer),
            request.eigenSmooth ?? false,
          ),
        );
        explained.forEach((perRank, image) => {
          const maps = layerMaps.map((perImage) => perImage[image]!);
          results[image]!.push({ ...perRank[rank]!, layerMaps: maps, map: maps.length === 1 ? maps[0]! : aggregateLayers(maps) });
        });
      });
      return results;
    } finally {
      disposePassValues(passes.values);
      tf.dispose(passes.gradients.flat());
      this.reset();
    }
  }

  /** ReLU of the class map, per image of the batch. */
  private layerMaps(evidence: E, eigenSmooth: boolean): FeatureMap[] {
    if (this.channelWeights !== undefined && !this.projects(eigenSmooth) && !this.overridesMapSteps()) return this.channelMaps(evidence, this.channelWeights);
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
   * Whether a subclass (of a built-in channel method, say) changed how the
   * weighted activations or their sum are made: its maps then take the
   * tfjs steps it overrides, not the host's.
   */
  private overridesMapSteps(): boolean {
    return this.weightedActivations !== CamMethod.prototype.weightedActivations || this.classMap !== CamMethod.prototype.classMap;
  }

  /** Activations read from tfjs, once for all class ranks of a request (a tensor's values never change). */
  private readonly hostActivations = new WeakMap<tf.Tensor, Float32Array>();

  private hostValues(tensor: tf.Tensor4D): Float32Array {
    let values = this.hostActivations.get(tensor);
    if (values === undefined) this.hostActivations.set(tensor, (values = tensor.dataSync() as Float32Array));
    return values;
  }

  /** ReLU(Σ_k w_k A_k) per image of the batch, on the host. */
  private channelMaps(evidence: E, channelWeights: (evidence: E) => tf.Tensor2D): FeatureMap[] {
    const [batch, height, width, channels] = evidence.activations.shape;
    // Read inside the scope: what the method made is freed, a tensor it keeps (cached weights) is left to it.
    const weights = tf.tidy(() => {
      const tensor = channelWeights.call(this, evidence);
      if (tensor.shape[0] !== batch || tensor.shape[1] !== channels) throw new Error(`${this.name}: channel weights [${tensor.shape.join(', ')}] for activations [${evidence.activations.shape.join(', ')}]`);
      return tensor.dataSync() as Float32Array;
    });
    const activations = this.hostValues(evidence.activations);
    const size = height * width * channels;
    return Array.from({ length: batch }, (_, i) =>
      channelWeightedMap(activations.subarray(i * size, (i + 1) * size), [1, height, width, channels], 3, weights.subarray(i * channels, (i + 1) * channels)),
    );
  }
}

/** The methods that need no gradient (CAM, Score-CAM, Eigen-CAM): one forward pass. */
export abstract class ActivationCamMethod extends CamMethod {
  protected async passes(network: Executor, request: CamRequest, _classes: ClassChooser, target: Target): Promise<Passes> {
    const values = await network.forward(request.input, { layers: passLayers(request, target) });
    try {
      await this.prepare(network, request, values, target);
    } catch (error) {
      disposePassValues(values);
      this.reset();
      throw error;
    }
    return { values, gradients: [] };
  }

  /** Extra passes a method runs before weighing (Score-CAM's masked inputs); none by default. */
  protected async prepare(_network: Executor, _request: CamRequest, _values: ForwardValues, _target: Target): Promise<void> {}

  protected evidence(base: Evidence): Evidence {
    return base;
  }
}

/** The methods that weigh by dY/dA: one backward pass per class rank, from Y to the target layers. */
export abstract class GradientCamMethod extends CamMethod<GradientEvidence> {
  protected async passes(network: Executor, request: CamRequest, classes: ClassChooser, target: Target): Promise<Passes> {
    const result = await network.backward(request.input, classes.objectives(target), { sources: request.layers, layers: passLayers(request, target) });
    try {
      return { values: result.values, gradients: gridsOf(result.gradients, request.layers) };
    } catch (error) {
      disposePassValues(result.values);
      throw error;
    }
  }

  protected evidence(base: Evidence, passes: Passes, rank: number, layer: number): GradientEvidence {
    return { ...base, gradients: as4d(passes.gradients[rank]![layer]!, base.node) };
  }
}

/** The request's target; without one, the class logit (or the probability, with `score: 'prob'`). */
export function requestTarget(request: Pick<CamRequest, 'target' | 'score'>): Target {
  return asTarget(request.target ?? request.score ?? 'logit');
}

/** The layers a pass fetches: the target layers, and those the target reads. */
function passLayers(request: CamRequest, target: Target): GraphNode[] {
  return [...new Set([...request.layers, ...target.layers])];
}

/** The grids made from a pass's layer outputs (grid-view.ts), freed with the pass's values. */
const passGrids = new WeakMap<ForwardValues, Map<GraphNode, tf.Tensor4D>>();

/** A target layer's activations from the executor's forward values as a feature map [B, h, w, C] (a token sequence as its grid), made once per pass. */
export function activationsOf(values: ForwardValues, node: GraphNode): tf.Tensor4D {
  let grids = passGrids.get(values);
  if (grids === undefined) passGrids.set(values, (grids = new Map()));
  let grid = grids.get(node);
  if (grid === undefined) {
    const tensor = values.layers.get(node.path);
    if (tensor === undefined) throw new Error(`layer ${node.path} did not run`);
    grids.set(node, (grid = as4d(asGrid(tensor, node), node)));
  }
  return grid;
}

/** Frees a pass's values and the grids made from them. */
function disposePassValues(values: ForwardValues): void {
  const made = [...(passGrids.get(values)?.values() ?? [])].filter((grid) => ![...values.layers.values()].includes(grid));
  passGrids.delete(values);
  tf.dispose(made);
  disposeValues(values);
}

/** A gradient as its layer's grid; the layer's own gradient is freed when the grid is a new tensor. */
function gridOf(gradient: tf.Tensor, node: GraphNode): tf.Tensor {
  const grid = asGrid(gradient, node);
  if (grid !== gradient) gradient.dispose();
  return grid;
}

/** Each class rank's gradients per layer as grids (gridOf); where one cannot be (a token count off its grid), every gradient and grid is freed before the error goes on. */
function gridsOf(gradients: tf.Tensor[][], layers: readonly GraphNode[]): tf.Tensor[][] {
  const made: tf.Tensor[] = [];
  try {
    return gradients.map((perLayer) => perLayer.map((gradient, layer) => {
      const grid = gridOf(gradient, layers[layer]!);
      made.push(grid);
      return grid;
    }));
  } catch (error) {
    tf.dispose([...made, ...gradients.flat()]);
    throw error;
  }
}

function as4d(tensor: tf.Tensor, node: GraphNode): tf.Tensor4D {
  if (tensor.rank !== 4) throw new Error(`layer ${node.path} gives a ${tensor.rank}-D output, not a 4-D feature map`);
  return tensor as tf.Tensor4D;
}

/** The activations weighted per channel: A [B, h, w, C] times w [B, C]. */
export function weighChannels(activations: tf.Tensor4D, weights: tf.Tensor2D): tf.Tensor4D {
  const [batch, channels] = weights.shape;
  return tf.mul(activations, tf.reshape(weights, [batch, 1, 1, channels]));
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
 * normalised, resized to the finest resolution (bilinear, half-pixel
 * centres, as cv2.resize), averaged.
 */
export function aggregateLayers(maps: readonly FeatureMap[]): FeatureMap {
  const finest = maps.reduce((best, map) => (map.width * map.height > best.width * best.height ? map : best));
  const sum = new Float32Array(finest.width * finest.height);
  for (const map of maps) {
    const resized = resizeBilinear(minMaxNormalize(map.data), map.width, map.height, finest.width, finest.height);
    for (let i = 0; i < sum.length; i++) sum[i]! += resized[i]!;
  }
  for (let i = 0; i < sum.length; i++) sum[i]! /= maps.length;
  return { width: finest.width, height: finest.height, data: sum };
}
