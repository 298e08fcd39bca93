/**
 * An executor for tfjs-layers models that camviz controls: it can feed and
 * fetch any intermediate tensor, run only the part of the graph that a
 * result depends on, and fuse Conv -> BatchNorm -> ReLU chains into one
 * kernel where nothing needs their separate outputs.
 *
 * Nested models (a model used as a layer) are flattened, so that a layer
 * deep inside a backbone is as reachable as a top-level one. Every layer is
 * run through `layer.apply`, so hooks installed on `layer.call` fire here
 * exactly as they do under `model.predict`. A hooked nested model whose
 * layers all run (and none is fed) runs its layers inside its own hooks; one
 * that runs only in part (cut by a feed, as in a leaf-mode backward pass
 * through it) cannot fire them.
 */
import * as tf from '../engine/tf.js';
import * as tfl from '../engine/tfl.js';
import { withTensorFlowGradients } from '../engine/tensorflow-gradients.js';
import { runHooked } from '../hooks/hooks.js';
import { isHooked } from '../hooks/registry.js';
import { FusedChain, findFusedChains } from './fusion.js';
import { gradientRulesOf } from './layer-gradients.js';

export type Layer = tfl.layers.Layer;
type Kwargs = Record<string, unknown>;

/** One application of a layer to concrete inputs. */
export interface GraphNode {
  /** Position in topological order. */
  readonly index: number;
  readonly layer: Layer;
  /** Layer names from the outermost model down, joined with '/'. */
  readonly path: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly kwargs: Kwargs;
  /** Static output shapes; null dimensions are unknown until run time. */
  readonly outputShapes: readonly (readonly (number | null)[])[];
}

export interface RunOptions {
  /** Fuse Conv/BatchNorm/activation chains that no hook or fetch splits. */
  fuse?: boolean;
  /**
   * Values to compute through a given function instead of the graph: used
   * to read a pre-activation output (see `splitActivation`).
   */
  splitActivation?: ReadonlySet<number>;
  /**
   * Functions applied to these values as soon as they are computed; the
   * tensor returned takes the value's place for every consumer (used to
   * watch the gradient at an inner value under a tape).
   */
  intercept?: ReadonlyMap<string, (value: tf.Tensor) => tf.Tensor>;
}

/** One call of a nested model: its flattened nodes are `nodes[first..end)`. */
interface ContainerCall {
  readonly layer: tfl.LayersModel;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly first: number;
  readonly end: number;
}

/** Internal fields of tfjs-layers objects that the public typings omit. */
interface SymbolicView {
  id: number;
  sourceLayer: Layer;
  nodeIndex: number;
  shape: (number | null)[];
}
interface NodeView {
  inputTensors: SymbolicView[];
  outputTensors: SymbolicView[];
  callArgs?: Kwargs;
}
interface LayerView {
  inboundNodes: NodeView[];
}
interface ContainerView {
  inputs: SymbolicView[];
  outputs: SymbolicView[];
}
interface ActivationOwner {
  activation: { apply(x: tf.Tensor): tf.Tensor; getClassName(): string };
}

/**
 * Other names of a model's layers (alias -> layer name), for models built by
 * an importer: an ONNX model's layers are also known by PyTorch module paths
 * and ONNX value names.
 */
const layerAliases = new WeakMap<tfl.LayersModel, ReadonlyMap<string, string>>();

export function setLayerAliases(model: tfl.LayersModel, aliases: ReadonlyMap<string, string>): void {
  layerAliases.set(model, aliases);
}

export function isContainer(layer: Layer): layer is tfl.LayersModel {
  return layer instanceof tfl.LayersModelClass;
}

export class LayerGraph {
  readonly nodes: readonly GraphNode[];
  readonly inputKeys: readonly string[];
  readonly outputKeys: readonly string[];
  private readonly producers = new Map<string, GraphNode>();
  private readonly consumerLists = new Map<string, GraphNode[]>();
  /** Fusable chains, keyed by the index of their first node. */
  private readonly chainsByFirst = new Map<number, FusedChain>();
  private readonly containerCalls: readonly ContainerCall[];
  private readonly aliases: ReadonlyMap<string, string>;

