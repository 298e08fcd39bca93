/**
 * The layer table (`camviz layers`) and choosing layers by name: which
 * layers can be CAM targets, which one is the default, and clear errors
 * with suggestions for names that do not fit.
 */
import { UsageError } from '../util/errors.js';
import { closestMatches } from '../util/text.js';
import type { GraphNode } from './graph.js';
import type { Executor } from './executor.js';
import { type GridView, gridShape, gridViewOf } from './grid-view.js';

export interface LayerInfo {
  name: string;
  className: string;
  outputShape: (number | null)[];
  params: number;
  /** 4-D output with a spatial size above 1. */
  camTarget: boolean;
  /** The default CAM target. */
  default: boolean;
  /** How CAMs and feature maps read the output, when not as stored (a token grid, a channels-last map). */
  grid?: GridView;
}

const GLOBAL_POOLING = new Set(['GlobalAveragePooling2D', 'GlobalMaxPooling2D', 'GlobalAveragePooling1D', 'GlobalMaxPooling1D', 'Flatten']);

/** Whether a layer's output, as a feature map reads it (grid-view.ts), is 4-D with a spatial size above 1. */
export function isCamTarget(node: GraphNode): boolean {
  const shape = gridShape(node);
  if (shape === undefined || node.outputShapes.length !== 1 || shape.length !== 4) return false;
  const [, height, width] = shape;
  return height == null || width == null || height * width > 1;
}

/** Whether a layer's output, as a feature map reads it, is 4-D (what `fmap` shows). */
export function isFeatureMap(node: GraphNode): boolean {
  return node.outputShapes.length === 1 && gridShape(node)!.length === 4;
}

/** What a model says of its default CAM target (ModelMetadata's fields): the layer it prefers, or why it has none. */
export interface TargetHint {
  targetLayer?: string;
  noTargetLayer?: string;
}

/**
 * The model's preferred layer; else the last CAM target before the first
 * global pooling or flatten on the way to the output; without one, the last
 * CAM target of the model. None when the model says why it has none.
 */
export function defaultTarget(network: Executor, hint: TargetHint = {}): GraphNode | undefined {
  if (hint.noTargetLayer !== undefined) return undefined;
  const preferred = hint.targetLayer;
  if (preferred !== undefined) {
    const node = network.graph.findNodes(preferred).at(-1);
    if (node !== undefined && isCamTarget(node)) return node;
  }
  const nodes = network.graph.nodes;
  const pooling = nodes.find((node) => GLOBAL_POOLING.has(node.layer.getClassName()));
  const candidates = nodes.filter((node) => isCamTarget(node) && (pooling === undefined || node.index < pooling.index));
  if (pooling !== undefined) {
    const feeding = network.graph.producer(pooling.inputs[0]!);
    if (feeding !== undefined && isCamTarget(feeding)) return feeding;
  }
  return candidates.at(-1);
}

export function describeLayers(network: Executor, hint: TargetHint = {}): LayerInfo[] {
  const target = defaultTarget(network, hint);
  return network.graph.nodes.map((node) => {
    const grid = gridViewOf(node);
    return {
      name: node.path,
      className: node.layer.getClassName(),
      outputShape: [...(node.outputShapes[0] ?? [])],
      params: node.layer.countParams(),
      camTarget: isCamTarget(node),
      default: node === target,
      ...(grid === undefined ? {} : { grid }),
    };
  });
}

/**
 * The node for a `--layer` name. `accept` says which layers fit the command;
 * an unknown name gets the closest names, an unfit one the fitting layers
 * nearest to it in the graph.
 */
export function resolveLayer(
  network: Executor,
  name: string,
  accept: (node: GraphNode) => boolean,
  what: string,
): GraphNode {
  const nodes = network.graph.nodes;
  const node = network.graph.findNodes(name).at(-1);
  if (node === undefined) {
    const close = closestMatches(name, network.graph.names());
    throw new UsageError(`layer '${name}' is not in the model${close.length > 0 ? `; did you mean ${close.join(', ')}?` : ' (see camviz layers)'}`);
  }
  if (accept(node)) return node;
  const shape = `[${(node.outputShapes[0] ?? []).map((dim) => dim ?? '?').join(', ')}]`;
  // A token sequence is refused for want of a grid, not of a fourth axis: say so.
  const tokens = node.outputShapes[0]?.length === 3 ? ', a token sequence with no grid camviz can trace to a patch embedding' : '';
  const nearby = nodes
    .filter(accept)
    .sort((a, b) => Math.abs(a.index - node.index) - Math.abs(b.index - node.index))
    .slice(0, 4)
    .sort((a, b) => a.index - b.index)
    .map((candidate) => candidate.path);
  throw new UsageError(
    `layer '${name}' (${node.layer.getClassName()}, output ${shape}${tokens}) is not ${what}; layers near it that are: ${nearby.join(', ') || 'none'}`,
  );
}
