/**
 * Which values of an ONNX graph are feature maps stored otherwise than as
 * camviz reads them, proved from the graph (executor/grid-view.ts says how
 * they are then read). pytorch-grad-cam's users write a `reshape_transform`
 * for these; camviz finds it:
 *
 * - Token grids (ViT): a patch embedding, a 4-D value [N, C, h, w],
 *   flattened to [N, C, h*w] (Reshape, or Flatten at axis 2) and transposed
 *   to [N, h*w, C] gives h*w tokens that are the grid row by row. A Concat
 *   on the token axis that puts other tokens (the class token) before
 *   them makes `leading` extra tokens. Every op that works on each token on
 *   its own keeps the grid: elementwise ops whose output has the token
 *   value's shape (a residual Add keeps its positions whatever its other
 *   operand), LayerNormalization over the channels, a MatMul by a constant
 *   matrix (a Linear), a mean or sum over the channels kept as an axis
 *   (LayerNorm's decomposition below opset 17). Nothing is guessed from a
 *   token count: a value that no such chain reaches has no grid, and a CAM
 *   on it is refused, naming it.
 * - Channels-last 4-D values (Swin): a value that the graph transposes by
 *   [0, 3, 1, 2] into a convolution or a pooling is [N, H, W, C] (the
 *   graph reads its last axis as the channels); so is every value that the
 *   same per-position ops tie to one such value, either way: their axes
 *   are the same positions.
 */
import type { GridView } from '../../executor/grid-view.js';
import { type Layout, NHWC_TO_NCHW, type LaidTensor, onnxShape } from './layout.js';
import { ELEMENTWISE_OPS } from './ops/elementwise.js';
import type { OnnxNode } from './types.js';

/** What the search reads of a planned layer: its node and its outputs as stored. */
export interface PlannedValues {
  readonly node: OnnxNode;
  /** Stored-layout shapes, dynamic dims null. */
  readonly outputShapes: readonly (readonly (number | null)[])[];
  readonly outputLayouts: readonly Layout[];
}

type Shape = readonly (number | null)[];

/** Ops that compute each element from the same element of their inputs (broadcast). */
const ELEMENTWISE = new Set([...Object.keys(ELEMENTWISE_OPS), 'Identity', 'Dropout', 'Cast']);

/** Ops that read a channels-last value's axes 1 and 2 as space once it is transposed to NCHW. */
const SPATIAL_READERS = new Set(['Conv', 'ConvTranspose', 'MaxPool', 'AveragePool', 'LpPool', 'GlobalAveragePool', 'GlobalMaxPool', 'GlobalLpPool']);

/** Per value name, how a CAM reads it, for the values whose first producer's output it is. */
export function gridViews(plans: readonly PlannedValues[], constants: ReadonlyMap<string, LaidTensor>): Map<string, GridView> {
  const graph = new ValueGraph(plans, constants);
  return new Map([...tokenGrids(graph), ...channelsLastValues(graph)]);
}

/** The image values' ONNX shapes, producers and readers, and which inputs are constants. */
class ValueGraph {
  readonly shapes = new Map<string, Shape>();
  readonly readers = new Map<string, OnnxNode[]>();
  readonly nodes: readonly OnnxNode[];

  constructor(
    plans: readonly PlannedValues[],
    private readonly constants: ReadonlyMap<string, LaidTensor>,
  ) {
    this.nodes = plans.map((plan) => plan.node);
    for (const plan of plans) {
      plan.node.outputs.forEach((value, i) => {
        const stored = plan.outputShapes[i];
        if (stored !== undefined) this.shapes.set(value, plan.outputLayouts[i] === 'nhwc' ? NHWC_TO_NCHW.map((axis) => stored[axis] ?? null) : stored);
      });
      for (const value of plan.node.inputs) this.readers.set(value, [...(this.readers.get(value) ?? []), plan.node]);
    }
  }

  constantShape(value: string): number[] | undefined {
    const constant = this.constants.get(value);
    return constant === undefined ? undefined : onnxShape(constant);
  }

  constantInts(value: string): number[] | undefined {
    const constant = this.constants.get(value);
    return constant === undefined ? undefined : Array.from(constant.tensor.dataSync(), Number);
  }
}

function ints(node: OnnxNode, name: string): number[] | undefined {
  const attribute = node.attributes[name];
  return attribute?.kind === 'ints' ? attribute.value : undefined;
}

function int(node: OnnxNode, name: string, fallback: number): number {
  const attribute = node.attributes[name];
  return attribute?.kind === 'int' ? attribute.value : fallback;
}

function sameShape(a: Shape | undefined, b: Shape | undefined): boolean {
  return a !== undefined && b !== undefined && a.length === b.length && a.every((dim, i) => dim === b[i]);
}

