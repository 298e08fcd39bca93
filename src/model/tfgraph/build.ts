/**
 * A TF.js graph model (a converted SavedModel, a TF Hub model) as a
 * tfjs-layers functional model, so that camviz's executor, hooks, fmap, CAM
 * methods, predict and layers work on it as on any layers model. Each
 * GraphDef node that computes on the image's data becomes one layer whose
 * `call` runs that node through the converter's own `GraphModel.execute`,
 * fed the node's inputs and fetching its outputs: only that node runs
 * (nodes that depend on constants only, e.g. shape arithmetic, are
 * recomputed from the weights), and as `execute` runs tf ops, `tf.grad`
 * flows through it.
 *
 * At load, one `execute` on a zero batch-1 input learns every layer's output
 * shapes (the batch dim null), which `computeOutputShape` reports.
 */
import * as tf from '../../engine/tf.js';
import * as tfl from '../../engine/tfl.js';
import type { GraphModel } from '@tensorflow/tfjs-converter';
import { CamvizError } from '../../util/errors.js';
import { oneLine } from '../../util/text.js';
import { type TfNode, fusedOps, intsAttr, nodeOfValue, stringAttr } from './graph-def.js';
import { type KerasView, type WeightOf, isBiasOf, kerasView } from './keras.js';
import { ImportedNodeLayer, type NodeLayerPlan, wireLayersModel } from '../graph-import/node-layer.js';

/** The graph's image input: a Placeholder [batch, height, width, 3]. */
export interface TfImageInput {
  readonly name: string;
}

export interface BuiltTfGraph {
  readonly layersModel: tfl.LayersModel;
  /** Name scopes (`MobilenetV1/Conv2d_13_pointwise`) -> the layer of the scope's last node. */
  readonly layerNames: ReadonlyMap<string, string>;
  /** The layer whose output is the class scores: the input of the final Softmax, if any. */
  readonly scoreLayer: string | undefined;
}

/** What a node layer runs: its node, the values it is fed and the outputs it fetches. */
interface PlannedLayer extends NodeLayerPlan {
  /** The layer's name: the last node's, in the characters tfjs-layers allows. */
  readonly name: string;
  /** The last node of the group: its name is the layer's, its outputs the layer's. */
  readonly node: TfNode;
  /** The nodes the layer runs, in order (one, or a conv / matmul and its bias add). */
  readonly members: readonly TfNode[];
  /** The Keras layer the group is, when every field is known (see keras.ts). */
  readonly view?: KerasView;
  /** Value keys read at run time (unique, in the order of the node's inputs). */
  readonly feeds: readonly string[];
  /** Value keys fetched (`x`, `x:1`), in the order of the layer's outputs. */
  readonly fetches: readonly string[];
}

interface NodeLayerConfig {
  plan: PlannedLayer;
  graphModel: GraphModel;
}

/** One TF node as a layer: `call` runs it through `GraphModel.execute`. */
class TfNodeLayer extends ImportedNodeLayer<PlannedLayer> {
  static className = 'TfNode';
  private readonly graphModel: GraphModel;

  constructor(config: NodeLayerConfig) {
    super(config.plan.name, config.plan);
    this.graphModel = config.graphModel;
    const { view } = config.plan;
    if (view !== undefined) Object.assign(this, view.fields);
    const activation = view === undefined ? activationOf(config.plan.node) : undefined;
    // A fused activation, as a Keras layer shows one (guided backprop gates ReLUs).
    if (activation !== undefined) Object.assign(this, { activation: { getClassName: () => activation, apply: (x: tf.Tensor) => x } });
    if (config.plan.node.op === 'Relu6') Object.assign(this, { maxValue: 6 });
    // A Sigmoid is Keras' Activation('sigmoid'): score location takes its input as the scores of a multi-label head.
    if (config.plan.node.op === 'Sigmoid') Object.assign(this, { activation: { getClassName: () => 'sigmoid', apply: (x: tf.Tensor) => tf.sigmoid(x) } });
  }

