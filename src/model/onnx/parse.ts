/**
 * ONNX protobuf bytes → `OnnxModel` (types.ts): plain data, every tensor's
 * bytes checked against its declared shape before anything of that size is
 * allocated. Weights are copied exactly once out of the caller's buffer (so
 * a model does not keep the whole file alive through views), unless the
 * caller hands the buffer over (`adoptBytes`, see `rawDataInPlace`).
 *
 * Decoding is hand-written over camviz's wire-format reader (proto.ts) from
 * the ONNX IR spec; unknown fields are skipped. Every failure is one
 * `CamvizError` line naming the file (`source`).
 *
 * External data (`data_location` EXTERNAL) needs the model's folder: the
 * parser records where each such tensor's bytes are (`ExternalDataRef`) and
 * `read.ts` fills them in; `parseOnnxModel` on bytes alone refuses them.
 */
import { CamvizError } from '../../util/errors.js';
import { oneLine } from '../../util/text.js';
import {
  createReader,
  countVarints,
  decodeUtf8,
  embeddedEnd,
  expectWireType,
  forEachField,
  forEachVarint,
  int64ToNumber,
  ProtoError,
  readBytes,
  readFloat32,
  readInt32,
  readInt64,
  readScalarRun,
  readString,
  type Reader,
  varintLength,
  WireType,
} from './proto.js';
import type {
  OnnxAttribute,
  OnnxDim,
  OnnxElementType,
  OnnxGraph,
  OnnxModel,
  OnnxNode,
  OnnxTensor,
  OnnxTensorData,
  OnnxValueInfo,
} from './types.js';

/** No single tensor may declare more (a 2 GiB typed array is already beyond what tfjs handles). */
export const MAX_TENSOR_BYTES = 2 ** 31;
/** Nor may all of a model's tensors together. */
export const MAX_MODEL_BYTES = 2 ** 32;
/** Subgraphs (If/Loop bodies) nested deeper than this are refused rather than overflowing the stack. */
const MAX_GRAPH_DEPTH = 32;
/** The oldest IR version camviz reads: IR 3 (ONNX 1.0) introduced opset_import. */
export const MIN_IR_VERSION = 3;

/** A tensor whose bytes live in another file, for `read.ts` to fill in. */
export interface ExternalDataRef {
  tensor: OnnxTensor;
  /** How errors name the tensor (`initializer 'conv1.weight'`). */
  label: string;
  /** As written in the model: relative to the model's folder, not yet checked. */
  location: string;
  offset: number;
  /** Elements the tensor's dims declare. */
  count: number;
  /** The bytes they occupy (the `length` entry, when present, is checked equal). */
  byteLength: number;
}

export interface ParsedOnnxModel {
  model: OnnxModel;
  /** Tensors still to read from external files (their `data` is empty until then). */
  external: ExternalDataRef[];
}

interface ElementInfo {
  type: OnnxElementType;
  /** Bytes per element in raw_data; 0 for strings. */
  size: number;
}

/** TensorProto.DataType codes camviz reads. */
const ELEMENT_TYPES = new Map<number, ElementInfo>([
  [1, { type: 'float32', size: 4 }],
  [2, { type: 'uint8', size: 1 }],
  [3, { type: 'int8', size: 1 }],
  [4, { type: 'uint16', size: 2 }],
  [5, { type: 'int16', size: 2 }],
  [6, { type: 'int32', size: 4 }],
  [7, { type: 'int64', size: 8 }],
  [8, { type: 'string', size: 0 }],
  [9, { type: 'bool', size: 1 }],
  [10, { type: 'float16', size: 2 }],
  [11, { type: 'float64', size: 8 }],
  [12, { type: 'uint32', size: 4 }],
  [13, { type: 'uint64', size: 8 }],
]);

/** Names of the codes camviz does not read, for the error message. */
const UNREAD_TYPE_NAMES: Record<number, string> = {
  0: 'UNDEFINED',
  14: 'COMPLEX64',
  15: 'COMPLEX128',
  16: 'BFLOAT16',
  17: 'FLOAT8E4M3FN',
  18: 'FLOAT8E4M3FNUZ',
  19: 'FLOAT8E5M2',
  20: 'FLOAT8E5M2FNUZ',
  21: 'UINT4',
  22: 'INT4',
  23: 'FLOAT4E2M1',
};

