/**
 * A small reader for the zip files Keras 3 writes (`.keras`): the central
 * directory, stored and deflated entries. Hostile archives are refused
 * before anything large is allocated: entry names that climb out (`../`) or
 * are absolute, encrypted entries, entries declaring more than a limit, and
 * entries that inflate beyond what they declare (zip bombs; inflate stops
 * at the declared size). Checksums are verified.
 *
 * An archive read from a file can give one stored entry (the weights) an
 * ArrayBuffer of its own, so that the HDF5 reader, which reads whole
 * ArrayBuffers, need not copy it out of the archive's bytes.
 */
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import * as zlib from 'node:zlib';
import { crc32 } from '../../util/crc32.js';
import { CamvizError } from '../../util/errors.js';

/** Called with a file's bytes in order as they are read: to hash it with no second pass over them. */
export type OnRead = (bytes: Buffer) => void;

/** Files are read in pieces this large, each looked at (hashed, checksummed) while the next one is read. */
const READ_PIECE = 1024 * 1024;

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

/** An archive's bytes, in one Buffer or in consecutive pieces. */
class ArchiveBytes {
  readonly length: number;

  constructor(private readonly pieces: readonly Buffer[]) {
    this.length = pieces.reduce((sum, piece) => sum + piece.length, 0);
  }

  /** Bytes [start, end) (cut at the end of the archive): a view inside one piece; a copy across pieces (headers only, in practice). */
  range(start: number, end: number): Buffer {
    const stop = Math.min(end, this.length);
    let offset = 0;
    for (const piece of this.pieces) {
      if (start >= offset && stop <= offset + piece.length) return piece.subarray(start - offset, stop - offset);
      offset += piece.length;
    }
    return Buffer.concat(this.pieces).subarray(start, stop);
  }
}

export class ZipArchive {
  private constructor(
    private readonly bytes: ArchiveBytes,
    readonly entries: readonly ZipEntry[],
    readonly file: string,
    /** CRC-32s already computed as entries were read, by name. */
    private readonly crcs: ReadonlyMap<string, number> = new Map(),
  ) {}

  /** Reads and checks the central directory of a whole archive in memory. */
  static open(bytes: Buffer, file: string): ZipArchive {
    return ZipArchive.checked(new ArchiveBytes([bytes]), readDirectory(bytes, 0, file)!, file);
  }

  /**
   * Reads the archive open in `handle` (`size` bytes long): when `separate`
   * is a stored entry, its data are read into an ArrayBuffer of their own
   * (what `read(separate)` then returns), the rest around them; otherwise,
   * and whenever the archive is not what the format says, in one piece (the
   * checks of `open` then report the problem). The separate entry's
   * checksum is computed as it is read.
   */
  static async readFrom(handle: FileHandle, size: number, file: string, separate: string): Promise<ZipArchive> {
    const found = await storedEntryRange(handle, size, file, separate);
    if (found === undefined) return ZipArchive.open(await readFileRange(handle, 0, size, file, { own: true }), file);
    const { entries, start, end } = found;
    let crc = 0;
    const head = await readFileRange(handle, 0, start, file, { own: false });
    const data = await readFileRange(handle, start, end - start, file, {
      own: true,
      onRead: (bytes) => {
        crc = crc32(bytes, crc);
      },
    });
    const tail = await readFileRange(handle, end, size - end, file, { own: false });
    return ZipArchive.checked(new ArchiveBytes([head, data, tail]), entries, file, new Map([[separate, crc >>> 0]]));
  }

  private static checked(bytes: ArchiveBytes, entries: ZipEntry[], file: string, crcs?: ReadonlyMap<string, number>): ZipArchive {
    for (const entry of entries) checkEntry(entry, bytes.length, file);
    return new ZipArchive(bytes, entries, file, crcs);
  }

  /**
   * The archive's identity, hex: sha256 over every entry's name, size and
   * CRC-32, by name. It stands for the contents because `read` checks each
   * entry read against its CRC-32 (a model's config, metadata and weights);
   * it needs no pass over the bytes beyond that check, where a sha256 of the
   * whole file takes one more (6 ms for 10 MB). Unlike that sha256, it
   * ignores timestamps and entry order: the same contents zipped again are
   * the same model.
   */
  contentsSha256(): string {
    const hash = createHash('sha256').update('camviz zip contents v1\n');
    const byName = [...this.entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of byName) hash.update(`${JSON.stringify(entry.name)} ${entry.size} ${entry.crc.toString(16).padStart(8, '0')}\n`);
    return hash.digest('hex');
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
    if ((this.crcs.get(name) ?? crc32(contents) >>> 0) !== entry.crc) throw new CamvizError(`zip entry ${name} fails its checksum (corrupt archive)`, { file: this.file });
    return contents;
  }