  /** The float weights (Const nodes) the layer's nodes read. */
  override countParams(): number {
    const weights = this.graphModel.weights;
    const read = new Set(this.plan.members.flatMap((member) => member.inputs).filter((key) => weights[key]?.[0]?.dtype === 'float32'));
    return [...read].reduce((count, key) => count + weights[key]![0]!.size, 0);
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor | tf.Tensor[] {
    const given = Array.isArray(inputs) ? inputs : [inputs];
    const feeds: tf.NamedTensorMap = {};
    this.plan.feeds.forEach((key, i) => (feeds[key] = given[i]!));
    const result = this.graphModel.execute(feeds, [...this.plan.fetches]);
    // A pass-through node (Identity) hands back its input: the executor disposes each value once.
    const outputs = (Array.isArray(result) ? result : [result]).map((tensor) => (given.includes(tensor) ? tf.clone(tensor) : tensor));
    return outputs.length === 1 ? outputs[0]! : outputs;
  }
}

/** RELU-family activations fused into a `_FusedConv2D` / `_FusedMatMul` (the executor's names). */
function activationOf(node: TfNode): string | undefined {
  if (node.op !== '_FusedConv2D' && node.op !== '_FusedMatMul' && node.op !== '_FusedDepthwiseConv2dNative') return undefined;
  const ops = fusedOps(node);
  if (ops.includes('Relu')) return 'relu';
  if (ops.includes('Relu6')) return 'relu6';
  return 'linear';
}

/**
 * The Keras class of a node, for the parts of camviz that read one: ReLU
 * (guided backprop), Softmax (score location), global pooling (the default
 * CAM target), Reshape (score location looks through it). `shapes` are the
 * node's input and output shapes at load.
 */
function kerasClassName(node: TfNode, inputShape: readonly number[] | undefined, outputShape: readonly number[]): string {
  switch (node.op) {
    case 'Relu':
    case 'Relu6':
      return 'ReLU';
    case 'Softmax':
      return 'Softmax';
    case 'Sigmoid':
      return 'Activation';
    case 'Reshape':
    case 'Squeeze':
      return 'Reshape';
    // What Keras calls a layer that passes its input through at inference (score location and the CAM method look through it).
    case 'Identity':
    case 'StopGradient':
    case 'Snapshot':
      return 'Dropout';
    case 'Mean':
    case 'AvgPool':
    case 'MaxPool': {
      const global = inputShape?.length === 4 && (inputShape[1]! > 1 || inputShape[2]! > 1) && reducesSpatial(inputShape, outputShape) && (node.op === 'Mean' || poolsWhole(node, inputShape));
      if (!global) return node.op;
      return node.op === 'MaxPool' ? 'GlobalMaxPooling2D' : 'GlobalAveragePooling2D';
    }
    default:
      return node.op;
  }
}

/** A pool whose window covers the whole input (a 1x1 output can also come from a small window with a large stride). */
function poolsWhole(node: TfNode, inputShape: readonly number[]): boolean {
  const window = intsAttr(node, 'ksize') ?? [];
  return window.length === 4 && window[1]! >= inputShape[1]! && window[2]! >= inputShape[2]! && stringAttr(node, 'padding') === 'VALID';
}

/** True when a 4-D NHWC value becomes one value per (batch, channel): [N, C] or [N, 1, 1, C]. */
function reducesSpatial(input: readonly number[], output: readonly number[]): boolean {
  const channels = input[3];
  if (output.length === 2) return output[1] === channels;
  return output.length === 4 && output[1] === 1 && output[2] === 1 && output[3] === channels;
}

/**
 * Builds the layers model for an input of `height` x `width`. `nodes` are
 * the GraphDef's (any order); `input` the image Placeholder; `graphOutputs`
 * the graph's output value keys.
 */
export function buildTfGraphModel(
  graphModel: GraphModel,
  nodes: readonly TfNode[],
  input: TfImageInput,
  graphOutputs: readonly string[],
  size: { height: number; width: number },
  file: string,
): BuiltTfGraph {
  const order = runtimeOrder(nodes, input.name, graphOutputs, file);
  // The converter takes every node nobody reads as an output, an unused Const too: only those computed from the image are the model's.
  const computed = new Set(order.map((node) => node.name));
  const outputs = graphOutputs.filter((key) => computed.has(nodeOfValue(key)));
  if (outputs.length === 0) throw new CamvizError(`no graph output depends on the image input '${input.name}'`, { file });
  const plans = planLayers(graphModel, order, input, outputs, size, file);
  const inputTensor = tfl.input({ shape: [size.height, size.width, 3], name: layerName(input.name, new Set()) });
  const layers = plans.map((plan) => ({ layer: new TfNodeLayer({ plan, graphModel }), reads: plan.feeds, writes: plan.fetches }));
  const missing = (key: string): Error => new CamvizError(`graph output '${key}' does not depend on the image input '${input.name}'`, { file });
  const layersModel = wireLayersModel(inputTensor, new Map([[input.name, inputTensor]]), layers, outputs, 'tfgraph', missing, file);
  return { layersModel, layerNames: scopeNames(plans), scoreLayer: scoreLayerOf(plans, outputs) };
}

/**
 * The nodes that compute on the image, in an order where each comes after
 * the nodes it reads (GraphDef order is not topological), restricted to
 * those the outputs need.
 */
function runtimeOrder(nodes: readonly TfNode[], inputName: string, outputs: readonly string[], file: string): TfNode[] {
  const byName = new Map(nodes.map((node) => [node.name, node]));
  const needed = new Set<string>();
  const pending = outputs.map(nodeOfValue);
  for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
    if (needed.has(name)) continue;
    needed.add(name);
    for (const value of byName.get(name)?.inputs ?? []) pending.push(nodeOfValue(value));
  }
  const order: TfNode[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const runtime = new Set<string>([inputName]);
  const visit = (node: TfNode): void => {
    // Iterative depth-first search: graphs can be thousands of nodes deep.
    const stack: { node: TfNode; next: number }[] = [{ node, next: 0 }];
    state.set(node.name, 'visiting');
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const value = top.node.inputs[top.next++];
      if (value !== undefined) {
        const from = byName.get(nodeOfValue(value));
        if (from === undefined) throw new CamvizError(`node '${top.node.name}' reads '${value}', which is not in the graph`, { file });
        const seen = state.get(from.name);
        if (seen === 'visiting') throw new CamvizError(`the graph has a cycle through node '${from.name}'`, { file });
        if (seen === undefined) {
          state.set(from.name, 'visiting');
          stack.push({ node: from, next: 0 });
        }
        continue;
      }
      stack.pop();
      state.set(top.node.name, 'done');
      if (top.node.name !== inputName && top.node.inputs.some((input) => runtime.has(nodeOfValue(input)))) {
        runtime.add(top.node.name);
        order.push(top.node);
      }
    }
  };
  for (const node of nodes) if (needed.has(node.name) && !state.has(node.name)) visit(node);
  return order;
}

