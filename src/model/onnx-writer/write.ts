/**
 * camviz's ONNX writer: the executor graph of a TF.js layers model
 * (`LayerGraph`) as an ONNX model for ONNX Runtime, for one input size. A
 * TF.js graph model is written through the layers model camviz imports it
 * as, where its nodes have converters (src/model/tfgraph/keras.ts' views).
 *
 * - The ONNX input takes camviz's NHWC image as it is; one Transpose node
 *   makes it NCHW, and every 4-D value stays NCHW, so that ONNX Runtime runs
 *   its native layout; values of other ranks keep camviz's layout. ONNX
 *   Runtime folds that Transpose into its first layout change (+0.03 ms
 *   for MobileNet's 224x224), where camviz's transpose on the host cost
 *   0.15 ms.
 * - Every shape is static but the batch: TF's "same" padding becomes
 *   explicit, asymmetric `pads` for the fixed input size.
 * - A BatchNormalization that alone reads a convolution is folded into the
 *   convolution's weights (unfolded, it costs ONNX Runtime about 40%); the
 *   convolution's own output then has no ONNX value.
 * - Every other layer's output is an ONNX value named after the layer's
 *   path, so that any of them can be fetched (`withOutputs`).
 */
import type * as tfl from '../../engine/tfl.js';
import { type GraphNode, LayerGraph, preActivationKey } from '../../executor/graph.js';
import type { OnnxTrunk, OnnxValue } from '../../executor/onnx-trunk.js';
import { VERSION } from '../../util/version.js';
import { oneLine } from '../../util/text.js';
import { GraphBuilder } from './builder.js';
import { CONVERTERS, type ConverterInput, type Converted, OnnxWriteError, UnsupportedLayerError, canFoldBatchNorm } from './layers.js';
import { type GraphAddition, type OnnxValueInfo, encodeGraphAddition, encodeModel } from './proto-writer.js';

/**
 * Changes whenever the writer writes something else for the same model:
 * part of the cache key, and checked in the cached record. 3: the input
 * is NHWC, transposed in the graph (2 took NCHW).
 */
export const WRITER_VERSION = 3;

export const IR_VERSION = 8;
export const OPSET_VERSION = 13;

/** The name of the written model's input. */
export const INPUT_NAME = 'input';

export interface OnnxInputSize {
  readonly height: number;
  readonly width: number;
}

/**
 * Where the executor graph's values are in the written model, by position
 * (node index, output index) rather than by tensor key: keys differ from one
 * load of a model to the next, positions do not. Plain data, cached as JSON.
 */
export interface ValueTable {
  /**
   * Per graph node: the ONNX value of each output, and of its
   * pre-activation. A convolution folded with its BatchNorm has a value
   * that is written only on request (`onRequest`): by `withOutputs`, as an
   * unfolded copy of the convolution.
   */
  readonly nodes: readonly { readonly outputs: readonly OnnxValue[]; readonly preActivation?: OnnxValue; readonly onRequest?: true }[];
  /** The ONNX shape of every value named above (and the graph's outputs), batch as 'batch'. */
  readonly dims: Readonly<Record<string, readonly (number | string)[]>>;
  /** The graph's outputs, in order. */
  readonly outputs: readonly string[];
  /**
   * The graph input camviz's input tensor is fed to (`fed`: 'same', NHWC
   * data as it is), and the value the graph reads it as (`read`: its NCHW
   * transpose, for an image).
   */
  readonly input: { readonly fed: OnnxValue; readonly read: OnnxValue };
}

export interface WrittenModel {
  /** The serialized ModelProto. */
  readonly bytes: Uint8Array;
  readonly table: ValueTable;
}

/** ONNX dims of a value of camviz shape [batch, ...dims]: 4-D values are NCHW. */
function onnxDims(dims: readonly number[]): (number | string)[] {
  if (dims.length === 3) return ['batch', dims[2]!, dims[0]!, dims[1]!];
  return ['batch', ...dims];
}

function layoutOf(dims: readonly number[]): OnnxValue['layout'] {
  return dims.length === 3 ? 'nchw' : 'same';
}