  private entryData(entry: ZipEntry): Buffer {
    const start = dataStart(this.bytes.range(entry.localHeaderOffset, entry.localHeaderOffset + 30), entry.localHeaderOffset);
    if (start === undefined) throw new CamvizError(`zip entry ${entry.name} has no local header where the directory says`, { file: this.file });
    if (start + entry.compressedSize > this.bytes.length) throw new CamvizError(`zip entry ${entry.name} runs past the end of the file (truncated?)`, { file: this.file });
    return this.bytes.range(start, start + entry.compressedSize);
  }

  private inflate(entry: ZipEntry, data: Buffer): Buffer {
    try {
      // One byte over the declared size is enough to tell that an entry lies about it.
      return zlib.inflateRawSync(data, { maxOutputLength: entry.size + 1 });
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

/** Where an entry's data start, from its local header (`header`, 30 bytes read at `at`); undefined when there is none there. */
function dataStart(header: Buffer, at: number): number | undefined {
  if (header.length < 30 || header.readUInt32LE(0) !== LOCAL_HEADER) return undefined;
  return at + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
}

/**
 * The entries of the central directory, from `bytes`: the archive's bytes
 * from offset `base` to its end. Undefined when the directory starts before
 * `base` (never for a whole archive, base 0).
 */
function readDirectory(bytes: Buffer, base: number, file: string): ZipEntry[] | undefined {
  const end = findEndOfDirectory(bytes, file);
  const count = bytes.readUInt16LE(end + 10);
  const directory = bytes.readUInt32LE(end + 16);
  if (directory < base) return undefined;
  // Offsets in `bytes`; those the entries record are the archive's.
  let at = directory - base;
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

/** The longest an archive's end can be: the end record, a comment of up to 64 KiB, and a directory that fits there. */
const TAIL_LENGTH = 0xffff + 22;

/**
 * Where the data of stored entry `name` lie in the archive open in
 * `handle`, read from its directory and local header; undefined when the
 * entry is absent or deflated, or the archive is not what the format says.
 */
async function storedEntryRange(handle: FileHandle, size: number, file: string, name: string): Promise<{ entries: ZipEntry[]; start: number; end: number } | undefined> {
  const tailStart = Math.max(0, size - TAIL_LENGTH);
  try {
    const entries = readDirectory(await readFileRange(handle, tailStart, size - tailStart, file, { own: false }), tailStart, file);
    const entry = entries?.find((candidate) => candidate.name === name);
    if (entries === undefined || entry === undefined || entry.method !== STORED || entry.localHeaderOffset + 30 > size) return undefined;
    const start = dataStart(await readFileRange(handle, entry.localHeaderOffset, 30, file, { own: false }), entry.localHeaderOffset);
    return start === undefined || start + entry.compressedSize > size ? undefined : { entries, start, end: start + entry.compressedSize };
  } catch (error) {
    if (error instanceof CamvizError) return undefined;
    throw error;
  }
}

/**
 * `length` bytes of the file from `position`; `own`: in an ArrayBuffer of
 * their own, not a pooled one. Read piece by piece, each piece handed to
 * `onRead` while the next one is being read.
 */
export async function readFileRange(handle: FileHandle, position: number, length: number, file: string, options: { own: boolean; onRead?: OnRead }): Promise<Buffer> {
  const buffer = options.own ? Buffer.allocUnsafeSlow(length) : Buffer.allocUnsafe(length);
  const readPiece = (from: number): Promise<number> => fill(handle, buffer.subarray(from, Math.min(length, from + READ_PIECE)), position + from, file).then((read) => from + read);
  let reading = readPiece(0);
  for (let done = 0; done < length; ) {
    const end = await reading;
    if (end < length) reading = readPiece(end);
    options.onRead?.(buffer.subarray(done, end));
    done = end;
  }
  return buffer;
}

/** Fills `target` from the file at `position`; its length. */
async function fill(handle: FileHandle, target: Buffer, position: number, file: string): Promise<number> {
  let filled = 0;
  while (filled < target.length) {
    const { bytesRead } = await handle.read(target, filled, target.length - filled, position + filled);
    if (bytesRead === 0) throw new CamvizError(`the file changed while it was read (${position + filled} bytes of it, no more)`, { file });
    filled += bytesRead;
  }
  return filled;
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