  private constructor(nodes: GraphNode[], inputKeys: string[], outputKeys: string[], containerCalls: ContainerCall[], aliases: ReadonlyMap<string, string>) {
    this.nodes = nodes;
    this.aliases = aliases;
    // Outer calls before the calls nested in them.
    this.containerCalls = [...containerCalls].sort((a, b) => a.first - b.first || b.end - a.end);
    this.inputKeys = inputKeys;
    this.outputKeys = outputKeys;
    for (const node of nodes) {
      for (const key of node.outputs) this.producers.set(key, node);
      for (const key of node.inputs) {
        const list = this.consumerLists.get(key) ?? [];
        if (!list.includes(node)) list.push(node);
        this.consumerLists.set(key, list);
      }
    }
    for (const chain of findFusedChains(this)) this.chainsByFirst.set(chain.nodes[0]!.index, chain);
  }

  static fromModel(model: tfl.LayersModel): LayerGraph {
    const nodes: GraphNode[] = [];
    const calls: ContainerCall[] = [];
    const container = model as unknown as ContainerView;
    const inputKeys = container.inputs.map((symbolic) => `${symbolic.id}`);
    const outputKeys = expandContainer(model, '', '', inputKeys, nodes, calls);
    return new LayerGraph(nodes, inputKeys, outputKeys, calls, layerAliases.get(model) ?? new Map());
  }

  /** The node computing `key`; for a pre-activation key, the split node. */
  producer(key: string): GraphNode | undefined {
    return this.producers.get(key) ?? (isPreActivationKey(key) ? this.producers.get(key.slice(0, -PRE_SUFFIX.length)) : undefined);
  }

  consumers(key: string): readonly GraphNode[] {
    return this.consumerLists.get(key) ?? [];
  }

  /** Nodes of a layer (a shared layer has one per call). */
  nodesOfLayer(layer: Layer): GraphNode[] {
    return this.nodes.filter((node) => node.layer === layer);
  }

  /** Nodes whose layer name or path equals `name`. */
  findNodes(name: string): GraphNode[] {
    const aliased = this.aliases.get(name) ?? name;
    return this.nodes.filter((node) => node.path === aliased || node.layer.name === aliased);
  }

  /** Every name `findNodes` knows: node paths and aliases (for suggestions). */
  names(): string[] {
    return [...this.nodes.map((node) => node.path), ...this.aliases.keys()];
  }

  /** Indices of the nodes that depend on any of `keys`. */
  downstreamOf(keys: Iterable<string>): Set<number> {
    const reached = new Set<number>();
    const pending = [...keys];
    for (let key = pending.pop(); key !== undefined; key = pending.pop()) {
      for (const node of this.consumers(key)) {
        if (reached.has(node.index)) continue;
        reached.add(node.index);
        pending.push(...node.outputs);
      }
    }
    return reached;
  }

  /** Frees the folded weights of fused chains (they are rebuilt on demand). */
  dispose(): void {
    for (const chain of this.chainsByFirst.values()) chain.dispose();
  }

  /** The fused chains that `run({fuse: true})` may use. */
  fusedChains(): FusedChain[] {
    return [...this.chainsByFirst.values()];
  }

  /**
   * Computes `fetches` from `feeds`. Feeds stay owned by the caller; the
   * returned tensors are new and owned by the caller; everything else made
   * on the way is disposed as soon as nothing needs it.
   */
  run(feeds: ReadonlyMap<string, tf.Tensor>, fetches: readonly string[], options: RunOptions = {}): Map<string, tf.Tensor> {
    return executeSteps(this.plan(feeds, fetches, options), feeds, fetches, options.intercept);
  }

