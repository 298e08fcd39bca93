/**
 * camviz's protobuf wire-format reader and its one encoder
 * (src/model/onnx/proto.ts), on bytes worked out by hand from the protobuf
 * encoding spec, and against protobufjs' Reader and Writer (still a dependency: the ONNX writer and TensorBoard's
 * events use it) on random streams: the same values, positions and kinds
 * of error.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import type protobuf from 'protobufjs';
import { ProtoError, Reader, WireType, lengthDelimitedField } from '../src/model/onnx/proto.js';
import { noise } from './helpers/files.js';

const protobufjs = createRequire(import.meta.url)('protobufjs/minimal.js') as typeof protobuf;

const readerOf = (bytes: number[]): Reader => new Reader(Uint8Array.from(bytes));
const outOfRange = (error: unknown): boolean => error instanceof RangeError && error.message.startsWith('index out of range');

describe('the wire-format reader on hand-encoded bytes', () => {
  test('varints: one byte, two, the largest uint32, and a negative int32 in ten bytes', () => {
    assert.equal(readerOf([0x05]).uint32(), 5);
    // 300 = 0b10_0101100: low seven bits 0x2c with the continuation bit, then 0b10.
    const twoBytes = readerOf([0xac, 0x02, 0x07]);
    assert.equal(twoBytes.uint32(), 300);
    assert.equal(twoBytes.pos, 2);
    assert.equal(readerOf([0xff, 0xff, 0xff, 0xff, 0x0f]).uint32(), 4294967295);
    // -1 as an int32 is sign-extended to 64 bits on the wire: nine 0xff, then 0x01.
    const negative = readerOf([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    assert.equal(negative.uint32() | 0, -1);
    assert.equal(negative.pos, 10);
  });

  test('a varint past ten bytes is malformed; one cut off reads past the end', () => {
    assert.throws(() => readerOf(Array.from({ length: 11 }, () => 0x80)).uint32(), ProtoError);
    assert.throws(() => readerOf([0x80, 0x80]).uint32(), outOfRange);
    assert.throws(() => readerOf([]).uint32(), outOfRange);
  });

  test('bytes are a view into the buffer; a length past the end is refused', () => {
    const buffer = Uint8Array.from([0x09, 0x03, 0x61, 0x62, 0x63, 0x7f]);
    const reader = new Reader(buffer);
    reader.skip();
    const bytes = reader.bytes();
    assert.deepEqual([...bytes], [0x61, 0x62, 0x63]);
    assert.equal(bytes.buffer, buffer.buffer);
    assert.equal(bytes.byteOffset, 2);
    assert.equal(reader.pos, 5);
    assert.throws(() => readerOf([0x04, 0x61, 0x62]).bytes(), outOfRange);
    // A length of 2^31 (fifth byte 8), and one whose fifth byte goes on: malformed, not cut off.
    assert.throws(() => readerOf([0x80, 0x80, 0x80, 0x80, 0x08]).bytes(), ProtoError);
    assert.throws(() => readerOf([0x80, 0x80, 0x80, 0x80, 0x80, 0x01]).bytes(), ProtoError);
    // The largest length, 2^31 - 1, is read (then refused as past the end).
    assert.throws(() => readerOf([0xff, 0xff, 0xff, 0xff, 0x07]).bytes(), /index out of range: 5 \+ 2147483647 > 5/);
  });

  test('strings decode UTF-8; malformed bytes become U+FFFD', () => {
    // 'é' is c3 a9, '✓' is e2 9c 93.
    assert.equal(readerOf([0x05, 0xc3, 0xa9, 0xe2, 0x9c, 0x93]).string(), 'é✓');
    assert.equal(readerOf([0x02, 0x61, 0xff]).string(), 'a\ufffd');
  });

  test('a float32 is little-endian; three bytes are too few', () => {
    // 1.5 = 0x3fc00000; -2 = 0xc0000000.
    const reader = readerOf([0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00, 0xc0]);
    assert.equal(reader.float(), 1.5);
    assert.equal(reader.float(), -2);
    assert.equal(reader.pos, 8);
    assert.throws(() => readerOf([0x00, 0x00, 0xc0]).float(), outOfRange);
  });

  test('skipping each wire type, and groups to their own end tag', () => {
    const skipped = (wireType: number, bytes: number[]): number => {
      const reader = readerOf([...bytes, 0x2a]);
      reader.skipType(wireType, 0, 1);
      return reader.pos;
    };
    assert.equal(skipped(WireType.varint, [0x96, 0x01]), 2);
    assert.equal(skipped(WireType.fixed64, [1, 2, 3, 4, 5, 6, 7, 8]), 8);
    assert.equal(skipped(WireType.bytes, [0x02, 0x61, 0x62]), 3);
    assert.equal(skipped(WireType.fixed32, [1, 2, 3, 4]), 4);
    // Group 1 holding field 2 (varint 5) and group 3 (empty): tags 0x10 0x05, 0x1b 0x1c, then 1's end tag 0x0c.
    assert.equal(skipped(WireType.startGroup, [0x10, 0x05, 0x1b, 0x1c, 0x0c]), 5);
  });

  test('malformed skips: another field ends the group, unknown wire types, field 0, groups nested without end', () => {
    // Group 1 closed by field 2's end tag (0x14).
    assert.throws(() => readerOf([0x14]).skipType(WireType.startGroup, 0, 1), ProtoError);
    assert.throws(() => readerOf([0x00]).skipType(WireType.startGroup, 0, 1), ProtoError);
    assert.throws(() => readerOf([0x00]).skipType(6), ProtoError);
    assert.throws(() => readerOf([0x00]).skipType(7), ProtoError);
    assert.throws(() => readerOf([0x00]).skipType(WireType.varint, 0, 0), ProtoError);
    // 10,000 nested starts of group 1 (0x0b): refused at depth 100, not a stack overflow.
    assert.throws(() => readerOf(Array.from({ length: 10_000 }, () => 0x0b)).skipType(WireType.startGroup, 0, 1), ProtoError);
    assert.throws(() => readerOf([0x0b, 0x0b]).skipType(WireType.startGroup, 0, 1), outOfRange);
  });
});

describe('the wire-format reader against protobufjs', () => {
  type Step = 'uint32' | 'bytes' | 'string' | 'float' | 'skip';
  const STEPS: readonly Step[] = ['uint32', 'bytes', 'string', 'float', 'skip'];

  /** Runs the steps on one reader until it throws; the values read, where it stopped, and the kind of error. */
  function run(read: (step: Step) => unknown, position: () => number, steps: readonly Step[]): { values: unknown[]; pos: number; error: string } {
    const values: unknown[] = [];
    for (const step of steps) {
      try {
        const value = read(step);
        values.push(value instanceof Uint8Array ? [...value] : value);
      } catch (error) {
        return { values, pos: position(), error: outOfRange(error) ? 'out of range' : 'malformed' };
      }
    }
    return { values, pos: position(), error: 'none' };
  }

  test('random streams of varints, bytes, strings, floats and skipped varints read the same', () => {
    for (let seed = 1; seed <= 2000; seed++) {
      const bytes = noise(12 + (seed % 40), 1, seed, 1);
      // Small lengths now and then, so that bytes and strings are read and not only refused.
      for (let i = 0; i < bytes.length; i += 5) bytes[i] = bytes[i]! & (seed % 3 === 0 ? 0xff : 0x07);
      const steps = Array.from({ length: 12 }, (_, i) => STEPS[(seed * 7 + i * 3) % STEPS.length]!);
      const ours = new Reader(bytes);
      // A Buffer, as the files camviz reads are: protobufjs then decodes strings as Node does.
      const theirs = protobufjs.Reader.create(Buffer.from(bytes));
      const read = (reader: { uint32(): number; bytes(): Uint8Array; string(): string; float(): number; skip(): unknown }) => (step: Step) => (step === 'skip' ? (reader.skip(), undefined) : reader[step]());
      const expected = run(read(theirs), () => theirs.pos, steps);
      const actual = run(read(ours), () => ours.pos, steps);
      // Where a read fails, the readers may stop at different bytes of the bad varint: the position is compared on success only.
      if (expected.error !== 'none') {
        assert.deepEqual({ ...actual, pos: 0 }, { ...expected, pos: 0 }, `seed ${seed}`);
        continue;
      }
      assert.deepEqual(actual, expected, `seed ${seed}`);
    }
  });
});

