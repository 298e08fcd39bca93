/**
 * A small reader for the zip files Keras 3 writes (`.keras`): the central
 * directory, stored and deflated entries. Hostile archives are refused
 * before anything large is allocated: entry names that climb out (`../`) or
 * are absolute, encrypted entries, entries declaring more than a limit, and
 * entries that inflate beyond what they declare (zip bombs; inflate stops
 * at the declared size). Checksums are verified.
 */
import { inflateRawSync } from 'node:zlib';
import { createRequire } from 'node:module';
import { CamvizError } from '../../util/errors.js';

const crc32 = (createRequire(import.meta.url)('crc-32') as { buf(data: Uint8Array, seed?: number): number }).buf;

const END_OF_DIRECTORY = 0x06054b50;
const DIRECTORY_ENTRY = 0x02014b50;
const LOCAL_HEADER = 0x04034b50;
const STORED = 0;
const DEFLATED = 8;
const ENCRYPTED_FLAG = 0x1;

export interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  crc: number;
  localHeaderOffset: number;
}

export class ZipArchive {
  private constructor(
    private readonly bytes: Buffer,
    readonly entries: readonly ZipEntry[],
    readonly file: string,
  ) {}

  /** Reads and checks the central directory of a whole archive in memory. */
  static open(bytes: Buffer, file: string): ZipArchive {
    const entries = readDirectory(bytes, file);
    for (const entry of entries) checkEntry(entry, bytes.length, file);
    return new ZipArchive(bytes, entries, file);
  }

  has(name: string): boolean {
    return this.entries.some((entry) => entry.name === name);
  }

  /** The contents of entry `name`, refused when it declares more than `limit` bytes. */
  read(name: string, limit: number): Buffer {
    const entry = this.entries.find((candidate) => candidate.name === name);
    if (entry === undefined) throw new CamvizError(`the archive has no ${name}`, { file: this.file });
    if (entry.size > limit) throw new CamvizError(`zip entry ${name} declares ${entry.size} bytes, over the ${limit}-byte limit: refused`, { file: this.file });
    const data = this.entryData(entry);
    const contents = entry.method === STORED ? data : this.inflate(entry, data);
    if (contents.length !== entry.size) throw new CamvizError(`zip entry ${name} holds ${contents.length} bytes, not the ${entry.size} it declares`, { file: this.file });
    if ((crc32(contents) >>> 0) !== entry.crc) throw new CamvizError(`zip entry ${name} fails its checksum (corrupt archive)`, { file: this.file });
    return contents;
  }

  private entryData(entry: ZipEntry): Buffer {
    const at = entry.localHeaderOffset;
    if (at + 30 > this.bytes.length || this.bytes.readUInt32LE(at) !== LOCAL_HEADER) {
      throw new CamvizError(`zip entry ${entry.name} has no local header where the directory says`, { file: this.file });
    }
    const start = at + 30 + this.bytes.readUInt16LE(at + 26) + this.bytes.readUInt16LE(at + 28);
    if (start + entry.compressedSize > this.bytes.length) throw new CamvizError(`zip entry ${entry.name} runs past the end of the file (truncated?)`, { file: this.file });
    return this.bytes.subarray(start, start + entry.compressedSize);
  }

  private inflate(entry: ZipEntry, data: Buffer): Buffer {
    try {
      // One byte over the declared size is enough to tell that an entry lies about it.
      return inflateRawSync(data, { maxOutputLength: entry.size + 1 });
    } catch (error) {
      const tooLarge = (error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE';
      const reason = tooLarge ? `inflates beyond the ${entry.size} bytes it declares (zip bomb?): refused` : `does not inflate: ${(error as Error).message}`;
      throw new CamvizError(`zip entry ${entry.name} ${reason}`, { file: this.file });
    }
  }
}

/** True when the bytes start like a zip archive. */
export function looksLikeZip(head: Uint8Array): boolean {
  return head.length >= 4 && Buffer.from(head.subarray(0, 4)).readUInt32LE(0) === 0x04034b50;
}

function readDirectory(bytes: Buffer, file: string): ZipEntry[] {
  const end = findEndOfDirectory(bytes, file);
  const count = bytes.readUInt16LE(end + 10);
  let at = bytes.readUInt32LE(end + 16);
  const entries: ZipEntry[] = [];
  for (let i = 0; i < count; i += 1) {
    if (at + 46 > bytes.length || bytes.readUInt32LE(at) !== DIRECTORY_ENTRY) {
      throw new CamvizError('zip central directory is corrupt or truncated', { file });
    }
    const nameLength = bytes.readUInt16LE(at + 28);
    const flags = bytes.readUInt16LE(at + 8);
    const name = bytes.toString('utf8', at + 46, at + 46 + nameLength);
    if ((flags & ENCRYPTED_FLAG) !== 0) throw new CamvizError(`zip entry ${name} is encrypted (password-protected archive): refused`, { file });
    entries.push({
      name,
      method: bytes.readUInt16LE(at + 10),
      crc: bytes.readUInt32LE(at + 16),
      compressedSize: bytes.readUInt32LE(at + 20),
      size: bytes.readUInt32LE(at + 24),
      localHeaderOffset: bytes.readUInt32LE(at + 42),
    });
    at += 46 + nameLength + bytes.readUInt16LE(at + 30) + bytes.readUInt16LE(at + 32);
  }
  return entries;
}

/** The end-of-central-directory record: in the last 64 KiB + 22 bytes (the comment may precede nothing else). */
function findEndOfDirectory(bytes: Buffer, file: string): number {
  const lowest = Math.max(0, bytes.length - 0xffff - 22);
  for (let at = bytes.length - 22; at >= lowest; at -= 1) {
    if (bytes.readUInt32LE(at) === END_OF_DIRECTORY) return at;
  }
  throw new CamvizError('not a complete zip archive: no central directory (truncated?)', { file });
}

function checkEntry(entry: ZipEntry, archiveSize: number, file: string): void {
  const parts = entry.name.split(/[\\/]/);
  if (entry.name.startsWith('/') || /^[A-Za-z]:/.test(entry.name) || parts.includes('..')) {
    throw new CamvizError(`zip entry '${entry.name}' points outside the archive: refused`, { file });
  }
  if (entry.method !== STORED && entry.method !== DEFLATED) {
    throw new CamvizError(`zip entry ${entry.name} uses compression method ${entry.method}; only stored and deflated are read`, { file });
  }
  if (entry.size === 0xffffffff || entry.compressedSize === 0xffffffff || entry.localHeaderOffset >= archiveSize) {
    throw new CamvizError(`zip entry ${entry.name} is zip64 or points past the end of the file: not read`, { file });
  }
}