/** AttributeProto.AttributeType codes, and the ones camviz has no representation for. */
const ATTRIBUTE_KINDS: Record<number, OnnxAttribute['kind']> = {
  1: 'float',
  2: 'int',
  3: 'string',
  4: 'tensor',
  5: 'graph',
  6: 'floats',
  7: 'ints',
  8: 'strings',
};
const UNREAD_ATTRIBUTE_KINDS: Record<number, string> = {
  9: 'TENSORS',
  10: 'GRAPHS',
  11: 'SPARSE_TENSOR',
  12: 'SPARSE_TENSORS',
  13: 'TYPE_PROTO',
  14: 'TYPE_PROTOS',
};

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

interface ParseContext {
  source: string;
  external: ExternalDataRef[];
  /** Bytes declared by all tensors so far (checked against MAX_MODEL_BYTES). */
  declaredBytes: number;
  depth: number;
  /** The bytes are the parser's to rearrange and to keep views of (see rawDataInPlace). */
  adoptBytes: boolean;
}

export interface ParseOptions {
  /**
   * Hand the buffer over: raw tensor data become views of it (moved back
   * a few bytes onto their element boundary where needed), so the model
   * keeps the buffer alive and the caller must neither change nor reuse
   * it. For a file read for this parse alone (read.ts).
   */
  readonly adoptBytes?: boolean;
}

/** A model from its bytes; a model with external data needs `readOnnxFile` (read.ts). */
export function parseOnnxModel(bytes: Uint8Array, source: string): OnnxModel {
  const { model, external } = parseOnnxModelWithExternalData(bytes, source);
  const first = external[0];
  if (first !== undefined) {
    throw new CamvizError(`${first.label} keeps its data in an external file (${first.location}): read the model from its file`, {
      file: source,
    });
  }
  return model;
}

/** A model from its bytes, with the tensors whose data is in external files still to be read. */
export function parseOnnxModelWithExternalData(bytes: Uint8Array, source: string, options: ParseOptions = {}): ParsedOnnxModel {
  const context: ParseContext = { source, external: [], declaredBytes: 0, depth: 0, adoptBytes: options.adoptBytes === true };
  if (bytes.length === 0) throw new CamvizError('not an ONNX model: the file is empty', { file: source });
  const model = decoding(context, () => decodeModel(createReader(bytes), context));
  return { model, external: context.external };
}

/** A serialized TensorProto (the `.pb` files of ONNX's conformance tests). */
export function parseOnnxTensor(bytes: Uint8Array, source: string): OnnxTensor {
  const context: ParseContext = { source, external: [], declaredBytes: 0, depth: 0, adoptBytes: false };
  const tensor = decoding(context, () => {
    const reader = createReader(bytes);
    return buildTensor(context, scanTensor(reader, reader.len), 'the tensor');
  });
  if (context.external.length > 0) {
    throw new CamvizError('the tensor keeps its data in an external file: not supported for a lone tensor', { file: source });
  }
  return tensor;
}

/** Runs `decode`, turning protobuf-level failures into one line naming the file. */
function decoding<T>(context: ParseContext, decode: () => T): T {
  try {
    return decode();
  } catch (error) {
    if (!isWireFormatError(error)) throw error;
    throw new CamvizError(`not a valid ONNX file: truncated or not protobuf (${oneLine(error.message)})`, { file: context.source, cause: error });
  }
}

/**
 * Bad bytes, as opposed to a bug or an allocation failure: the reader's
 * ProtoError (proto.ts), and its RangeError for reading past the end
 * ("index out of range").
 */
function isWireFormatError(error: unknown): error is Error {
  if (error instanceof ProtoError) return true;
  return error instanceof RangeError && error.message.startsWith('index out of range');
}

function fail(context: ParseContext, message: string): never {
  throw new CamvizError(message, { file: context.source });
}

// ---------------------------------------------------------------- ModelProto

function decodeModel(reader: Reader, context: ParseContext): OnnxModel {
  let irVersion = 0;
  let producerName = '';
  let producerVersion = '';
  let graphStart: number | undefined;
  const opsets = new Map<string, number>();
  forEachField(reader, reader.len, (field, wireType) => {
    switch (field) {
      case 1:
        irVersion = readInt64(reader, field, wireType);
        return true;
      case 2:
        producerName = readString(reader, field, wireType);
        return true;
      case 3:
        producerVersion = readString(reader, field, wireType);
        return true;
      case 7:
        // Decoded once the IR version is known to be one camviz reads, before anything is allocated.
        expectWireType(field, wireType, WireType.bytes);
        graphStart = reader.pos;
        return false;
      case 8: {
        const [domain, version] = decodeOpsetId(reader, embeddedEnd(reader, field, wireType));
        opsets.set(domain, version);
        return true;
      }
      default:
        return false;
    }
  });
  if (graphStart === undefined) fail(context, 'not an ONNX model: no graph');
  if (irVersion < MIN_IR_VERSION) {
    fail(context, `unsupported ONNX IR version ${irVersion}: camviz reads IR ${MIN_IR_VERSION} and newer`);
  }
  reader.pos = graphStart;
  const graph = decodeGraph(reader, embeddedEnd(reader, 7, WireType.bytes), context);
  return { irVersion, opsets, producerName, producerVersion, graph };
}

