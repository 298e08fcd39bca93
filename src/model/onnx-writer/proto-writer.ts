/**
 * Encoding of the ONNX messages camviz writes (ModelProto, GraphProto,
 * NodeProto, TensorProto, ValueInfoProto, AttributeProto) with protobufjs'
 * `Writer`. Field numbers are those of onnx.proto (ONNX IR version 8); only
 * the fields camviz writes are named here.
 */
import { createRequire } from 'node:module';
import { endianness } from 'node:os';
import type protobuf from 'protobufjs';

type Writer = protobuf.Writer;

let protobufjs: typeof protobuf | undefined;

/**
 * A new protobufjs Writer. protobufjs loads on the first encoding, not with
 * this module: a run whose written model and optimised graph are both cached
 * encodes nothing, and importing protobufjs costs 20-40 ms of its start.
 */
function newWriter(): Writer {
  protobufjs ??= createRequire(import.meta.url)('protobufjs') as typeof protobuf;
  return protobufjs.Writer.create();
}

/** TensorProto.DataType values used here. */
export const DataType = { float: 1, int64: 7 } as const;

/** AttributeProto.AttributeType values used here. */
const AttributeType = { float: 1, int: 2, string: 3, floats: 6, ints: 7 } as const;

export type OnnxAttribute =
  | { readonly name: string; readonly int: number }
  | { readonly name: string; readonly float: number }
  | { readonly name: string; readonly ints: readonly number[] }
  | { readonly name: string; readonly floats: readonly number[] }
  | { readonly name: string; readonly string: string };

export interface OnnxNode {
  readonly name: string;
  readonly opType: string;
  /** '' marks an omitted optional input. */
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attributes: readonly OnnxAttribute[];
}

export interface OnnxTensor {
  readonly name: string;
  readonly dims: readonly number[];
  /** FLOAT for a Float32Array, INT64 for a BigInt64Array. */
  readonly data: Float32Array | BigInt64Array;
}

/** A float tensor value; a string dimension is symbolic (dim_param). */
export interface OnnxValueInfo {
  readonly name: string;
  readonly dims: readonly (number | string)[];
}

export interface OnnxGraph {
  readonly name: string;
  readonly nodes: readonly OnnxNode[];
  readonly initializers: readonly OnnxTensor[];
  readonly inputs: readonly OnnxValueInfo[];
  readonly outputs: readonly OnnxValueInfo[];
}

export interface OnnxModel {
  readonly irVersion: number;
  /** The version of the default ('ai.onnx') operator set. */
  readonly opsetVersion: number;
  readonly producerName: string;
  readonly producerVersion: string;
  readonly docString?: string;
  readonly graph: OnnxGraph;
}

const BYTES = 2;
const VARINT = 0;
const FIXED32 = 5;

function tag(writer: Writer, field: number, wireType: number): Writer {
  return writer.uint32((field << 3) | wireType);
}

function message(writer: Writer, field: number, write: (inner: Writer) => void): void {
  tag(writer, field, BYTES).fork();
  write(writer);
  writer.ldelim();
}

function string(writer: Writer, field: number, value: string): void {
  tag(writer, field, BYTES).string(value);
}

function int64(writer: Writer, field: number, value: number): void {
  tag(writer, field, VARINT).int64(value);
}

/** Little-endian bytes of a typed array (a copy only on a big-endian host). */
function littleEndianBytes(data: Float32Array | BigInt64Array): Uint8Array {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (endianness() === 'LE') return bytes;
  const copy = new Uint8Array(bytes);
  const width = data.BYTES_PER_ELEMENT;
  for (let start = 0; start < copy.length; start += width) copy.subarray(start, start + width).reverse();
  return copy;
}

function writeTensor(writer: Writer, tensor: OnnxTensor): void {
  for (const dim of tensor.dims) int64(writer, 1, dim);
  int64(writer, 2, tensor.data instanceof Float32Array ? DataType.float : DataType.int64);
  string(writer, 8, tensor.name);
  tag(writer, 9, BYTES).bytes(littleEndianBytes(tensor.data));
}