describe('length-delimited fields', () => {
  test('by hand: field 1 holding "ab", and a 300-byte payload in field 12', () => {
    assert.deepEqual([...lengthDelimitedField(1, Uint8Array.from([0x61, 0x62]))], [0x0a, 0x02, 0x61, 0x62]);
    // Tag (12 << 3) | 2 = 98 = 0x62; length 300 = ac 02.
    assert.deepEqual([...lengthDelimitedField(12, new Uint8Array(300)).subarray(0, 3)], [0x62, 0xac, 0x02]);
  });

  test("as protobufjs' Writer encodes them: fields past 15 and 2047, payloads past 127 and 16,383 bytes, nested", () => {
    for (const field of [1, 7, 12, 16, 2048, 536_870_911]) {
      for (const length of [0, 1, 127, 128, 16_383, 16_384, 70_000]) {
        const payload = noise(length, 1, field + length, 1);
        const theirs = protobufjs.Writer.create().uint32((field << 3) | 2).bytes(payload).finish();
        assert.deepEqual(Buffer.from(lengthDelimitedField(field, payload)), Buffer.from(theirs), `field ${field}, ${length} bytes`);
        const nested = protobufjs.Writer.create().uint32((3 << 3) | 2).fork().uint32((field << 3) | 2).bytes(payload).ldelim().finish();
        assert.deepEqual(Buffer.from(lengthDelimitedField(3, lengthDelimitedField(field, payload))), Buffer.from(nested), `nested: field ${field}, ${length} bytes`);
      }
    }
  });
});