function decodeOpsetId(reader: Reader, end: number): [string, number] {
  let domain = '';
  let version = 0;
  forEachField(reader, end, (field, wireType) => {
    if (field === 1) domain = readString(reader, field, wireType);
    else if (field === 2) version = readInt64(reader, field, wireType);
    else return false;
    return true;
  });
  return [normalDomain(domain), version];
}

/** 'ai.onnx' and '' both name the default operator set; camviz writes ''. */
function normalDomain(domain: string): string {
  return domain === 'ai.onnx' ? '' : domain;
}

// ---------------------------------------------------------------- GraphProto

function decodeGraph(reader: Reader, end: number, context: ParseContext): OnnxGraph {
  if (context.depth >= MAX_GRAPH_DEPTH) fail(context, `subgraphs nested more than ${MAX_GRAPH_DEPTH} deep: refused`);
  context.depth++;
  let name = '';
  const nodes: OnnxNode[] = [];
  const initializers = new Map<string, OnnxTensor>();
  const declaredInputs: OnnxValueInfo[] = [];
  const outputs: OnnxValueInfo[] = [];
  const valueInfo: OnnxValueInfo[] = [];
  forEachField(reader, end, (field, wireType) => {
    switch (field) {
      case 1:
        nodes.push(decodeNode(reader, embeddedEnd(reader, field, wireType), context));
        return true;
      case 2:
        name = readString(reader, field, wireType);
        return true;
      case 5: {
        const tensor = buildTensor(context, scanTensor(reader, embeddedEnd(reader, field, wireType)), 'an initializer');
        if (tensor.name === '') fail(context, 'an initializer has no name');
        if (initializers.has(tensor.name)) fail(context, `initializer '${tensor.name}' is defined twice`);
        initializers.set(tensor.name, tensor);
        return true;
      }
      case 11:
        declaredInputs.push(decodeValueInfo(reader, embeddedEnd(reader, field, wireType)));
        return true;
      case 12:
        outputs.push(decodeValueInfo(reader, embeddedEnd(reader, field, wireType)));
        return true;
      case 13:
        valueInfo.push(decodeValueInfo(reader, embeddedEnd(reader, field, wireType)));
        return true;
      case 15:
        fail(context, `graph${name === '' ? '' : ` '${name}'`} has a sparse initializer, which camviz does not read`);
      default:
        return false;
    }
  });
  context.depth--;
  // Before IR 4 every initializer was also listed as a graph input.
  const inputs = declaredInputs.filter((input) => !initializers.has(input.name));
  checkSingleAssignment(context, nodes, inputs, initializers);
  return { name, nodes, initializers, inputs, outputs, valueInfo };
}

/** Every value is defined once: by a graph input, an initializer or one node's output. */
function checkSingleAssignment(
  context: ParseContext,
  nodes: OnnxNode[],
  inputs: OnnxValueInfo[],
  initializers: Map<string, OnnxTensor>,
): void {
  const definedBy = new Map<string, string>();
  for (const name of initializers.keys()) definedBy.set(name, 'an initializer');
  for (const input of inputs) {
    if (definedBy.has(input.name)) fail(context, `graph input '${input.name}' is listed twice`);
    definedBy.set(input.name, 'a graph input');
  }
  for (const node of nodes) {
    const producer = `node '${node.name === '' ? node.opType : node.name}'`;
    for (const output of node.outputs) {
      if (output === '') continue; // an omitted optional output
      const previous = definedBy.get(output);
      if (previous !== undefined) fail(context, `value '${output}' is produced twice: by ${previous} and by ${producer}`);
      definedBy.set(output, producer);
    }
  }
}

// ---------------------------------------------------------------- NodeProto

