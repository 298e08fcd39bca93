/**
 * What every ONNX op implementation shares: the node being run and its
 * opset, attribute readers with ONNX's defaults, readers for the small
 * constant inputs (shapes, axes, pads) that decide an op's geometry, and
 * the error for what camviz does not support.
 */
import * as tf from '../../../engine/tf.js';
import { CamvizError } from '../../../util/errors.js';
import type { OnnxNode, OnnxTensor } from '../types.js';
import type { LaidTensor, Layout } from '../layout.js';
import { MAX_TENSOR_BYTES, formatBytes } from '../parse.js';

/** An op type, or one of its attribute combinations, that camviz cannot run. */
export class UnsupportedOpError extends CamvizError {
  readonly opType: string;
  readonly nodeName: string;
  readonly opset: number;

  constructor(node: Pick<OnnxNode, 'opType' | 'name'> & Partial<Pick<OnnxNode, 'outputs'>>, opset: number, detail?: string) {
    const what = detail === undefined ? '' : `: ${detail}`;
    // Node names are optional in ONNX; an unnamed node is known by its first output.
    const which = node.name !== '' || node.outputs?.[0] === undefined ? `node '${node.name}'` : `the node computing '${node.outputs[0]}'`;
    super(`unsupported ONNX op ${node.opType} (${which}, opset ${opset})${what}`);
    this.name = 'UnsupportedOpError';
    this.opType = node.opType;
    this.nodeName = node.name;
    this.opset = opset;
  }
}

/** A node's output above the per-tensor limit, refused before anything allocates it. */
export class TensorTooLargeError extends CamvizError {
  constructor(ctx: OpContext, shape: readonly number[], bytes: number) {
    super(`node '${ctx.node.name}' (${ctx.node.opType}) would make a tensor of ${shape.join('x') || 'scalar'} = ${formatBytes(bytes)}, above the limit of ${formatBytes(MAX_TENSOR_BYTES)} per tensor`);
    this.name = 'TensorTooLargeError';
  }
}

/**
 * `shape`, once checked against the per-tensor limit that initializers have
 * (parse.ts, MAX_TENSOR_BYTES): every op calls it with its output's shape
 * before it allocates, so that a graph asking for a huge value (an Expand
 * or a Tile to billions of elements, a Conv with huge pads) is refused in
 * one line, in bounded time and memory, at load as at run time. A shape
 * whose product overflows is huge too. Without `dtype`, 4 bytes an element
 * (the widest tfjs type). `layout` is the shape's: the error gives the ONNX
 * (NCHW) shape, as the user knows the graph.
 */
export function checkedShape<T extends readonly number[]>(ctx: OpContext, shape: T, dtype?: tf.DataType, layout: Layout = 'onnx'): T {
  const bytes = shape.reduce((product, dim) => product * Math.max(dim, 0), 1) * (dtype === 'bool' ? 1 : 4);
  if (bytes <= MAX_TENSOR_BYTES) return shape;
  throw new TensorTooLargeError(ctx, layout === 'nhwc' && shape.length === 4 ? [0, 3, 1, 2].map((axis) => shape[axis]!) : shape, bytes);
}

/** One node being run. */
export interface OpContext {
  node: OnnxNode;
  opset: number;
  /**
   * The node reads image data in the model builder's planning pass on a
   * zero image (build.ts): only its outputs' shapes, layouts and dtypes
   * matter, not their values. A Conv, a pool, an elementwise op or a Concat
   * then gives zeros of the shape it would give (zerosStandIn), after the
   * same checks. Shape arithmetic never has it: its values decide shapes.
   */
  shapesOnly?: boolean;
}

type StandInBuffer = Float32Array | Int32Array | Uint8Array;

/** One zero buffer per element type that stand-ins view: never written (tfjs' kernels do not write their inputs), so never touched. */
const standInBuffers = new Map<'float32' | 'int32' | 'bool', StandInBuffer>();

/**
 * Zeros of `shape` that stand for an op's output in the planning pass: a
 * view of one zero buffer that every stand-in shares, held by the cpu
 * backend as it is. Making one touches no memory, where a tensor of the
 * active backend would be written whole (MobileNet v1's convolutions and
 * ReLU6s: about 15 ms of a cold start, mostly first touches of the wasm
 * heap's pages). An op that computes on a stand-in reads zeros. With
 * `ctx`, the node it stands for, whose output (in `layout`) is checked
 * (checkedShape).
 */