  private plan(feeds: ReadonlyMap<string, tf.Tensor>, fetches: readonly string[], options: RunOptions): Step[] {
    const needed = this.neededNodes(feeds, fetches);
    const fetched = new Set([...fetches, ...(options.intercept?.keys() ?? [])]);
    const groups = this.hookedContainerCalls(needed, feeds);
    // The innermost hooked container call of each node: a chain must not cross one.
    const groupOf = new Map<number, ContainerCall>();
    for (const call of groups) for (let i = call.first; i < call.end; i++) groupOf.set(i, call);
    const covered = new Set<number>();
    const stepsIn = (first: number, end: number, calls: readonly ContainerCall[]): Step[] => {
      const steps: Step[] = [];
      for (let i = first; i < end; i++) {
        const node = this.nodes[i]!;
        if (!needed.has(i) || covered.has(i)) continue;
        const call = calls.find((candidate) => candidate.first === i);
        if (call !== undefined) {
          const inner = calls.filter((other) => other !== call && other.first >= call.first && other.end <= call.end);
          steps.push(containerStep(call, stepsIn(call.first, call.end, inner), this.exportedKeys(call, fetched), options.intercept));
          i = call.end - 1;
          continue;
        }
        const chain = options.fuse ? this.usableChainAt(node, needed, fetched) : undefined;
        if (chain !== undefined && chain.nodes.every((member) => groupOf.get(member.index) === groupOf.get(i))) {
          for (const member of chain.nodes) covered.add(member.index);
          steps.push(chainStep(chain));
        } else if (options.splitActivation?.has(node.index)) {
          steps.push(splitActivationStep(node));
        } else {
          steps.push(nodeStep(node));
        }
      }
      return steps;
    };
    return stepsIn(0, this.nodes.length, groups);
  }

  /**
   * Nested-model calls with hooks that run whole: all their layers are
   * needed and none of their values is fed.
   */
  private hookedContainerCalls(needed: ReadonlySet<number>, feeds: ReadonlyMap<string, tf.Tensor>): ContainerCall[] {
    return this.containerCalls.filter((call) => {
      if (!isHooked(call.layer)) return false;
      for (let i = call.first; i < call.end; i++) {
        if (!needed.has(i) || this.nodes[i]!.outputs.some((key) => feeds.has(key))) return false;
      }
      return true;
    });
  }

  /** Values made inside a container call that are fetched, besides its outputs. */
  private exportedKeys(call: ContainerCall, fetched: ReadonlySet<string>): string[] {
    const keys: string[] = [];
    for (let i = call.first; i < call.end; i++) {
      for (const key of this.nodes[i]!.outputs) {
        if (fetched.has(key) && !call.outputs.includes(key) && !keys.includes(key)) keys.push(key);
      }
    }
    return keys;
  }

  /**
   * The chain starting at `node`, if it can run fused: a hook on any of its
   * layers, or a fetch of an intermediate output, needs the unfused layers.
   * Intermediate outputs have no other consumer (checked when the chain was
   * found), so planning the whole chain at its first node keeps the order.
   */
  private usableChainAt(node: GraphNode, needed: Set<number>, fetched: Set<string>): FusedChain | undefined {
    const chain = this.chainsByFirst.get(node.index);
    if (chain === undefined) return undefined;
    const usable = chain.nodes.every((member, i) => {
      if (!needed.has(member.index) || isHooked(member.layer)) return false;
      const isLast = i === chain.nodes.length - 1;
      return isLast || !member.outputs.some((key) => fetched.has(key));
    });
    return usable ? chain : undefined;
  }

  private neededNodes(feeds: ReadonlyMap<string, tf.Tensor>, fetches: readonly string[]): Set<number> {
    const needed = new Set<number>();
    const pending = fetches.filter((key) => !feeds.has(key));
    const seen = new Set<string>();
    for (let key = pending.pop(); key !== undefined; key = pending.pop()) {
      if (seen.has(key)) continue;
      seen.add(key);
      const node = this.producer(key);
      if (node === undefined) throw new Error(`graph value ${key} is neither fed nor produced by a layer`);
      if (needed.has(node.index)) continue;
      needed.add(node.index);
      for (const input of node.inputs) if (!feeds.has(input)) pending.push(input);
    }
    return needed;
  }
}

interface Step {
  inputs: readonly string[];
  outputs: readonly string[];
  run(inputs: tf.Tensor[]): tf.Tensor[];
}

/**
 * Runs `steps` in order. Feeds stay owned by the caller; fetched values are
 * handed over (a fetched feed as a copy); everything else is disposed as
 * soon as no later step needs it.
 */