function decodeNode(reader: Reader, end: number, context: ParseContext): OnnxNode {
  let name = '';
  let opType = '';
  let domain = '';
  const inputs: string[] = [];
  const outputs: string[] = [];
  const attributes: Record<string, OnnxAttribute> = {};
  const attributeStarts: number[] = [];
  forEachField(reader, end, (field, wireType) => {
    switch (field) {
      case 1:
        inputs.push(readString(reader, field, wireType));
        return true;
      case 2:
        outputs.push(readString(reader, field, wireType));
        return true;
      case 3:
        name = readString(reader, field, wireType);
        return true;
      case 4:
        opType = readString(reader, field, wireType);
        return true;
      case 7:
        domain = readString(reader, field, wireType);
        return true;
      case 5:
        // Attributes are decoded once the node's name is known, for the error messages.
        attributeStarts.push(reader.pos);
        return false;
      default:
        return false;
    }
  });
  const nodeLabel = `node '${name === '' ? opType : name}'`;
  for (const start of attributeStarts) {
    reader.pos = start;
    const attributeEnd = embeddedEnd(reader, 5, WireType.bytes);
    const [attributeName, attribute] = decodeAttribute(reader, attributeEnd, context, nodeLabel);
    if (Object.hasOwn(attributes, attributeName)) fail(context, `${nodeLabel} has attribute '${attributeName}' twice`);
    // Defined, not assigned: an attribute called '__proto__' stays an attribute.
    Object.defineProperty(attributes, attributeName, { value: attribute, enumerable: true, writable: true, configurable: true });
  }
  reader.pos = end;
  return { name, opType, domain: normalDomain(domain), inputs, outputs, attributes };
}

// ---------------------------------------------------------------- AttributeProto

interface ScannedAttribute {
  name: string;
  type: number | undefined;
  float: number | undefined;
  int: number | undefined;
  string: Uint8Array | undefined;
  tensorStart: number | undefined;
  graphStart: number | undefined;
  floats: number[] | undefined;
  ints: number[] | undefined;
  strings: Uint8Array[] | undefined;
}

function decodeAttribute(reader: Reader, end: number, context: ParseContext, nodeLabel: string): [string, OnnxAttribute] {
  const scanned = scanAttribute(reader, end);
  const label = `attribute '${scanned.name}' of ${nodeLabel}`;
  if (scanned.name === '') fail(context, `${nodeLabel} has an attribute without a name`);
  const code = scanned.type ?? inferAttributeType(scanned);
  const kind = code === undefined ? undefined : ATTRIBUTE_KINDS[code];
  if (code === undefined) fail(context, `${label} has no value`);
  if (kind === undefined) {
    const typeName = UNREAD_ATTRIBUTE_KINDS[code];
    fail(context, typeName === undefined ? `${label} has an unknown type (${code})` : `${label} is of type ${typeName}, which camviz does not read`);
  }
  const value = attributeValue(reader, context, scanned, kind, label);
  reader.pos = end;
  return [scanned.name, value];
}

function scanAttribute(reader: Reader, end: number): ScannedAttribute {
  const scanned: ScannedAttribute = {
    name: '',
    type: undefined,
    float: undefined,
    int: undefined,
    string: undefined,
    tensorStart: undefined,
    graphStart: undefined,
    floats: undefined,
    ints: undefined,
    strings: undefined,
  };
  forEachField(reader, end, (field, wireType) => {
    switch (field) {
      case 1:
        scanned.name = readString(reader, field, wireType);
        return true;
      case 20:
        scanned.type = readInt32(reader, field, wireType);
        return true;
      case 2:
        scanned.float = readFloat32(reader, field, wireType);
        return true;
      case 3:
        scanned.int = readInt64(reader, field, wireType);
        return true;
      case 4:
        scanned.string = readBytes(reader, field, wireType);
        return true;
      case 5:
        scanned.tensorStart = reader.pos;
        return false;
      case 6:
        scanned.graphStart = reader.pos;
        return false;
      case 7:
        appendFloats(reader, field, wireType, (scanned.floats ??= []));
        return true;
      case 8:
        appendInts(reader, field, wireType, (scanned.ints ??= []));
        return true;
      case 9:
        (scanned.strings ??= []).push(readBytes(reader, field, wireType));
        return true;
      default:
        return false;
    }
  });
  return scanned;
}

/** Files from before the `type` field name their kind only by which value is set. */
function inferAttributeType(scanned: ScannedAttribute): number | undefined {
  if (scanned.float !== undefined) return 1;
  if (scanned.int !== undefined) return 2;
  if (scanned.string !== undefined) return 3;
  if (scanned.tensorStart !== undefined) return 4;
  if (scanned.graphStart !== undefined) return 5;
  if (scanned.floats !== undefined) return 6;
  if (scanned.ints !== undefined) return 7;
  if (scanned.strings !== undefined) return 8;
  return undefined;
}

