/**
 * Small ONNX files for tests, written from a plain description with
 * protobufjs' Writer (field numbers from the ONNX IR spec), so that a test
 * can make exactly the graph, or the defect, it checks.
 */
import protobuf from 'protobufjs';

export type TestDim = number | string;

export interface TestValue {
  name: string;
  /** ONNX TensorProto.DataType number; 1 = FLOAT (the default). */
  elemType?: number;
  /** Omitted: rank unknown. */
  shape?: TestDim[];
}

export type TestAttribute =
  | { name: string; f: number }
  | { name: string; i: number }
  | { name: string; s: string }
  | { name: string; floats: number[] }
  | { name: string; ints: number[] }
  | { name: string; t: TestTensor };

export interface TestNode {
  opType: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  domain?: string;
  attributes?: TestAttribute[];
}

export interface TestTensor {
  name: string;
  dims: number[];
  /** FLOAT (1) as float_data unless `raw` is given; INT64 (7) as int64_data. */
  dataType?: number;
  values?: number[];
  /** raw_data bytes, as written (a test may make them shorter than the dims declare). */
  raw?: Uint8Array;
  /** external_data entries (location, offset, length); data_location EXTERNAL. */
  external?: Record<string, string>;
}

export interface TestModel {
  irVersion?: number;
  opset?: number;
  /** Extra opset imports (domain -> version). */
  opsets?: Record<string, number>;
  nodes: TestNode[];
  inputs: TestValue[];
  outputs: TestValue[];
  initializers?: TestTensor[];
  graphName?: string;
}

type Writer = protobuf.Writer;

function message(writer: Writer, field: number, write: (inner: Writer) => void): void {
  writer.uint32((field << 3) | 2).fork();
  write(writer);
  writer.ldelim();
}

function string(writer: Writer, field: number, value: string): void {
  writer.uint32((field << 3) | 2).string(value);
}

function varint(writer: Writer, field: number, value: number): void {
  writer.uint32(field << 3).int64(value);
}

function writeTensor(writer: Writer, tensor: TestTensor): void {
  for (const dim of tensor.dims) varint(writer, 1, dim);
  const dataType = tensor.dataType ?? 1;
  varint(writer, 2, dataType);
  string(writer, 8, tensor.name);
  if (tensor.raw !== undefined) writer.uint32((9 << 3) | 2).bytes(tensor.raw);
  else if (tensor.values !== undefined && dataType === 7) for (const value of tensor.values) varint(writer, 7, value);
  else if (tensor.values !== undefined && dataType === 6) for (const value of tensor.values) varint(writer, 5, value);
  else if (tensor.values !== undefined) for (const value of tensor.values) writer.uint32((4 << 3) | 5).float(value);
  if (tensor.external !== undefined) {
    for (const [key, value] of Object.entries(tensor.external)) {
      message(writer, 13, (entry) => {
        string(entry, 1, key);
        string(entry, 2, value);
      });
    }
    varint(writer, 14, 1);
  }
}

function writeValue(writer: Writer, value: TestValue): void {
  string(writer, 1, value.name);
  message(writer, 2, (type) =>
    message(type, 1, (tensorType) => {
      varint(tensorType, 1, value.elemType ?? 1);
      if (value.shape !== undefined) {
        message(tensorType, 2, (shape) => {
          for (const dim of value.shape!) {
            message(shape, 1, (entry) => (typeof dim === 'number' ? varint(entry, 1, dim) : string(entry, 2, dim)));
          }
        });
      }
    }),
  );
}

function writeAttribute(writer: Writer, attribute: TestAttribute): void {
  string(writer, 1, attribute.name);
  if ('f' in attribute) {
    writer.uint32((2 << 3) | 5).float(attribute.f);
    varint(writer, 20, 1);
  } else if ('i' in attribute) {
    varint(writer, 3, attribute.i);
    varint(writer, 20, 2);
  } else if ('s' in attribute) {
    writer.uint32((4 << 3) | 2).bytes(Buffer.from(attribute.s));
    varint(writer, 20, 3);
  } else if ('t' in attribute) {
    message(writer, 5, (inner) => writeTensor(inner, attribute.t));
    varint(writer, 20, 4);
  } else if ('floats' in attribute) {
    for (const value of attribute.floats) writer.uint32((7 << 3) | 5).float(value);
    varint(writer, 20, 6);
  } else {
    for (const value of attribute.ints) varint(writer, 8, value);
    varint(writer, 20, 7);
  }
}

function writeNode(writer: Writer, node: TestNode): void {
  for (const input of node.inputs) string(writer, 1, input);
  for (const output of node.outputs) string(writer, 2, output);
  if (node.name !== undefined) string(writer, 3, node.name);
  string(writer, 4, node.opType);
  for (const attribute of node.attributes ?? []) message(writer, 5, (inner) => writeAttribute(inner, attribute));
  if (node.domain !== undefined) string(writer, 7, node.domain);
}

/** The ModelProto bytes of `model`. */
export function onnxModelBytes(model: TestModel): Uint8Array {
  const writer = protobuf.Writer.create();
  varint(writer, 1, model.irVersion ?? 8);
  string(writer, 2, 'camviz-test');
  message(writer, 7, (graph) => {
    for (const node of model.nodes) message(graph, 1, (inner) => writeNode(inner, node));
    string(graph, 2, model.graphName ?? 'test');
    for (const tensor of model.initializers ?? []) message(graph, 5, (inner) => writeTensor(inner, tensor));
    for (const input of model.inputs) message(graph, 11, (inner) => writeValue(inner, input));
    for (const output of model.outputs) message(graph, 12, (inner) => writeValue(inner, output));
  });
  const opsets: Record<string, number> = { '': model.opset ?? 13, ...model.opsets };
  for (const [domain, version] of Object.entries(opsets)) {
    message(writer, 8, (inner) => {
      string(inner, 1, domain);
      varint(inner, 2, version);
    });
  }
  return writer.finish();
}

/** An image input [batch, 3, size, size] named `input`. */
export function imageInputValue(size: number, channels = 3): TestValue {
  return { name: 'input', shape: ['batch', channels, size, size] };
}