/**
 * Groups runtime nodes into layers: a conv or matmul whose only reader is
 * the add of its constant bias runs with it (one layer, as Keras' Conv2D /
 * Dense with a bias, so that the executor can fuse it with a following
 * BatchNorm / ReLU and the CAM method finds the classifier); every other
 * node is a layer of its own.
 */
function groupNodes(order: readonly TfNode[], outputs: readonly string[], weightOf: WeightOf): TfNode[][] {
  const readers = new Map<string, TfNode[]>();
  for (const node of order) for (const key of node.inputs) readers.set(key, [...(readers.get(key) ?? []), node]);
  const grouped = new Set<string>();
  const groups: TfNode[][] = [];
  for (const node of order) {
    if (grouped.has(node.name)) continue;
    const next = readers.get(node.name);
    if (next?.length === 1 && !outputs.includes(node.name) && isBiasOf(node, next[0]!, weightOf)) {
      grouped.add(next[0]!.name);
      groups.push([node, next[0]!]);
    } else {
      groups.push([node]);
    }
  }
  return groups;
}

/**
 * Plans one layer per group of runtime nodes: the values it reads and the
 * outputs others read, with their shapes from one `execute` on a zero
 * batch-1 input, and the Keras class it shows.
 */
function planLayers(
  graphModel: GraphModel,
  order: readonly TfNode[],
  input: TfImageInput,
  outputs: readonly string[],
  size: { height: number; width: number },
  file: string,
): PlannedLayer[] {
  const weights = graphModel.weights;
  const weightOf: WeightOf = (key) => weights[key]?.[0];
  const groups = groupNodes(order, outputs, weightOf);
  const byName = new Map(order.map((node) => [node.name, node]));
  const runtime = new Set([input.name, ...order.map((node) => node.name)]);
  const read = new Map<string, Set<string>>();
  const mark = (key: string): void => {
    const node = nodeOfValue(key);
    if (runtime.has(node)) read.set(node, (read.get(node) ?? new Set()).add(key));
  };
  for (const node of order) for (const key of node.inputs) mark(key);
  for (const key of outputs) mark(key);
  const fetchesOf = (node: TfNode): string[] => [...(read.get(node.name) ?? [node.name])].sort();
  const allFetches = groups.flatMap((members) => fetchesOf(members.at(-1)!));
  const shapes = valueShapes(graphModel, input, allFetches, size, file);
  const used = new Set([layerName(input.name, new Set())]);
  return groups.map((members) => {
    const node = members.at(-1)!;
    const inside = new Set(members.map((member) => member.name));
    const fetches = fetchesOf(node);
    const read = members.flatMap((member) => member.inputs).filter((key) => runtime.has(nodeOfValue(key)) && !inside.has(nodeOfValue(key)));
    const feeds = feedable(read, byName, runtime, node, file);
    const view = kerasView(members, weightOf);
    return {
      name: layerName(node.name, used),
      node,
      members,
      feeds,
      fetches,
      outputShapes: fetches.map((key) => shapes.get(key)!.map((dim, axis): number | null => (axis === 0 ? null : dim))),
      className: view?.className ?? kerasClassName(node, feeds[0] === undefined ? undefined : shapes.get(feeds[0]), shapes.get(fetches[0]!)!),
      ...(view === undefined ? {} : { view }),
    };
  });
}