/** The value of the attribute's kind; a scalar that is absent is protobuf's default (0, ''). */
function attributeValue(
  reader: Reader,
  context: ParseContext,
  scanned: ScannedAttribute,
  kind: OnnxAttribute['kind'],
  label: string,
): OnnxAttribute {
  switch (kind) {
    case 'float':
      return { kind, value: scanned.float ?? 0 };
    case 'int':
      return { kind, value: scanned.int ?? 0 };
    case 'string':
      return { kind, value: scanned.string === undefined ? '' : decodeUtf8(scanned.string) };
    case 'floats':
      return { kind, value: scanned.floats ?? [] };
    case 'ints':
      return { kind, value: scanned.ints ?? [] };
    case 'strings':
      return { kind, value: (scanned.strings ?? []).map(decodeUtf8) };
    case 'tensor': {
      if (scanned.tensorStart === undefined) fail(context, `${label} has no tensor`);
      reader.pos = scanned.tensorStart;
      const end = embeddedEnd(reader, 5, WireType.bytes);
      return { kind, value: buildTensor(context, scanTensor(reader, end), `the tensor of ${label}`) };
    }
    case 'graph': {
      if (scanned.graphStart === undefined) fail(context, `${label} has no graph`);
      reader.pos = scanned.graphStart;
      return { kind, value: decodeGraph(reader, embeddedEnd(reader, 6, WireType.bytes), context) };
    }
  }
}

function appendFloats(reader: Reader, field: number, wireType: number, out: number[]): void {
  const run = readScalarRun(reader, field, wireType, 4);
  if (run.length % 4 !== 0) throw new ProtoError(`packed floats of field ${field} are cut off`);
  const view = new DataView(run.buffer, run.byteOffset, run.byteLength);
  for (let offset = 0; offset < run.length; offset += 4) out.push(view.getFloat32(offset, true));
}

function appendInts(reader: Reader, field: number, wireType: number, out: number[]): void {
  const run = readScalarRun(reader, field, wireType, 0);
  countVarints(run);
  forEachVarint([run], (parts) => out.push(int64ToNumber(parts)));
}

// ---------------------------------------------------------------- ValueInfoProto

function decodeValueInfo(reader: Reader, end: number): OnnxValueInfo {
  const info: OnnxValueInfo = { name: '', type: undefined, shape: undefined };
  forEachField(reader, end, (field, wireType) => {
    if (field === 1) info.name = readString(reader, field, wireType);
    else if (field === 2) decodeTypeProto(reader, embeddedEnd(reader, field, wireType), info);
    else return false;
    return true;
  });
  return info;
}

/** Only tensor types have an element type and shape; sequences, maps... leave both undefined. */
function decodeTypeProto(reader: Reader, end: number, info: OnnxValueInfo): void {
  forEachField(reader, end, (field, wireType) => {
    if (field !== 1) return false;
    forEachField(reader, embeddedEnd(reader, field, wireType), (tensorField, tensorWire) => {
      if (tensorField === 1) info.type = ELEMENT_TYPES.get(readInt32(reader, tensorField, tensorWire))?.type;
      else if (tensorField === 2) info.shape = decodeShape(reader, embeddedEnd(reader, tensorField, tensorWire));
      else return false;
      return true;
    });
    return true;
  });
}

function decodeShape(reader: Reader, end: number): OnnxDim[] {
  const dims: OnnxDim[] = [];
  forEachField(reader, end, (field, wireType) => {
    if (field !== 1) return false;
    let dim: OnnxDim = null;
    forEachField(reader, embeddedEnd(reader, field, wireType), (dimField, dimWire) => {
      if (dimField === 1) {
        const value = readInt64(reader, dimField, dimWire);
        // Some exporters write -1 for "unknown": that is what null means here.
        dim = value >= 0 ? value : null;
      } else if (dimField === 2) dim = readString(reader, dimField, dimWire);
      else return false;
      return true;
    });
    dims.push(dim);
    return true;
  });
  return dims;
}

// ---------------------------------------------------------------- TensorProto

/** A TensorProto's fields, with its data still as views into the file's bytes. */
interface ScannedTensor {
  name: string;
  dims: number[];
  dataType: number;
  raw: Uint8Array | undefined;
  floatRuns: Uint8Array[];
  int32Runs: Uint8Array[];
  int64Runs: Uint8Array[];
  doubleRuns: Uint8Array[];
  uint64Runs: Uint8Array[];
  strings: Uint8Array[];
  externalData: Map<string, string>;
  external: boolean;
  segmented: boolean;
}

