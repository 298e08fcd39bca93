/**
 * A tfjs-layers classifier as camviz runs it: a forward pass that fetches any
 * layer's output next to the class scores, and a backward pass from
 * objectives on those scores to chosen layers or to the input.
 *
 * The backward pass cuts the graph at its sources ("leaf" mode): everything
 * the sources do not influence runs once, outside any gradient tape and with
 * fused kernels; only the part downstream of the sources (for the usual
 * Grad-CAM layer, the classifier head) runs under the tape, once per
 * objective. That is what PyTorch users get by detaching at the hooked layer,
 * and it needs no gradient kernel of the layers below the sources.
 */
import * as tf from '../engine/tf.js';
import type * as tfl from '../engine/tfl.js';
import { layerGradientHooks, withGradientHooks } from '../hooks/hooks.js';
import type { Executor } from './executor.js';
import { CamvizError } from '../util/errors.js';
import { ignoredDilations } from './fusion.js';
import { type GraphNode, LayerGraph } from './graph.js';
import { type ScoreLocation, locateScores } from './score.js';
import { softmaxRows } from './softmax.js';

export interface ForwardValues {
  /** The model's (first) output. */
  readonly output: tf.Tensor;
  /** Every model output, in the model's output order (`outputs[0]` is `output`). */
  readonly outputs: readonly tf.Tensor[];
  /** Class scores before the output activation, flattened to [batch, classes]. */
  readonly scores: tf.Tensor2D;
  /** Class probabilities [batch, classes]: the model output, or softmax of the scores. */
  readonly probabilities: tf.Tensor2D;
  /** Outputs of the requested layers, keyed by node path. */
  readonly layers: ReadonlyMap<string, tf.Tensor>;
}

/**
 * A scalar to differentiate, computed from the forward values. An objective
 * that is a weighted sum of the pre-softmax class scores says so through
 * `scoreTerms`, so that an executor whose head is linear in the source layer
 * (global average pooling then a dense or 1x1-conv classifier) can compute
 * the gradient in closed form, without a tape.
 */
export interface Objective {
  (values: ForwardValues): tf.Scalar;
  /** The objective as sum(weight * scores[image][classIndex]), read from the forward values. */
  readonly scoreTerms?: (values: ForwardValues) => readonly ScoreTerm[];
}

/** One term of an objective that is linear in the class scores. */
export interface ScoreTerm {
  readonly image: number;
  readonly classIndex: number;
  readonly weight: number;
}

/** One tensor, or one per model input. */
export type ModelInputs = tf.Tensor | readonly tf.Tensor[];

function batchOf(inputs: ModelInputs): number {
  const first = Array.isArray(inputs) ? inputs[0] : inputs;
  return (first as tf.Tensor).shape[0] ?? 1;
}

export interface ForwardOptions {
  /** Layer nodes whose outputs to return. */
  layers?: readonly GraphNode[];
  /** Run Conv/BatchNorm/ReLU chains as fused kernels (default true). */
  fuse?: boolean;
}

export interface BackwardOptions {
  /** Gradient sources: the outputs of these nodes ("leaf" mode), or the model's inputs. */
  sources: 'input' | readonly GraphNode[];
  /** Layer nodes whose outputs to return (from the forward pass). */
  layers?: readonly GraphNode[];
}

export interface BackwardResult {
  /** The forward values (owned by the caller: `disposeValues`). */
  values: ForwardValues;
  /** The objectives' values. */
  objectives: number[];
  /** Per objective, the gradient with respect to each source, in order (owned by the caller). */
  gradients: tf.Tensor[][];
}

/** Milliseconds spent in the last `backward` call: before the sources, and the taped part. */
export interface BackwardTimings {
  forward: number;
  backward: number;
}

const networks = new WeakMap<tfl.LayersModel, Network>();

/**
 * A model whose config gives a layer a dilation rate that tfjs-layers 4.22
 * ignores (its own DepthwiseConv2D and Conv2DTranspose; a model built in
 * memory or loaded by tfjs-layers itself) is refused: whether its weights
 * were made for the dilated layer (Keras' model, which camviz's loadModel
 * computes dilated) or for what tfjs computes cannot be told, and either
 * answer would explain the other model silently.
 */
function refuseIgnoredDilations(graph: LayerGraph): void {
  for (const node of graph.nodes) {
    const rate = ignoredDilations(node.layer);
    if (rate === undefined) continue;
    throw new CamvizError(
      `layer '${node.layer.name}' is tfjs-layers' own ${node.layer.getClassName()} with dilation rate [${rate.join(', ')}], which tfjs-layers 4.22 computes undilated: load the model with camviz's loadModel (dilated, as Keras computes it) or give the layer dilation rate 1`,
    );
  }
}

