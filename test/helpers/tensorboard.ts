/**
 * An independent reader of TensorBoard event files (CRC32C, TFRecord framing,
 * protobuf wire format), written from the formats' specifications rather
 * than from src/render/tensorboard.ts, so that tests can read back what
 * camviz writes.
 */
import assert from 'node:assert/strict';

/** CRC32C bit by bit with the reflected Castagnoli polynomial 0x82F63B78. */
export function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** TFRecord mask: rotate right 15, add 0xa282ead8, mod 2^32 (written with BigInt arithmetic). */
function masked(crc: number): number {
  const c = BigInt(crc);
  const rotated = ((c >> 15n) | (c << 17n)) & 0xffffffffn;
  return Number((rotated + 0xa282ead8n) & 0xffffffffn);
}

export function readRecords(file: Buffer): Buffer[] {
  const records: Buffer[] = [];
  let at = 0;
  while (at < file.length) {
    assert.ok(file.length - at >= 12, 'record header is complete');
    const lengthBytes = file.subarray(at, at + 8);
    const length = Number(file.readBigUInt64LE(at));
    assert.equal(file.readUInt32LE(at + 8), masked(crc32c(lengthBytes)), `length CRC of record ${records.length}`);
    const data = file.subarray(at + 12, at + 12 + length);
    assert.equal(data.length, length, 'record data is complete');
    assert.equal(file.readUInt32LE(at + 12 + length), masked(crc32c(data)), `data CRC of record ${records.length}`);
    records.push(data);
    at += 12 + length + 4;
  }
  return records;
}

export type WireValue = bigint | Buffer | number;

/** Protobuf wire format: field number -> values in order. */
export function decodeMessage(buf: Buffer): Map<number, WireValue[]> {
  const fields = new Map<number, WireValue[]>();
  let at = 0;
  const varint = (): bigint => {
    let result = 0n;
    for (let shift = 0n; ; shift += 7n) {
      const byte = buf.readUInt8(at++); // throws on a truncated varint rather than looping
      result |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return result;
    }
  };
  while (at < buf.length) {
    const key = Number(varint());
    const field = key >>> 3;
    let value: WireValue;
    switch (key & 7) {
      case 0:
        value = varint();
        break;
      case 1:
        value = buf.readDoubleLE(at);
        at += 8;
        break;
      case 2: {
        const length = Number(varint());
        value = buf.subarray(at, at + length);
        at += length;
        break;
      }
      case 5:
        value = buf.readFloatLE(at);
        at += 4;
        break;
      default:
        throw new Error(`unexpected wire type ${key & 7}`);
    }
    fields.set(field, [...(fields.get(field) ?? []), value]);
  }
  return fields;
}

export interface DecodedEvent {
  wallTime: number;
  step: bigint;
  fileVersion?: string;
  images: { tag: string; height: bigint; width: bigint; colorspace: bigint; png: Buffer }[];
}

/** Event: 1 wall_time, 2 step, 3 file_version, 5 summary; Summary: 1 value; Value: 1 tag, 4 image. */
export function decodeEvent(data: Buffer): DecodedEvent {
  const event = decodeMessage(data);
  const one = <T extends WireValue>(m: Map<number, WireValue[]>, field: number): T | undefined => m.get(field)?.[0] as T | undefined;
  const images = (event.get(5) ?? []).flatMap((summary) =>
    (decodeMessage(summary as Buffer).get(1) ?? []).map((raw) => {
      const value = decodeMessage(raw as Buffer);
      const image = decodeMessage(one<Buffer>(value, 4)!);
      return {
        tag: one<Buffer>(value, 1)!.toString('utf8'),
        height: one<bigint>(image, 1)!,
        width: one<bigint>(image, 2)!,
        colorspace: one<bigint>(image, 3)!,
        png: one<Buffer>(image, 4)!,
      };
    }),
  );
  return {
    wallTime: one<number>(event, 1)!,
    step: one<bigint>(event, 2) ?? 0n,
    fileVersion: one<Buffer>(event, 3)?.toString('utf8'),
    images,
  };
}