export function zerosStandIn(shape: readonly number[], dtype: tf.DataType, ctx?: OpContext, layout: Layout = 'onnx'): tf.Tensor {
  // The stand-in's pages are never touched, but the op it stands for would make this tensor for real.
  if (ctx !== undefined) checkedShape(ctx, shape, dtype, layout);
  // The check tfjs makes of every tensor's shape: an op's negative output size (a pool's window past its input) is refused here too.
  tf.util.assertNonNegativeIntegerDimensions(shape as number[]);
  const size = tf.util.sizeFromShape(shape as number[]);
  const cpu = tf.engine().findBackend('cpu');
  if (cpu === null || (dtype !== 'float32' && dtype !== 'int32' && dtype !== 'bool')) return tf.zeros(shape as number[], dtype);
  let buffer = standInBuffers.get(dtype);
  if (buffer === undefined || buffer.length < size) {
    // Views of a replaced buffer keep it while their tensors live.
    buffer = dtype === 'float32' ? new Float32Array(size) : dtype === 'int32' ? new Int32Array(size) : new Uint8Array(size);
    standInBuffers.set(dtype, buffer);
  }
  return tf.engine().makeTensor(buffer.subarray(0, size), shape as number[], dtype, cpu);
}

/** Lets the stand-ins' buffers go (the planning pass ends): their pages are the size of the model's largest value. */
export function releaseStandIns(): void {
  standInBuffers.clear();
}

/** An op: ONNX inputs (undefined when omitted) to ONNX outputs, in order. */
export type OpFunction = (ctx: OpContext, inputs: (LaidTensor | undefined)[]) => LaidTensor[];

export function unsupported(ctx: OpContext, detail: string): UnsupportedOpError {
  return new UnsupportedOpError(ctx.node, ctx.opset, detail);
}

// ------------------------------------------------------------ attributes

export function attrInt(ctx: OpContext, name: string, fallback: number): number {
  const attr = ctx.node.attributes[name];
  if (attr === undefined) return fallback;
  if (attr.kind !== 'int') throw badAttribute(ctx, name, 'an int');
  return attr.value;
}

export function attrFloat(ctx: OpContext, name: string, fallback: number): number {
  const attr = ctx.node.attributes[name];
  if (attr === undefined) return fallback;
  if (attr.kind === 'float' || attr.kind === 'int') return attr.value;
  throw badAttribute(ctx, name, 'a float');
}

export function attrInts(ctx: OpContext, name: string): number[] | undefined {
  const attr = ctx.node.attributes[name];
  if (attr === undefined) return undefined;
  if (attr.kind !== 'ints') throw badAttribute(ctx, name, 'a list of ints');
  return attr.value;
}

export function attrFloats(ctx: OpContext, name: string): number[] | undefined {
  const attr = ctx.node.attributes[name];
  if (attr === undefined) return undefined;
  if (attr.kind !== 'floats') throw badAttribute(ctx, name, 'a list of floats');
  return attr.value;
}

export function attrString(ctx: OpContext, name: string, fallback: string): string {
  const attr = ctx.node.attributes[name];
  if (attr === undefined) return fallback;
  if (attr.kind !== 'string') throw badAttribute(ctx, name, 'a string');
  return attr.value;
}

function badAttribute(ctx: OpContext, name: string, expected: string): CamvizError {
  return new CamvizError(`ONNX node '${ctx.node.name}' (${ctx.node.opType}): attribute ${name} is not ${expected}`);
}

// ------------------------------------------------------------ inputs

/** Input `index`, which the op requires. */
export function required(ctx: OpContext, inputs: (LaidTensor | undefined)[], index: number): LaidTensor {
  const value = inputs[index];
  if (value === undefined) throw new CamvizError(`ONNX node '${ctx.node.name}' (${ctx.node.opType}): input ${index} is missing`);
  return value;
}

/**
 * The integers of a small constant input (a shape, axes, pads, split
 * sizes). Reading values is fine here: they decide geometry, and nothing is
 * differentiated with respect to them.
 */
export function constantInts(value: LaidTensor | undefined): number[] | undefined {
  if (value === undefined) return undefined;
  return Array.from(value.tensor.dataSync(), Number);
}

