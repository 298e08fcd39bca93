/**
 * The protobuf wire format as the ONNX parser needs it, over protobufjs'
 * `Reader`: field iteration with wire-type checks, 64-bit varints without
 * `Long`, and the raw bytes of repeated scalar fields (packed or not) so
 * that tensor data is decoded once, straight into its typed array.
 *
 * Field numbers are those of the ONNX IR spec (docs/IR.md, onnx.proto);
 * only the fields camviz reads are named here. Everything else is skipped.
 */
// minimal: the wire format only; the full library also loads its .proto parser and reflection (about 20 ms of a cold start).
import protobuf from 'protobufjs/minimal.js';

export type Reader = protobuf.Reader;

export const WireType = { varint: 0, fixed64: 1, bytes: 2, fixed32: 5 } as const;

/** A malformed message (wrong wire type, bad length): the parser turns it into a one-line error. */
export class ProtoError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtoError';
  }
}

export function createReader(bytes: Uint8Array): Reader {
  return protobuf.Reader.create(bytes);
}

/**
 * Calls `visit(field, wireType)` for each field of the message that ends at
 * `end`; a visitor that does not read the value returns false and the value
 * is skipped.
 */
export function forEachField(reader: Reader, end: number, visit: (field: number, wireType: number) => boolean): void {
  while (reader.pos < end) {
    const tag = reader.uint32();
    const field = tag >>> 3;
    const wireType = tag & 7;
    if (field === 0) throw new ProtoError('field number 0');
    if (!visit(field, wireType)) reader.skipType(wireType, 0, field);
  }
  if (reader.pos !== end) throw new ProtoError('a field runs past the end of its message');
}

/** Reads a length prefix and returns where the embedded message ends. */
export function embeddedEnd(reader: Reader, field: number, wireType: number): number {
  expectWireType(field, wireType, WireType.bytes);
  const length = reader.uint32();
  const end = reader.pos + length;
  if (end > reader.len) throw new RangeError(`index out of range: ${reader.pos} + ${length} > ${reader.len}`);
  return end;
}

export function expectWireType(field: number, actual: number, expected: number): void {
  if (actual !== expected) throw new ProtoError(`field ${field} has wire type ${actual}, expected ${expected}`);
}

export function readString(reader: Reader, field: number, wireType: number): string {
  expectWireType(field, wireType, WireType.bytes);
  return reader.string();
}

/** A view into the reader's buffer (no copy): copy it before keeping it. */
export function readBytes(reader: Reader, field: number, wireType: number): Uint8Array {
  expectWireType(field, wireType, WireType.bytes);
  return reader.bytes();
}

const utf8 = new TextDecoder('utf-8');
export function decodeUtf8(bytes: Uint8Array): string {
  return utf8.decode(bytes);
}

/** The two 32-bit halves of a varint read as 64 bits (`lo`, `hi` unsigned). */
export interface Int64Parts {
  lo: number;
  hi: number;
}

/** Reads a varint of up to 10 bytes as 64 bits, starting at `pos` of `buf`; returns the position after it. */
export function readVarint64At(buf: Uint8Array, pos: number, end: number, out: Int64Parts): number {
  let lo = 0;
  let hi = 0;
  for (let index = 0; index < 10; index++) {
    if (pos >= end) throw new RangeError(`index out of range: ${pos} + 1 > ${end}`);
    const byte = buf[pos++] as number;
    const bits = byte & 0x7f;
    if (index < 4) lo |= bits << (7 * index);
    else if (index === 4) {
      lo |= bits << 28;
      hi |= bits >>> 4;
    } else hi |= bits << (7 * index - 32);
    if (byte < 0x80) {
      out.lo = lo >>> 0;
      out.hi = hi >>> 0;
      return pos;
    }
  }
  throw new ProtoError('varint longer than 10 bytes');
}

/**
 * A signed 64-bit value as a JS number. Values beyond ±(2^53 - 1) clamp to
 * ±Number.MAX_SAFE_INTEGER: ONNX uses INT64_MAX / INT64_MIN only as "to the
 * end" sentinels (Slice-1 `ends`, ...), whose semantics clamp to the axis
 * length anyway, and a finite integer keeps `Number.isInteger` checks and
 * arithmetic downstream well-defined (±Infinity would not). Exact 64-bit
 * values are kept only in int64 tensors (BigInt64Array).
 */
export function int64ToNumber(parts: Int64Parts): number {
  const value = (parts.hi | 0) * 4294967296 + parts.lo;
  if (value > Number.MAX_SAFE_INTEGER) return Number.MAX_SAFE_INTEGER;
  if (value < -Number.MAX_SAFE_INTEGER) return -Number.MAX_SAFE_INTEGER;
  return value;
}

const scratch: Int64Parts = { lo: 0, hi: 0 };

/** An int64 varint field as a number (clamped, see int64ToNumber). */
export function readInt64(reader: Reader, field: number, wireType: number): number {
  expectWireType(field, wireType, WireType.varint);
  reader.pos = readVarint64At(reader.buf, reader.pos, reader.len, scratch);
  return int64ToNumber(scratch);
}

/** An int32 / enum varint field (sign-extended on the wire; the low 32 bits hold the value). */
export function readInt32(reader: Reader, field: number, wireType: number): number {
  expectWireType(field, wireType, WireType.varint);
  reader.pos = readVarint64At(reader.buf, reader.pos, reader.len, scratch);
  return scratch.lo | 0;
}

export function readFloat32(reader: Reader, field: number, wireType: number): number {
  expectWireType(field, wireType, WireType.fixed32);
  return reader.float();
}

/**
 * The bytes of one occurrence of a repeated scalar field, as a packed run:
 * the whole payload when it is packed, else the single value's own bytes
 * (one varint, or 4 or 8 fixed bytes), which is a packed run of one.
 * `fixedWidth` is 4 or 8 for fixed32/fixed64 fields, 0 for varints.
 */
export function readScalarRun(reader: Reader, field: number, wireType: number, fixedWidth: 0 | 4 | 8): Uint8Array {
  if (wireType === WireType.bytes) return reader.bytes();
  const expected = fixedWidth === 0 ? WireType.varint : fixedWidth === 4 ? WireType.fixed32 : WireType.fixed64;
  expectWireType(field, wireType, expected);
  const start = reader.pos;
  if (fixedWidth === 0) reader.skip();
  else reader.skip(fixedWidth);
  return reader.raw(start, reader.pos);
}

/** How many varints a packed run holds (each ends at a byte below 0x80); checks the last one ends. */
export function countVarints(run: Uint8Array): number {
  let count = 0;
  for (let index = 0; index < run.length; index++) if ((run[index] as number) < 0x80) count++;
  if (run.length > 0 && (run[run.length - 1] as number) >= 0x80) throw new ProtoError('a packed varint run is cut off');
  return count;
}

/** Calls `each(parts, index)` for every varint of the runs, in order. */
export function forEachVarint(runs: Uint8Array[], each: (parts: Int64Parts, index: number) => void): void {
  const parts: Int64Parts = { lo: 0, hi: 0 };
  let index = 0;
  for (const run of runs) {
    let pos = 0;
    while (pos < run.length) {
      pos = readVarint64At(run, pos, run.length, parts);
      each(parts, index++);
    }
  }
}