export class Network implements Executor {
  readonly graph: LayerGraph;
  readonly score: ScoreLocation;
  private readonly splitActivation: ReadonlySet<number>;
  /** Timings of the last `backward` call. */
  lastBackwardTimings: BackwardTimings = { forward: 0, backward: 0 };

  private constructor(readonly model: tfl.LayersModel, scoreLayer?: string) {
    this.graph = LayerGraph.fromModel(model);
    refuseIgnoredDilations(this.graph);
    this.score = locateScores(this.graph, scoreLayer);
    this.splitActivation = new Set(this.score.splitNode === undefined ? [] : [this.score.splitNode]);
  }

  /** The network of `model`, compiled once and cached. */
  static of(model: tfl.LayersModel, scoreLayer?: string): Network {
    const cached = networks.get(model);
    if (cached !== undefined && (scoreLayer === undefined || cached.score.scoreLayer === scoreLayer)) return cached;
    const network = new Network(model, scoreLayer);
    networks.set(model, network);
    return network;
  }

  /** Feeds for the model's inputs; a model with one input takes a tensor. */
  private inputFeeds(inputs: ModelInputs): Map<string, tf.Tensor> {
    const list = Array.isArray(inputs) ? inputs : [inputs];
    if (list.length !== this.graph.inputKeys.length) {
      throw new Error(`the model takes ${this.graph.inputKeys.length} inputs, got ${list.length}`);
    }
    return new Map(this.graph.inputKeys.map((key, i) => [key, list[i]!]));
  }

  async forward(inputs: ModelInputs, options: ForwardOptions = {}): Promise<ForwardValues> {
    const layers = options.layers ?? [];
    const fetches = unique([this.score.outputKey, this.score.scoreKey, ...this.graph.outputKeys, ...layers.map(outputKeyOf)]);
    const values = this.graph.run(this.inputFeeds(inputs), fetches, {
      fuse: options.fuse ?? true,
      splitActivation: this.splitActivation,
    });
    return this.collect(values, layers, batchOf(inputs));
  }

  async backward(inputs: ModelInputs, objectives: readonly Objective[], options: BackwardOptions): Promise<BackwardResult> {
    if (objectives.length === 0) throw new Error('backward() needs at least one objective');
    const plan = this.backwardPlan(options);
    const started = performance.now();
    const before = plan.fromInput
      ? new Map<string, tf.Tensor>()
      : this.graph.run(this.inputFeeds(inputs), plan.beforeFetches, {
          fuse: true,
          splitActivation: this.splitActivation,
        });
    return this.backwardFrom(inputs, objectives, options, plan, before, started);
  }

  /**
   * The taped part of `backward`, from the values before the sources
   * (`plan.beforeFetches`, computed by this network or by another engine;
   * taken over and disposed). `started` is when computing them began.
   * @internal
   */
  backwardFrom(
    inputs: ModelInputs,
    objectives: readonly Objective[],
    options: BackwardOptions,
    plan: BackwardPlan,
    before: Map<string, tf.Tensor>,
    started: number,
  ): BackwardResult {
    const layers = options.layers ?? [];
    const feeds = plan.fromInput ? this.inputFeeds(inputs) : new Map<string, tf.Tensor>();
    let values: ForwardValues | undefined;
    const gradients: tf.Tensor[][] = [];
    const objectiveValues: number[] = [];
    const tapeStarted = performance.now();
    // Sources downstream of other sources are computed on the tape; their
    // gradients are caught as they pass, as a gradient hook would (after the
    // consumers, before that layer's own gradient hooks).
    const caught = new Map<string, tf.Tensor>();
    const caughtShapes = new Map<string, number[]>();
    const intercept = new Map(
      plan.innerSourceKeys.map((key) => [
        key,
        (value: tf.Tensor): tf.Tensor => {
          caughtShapes.set(key, value.shape);
          return withGradientHooks(value, new Map([[0, (grad: tf.Tensor) => void caught.set(key, tf.keep(grad.clone()))]]));
        },
      ]),
    );
    try {
      const sourceTensors = plan.sourceKeys.map((key) => (plan.fromInput ? feeds : before).get(key)!);
      // What the taped part reads but does not own (a layer may pass a fed tensor through).
      const fed = new Set(before.values());
      for (const objective of objectives) {
        let after = new Map<string, tf.Tensor>();
        let failure: { error: unknown } | undefined;
        const { value, grads } = tf.valueAndGrads((...sources: tf.Tensor[]) => {
          const feeds = new Map<string, tf.Tensor>();
          for (const key of plan.frontier) feeds.set(key, before.get(key)!);
          plan.sourceKeys.forEach((key, i) => feeds.set(key, this.withSourceHooks(key, sources[i]!)));
          after = this.graph.run(feeds, plan.afterFetches, { fuse: false, splitActivation: this.splitActivation, intercept });
          const merged = new Map([...before, ...after]);
          const forwardValues = this.view(merged, layers, batchOf(inputs), true);
          if (values === undefined) values = keepValues(forwardValues, this.score.activation === 'none' ? hostSoftmax(forwardValues.scores) : forwardValues.probabilities);
          return objectiveOrZero(objective, forwardValues, sources, (error) => (failure = { error }));
        })(sourceTensors);
        // The tape frees what it made, but not what a step kept on purpose
        // (a split activation's pre-activation): `values` holds copies.
        tf.dispose([...after.values()].filter((tensor) => !fed.has(tensor)));
        if (failure !== undefined) {
          tf.dispose([value, ...grads]);
          throw failure.error;
        }
        objectiveValues.push(value.dataSync()[0]!);
        value.dispose();
        gradients.push(orderGradients(plan, grads, caught, caughtShapes));
        caught.clear();
      }
      this.lastBackwardTimings = { forward: tapeStarted - started, backward: performance.now() - tapeStarted };
      return { values: values!, objectives: objectiveValues, gradients };
    } catch (error) {
      if (values !== undefined) disposeValues(values);
      tf.dispose([...gradients.flat(), ...caught.values()]);
      throw error;
    } finally {
      tf.dispose([...before.values()]);
    }
  }