function executeSteps(
  steps: readonly Step[],
  feeds: ReadonlyMap<string, tf.Tensor>,
  fetches: readonly string[],
  intercept: RunOptions['intercept'],
): Map<string, tf.Tensor> {
  const remainingUses = new Map<string, number>();
  for (const step of steps) for (const key of step.inputs) remainingUses.set(key, (remainingUses.get(key) ?? 0) + 1);
  for (const key of fetches) remainingUses.set(key, (remainingUses.get(key) ?? 0) + 1);
  const values = new Map<string, tf.Tensor>(feeds);
  const owned = new Set<string>();
  const release = (key: string): void => {
    const left = (remainingUses.get(key) ?? 0) - 1;
    remainingUses.set(key, left);
    if (left <= 0 && owned.has(key)) {
      values.get(key)?.dispose();
      values.delete(key);
      owned.delete(key);
    }
  };
  try {
    for (const step of steps) {
      const inputs = step.inputs.map((key) => required(values, key));
      const outputs = step.run(inputs);
      step.outputs.forEach((key, i) => {
        let value = outputs[i]!;
        const watch = intercept?.get(key);
        if (watch !== undefined) {
          const watched = watch(value);
          if (watched !== value) value.dispose();
          value = watched;
        }
        values.set(key, value);
        owned.add(key);
      });
      for (const key of step.inputs) release(key);
      for (const key of step.outputs) if ((remainingUses.get(key) ?? 0) === 0) release(key);
    }
    const result = new Map<string, tf.Tensor>();
    for (const key of fetches) {
      // A key fetched twice is one entry of the result.
      if (result.has(key)) continue;
      const value = required(values, key);
      // A fetched feed is handed out as a copy.
      result.set(key, owned.has(key) ? value : value.clone());
      owned.delete(key);
    }
    return result;
  } finally {
    for (const key of owned) values.get(key)?.dispose();
  }
}

/**
 * Runs a hooked nested model's layers inside its hooks, as its own `call`
 * would under `model.predict`: pre-hooks may replace its inputs, forward
 * hooks see and may replace its outputs, gradient and backward hooks wrap
 * them. `exported` values computed inside are handed out after the outputs.
 */
function containerStep(call: ContainerCall, steps: readonly Step[], exported: readonly string[], intercept: RunOptions['intercept']): Step {
  return {
    inputs: call.inputs,
    outputs: [...call.outputs, ...exported],
    run: (inputs) =>
      tf.tidy(() => {
        let exportedValues: tf.Tensor[] = [];
        const output = runHooked(
          call.layer,
          (given) => {
            const list = Array.isArray(given) ? given : [given];
            const feeds = new Map(call.inputs.map((key, i) => [key, list[i]!]));
            const values = executeSteps(steps, feeds, [...call.outputs, ...exported], intercept);
            exportedValues = exported.map((key) => values.get(key)!);
            // A list even for one output, as tfjs-layers' Container.call returns.
            return call.outputs.map((key) => values.get(key)!);
          },
          inputs.length === 1 ? inputs[0]! : inputs,
        );
        return [...(Array.isArray(output) ? output : [output]), ...exportedValues];
      }),
  };
}

function nodeStep(node: GraphNode): Step {
  return {
    inputs: node.inputs,
    outputs: node.outputs,
    run: (inputs) => applyLayer(node, inputs),
  };
}

function chainStep(chain: FusedChain): Step {
  const last = chain.nodes[chain.nodes.length - 1]!;
  return {
    inputs: chain.nodes[0]!.inputs,
    outputs: last.outputs,
    // Under a tape tf.fused falls back to separate ops: tidy their intermediates.
    run: (inputs) => [tf.tidy(() => chain.apply(inputs[0]!))],
  };
}

/**
 * Runs a layer whose activation is built in (Dense/Conv with softmax) and
 * also yields its pre-activation output under the key `<output>:pre`. The
 * layer runs as usual, so its hooks see its real output; its activation is
 * wrapped for the call to catch the activation's input.
 */
