/**
 * Zip archives written from the format's specification (PKWARE APPNOTE):
 * local headers and data, the central directory, the end record. Enough to
 * build `.keras` files and hostile archives (lying sizes, flags, names).
 */
import { deflateRawSync } from 'node:zlib';
import CRC32 from 'crc-32';

export interface ZipSpec {
  name: string;
  data: Buffer;
  deflate?: boolean;
  /** General-purpose flags (bit 0: encrypted). */
  flags?: number;
  /** What the headers declare as the uncompressed size, if not the truth. */
  declaredSize?: number;
}

/** A zip archive as the format's specification lays it out: local headers and data, central directory, end record. */
export function zipOf(entries: readonly ZipSpec[]): Buffer {
  const locals: Buffer[] = [];
  const directory: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    const name = Buffer.from(entry.name, 'utf8');
    const stored = entry.deflate ? deflateRawSync(entry.data) : entry.data;
    const fields = { flags: entry.flags ?? 0, method: entry.deflate ? 8 : 0, crc: CRC32.buf(entry.data) >>> 0, compressed: stored.length, size: entry.declaredSize ?? entry.data.length };
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(fields.flags, 6);
    local.writeUInt16LE(fields.method, 8);
    local.writeUInt32LE(fields.crc, 14);
    local.writeUInt32LE(fields.compressed, 18);
    local.writeUInt32LE(fields.size, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(fields.flags, 8);
    central.writeUInt16LE(fields.method, 10);
    central.writeUInt32LE(fields.crc, 16);
    central.writeUInt32LE(fields.compressed, 20);
    central.writeUInt32LE(fields.size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, stored);
    directory.push(central, name);
    offset += 30 + name.length + stored.length;
  }
  const directoryBytes = Buffer.concat(directory);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directoryBytes.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directoryBytes, end]);
}