/** How many values one planning run fetches: the run holds them all at once. */
const FETCHES_PER_RUN = 64;

/**
 * The shape of each value in `keys` for a zero batch-1 input, from runs of
 * `execute`. Each run fetches at most FETCHES_PER_RUN values, so that memory
 * stays bounded on a deep graph (the whole graph's activations at once could
 * be gigabytes).
 */
function valueShapes(graphModel: GraphModel, input: TfImageInput, keys: readonly string[], size: { height: number; width: number }, file: string): Map<string, number[]> {
  const shapes = new Map<string, number[]>([[input.name, [1, size.height, size.width, 3]]]);
  for (let start = 0; start < keys.length; start += FETCHES_PER_RUN) {
    const chunk = keys.slice(start, start + FETCHES_PER_RUN);
    tf.tidy(() => {
      let values: tf.Tensor[];
      try {
        const result = graphModel.execute({ [input.name]: tf.zeros([1, size.height, size.width, 3]) }, [...chunk]);
        values = Array.isArray(result) ? result : [result];
      } catch (error) {
        throw new CamvizError(`the graph fails at load on a ${size.height}x${size.width} input: ${oneLine((error as Error).message)}`, { file });
      }
      chunk.forEach((key, i) => shapes.set(key, values[i]!.shape));
    });
  }
  return shapes;
}