function writeAttribute(writer: Writer, attribute: OnnxAttribute): void {
  string(writer, 1, attribute.name);
  if ('int' in attribute) {
    int64(writer, 3, attribute.int);
    int64(writer, 20, AttributeType.int);
  } else if ('float' in attribute) {
    tag(writer, 2, FIXED32).float(attribute.float);
    int64(writer, 20, AttributeType.float);
  } else if ('ints' in attribute) {
    for (const value of attribute.ints) int64(writer, 8, value);
    int64(writer, 20, AttributeType.ints);
  } else if ('floats' in attribute) {
    for (const value of attribute.floats) tag(writer, 7, FIXED32).float(value);
    int64(writer, 20, AttributeType.floats);
  } else {
    tag(writer, 4, BYTES).bytes(Buffer.from(attribute.string, 'utf8'));
    int64(writer, 20, AttributeType.string);
  }
}

function writeNode(writer: Writer, node: OnnxNode): void {
  for (const input of node.inputs) string(writer, 1, input);
  for (const output of node.outputs) string(writer, 2, output);
  string(writer, 3, node.name);
  string(writer, 4, node.opType);
  for (const attribute of node.attributes) message(writer, 5, (inner) => writeAttribute(inner, attribute));
}

/** ValueInfoProto { name, type: TypeProto { tensor_type: { elem_type FLOAT, shape } } }. */
function writeValueInfo(writer: Writer, value: OnnxValueInfo): void {
  string(writer, 1, value.name);
  message(writer, 2, (type) =>
    message(type, 1, (tensorType) => {
      int64(tensorType, 1, DataType.float);
      message(tensorType, 2, (shape) => {
        for (const dim of value.dims) {
          message(shape, 1, (entry) => (typeof dim === 'number' ? int64(entry, 1, dim) : string(entry, 2, dim)));
        }
      });
    }),
  );
}

function writeGraph(writer: Writer, graph: OnnxGraph): void {
  for (const node of graph.nodes) message(writer, 1, (inner) => writeNode(inner, node));
  string(writer, 2, graph.name);
  for (const tensor of graph.initializers) message(writer, 5, (inner) => writeTensor(inner, tensor));
  for (const input of graph.inputs) message(writer, 11, (inner) => writeValueInfo(inner, input));
  for (const output of graph.outputs) message(writer, 12, (inner) => writeValueInfo(inner, output));
}

/** The serialized ModelProto. */
export function encodeModel(model: OnnxModel): Uint8Array {
  const writer = newWriter();
  int64(writer, 1, model.irVersion);
  string(writer, 2, model.producerName);
  string(writer, 3, model.producerVersion);
  if (model.docString !== undefined) string(writer, 6, model.docString);
  message(writer, 7, (graph) => writeGraph(graph, model.graph));
  message(writer, 8, (opset) => {
    string(opset, 1, '');
    int64(opset, 2, model.opsetVersion);
  });
  return writer.finish();
}

/** What a ModelProto fragment adds to a model's graph (see encodeGraphAddition). */
export interface GraphAddition {
  /** Nodes that read only values of the graph or earlier added nodes (they come after the graph's). */
  readonly nodes: readonly OnnxNode[];
  readonly initializers: readonly OnnxTensor[];
  readonly outputs: readonly OnnxValueInfo[];
}

/**
 * A ModelProto fragment holding only a graph with these nodes, initializers
 * and outputs. Appended to an encoded ModelProto it adds them to its graph:
 * a parser merges the two occurrences of the singular `graph` field, and
 * repeated fields (nodes, initializers, outputs) concatenate. This saves
 * re-encoding megabytes of weights per set of fetched values.
 */
export function encodeGraphAddition(addition: GraphAddition): Uint8Array {
  const writer = newWriter();
  message(writer, 7, (graph) => {
    for (const node of addition.nodes) message(graph, 1, (inner) => writeNode(inner, node));
    for (const tensor of addition.initializers) message(graph, 5, (inner) => writeTensor(inner, tensor));
    for (const output of addition.outputs) message(graph, 12, (inner) => writeValueInfo(inner, output));
  });
  return writer.finish();
}