/** The one image input's [H, W, C] at `size`, checked against the model's. */
function inputDims(model: tfl.LayersModel, graph: LayerGraph, size: OnnxInputSize): number[] {
  if (graph.inputKeys.length !== 1) throw new OnnxWriteError(`the ONNX writer needs a model with one input, not ${graph.inputKeys.length}`);
  const shape = model.inputs[0]!.shape;
  if (shape.length !== 4 || typeof shape[3] !== 'number') throw new OnnxWriteError(`the ONNX writer needs an NHWC image input, not [${shape.join(', ')}]`);
  const fixed = [shape[1], shape[2]];
  if ((fixed[0] != null && fixed[0] !== size.height) || (fixed[1] != null && fixed[1] !== size.width)) {
    throw new OnnxWriteError(`the model's input is ${fixed[0]}x${fixed[1]} (HxW), not ${size.height}x${size.width}`);
  }
  return [size.height, size.width, shape[3]];
}

/** camviz's output shapes of a node (without the batch axis), for inputs of these shapes. */
function outputDimsOf(node: GraphNode, inputs: readonly ConverterInput[]): number[][] {
  const shapes = inputs.map((input) => [null, ...input.dims]);
  let computed: unknown;
  try {
    computed = node.layer.computeOutputShape(shapes.length === 1 ? shapes[0]! : shapes);
  } catch (error) {
    throw new UnsupportedLayerError(node.path, node.layer.getClassName(), `no output shape: ${oneLine((error as Error).message)}`);
  }
  const list = (Array.isArray((computed as unknown[])[0]) ? computed : [computed]) as (number | null)[][];
  return list.map((shape) => {
    const dims = shape.slice(1);
    if (dims.some((dim) => typeof dim !== 'number')) throw new UnsupportedLayerError(node.path, node.layer.getClassName(), `output shape [${shape.join(', ')}] is not static`);
    return dims as number[];
  });
}

/** The BatchNormalization node that alone reads `node`'s output and folds into it, if any. */
function foldableBatchNorm(graph: LayerGraph, node: GraphNode): GraphNode | undefined {
  if (node.outputs.length !== 1 || graph.outputKeys.includes(node.outputs[0]!)) return undefined;
  const consumers = graph.consumers(node.outputs[0]!);
  const next = consumers.length === 1 ? consumers[0]! : undefined;
  if (next === undefined || next.inputs.length !== 1 || next.outputs.length !== 1) return undefined;
  return canFoldBatchNorm(node.layer, next.layer) ? next : undefined;
}

type TableEntry = ValueTable['nodes'][number];

/** The walk over the executor graph in topological order, writing each node's ONNX nodes. */
class GraphWalk {
  readonly builder = new GraphBuilder();
  /** The ONNX value and camviz dims of each tensor key written so far. */
  readonly known = new Map<string, ConverterInput>();
  readonly dims: Record<string, (number | string)[]> = {};
  readonly entries: TableEntry[] = [];
  readonly input: ValueTable['input'];
  /** BatchNorm nodes written with the convolution before them. */
  private readonly folded = new Set<number>();

  constructor(private readonly graph: LayerGraph, inputDims: number[]) {
    this.builder.uniqueName(INPUT_NAME);
    this.dims[INPUT_NAME] = ['batch', ...inputDims];
    const fed: OnnxValue = { name: INPUT_NAME, layout: 'same' };
    const read = inputDims.length === 3 ? this.record(this.toNchw(INPUT_NAME), inputDims) : fed;
    this.input = { fed, read };
    this.known.set(graph.inputKeys[0]!, { name: read.name, dims: inputDims });
  }

  /**
   * The NCHW transpose of the NHWC image input: inside the graph, ONNX
   * Runtime folds it into its own first layout change.
   */
  private toNchw(input: string): string {
    return this.builder.op('Transpose', [input], [{ name: 'perm', ints: [0, 3, 1, 2] }], `${input}/nchw`);
  }