  /**
   * Splits the graph for a backward pass: the sources, what must be computed
   * before them (the "frontier" that the downstream part also reads, such as
   * a residual branch), and what runs under the gradient tape.
   * @internal
   */
  backwardPlan(options: BackwardOptions): BackwardPlan {
    const fromInput = options.sources === 'input';
    const requested = [this.score.outputKey, this.score.scoreKey, ...this.graph.outputKeys, ...(options.layers ?? []).map(outputKeyOf)];
    if (fromInput) {
      const sourceKeys = [...this.graph.inputKeys];
      return { fromInput, sourceKeys, innerSourceKeys: [], gradientKeys: sourceKeys, frontier: [], beforeFetches: [], afterFetches: unique(requested) };
    }
    const candidateKeys = (options.sources as readonly GraphNode[]).map(outputKeyOf);
    // A source downstream of another source is computed on the tape, not fed.
    const isInner = (key: string): boolean =>
      candidateKeys.some((other) => other !== key && this.graph.downstreamOf([other]).has(this.graph.producer(key)!.index));
    const sourceKeys = unique(candidateKeys).filter((key) => !isInner(key));
    const innerSourceKeys = unique(candidateKeys).filter(isInner);
    const downstream = this.graph.downstreamOf(sourceKeys);
    const producedDownstream = (key: string): boolean => {
      const producer = this.graph.producer(key);
      return producer !== undefined && downstream.has(producer.index);
    };
    const frontier = unique(
      this.graph.nodes
        .filter((node) => downstream.has(node.index))
        .flatMap((node) => node.inputs)
        .filter((key) => !producedDownstream(key) && !sourceKeys.includes(key)),
    );
    const afterFetches = unique(requested.filter(producedDownstream));
    if (!afterFetches.includes(this.score.scoreKey)) {
      throw new Error(`the class scores do not depend on ${sourceKeys.map((key) => this.graph.producer(key)!.path).join(', ')}`);
    }
    const beforeFetches = unique([...sourceKeys, ...frontier, ...requested.filter((key) => !producedDownstream(key))]);
    return { fromInput, sourceKeys, innerSourceKeys, gradientKeys: candidateKeys, frontier, beforeFetches, afterFetches };
  }

  /** Gradient hooks of a source layer fire on the gradient of its output. */
  private withSourceHooks(key: string, source: tf.Tensor): tf.Tensor {
    const producer = this.graph.producer(key);
    const hooks = producer === undefined ? undefined : layerGradientHooks(producer.layer);
    return hooks === undefined ? source : withGradientHooks(source, hooks);
  }

  /**
   * Forward values from run results (graph key -> tensor, computed by this
   * network or by another engine); takes ownership of `values`.
   * @internal
   */
  collect(values: Map<string, tf.Tensor>, layers: readonly GraphNode[], batch: number): ForwardValues {
    try {
      const outputCount = this.graph.outputKeys.length;
      const [scores, probabilities, ...rest] = tf.tidy(() => {
        const view = this.view(values, layers, batch, false);
        return [view.scores, view.probabilities, ...view.outputs, ...view.layers.values()].map((tensor) => tensor.clone());
      });
      const outputs = rest.slice(0, outputCount);
      return {
        output: outputs[0]!,
        outputs,
        scores: scores as tf.Tensor2D,
        probabilities: probabilities as tf.Tensor2D,
        layers: new Map(layers.map((node, i) => [node.path, rest[outputCount + i]!])),
      };
    } finally {
      tf.dispose([...values.values()]);
    }
  }