function scanTensor(reader: Reader, end: number): ScannedTensor {
  const scanned: ScannedTensor = {
    name: '',
    dims: [],
    dataType: 0,
    raw: undefined,
    floatRuns: [],
    int32Runs: [],
    int64Runs: [],
    doubleRuns: [],
    uint64Runs: [],
    strings: [],
    externalData: new Map(),
    external: false,
    segmented: false,
  };
  forEachField(reader, end, (field, wireType) => {
    switch (field) {
      case 1:
        appendInts(reader, field, wireType, scanned.dims);
        return true;
      case 2:
        scanned.dataType = readInt32(reader, field, wireType);
        return true;
      case 3:
        scanned.segmented = true;
        return false;
      case 4:
        scanned.floatRuns.push(readScalarRun(reader, field, wireType, 4));
        return true;
      case 5:
        scanned.int32Runs.push(readScalarRun(reader, field, wireType, 0));
        return true;
      case 6:
        scanned.strings.push(readBytes(reader, field, wireType));
        return true;
      case 7:
        scanned.int64Runs.push(readScalarRun(reader, field, wireType, 0));
        return true;
      case 8:
        scanned.name = readString(reader, field, wireType);
        return true;
      case 9:
        scanned.raw = readBytes(reader, field, wireType);
        return true;
      case 10:
        scanned.doubleRuns.push(readScalarRun(reader, field, wireType, 8));
        return true;
      case 11:
        scanned.uint64Runs.push(readScalarRun(reader, field, wireType, 0));
        return true;
      case 13: {
        const [key, value] = decodeStringPair(reader, embeddedEnd(reader, field, wireType));
        scanned.externalData.set(key, value);
        return true;
      }
      case 14:
        scanned.external = readInt32(reader, field, wireType) === 1;
        return true;
      default:
        return false;
    }
  });
  return scanned;
}

function decodeStringPair(reader: Reader, end: number): [string, string] {
  let key = '';
  let value = '';
  forEachField(reader, end, (field, wireType) => {
    if (field === 1) key = readString(reader, field, wireType);
    else if (field === 2) value = readString(reader, field, wireType);
    else return false;
    return true;
  });
  return [key, value];
}

/**
 * The tensor with its data copied out of the file, after checking that the
 * declared size is within the limits and matches the stored bytes.
 * `unnamed` names the tensor in errors when it has no name.
 */
function buildTensor(context: ParseContext, scanned: ScannedTensor, unnamed: string): OnnxTensor {
  const label = scanned.name === '' ? unnamed : `tensor '${scanned.name}'`;
  const element = ELEMENT_TYPES.get(scanned.dataType);
  if (element === undefined) {
    const typeName = UNREAD_TYPE_NAMES[scanned.dataType];
    fail(
      context,
      typeName === undefined
        ? `${label} has an unknown data type (${scanned.dataType})`
        : `${label} has data type ${typeName}, which camviz does not read`,
    );
  }
  if (scanned.segmented) fail(context, `${label} is segmented, which camviz does not read`);
  const count = declaredCount(context, scanned.dims, element, label);
  const tensor = (data: OnnxTensorData): OnnxTensor => ({ name: scanned.name, type: element.type, dims: scanned.dims, data });
  if (scanned.external) {
    const ref = externalRef(context, scanned, element, count, label);
    const result = tensor(allocateTensorData(element.type, 0));
    context.external.push({ ...ref, tensor: result });
    return result;
  }
  // An empty raw_data beside typed values is the typed values' tensor (a writer that set both fields).
  if (scanned.raw !== undefined && (scanned.raw.length > 0 || count === 0 || !hasTypedData(scanned))) {
    return tensor(fromRawData(context, scanned.raw, scanned.dims, element, count, label));
  }
  return tensor(fromTypedFields(context, scanned, element, count, label));
}

/** Elements the dims declare, refused above the per-tensor and per-model limits before anything is allocated. */
function declaredCount(context: ParseContext, dims: number[], element: ElementInfo, label: string): number {
  let count = 1;
  for (const dim of dims) {
    if (dim < 0) fail(context, `${label} has a negative dimension (${dims.join('x')})`);
    count *= dim;
  }
  // Strings count one byte each here: their real size is bounded by the file anyway.
  const bytes = count * Math.max(element.size, 1);
  if (bytes > MAX_TENSOR_BYTES) {
    fail(context, `${label} declares ${dims.join('x')} ${element.type} (${formatBytes(bytes)}), more than the ${formatBytes(MAX_TENSOR_BYTES)} camviz allows per tensor`);
  }
  context.declaredBytes += bytes;
  if (context.declaredBytes > MAX_MODEL_BYTES) {
    fail(context, `the model's tensors declare more than the ${formatBytes(MAX_MODEL_BYTES)} camviz allows in total (at ${label})`);
  }
  return count;
}

