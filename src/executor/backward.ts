/**
 * The differentiation camviz runs for hooks to observe: a forward pass and a
 * backward pass from objectives on the model's outputs, on any backend.
 * Forward hooks fire during the forward pass; gradient and full backward
 * hooks fire during the backward pass and see real gradients.
 */
import type * as tfl from '../engine/tfl.js';
import type { GraphNode } from './graph.js';
import {
  type BackwardResult,
  type ForwardValues,
  type ModelInputs,
  type Objective,
  Network,
  disposeValues,
} from './network.js';
import type { Layer } from '../hooks/registry.js';

export type { BackwardResult, ForwardValues, ModelInputs, Objective };
export { disposeValues };

/** A layer object, or a layer name / nested path such as `backbone/conv1`. */
export type LayerRef = Layer | string;

export interface BackwardCallOptions {
  /**
   * Where gradients stop. `'input'`: backpropagate to the model's inputs
   * (every layer is differentiated). A list of layers: their outputs are
   * the sources and only what lies downstream runs under the gradient tape.
   * Default: `'input'`.
   */
  to?: 'input' | readonly LayerRef[];
  /** Layers whose outputs to return with the forward values. */
  layers?: readonly LayerRef[];
}

/**
 * Runs `model` on `inputs` and differentiates each objective. With several
 * objectives the layers before the sources run once and the rest once per
 * objective (like PyTorch's `backward(retain_graph=True)` loop); forward
 * hooks on those later layers then fire once per objective.
 */
export async function backward(
  model: tfl.LayersModel,
  inputs: ModelInputs,
  objectives: Objective | readonly Objective[],
  options: BackwardCallOptions = {},
): Promise<BackwardResult> {
  const network = Network.of(model);
  const to = options.to ?? 'input';
  return network.backward(inputs, Array.isArray(objectives) ? objectives : [objectives as Objective], {
    sources: to === 'input' ? 'input' : resolveNodes(network, to),
    layers: resolveNodes(network, options.layers ?? []),
  });
}

/** A forward pass returning the outputs, class scores and requested layers. */
export async function forward(
  model: tfl.LayersModel,
  inputs: ModelInputs,
  options: { layers?: readonly LayerRef[] } = {},
): Promise<ForwardValues> {
  const network = Network.of(model);
  return network.forward(inputs, { layers: resolveNodes(network, options.layers ?? []) });
}

/** The graph nodes of layer references; a layer called twice gives its last call. */
export function resolveNodes(network: Network, refs: readonly LayerRef[]): GraphNode[] {
  return refs.map((ref) => {
    const nodes = typeof ref === 'string' ? network.graph.findNodes(ref) : network.graph.nodesOfLayer(ref);
    const node = nodes.at(-1);
    if (node === undefined) throw new Error(`layer ${typeof ref === 'string' ? ref : ref.name} is not in the model`);
    return node;
  });
}

