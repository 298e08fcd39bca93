/**
 * What the explanation methods and tasks need of a model's executor: a
 * forward pass that returns chosen layers' outputs next to the class
 * scores, a backward pass from objectives on those scores to chosen layers
 * or to the input, and the graph they run. `Network` (tfjs) implements it;
 * another engine (ONNX Runtime) provides its own. Both passes are
 * asynchronous because engines other than tfjs run them asynchronously.
 */
import type { GraphNode, LayerGraph } from './graph.js';
import type { OrtPassPlan } from './ort-plan.js';
import type { BackwardOptions, BackwardResult, BackwardTimings, ForwardOptions, ForwardValues, ModelInputs, Objective } from './network.js';
import type { ScoreLocation } from './score.js';

export interface Executor {
  /** The layers and the tensors between them. */
  readonly graph: LayerGraph;
  /** Where the class scores and the output are in the graph. */
  readonly score: ScoreLocation;
  /** Milliseconds of the last `backward` call: before the sources, and the taped part. */
  readonly lastBackwardTimings: BackwardTimings;
  /** The output, class scores and probabilities, and the outputs of `options.layers` (owned by the caller). */
  forward(inputs: ModelInputs, options?: ForwardOptions): Promise<ForwardValues>;
  /** One forward pass and, per objective, the gradients with respect to the sources (owned by the caller). */
  backward(inputs: ModelInputs, objectives: readonly Objective[], options: BackwardOptions): Promise<BackwardResult>;
  /** Ends what the executor started beside the model's tensors (ONNX Runtime's host workers); the model's `dispose` calls it. */
  dispose?(): Promise<void>;
  /**
   * @internal What a later process needs to run one pass of `layer`'s
   * activations and the class scores without this executor (ONNX Runtime's:
   * ort-plan.ts), when it can; planned runs (tasks/cam-plan.ts) are made of it.
   */
  passPlan?(layer: GraphNode): OrtPassPlan | undefined;
}
