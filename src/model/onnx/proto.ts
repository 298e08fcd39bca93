/**
 * The protobuf wire format as the ONNX parser needs it: field iteration
 * with wire-type checks, 64-bit varints as two 32-bit halves, and the raw
 * bytes of repeated scalar fields (packed or not) so that tensor data is
 * decoded once, straight into its typed array.
 *
 * Field numbers are those of the ONNX IR spec (docs/IR.md, onnx.proto);
 * only the fields camviz reads are named here. Everything else is skipped.
 *
 * The reader is camviz's own: protobufjs' minimal build, which it replaces,
 * is 18 small files that a cold start resolved, read and compiled one by
 * one (about 10 ms of an ONNX model's start), for the few calls below.
 * It keeps protobufjs' behaviour on bad bytes, so that the parser's errors
 * stay what they were: a RangeError "index out of range: ..." for a read
 * past the end, a ProtoError for anything else malformed.
 */

export const WireType = { varint: 0, fixed64: 1, bytes: 2, startGroup: 3, endGroup: 4, fixed32: 5 } as const;

/** A malformed message (wrong wire type, bad length): the parser turns it into a one-line error. */
export class ProtoError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtoError';
  }
}

/** How deep groups may nest in skipped fields (protoc's default recursion limit, as protobufjs). */
const MAX_GROUP_DEPTH = 100;

/** A cursor over one message's bytes. */
export class Reader {
  /** The next byte to read. */
  pos = 0;
  /** Where the bytes end. */
  readonly len: number;
  private readonly view: DataView;

  constructor(readonly buf: Uint8Array) {
    this.len = buf.length;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  /** A varint's low 32 bits, unsigned (a negative int32 is written in 10 bytes: the rest are read past). */
  uint32(): number {
    let value = 0;
    for (let index = 0; index < 10; index++) {
      const byte = this.byte();
      // Past the fifth byte the bits fall beyond 32; `<<` keeps the low 32 bits of the fifth.
      if (index < 5) value |= (byte & 0x7f) << (7 * index);
      if (byte < 0x80) return value >>> 0;
    }
    throw new ProtoError('varint longer than 10 bytes');
  }

  /** A length-delimited field's bytes: a view into `buf`, no copy. */
  bytes(): Uint8Array {
    const length = this.length();
    const start = this.pos;
    this.need(length);
    this.pos += length;
    return this.buf.subarray(start, this.pos);
  }

  /** A length-delimited field as UTF-8 text (malformed bytes become U+FFFD). */
  string(): string {
    return decodeUtf8(this.bytes());
  }

  /** A little-endian float32. */
  float(): number {
    this.need(4);
    const value = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return value;
  }

  /** Skips `length` bytes, or one varint when no length is given. */
  skip(length?: number): void {
    if (length !== undefined) {
      this.need(length);
      this.pos += length;
      return;
    }
    while (this.byte() >= 0x80);
  }

  /** Skips the value of a field of this wire type; a group is skipped to its end tag, which must name the same field. */
  skipType(wireType: number, depth = 0, field?: number): void {
    if (depth > MAX_GROUP_DEPTH) throw new ProtoError('groups nested too deep');
    if (field === 0) throw new ProtoError('field number 0');
    if (wireType === WireType.varint) this.skip();
    else if (wireType === WireType.fixed64) this.skip(8);
    else if (wireType === WireType.bytes) this.skip(this.length());
    else if (wireType === WireType.fixed32) this.skip(4);
    else if (wireType === WireType.startGroup) this.skipGroup(depth, field);
    else throw new ProtoError(`invalid wire type ${wireType} at offset ${this.pos}`);
  }

  /** The bytes from `start` to `end`: a view into `buf`, no copy. */
  raw(start: number, end: number): Uint8Array {
    return this.buf.subarray(start, end);
  }

  private skipGroup(depth: number, field: number | undefined): void {
    for (;;) {
      const tag = this.uint32();
      const nested = tag >>> 3;
      const wireType = tag & 7;
      if (nested === 0) throw new ProtoError('field number 0');
      if (wireType === WireType.endGroup) {
        if (field !== undefined && nested !== field) throw new ProtoError('a group ends with another field\'s end tag');
        return;
      }
      this.skipType(wireType, depth + 1, nested);
    }
  }

  /** A length prefix: a varint below 2^31 in at most five bytes (protobufjs refuses others as malformed, not as cut off). */
  private length(): number {
    let value = 0;
    for (let index = 0; index < 4; index++) {
      const byte = this.byte();
      value |= (byte & 0x7f) << (7 * index);
      if (byte < 0x80) return value;
    }
    // The fifth byte holds bits 28-34: past 7 the length would not fit 31 bits, or would go on.
    const fifth = this.byte();
    if (fifth > 7) throw new ProtoError('invalid length encoding');
    return value | (fifth << 28);
  }

  private byte(): number {
    this.need(1);
    return this.buf[this.pos++] as number;
  }

  /** Throws protobufjs' RangeError unless `length` more bytes are there. */
  private need(length: number): void {
    if (this.pos + length > this.len) throw new RangeError(`index out of range: ${this.pos} + ${length} > ${this.len}`);
  }
}

export function createReader(bytes: Uint8Array): Reader {
  return new Reader(bytes);
}

/**
 * A length-delimited field (its tag, the payload's length, the payload) as
 * bytes: for the few small messages camviz writes beside a model it read
 * (the ONNX writer encodes whole models with protobufjs' Writer).
 */
export function lengthDelimitedField(field: number, payload: Uint8Array): Uint8Array {
  const head = [...varintBytes(field * 8 + WireType.bytes), ...varintBytes(payload.length)];
  const bytes = new Uint8Array(head.length + payload.length);
  bytes.set(head);
  bytes.set(payload, head.length);
  return bytes;
}

/** How many bytes a non-negative integer (up to 2^53) takes as a varint. */
export function varintLength(value: number): number {
  let length = 1;
  for (let rest = value; rest >= 0x80; rest = Math.floor(rest / 0x80)) length++;
  return length;
}

/** A non-negative integer (up to 2^53) as a varint. */
function varintBytes(value: number): number[] {
  const bytes: number[] = [];
  for (; value > 0x7f; value = Math.floor(value / 128)) bytes.push((value % 128) | 0x80);
  bytes.push(value);
  return bytes;
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