  /** The table entry of a value, its ONNX dims recorded. */
  record(name: string, valueDims: readonly number[]): OnnxValue {
    this.dims[name] = onnxDims(valueDims);
    return { name, layout: layoutOf(valueDims) };
  }

  visit(node: GraphNode): void {
    if (this.folded.has(node.index)) {
      // Written with the convolution before it; its output is that convolution's.
      const value = this.known.get(node.outputs[0]!)!;
      this.entries.push({ outputs: [this.record(value.name, value.dims)] });
      return;
    }
    const converter = CONVERTERS.get(node.layer.getClassName());
    if (converter === undefined) throw new UnsupportedLayerError(node.path, node.layer.getClassName());
    const inputs = node.inputs.map((key) => this.known.get(key)!);
    const outputDims = outputDimsOf(node, inputs);
    const batchNorm = foldableBatchNorm(this.graph, node);
    const converted = converter({
      layer: node.layer,
      path: node.path,
      inputs,
      outputDims,
      builder: this.builder,
      outputHint: batchNorm?.path ?? node.path,
      ...(batchNorm === undefined ? {} : { foldedBatchNorm: batchNorm.layer }),
    });
    if (converted.outputs.length !== node.outputs.length) throw new UnsupportedLayerError(node.path, node.layer.getClassName(), `${node.outputs.length} outputs`);
    if (batchNorm !== undefined) this.foldedInto(node, batchNorm, converted.outputs[0]!, outputDims[0]!);
    else this.written(node, converted, outputDims);
  }

  private written(node: GraphNode, converted: Converted, outputDims: readonly number[][]): void {
    node.outputs.forEach((key, i) => this.known.set(key, { name: converted.outputs[i]!, dims: outputDims[i]! }));
    this.entries.push({
      outputs: converted.outputs.map((name, i) => this.record(name, outputDims[i]!)),
      ...(converted.preActivation === undefined ? {} : { preActivation: this.record(converted.preActivation, outputDims[0]!) }),
    });
  }

  /** A convolution written with `batchNorm` folded in: `output` is the BatchNorm's value. */
  private foldedInto(conv: GraphNode, batchNorm: GraphNode, output: string, outputDims: readonly number[]): void {
    this.folded.add(batchNorm.index);
    // BatchNorm keeps the shape.
    this.known.set(batchNorm.outputs[0]!, { name: output, dims: outputDims });
    // The convolution's own output: a name kept for an unfolded copy, written on request.
    this.entries.push({ outputs: [this.record(this.builder.uniqueName(conv.path), outputDims)], onRequest: true });
  }
}

/** Writes the ONNX model of `model`'s executor graph for inputs of `size`. */
export function writeOnnxModel(model: tfl.LayersModel, size: OnnxInputSize): WrittenModel {
  const graph = LayerGraph.fromModel(model);
  const walk = new GraphWalk(graph, inputDims(model, graph, size));
  for (const node of graph.nodes) walk.visit(node);
  const { builder, dims } = walk;
  const outputs = graphOutputs(graph, walk.known, builder, dims);
  const info = (name: string): OnnxValueInfo => ({ name, dims: dims[name]! });
  const bytes = encodeModel({
    irVersion: IR_VERSION,
    opsetVersion: OPSET_VERSION,
    producerName: 'camviz',
    producerVersion: VERSION,
    docString: `written by camviz's ONNX writer (version ${WRITER_VERSION}) from a TF.js layers model, for ${size.height}x${size.width} inputs`,
    graph: {
      name: model.name,
      nodes: builder.nodes,
      initializers: builder.initializers,
      inputs: [info(INPUT_NAME)],
      outputs: outputs.map(info),
    },
  });
  return { bytes, table: { nodes: walk.entries, dims, outputs, input: walk.input } };
}

/**
 * The ONNX names of the graph's outputs, each once. An output that is the
 * input itself (a model of identity layers) gets an Identity node: an ONNX
 * graph input cannot also be its output.
 */
