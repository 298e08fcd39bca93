/**
 * An ONNX model as camviz holds it after parsing (`parse.ts`): plain data,
 * no protobuf objects, every tensor's bytes checked against its declared
 * shape. The op library (`ops/`) and the graph compiler read only this.
 */

/** Element types camviz reads (ONNX TensorProto.DataType names). */
export type OnnxElementType =
  | 'float32'
  | 'float64'
  | 'float16'
  | 'int8'
  | 'uint8'
  | 'int16'
  | 'uint16'
  | 'int32'
  | 'int64'
  | 'uint32'
  | 'uint64'
  | 'bool'
  | 'string';

/** Typed storage per element type; int64/uint64 as BigInt64Array/BigUint64Array, float16 as raw Uint16Array bits, strings as string[]. */
export type OnnxTensorData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array
  | string[];

export interface OnnxTensor {
  name: string;
  type: OnnxElementType;
  dims: number[];
  data: OnnxTensorData;
}

export type OnnxAttribute =
  | { kind: 'float'; value: number }
  | { kind: 'int'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'tensor'; value: OnnxTensor }
  | { kind: 'graph'; value: OnnxGraph }
  | { kind: 'floats'; value: number[] }
  | { kind: 'ints'; value: number[] }
  | { kind: 'strings'; value: string[] };

export interface OnnxNode {
  /** May be empty: ONNX does not require node names. */
  name: string;
  opType: string;
  /** '' (or 'ai.onnx') is the default operator set. */
  domain: string;
  /** '' marks an omitted optional input. */
  inputs: string[];
  outputs: string[];
  attributes: Record<string, OnnxAttribute>;
}

/** A dimension: a number when fixed, a name (`batch`) when symbolic, null when unknown. */
export type OnnxDim = number | string | null;

export interface OnnxValueInfo {
  name: string;
  type: OnnxElementType | undefined;
  /** undefined when the rank is unknown. */
  shape: OnnxDim[] | undefined;
}

export interface OnnxGraph {
  name: string;
  /** In the file's order (topologically sorted by the spec; checked by the compiler). */
  nodes: OnnxNode[];
  initializers: Map<string, OnnxTensor>;
  /** Graph inputs that are not initializers: what the caller feeds. */
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  valueInfo: OnnxValueInfo[];
}

export interface OnnxModel {
  irVersion: number;
  /** Operator set version per domain ('' = the default ONNX domain). */
  opsets: Map<string, number>;
  producerName: string;
  producerVersion: string;
  graph: OnnxGraph;
}