/** A byte count as people read it (binary units, 3 significant digits): '3.05 GiB'. */
export function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} bytes` : `${Number(value.toPrecision(3))} ${units[unit]}`;
}

function hasTypedData(scanned: ScannedTensor): boolean {
  return (
    scanned.floatRuns.length + scanned.int32Runs.length + scanned.int64Runs.length + scanned.doubleRuns.length +
      scanned.uint64Runs.length + scanned.strings.length >
    0
  );
}

function externalRef(
  context: ParseContext,
  scanned: ScannedTensor,
  element: ElementInfo,
  count: number,
  label: string,
): Omit<ExternalDataRef, 'tensor'> {
  const byteLength = count * element.size;
  if (element.type === 'string') fail(context, `${label} keeps strings in external data, which camviz does not read`);
  const location = scanned.externalData.get('location');
  if (location === undefined || location === '') fail(context, `${label} has external data without a location`);
  const offset = externalInteger(context, scanned.externalData.get('offset'), 'offset', label) ?? 0;
  const length = externalInteger(context, scanned.externalData.get('length'), 'length', label);
  if (length !== undefined && length !== byteLength) {
    fail(context, `${label} has ${length} bytes of external data, but its dims ${scanned.dims.join('x')} of ${element.type} need ${byteLength}`);
  }
  return { label, location, offset, count, byteLength };
}

function externalInteger(context: ParseContext, text: string | undefined, key: string, label: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,15}$/.test(text)) fail(context, `${label} has an external data ${key} that is not a byte count: '${text}'`);
  return Number(text);
}

function fromRawData(context: ParseContext, raw: Uint8Array, dims: number[], element: ElementInfo, count: number, label: string): OnnxTensorData {
  if (element.type === 'string') fail(context, `${label} is a string tensor with raw_data, which ONNX does not allow`);
  const expected = count * element.size;
  if (raw.length !== expected) {
    fail(context, `${label} has ${raw.length} bytes of raw_data, but its dims [${dims.join(', ')}] of ${element.type} need ${expected}`);
  }
  const adopted = context.adoptBytes ? rawDataInPlace(raw, element.type, count) : undefined;
  if (adopted !== undefined) return adopted;
  const data = allocateNumericData(element.type, count);
  bytesOf(data).set(raw);
  littleEndianToHost(data);
  return data;
}

/**
 * A raw_data field's values as a view of the adopted buffer, with no copy:
 * copying MobileNet v1's 10 MB of weights into fresh arrays cost about
 * 35 ms of a cold start, nearly all of it page faults on this kind of VM.
 * A typed array must start on its element boundary: data that does not is
 * moved back onto it, over the field's own tag and length prefix (already
 * read, never read again: 1 byte and the prefix's varint). Undefined (the
 * caller copies) when those bytes are too few for the move, or the host is
 * big-endian (the values would need swapping anyway).
 */
function rawDataInPlace(raw: Uint8Array, type: NumericElementType, count: number): NumericTensorData | undefined {
  const ArrayType = NUMERIC_ARRAY_TYPES[type];
  const offBoundary = raw.byteOffset % ArrayType.BYTES_PER_ELEMENT;
  if (!LITTLE_ENDIAN || offBoundary > 1 + varintLength(raw.length)) return undefined;
  const start = raw.byteOffset - offBoundary;
  if (offBoundary > 0) new Uint8Array(raw.buffer, start, raw.length + offBoundary).copyWithin(0, offBoundary);
  return new ArrayType(raw.buffer, start, count);
}

function fromTypedFields(context: ParseContext, scanned: ScannedTensor, element: ElementInfo, count: number, label: string): OnnxTensorData {
  const mismatch = (stored: number): never =>
    fail(context, `${label} stores ${stored} values, but its dims [${scanned.dims.join(', ')}] declare ${count}`);
  switch (element.type) {
    case 'float32':
      return fixedWidthData(scanned.floatRuns, element, count, mismatch);
    case 'float64':
      return fixedWidthData(scanned.doubleRuns, element, count, mismatch);
    case 'string': {
      if (scanned.strings.length !== count) mismatch(scanned.strings.length);
      return scanned.strings.map(decodeUtf8);
    }
    case 'int64':
    case 'uint64':
      return int64Data(element.type === 'int64' ? scanned.int64Runs : scanned.uint64Runs, element, count, mismatch);
    case 'uint32':
      return int32Data(scanned.uint64Runs, element, count, mismatch);
    default:
      // int32_data holds int32 and every narrower type, float16 as its bits.
      return int32Data(scanned.int32Runs, element, count, mismatch);
  }
}

function fixedWidthData(runs: Uint8Array[], element: ElementInfo, count: number, mismatch: (stored: number) => never): OnnxTensorData {
  const byteLength = runs.reduce((sum, run) => sum + run.length, 0);
  if (byteLength % element.size !== 0 || byteLength / element.size !== count) mismatch(Math.floor(byteLength / element.size));
  const data = allocateNumericData(element.type as NumericElementType, count);
  const bytes = bytesOf(data);
  let offset = 0;
  for (const run of runs) {
    bytes.set(run, offset);
    offset += run.length;
  }
  littleEndianToHost(data);
  return data;
}

function int32Data(runs: Uint8Array[], element: ElementInfo, count: number, mismatch: (stored: number) => never): OnnxTensorData {
  const stored = runs.reduce((sum, run) => sum + countVarints(run), 0);
  if (stored !== count) mismatch(stored);
  const data = allocateNumericData(element.type as NumericElementType, count) as Exclude<NumericTensorData, BigInt64Array | BigUint64Array>;
  if (element.type === 'bool') forEachVarint(runs, (parts, index) => (data[index] = parts.lo !== 0 || parts.hi !== 0 ? 1 : 0));
  // Typed-array stores wrap modulo 2^bits: the low bits are the value for every narrower type.
  else forEachVarint(runs, (parts, index) => (data[index] = parts.lo));
  return data;
}

function int64Data(runs: Uint8Array[], element: ElementInfo, count: number, mismatch: (stored: number) => never): OnnxTensorData {
  const stored = runs.reduce((sum, run) => sum + countVarints(run), 0);
  if (stored !== count) mismatch(stored);
  const data = allocateNumericData(element.type as NumericElementType, count) as BigInt64Array | BigUint64Array;
  // Written as 32-bit halves: no BigInt per element.
  const words = new Uint32Array(data.buffer, data.byteOffset, count * 2);
  const low = LITTLE_ENDIAN ? 0 : 1;
  forEachVarint(runs, (parts, index) => {
    words[2 * index + low] = parts.lo;
    words[2 * index + 1 - low] = parts.hi;
  });
  return data;
}

export type NumericTensorData = Exclude<OnnxTensorData, string[]>;
export type NumericElementType = Exclude<OnnxElementType, 'string'>;

/** A zeroed array for `count` elements of `type` (strings: `count` empty strings). */
export function allocateTensorData(type: OnnxElementType, count: number): OnnxTensorData {
  return type === 'string' ? new Array<string>(count).fill('') : allocateNumericData(type, count);
}

export function allocateNumericData(type: NumericElementType, count: number): NumericTensorData {
  return new NUMERIC_ARRAY_TYPES[type](count);
}

interface NumericArrayType {
  new (count: number): NumericTensorData;
  new (buffer: ArrayBufferLike, byteOffset: number, count: number): NumericTensorData;
  readonly BYTES_PER_ELEMENT: number;
}

/** The typed array holding each numeric element type (float16 as its bits). */
const NUMERIC_ARRAY_TYPES: Record<NumericElementType, NumericArrayType> = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  uint16: Uint16Array,
  int8: Int8Array,
  uint8: Uint8Array,
  bool: Uint8Array,
  int16: Int16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  int64: BigInt64Array,
  uint64: BigUint64Array,
};

/** The bytes of a numeric tensor's storage, to fill from little-endian data. */
export function bytesOf(data: NumericTensorData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** ONNX stores numbers little-endian; on a big-endian host, swap each element's bytes in place. */
export function littleEndianToHost(data: OnnxTensorData): void {
  if (LITTLE_ENDIAN || Array.isArray(data)) return;
  swapToHost(data as NumericTensorData);
}

function swapToHost(data: NumericTensorData): void {
  if (data.BYTES_PER_ELEMENT === 1) return;
  const bytes = bytesOf(data);
  const size = data.BYTES_PER_ELEMENT;
  for (let start = 0; start < bytes.length; start += size) bytes.subarray(start, start + size).reverse();
}