function graphOutputs(graph: LayerGraph, known: ReadonlyMap<string, ConverterInput>, builder: GraphBuilder, dims: Record<string, (number | string)[]>): string[] {
  const outputs: string[] = [];
  for (const key of graph.outputKeys) {
    let name = known.get(key)!.name;
    if (name === INPUT_NAME) {
      name = builder.op('Identity', [INPUT_NAME], [], 'output');
      dims[name] = dims[INPUT_NAME]!;
    }
    if (!outputs.includes(name)) outputs.push(name);
  }
  return outputs;
}

/** camviz's dims (without the batch axis) of a value of these ONNX dims. */
function camvizDims(dims: readonly (number | string)[]): number[] {
  const [, ...rest] = dims as number[];
  return rest.length === 3 ? [rest[1]!, rest[2]!, rest[0]!] : rest;
}

/** An OnnxTrunk over a written model: values by the executor graph's tensor keys. */
export class WrittenTrunk implements OnnxTrunk {
  readonly input: OnnxValue;
  private readonly values = new Map<string, OnnxValue>();
  /** Values written only on request, by name: the convolution node to write unfolded. */
  private readonly onRequest = new Map<string, GraphNode>();

  constructor(
    graph: LayerGraph,
    readonly written: WrittenModel,
    readonly cacheKey: string,
    readonly inputSize: OnnxInputSize,
    /** Whether the model was written now or read from the cache. */
    readonly origin: 'written' | 'cache',
  ) {
    const { table } = written;
    if (table.nodes.length !== graph.nodes.length) throw new Error(`the written ONNX model describes ${table.nodes.length} layers, the graph has ${graph.nodes.length}`);
    this.input = table.input.fed;
    this.values.set(graph.inputKeys[0]!, table.input.read);
    graph.nodes.forEach((node, i) => {
      const entry = table.nodes[i]!;
      node.outputs.forEach((key, j) => {
        const value = entry.outputs[j];
        if (value !== undefined) this.values.set(key, value);
      });
      if (entry.preActivation !== undefined) this.values.set(preActivationKey(node.outputs[0]!), entry.preActivation);
      if (entry.onRequest === true) this.onRequest.set(entry.outputs[0]!.name, node);
    });
  }

  valueOf(key: string): OnnxValue | undefined {
    return this.values.get(key);
  }

  withOutputs(names: readonly string[]): Uint8Array {
    const { bytes, table } = this.written;
    const builder = new GraphBuilder();
    const outputs: OnnxValueInfo[] = [];
    for (const name of names) {
      if (table.outputs.includes(name) || outputs.some((info) => info.name === name)) continue;
      const dims = table.dims[name];
      if (dims === undefined) throw new Error(`the written ONNX model has no value named '${name}'`);
      const node = this.onRequest.get(name);
      if (node !== undefined) this.writeUnfolded(node, name, builder);
      outputs.push({ name, dims });
    }
    if (outputs.length === 0) return bytes;
    const addition: GraphAddition = { nodes: builder.nodes, initializers: builder.initializers, outputs };
    const extra = encodeGraphAddition(addition);
    const merged = new Uint8Array(bytes.length + extra.length);
    merged.set(bytes);
    merged.set(extra, bytes.length);
    return merged;
  }

  /**
   * The convolution of `node` as written without its BatchNorm, into the
   * value `name` (kept free for it). Its weights and intermediates are
   * named `<name>/...`, which no other value of the model can be: `name` is
   * a convolution's path, and no layer lives under a convolution.
   */
  private writeUnfolded(node: GraphNode, name: string, builder: GraphBuilder): void {
    const input = this.values.get(node.inputs[0]!)!;
    const converter = CONVERTERS.get(node.layer.getClassName())!;
    const converted = converter({
      layer: node.layer,
      path: `${name}/unfolded`,
      inputs: [{ name: input.name, dims: camvizDims(this.written.table.dims[input.name]!) }],
      outputDims: [camvizDims(this.written.table.dims[name]!)],
      builder,
      outputHint: name,
    });
    if (converted.outputs[0] !== name) throw new Error(`the unfolded copy of ${node.path} was written as '${converted.outputs[0]}', not '${name}'`);
  }
}