/** An axis as a non-negative index of a rank-`rank` value. */
function axisOf(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

/**
 * Whether `node` computes each position of its `input`-th input (all axes
 * but the last) on its own, giving the same positions in its first output:
 * elementwise ops whose output has the input's shape, LayerNormalization
 * over the last axis, a MatMul by a constant matrix, a mean or sum over the
 * last axis kept.
 */
function perPosition(graph: ValueGraph, node: OnnxNode, input: number): boolean {
  const value = node.inputs[input];
  const output = node.outputs[0];
  if (value === undefined || value === '' || output === undefined) return false;
  const inShape = graph.shapes.get(value);
  const outShape = graph.shapes.get(output);
  if (inShape === undefined || outShape === undefined || inShape.length !== outShape.length) return false;
  const sameButLast = inShape.slice(0, -1).every((dim, i) => dim === outShape[i]);
  const last = inShape.length - 1;
  switch (node.opType) {
    case 'LayerNormalization':
      return input === 0 && sameShape(inShape, outShape) && axisOf(int(node, 'axis', -1), inShape.length) === last;
    case 'MatMul':
      return input === 0 && sameButLast && graph.constantShape(node.inputs[1] ?? '')?.length === 2;
    case 'ReduceMean':
    case 'ReduceSum': {
      const axes = ints(node, 'axes') ?? graph.constantInts(node.inputs[1] ?? '');
      return input === 0 && int(node, 'keepdims', 1) === 1 && axes?.length === 1 && axisOf(axes[0]!, inShape.length) === last && sameButLast;
    }
    default:
      return ELEMENTWISE.has(node.opType) && sameShape(inShape, outShape);
  }
}

/** The token grids: seeded at patch embeddings, carried through concatenated leading tokens and per-token ops, in graph order. */
function tokenGrids(graph: ValueGraph): Map<string, GridView> {
  const grids = new Map<string, GridView & { kind: 'tokens' }>();
  for (const node of graph.nodes) {
    const output = node.outputs[0];
    if (output === undefined) continue;
    const grid = patchTokens(graph, node) ?? concatenatedTokens(graph, node, grids) ?? carriedTokens(graph, node, grids);
    if (grid !== undefined) grids.set(output, grid);
  }
  return grids;
}

/** A Transpose [0, 2, 1] of a patch embedding [N, C, h, w] flattened to [N, C, h*w]: h*w tokens, row by row. */
function patchTokens(graph: ValueGraph, node: OnnxNode): (GridView & { kind: 'tokens' }) | undefined {
  if (node.opType !== 'Transpose' || ints(node, 'perm')?.join() !== '0,2,1') return undefined;
  const flattened = graph.nodes.find((other) => other.outputs[0] === node.inputs[0]);
  if (flattened === undefined || !(flattened.opType === 'Reshape' || (flattened.opType === 'Flatten' && int(flattened, 'axis', 1) === 2))) return undefined;
  const embedding = graph.shapes.get(flattened.inputs[0] ?? '');
  const flat = graph.shapes.get(flattened.outputs[0] ?? '');
  if (embedding?.length !== 4 || flat?.length !== 3) return undefined;
  const [, channels, height, width] = embedding;
  // Row-major: [N, C, h, w] -> [N, C, h*w] keeps each channel's grid in order only when the batch and channels stay.
  if (channels == null || height == null || width == null || flat[1] !== channels || flat[2] !== height * width) return undefined;
  if (flattened.opType === 'Reshape' && flat[0] !== embedding[0]) return undefined;
  return { kind: 'tokens', height, width, leading: 0 };
}

/** A Concat on the token axis whose last input is a grid: the tokens before it lead. */
function concatenatedTokens(graph: ValueGraph, node: OnnxNode, grids: ReadonlyMap<string, GridView & { kind: 'tokens' }>): (GridView & { kind: 'tokens' }) | undefined {
  if (node.opType !== 'Concat' || axisOf(int(node, 'axis', 0), 3) !== 1) return undefined;
  const grid = grids.get(node.inputs.at(-1) ?? '');
  if (grid === undefined) return undefined;
  let leading = grid.leading;
  for (const value of node.inputs.slice(0, -1)) {
    const tokens = (graph.shapes.get(value) ?? graph.constantShape(value))?.[1];
    if (tokens == null) return undefined;
    leading += tokens;
  }
  return { ...grid, leading };
}

/** The output of a per-token op on a grid's tokens. */
function carriedTokens(graph: ValueGraph, node: OnnxNode, grids: ReadonlyMap<string, GridView & { kind: 'tokens' }>): (GridView & { kind: 'tokens' }) | undefined {
  for (const [index, value] of node.inputs.entries()) {
    const grid = grids.get(value);
    if (grid !== undefined && perPosition(graph, node, index)) return grid;
  }
  return undefined;
}

/** The channels-last 4-D values: seeded where the graph transposes one to NCHW for a spatial op, spread through per-position ops both ways. */
function channelsLastValues(graph: ValueGraph): Map<string, GridView> {
  const found = new Set<string>();
  for (const node of graph.nodes) {
    const input = node.inputs[0] ?? '';
    if (node.opType !== 'Transpose' || ints(node, 'perm')?.join() !== '0,3,1,2' || graph.shapes.get(input)?.length !== 4) continue;
    if ((graph.readers.get(node.outputs[0] ?? '') ?? []).some((reader) => SPATIAL_READERS.has(reader.opType))) found.add(input);
  }
  // Each sweep ties more values; a sweep that ties none ends it (at most one per value).
  for (let grew = found.size > 0; grew; ) {
    grew = false;
    for (const node of graph.nodes) {
      const output = node.outputs[0] ?? '';
      node.inputs.forEach((value, index) => {
        if (graph.shapes.get(value)?.length !== 4 || !perPosition(graph, node, index) || found.has(value) === found.has(output)) return;
        found.add(value);
        found.add(output);
        grew = true;
      });
    }
  }
  return new Map([...found].map((value): [string, GridView] => [value, { kind: 'channelsLast' }]));
}