/**
 * The value keys a layer can be fed. `GraphModel.execute` holds the fed
 * values per node, one key per node: feeding `split` and `split:2` keeps
 * only the last. A layer that reads two outputs of one node is fed that
 * node's inputs instead and recomputes it (values and the input gradient
 * are the same; a gradient hook on that node does not see this path).
 */
function feedable(read: readonly string[], byName: ReadonlyMap<string, TfNode>, runtime: ReadonlySet<string>, node: TfNode, file: string): string[] {
  const keys = [...new Set(read)];
  const keysOf = (producer: string): string[] => keys.filter((key) => nodeOfValue(key) === producer);
  const shared = new Set(keys.map(nodeOfValue).filter((producer) => keysOf(producer).length > 1));
  if (shared.size === 0) return keys;
  const feeds = [...new Set(keys.flatMap((key) => (shared.has(nodeOfValue(key)) ? byName.get(nodeOfValue(key))!.inputs.filter((input) => runtime.has(nodeOfValue(input))) : [key])))];
  if (new Set(feeds.map(nodeOfValue)).size !== feeds.length) {
    throw new CamvizError(`node '${node.name}' reads several outputs of one node through another such node; camviz cannot feed it`, { file });
  }
  return feeds;
}

/**
 * A tfjs-layers name for a TF node name (tfjs-layers allows letters, digits
 * and `-._/`, starting with a letter or digit; TF also allows `>` and a
 * leading `.`), unique among `used`. The TF name stays an alias.
 */
function layerName(name: string, used: Set<string>): string {
  const base = name.replace(/[^-A-Za-z0-9._/]/g, '_').replace(/^[^A-Za-z0-9]+/, '') || 'node';
  let unique = base;
  for (let k = 1; used.has(unique); k++) unique = `${base}_${k}`;
  used.add(unique);
  return unique;
}

/**
 * Names that are not layer names: a grouped node's name names its group's
 * layer, and a name scope `a/b` names the layer of the last node (in run
 * order) whose name is inside it, `a/b/...`, unless a node is called `a/b`.
 */
function scopeNames(plans: readonly PlannedLayer[]): Map<string, string> {
  const names = new Set(plans.flatMap((plan) => plan.members.map((member) => member.name)));
  const aliases = new Map<string, string>();
  for (const plan of plans) {
    for (const member of plan.members) {
      if (member.name !== plan.name) aliases.set(member.name, plan.name);
      const parts = member.name.split('/');
      for (let depth = 1; depth < parts.length; depth++) {
        const scope = parts.slice(0, depth).join('/');
        if (!names.has(scope)) aliases.set(scope, plan.name);
      }
    }
  }
  return aliases;
}

/** Ops that only pass values through between the scores and the output. */
const PASS_THROUGH_OPS = new Set(['Identity', 'Reshape', 'Squeeze', 'StopGradient', 'Snapshot']);

/**
 * The layer whose output is the class scores: walking back from the first
 * output through pass-through nodes, the input of a Softmax. Undefined when
 * there is none (the output is then the scores, e.g. logits).
 */
function scoreLayerOf(plans: readonly PlannedLayer[], outputs: readonly string[]): string | undefined {
  const byName = new Map(plans.map((plan) => [plan.node.name, plan]));
  let plan = outputs[0] === undefined ? undefined : byName.get(nodeOfValue(outputs[0]));
  while (plan !== undefined) {
    const from = plan.feeds.length === 1 ? byName.get(nodeOfValue(plan.feeds[0]!)) : undefined;
    if (plan.node.op === 'Softmax') return from?.name;
    if (!PASS_THROUGH_OPS.has(plan.node.op)) return undefined;
    plan = from;
  }
  return undefined;
}