function splitActivationStep(node: GraphNode): Step {
  const output = node.outputs[0]!;
  return {
    inputs: node.inputs,
    outputs: [preActivationKey(output), output],
    run: (inputs) => {
      const owner = node.layer as unknown as ActivationOwner;
      const activation = owner.activation;
      let pre: tf.Tensor | undefined;
      owner.activation = {
        apply: (x) => {
          // Kept: the layer's call disposes its intermediates (its own tidy).
          pre = tf.keep(x.clone());
          return activation.apply(x);
        },
        getClassName: () => activation.getClassName(),
      };
      try {
        const result = applyLayer(node, inputs)[0]!;
        if (pre === undefined) {
          result.dispose();
          throw new Error(`layer ${node.path} did not apply its ${activation.getClassName()} activation`);
        }
        return [pre, result];
      } catch (error) {
        (pre as tf.Tensor | undefined)?.dispose();
        throw error;
      } finally {
        owner.activation = activation;
      }
    },
  };
}

const PRE_SUFFIX = ':pre';

export function preActivationKey(outputKey: string): string {
  return `${outputKey}${PRE_SUFFIX}`;
}

function isPreActivationKey(key: string): boolean {
  return key.endsWith(PRE_SUFFIX);
}

/**
 * Runs one layer, under TensorFlow's gradients (engine/tensorflow-gradients.ts,
 * the layer's rules from layer-gradients.ts): the layers of Keras files,
 * TF.js layers and graph models are differentiated as TensorFlow does, where
 * tfjs' own gradients differ (max reductions and max pooling where values
 * tie, Relu6 at 6) or are refused (dilated convolutions). ONNX node layers
 * compute those with custom gradients of their own (PyTorch's), which
 * kernel registrations do not reach.
 */
function applyLayer(node: GraphNode, inputs: tf.Tensor[]): tf.Tensor[] {
  return withTensorFlowGradients(
    () =>
      tf.tidy(() => {
        const output = node.layer.apply(inputs.length === 1 ? inputs[0]! : inputs, node.kwargs);
        return (Array.isArray(output) ? output : [output]) as tf.Tensor[];
      }),
    gradientRulesOf(node.layer),
  );
}

function required(values: Map<string, tf.Tensor>, key: string): tf.Tensor {
  const value = values.get(key);
  if (value === undefined) throw new Error(`graph value ${key} is missing`);
  return value;
}

/**
 * Appends the nodes of `container` in topological order and returns the
 * keys of its outputs. Symbolic tensors are keyed by `scope + id`, so a
 * nested model called twice gets two independent sets of values.
 */
function expandContainer(
  container: tfl.LayersModel,
  scope: string,
  pathPrefix: string,
  inputKeys: readonly string[],
  nodes: GraphNode[],
  calls: ContainerCall[],
): string[] {
  const view = container as unknown as ContainerView;
  const keyOf = new Map<number, string>();
  view.inputs.forEach((symbolic, i) => keyOf.set(symbolic.id, inputKeys[i]!));

  const visit = (symbolic: SymbolicView): string => {
    const known = keyOf.get(symbolic.id);
    if (known !== undefined) return known;
    const layer = symbolic.sourceLayer;
    const inbound = (layer as unknown as LayerView).inboundNodes[symbolic.nodeIndex]!;
    const inputs = inbound.inputTensors.map(visit);
    let outputs: string[];
    if (isContainer(layer)) {
      const innerScope = `${scope}${layer.name}@${symbolic.nodeIndex}/`;
      const first = nodes.length;
      outputs = expandContainer(layer, innerScope, `${pathPrefix}${layer.name}/`, inputs, nodes, calls);
      calls.push({ layer, inputs, outputs, first, end: nodes.length });
    } else {
      outputs = inbound.outputTensors.map((output) => `${scope}${output.id}`);
      nodes.push({
        index: nodes.length,
        layer,
        path: `${pathPrefix}${layer.name}`,
        inputs,
        outputs,
        kwargs: { ...(inbound.callArgs ?? {}) },
        outputShapes: inbound.outputTensors.map((output) => [...output.shape]),
      });
    }
    inbound.outputTensors.forEach((output, i) => keyOf.set(output.id, outputs[i]!));
    return keyOf.get(symbolic.id)!;
  };
  return view.outputs.map(visit);
}