/** The numbers of a small constant float input (Resize's scales and roi), read as constantInts reads integers: they too decide geometry. */
export const constantFloats: (value: LaidTensor | undefined) => number[] | undefined = constantInts;

export function constantNumber(value: LaidTensor | undefined): number | undefined {
  if (value === undefined || value.tensor.size === 0) return undefined;
  return Number(value.tensor.dataSync()[0]);
}

/** A possibly negative axis of a rank-`rank` value, checked and made non-negative. */
export function normalizeAxis(ctx: OpContext, axis: number, rank: number): number {
  const result = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(result) || result < 0 || result >= Math.max(rank, 1)) {
    throw new CamvizError(`ONNX node '${ctx.node.name}' (${ctx.node.opType}): axis ${axis} is out of range for rank ${rank}`);
  }
  return result;
}

// ------------------------------------------------------------ element types

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;

/** int64 values this large are "to the end" sentinels (Slice's INT64_MAX), not counts. */
const SENTINEL_MAGNITUDE = 2 ** 53;

/**
 * An ONNX tensor as a tfjs tensor. tfjs has float32, int32 and bool only:
 * float64 and float16 become float32, every integer type int32. Shapes and
 * indices fit in int32; an int64 sentinel (|value| ≥ 2^53, e.g. Slice's
 * INT64_MAX) saturates, which means the same to every op here; any other
 * value outside int32 is refused. With `backend`, the tensor's data is
 * that backend's (the cpu backend keeps a float32 array as it is, no copy;
 * tfjs moves it to the active backend on its first use there).
 */
export function tensorFromOnnx(onnx: OnnxTensor, backend?: tf.KernelBackend): tf.Tensor {
  const { type, dims, data } = onnx;
  if (type === 'string' || Array.isArray(data)) throw new CamvizError(`ONNX tensor '${onnx.name}': string tensors are not supported`);
  const make = (values: Float32Array | Int32Array | Uint8Array, dtype: 'float32' | 'int32' | 'bool'): tf.Tensor => {
    if (backend === undefined) return tf.tensor(values, dims, dtype);
    if (values.length !== tf.util.sizeFromShape(dims)) throw new CamvizError(`ONNX tensor '${onnx.name}': ${values.length} values for dims [${dims.join(', ')}]`);
    return tf.engine().makeTensor(values, dims, dtype, backend);
  };
  if (type === 'bool') return make(Uint8Array.from(data as ArrayLike<number>), 'bool');
  if (type === 'float32') return make(data as Float32Array, 'float32');
  if (type === 'float64') return make(Float32Array.from(data as Float64Array), 'float32');
  if (type === 'float16') return make(float16ToFloat32(data as Uint16Array), 'float32');
  const ints = new Int32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const value = Number(data[i]);
    if (value >= INT32_MIN && value <= INT32_MAX) ints[i] = value;
    else if (Math.abs(value) >= SENTINEL_MAGNITUDE) ints[i] = value > 0 ? INT32_MAX : INT32_MIN;
    else throw new CamvizError(`ONNX tensor '${onnx.name}': ${type} value ${data[i]} does not fit in int32`);
  }
  return make(ints, 'int32');
}

/** IEEE half-precision bits to float32. */
export function float16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i]!;
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const fraction = h & 0x3ff;
    if (exponent === 0) out[i] = sign * 2 ** -14 * (fraction / 1024);
    else if (exponent === 0x1f) out[i] = fraction === 0 ? sign * Infinity : NaN;
    else out[i] = sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
  }
  return out;
}

/** ONNX TensorProto.DataType codes to the tfjs dtype that stores them; undefined for those camviz cannot hold. */
export function dtypeOfOnnxCode(code: number): tf.DataType | undefined {
  switch (code) {
    case 1: // FLOAT
    case 11: // DOUBLE
      return 'float32';
    case 2: // UINT8
    case 3: // INT8
    case 4: // UINT16
    case 5: // INT16
    case 6: // INT32
    case 7: // INT64
    case 12: // UINT32
    case 13: // UINT64
      return 'int32';
    case 9: // BOOL
      return 'bool';
    default: // STRING, FLOAT16, BFLOAT16, complex, float8, int4: not held exactly
      return undefined;
  }
}