  /**
   * Forward values that borrow `values` (no copies). Their probabilities:
   * the model's own output; where it has no softmax, on a tape (`taped`)
   * tf.softmax of the scores, which an objective may differentiate (the
   * probability target), else the softmax the passes report (hostSoftmax).
   */
  private view(values: ReadonlyMap<string, tf.Tensor>, layers: readonly GraphNode[], batch: number, taped: boolean): ForwardValues {
    const output = values.get(this.score.outputKey)!;
    const scores = tf.reshape(values.get(this.score.scoreKey)!, [batch, -1]) as tf.Tensor2D;
    const probabilities = (
      this.score.activation !== 'none' ? tf.reshape(output, [batch, -1]) : taped ? tf.softmax(scores) : hostSoftmax(scores)
    ) as tf.Tensor2D;
    const layerValues = new Map(layers.map((node) => [node.path, values.get(outputKeyOf(node))!]));
    const outputs = this.graph.outputKeys.map((key) => values.get(key)!);
    return { output, outputs, scores, probabilities, layers: layerValues };
  }
}

/** How a backward pass splits the graph (see `Network.backwardPlan`). */
export interface BackwardPlan {
  fromInput: boolean;
  /** Sources fed to the tape as variables. */
  sourceKeys: string[];
  /** Sources downstream of other sources, computed on the tape. */
  innerSourceKeys: string[];
  /** The sources in the order the caller asked for them (gradients follow it). */
  gradientKeys: string[];
  frontier: string[];
  beforeFetches: string[];
  afterFetches: string[];
}

/**
 * One gradient per requested source, in the requested order: a variable's
 * from the tape, an inner source's as caught (zeros if none flowed). A source
 * asked for twice gets a copy.
 */
function orderGradients(
  plan: BackwardPlan,
  grads: readonly tf.Tensor[],
  caught: ReadonlyMap<string, tf.Tensor>,
  shapes: ReadonlyMap<string, number[]>,
): tf.Tensor[] {
  const handedOut = new Set<tf.Tensor>();
  return plan.gradientKeys.map((key) => {
    const index = plan.sourceKeys.indexOf(key);
    const grad = index >= 0 ? grads[index]! : (caught.get(key) ?? tf.zeros(shapes.get(key)!));
    if (handedOut.has(grad)) return grad.clone();
    handedOut.add(grad);
    return grad;
  });
}

/**
 * The probabilities a pass reports where the model has no softmax: the
 * host's (executor/softmax.ts), the same to the bit on every engine and in
 * a planned run.
 */
function hostSoftmax(scores: tf.Tensor2D): tf.Tensor2D {
  const [rows, classes] = scores.shape;
  return tf.tensor2d(softmaxRows(scores.dataSync() as Float32Array, classes), [rows, classes]);
}

/**
 * The objective's Y; when it throws (a user's target function), a zero tied
 * to every source instead, and the error handed to `failed` for the caller
 * to throw once the gradient pass is over. Thrown inside the tape, it left
 * the tensors tfjs saves for the backward pass (and the kept steps) behind:
 * tfjs frees them only when a gradient pass ends.
 */
function objectiveOrZero(objective: Objective, values: ForwardValues, sources: readonly tf.Tensor[], failed: (error: unknown) => void): tf.Scalar {
  try {
    return objective(values);
  } catch (error) {
    failed(error);
    return tf.mul(sources.map((source) => tf.sum(source)).reduce((total, term) => tf.add(total, term)), 0) as tf.Scalar;
  }
}

/** Copies of `values` that outlive the tape, with the probabilities the pass reports. */
function keepValues(values: ForwardValues, probabilities: tf.Tensor2D): ForwardValues {
  const outputs = values.outputs.map((tensor) => tf.keep(tensor.clone()));
  return {
    output: outputs[0]!,
    outputs,
    scores: tf.keep(values.scores.clone()),
    probabilities: tf.keep(probabilities.clone()),
    layers: new Map([...values.layers].map(([name, tensor]) => [name, tf.keep(tensor.clone())])),
  };
}

export function disposeValues(values: ForwardValues): void {
  tf.dispose([values.output, ...values.outputs, values.scores, values.probabilities, ...values.layers.values()]);
}

export function outputKeyOf(node: GraphNode): string {
  return node.outputs[0]!;
}

export function unique<T>(items: readonly T[]): T[] {
  return [...new Set(items)];
}
