/**
 * PNG encoding of packed RGB pixels: libvips' encoder for any picture, and
 * for photographs (CAM overlays) at level 1 an encoder of our own, faster
 * and smaller on them. Both give exactly the input's pixels.
 */
import zlib from 'node:zlib';
import { crc32 } from '../util/crc32.js';
import { upFilterInto } from './kernels.js';
import sharp from '../util/sharp.js';

export interface PngOptions {
  /** zlib level 0 (fastest, largest) .. 9 (slowest, smallest); default 6. */
  compressionLevel?: number;
}

export async function encodePng(rgb: Uint8Array, width: number, height: number, options: PngOptions = {}): Promise<Buffer> {
  const compressionLevel = checkedLevel(rgb, width, height, options);
  return sharp(rgb, { raw: { width, height, channels: 3 } })
    .png({ compressionLevel })
    .toBuffer();
}

/**
 * A photograph, or a picture drawn over one (a CAM overlay), as PNG. At
 * level 1 each row is stored with PNG's Up filter (its difference from the
 * row above) and Huffman-coded without searching for repeats (zlib's
 * Z_HUFFMAN_ONLY), on Node's thread pool: on overlays of photos that is
 * about a third less CPU than libvips at level 1, whose rows go unfiltered,
 * and half its size. Flat pictures (feature-map grids, diagrams) compress
 * far better with repeats searched for: they, and the other levels, go to
 * `encodePng`.
 */
export async function encodePhotoPng(rgb: Uint8Array, width: number, height: number, options: PngOptions = {}): Promise<Buffer> {
  const compressionLevel = checkedLevel(rgb, width, height, options);
  if (compressionLevel !== 1) return encodePng(rgb, width, height, { compressionLevel });
  const rowBytes = (width * 3 + 1) * height;
  const buffer = takeRowBuffer(rowBytes);
  // Kept again only after a deflate that ended: one that failed may still be reading it on libuv's threads.
  const idat = await deflateParts(upFilterInto(rgb, width * 3, height, buffer.subarray(0, rowBytes)), { level: 1, strategy: zlib.constants.Z_HUFFMAN_ONLY });
  giveBackRowBuffer(buffer);
  return Buffer.concat([PNG_SIGNATURE, ...chunk('IHDR', [rgbHeader(width, height)]), ...chunk('IDAT', idat), ...chunk('IEND', [])]);
}

/**
 * The filtered rows' buffers between pictures, each the size of the
 * largest picture it has held. A folder's photos differ in size: a fresh
 * buffer each (1.8 MB for 767x767) left glibc's heap holes of every size
 * to reuse, and its footprint crept up over a run (README, Memory).
 * Encodes may overlap (a batch's pictures), hence a few; the rows of a
 * picture over KEPT_ROW_BYTES (about 1,600x1,600) are never kept, so that
 * a process keeps at most 32 MiB of them.
 */
const freeRowBuffers: Buffer[] = [];
const KEPT_ROW_BUFFERS = 4;
const KEPT_ROW_BYTES = 8 << 20;

/** A buffer of at least `length` bytes for filtered rows: the smallest kept one that is large enough, else a new one. */
function takeRowBuffer(length: number): Buffer {
  const fitting = freeRowBuffers.findIndex((buffer) => buffer.length >= length);
  return fitting < 0 ? Buffer.allocUnsafeSlow(length) : freeRowBuffers.splice(fitting, 1)[0]!;
}

/** Keeps a buffer of takeRowBuffer's for the next picture (unless over KEPT_ROW_BYTES), the kept ones in order of size; past KEPT_ROW_BUFFERS the smallest goes. */
function giveBackRowBuffer(buffer: Buffer): void {
  if (buffer.length > KEPT_ROW_BYTES) return;
  freeRowBuffers.push(buffer);
  freeRowBuffers.sort((a, b) => a.length - b.length);
  if (freeRowBuffers.length > KEPT_ROW_BUFFERS) freeRowBuffers.shift();
}

/** The checked compression level (default 6); throws RangeError on a bad size, buffer or level. */
function checkedLevel(rgb: Uint8Array, width: number, height: number, options: PngOptions): number {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`image size must be positive whole numbers, got ${width}x${height}`);
  }
  if (rgb.length !== width * height * 3) {
    throw new RangeError(`RGB buffer has ${rgb.length} bytes, expected ${width}x${height}x3 = ${width * height * 3}`);
  }
  const compressionLevel = options.compressionLevel ?? 6;
  if (!Number.isInteger(compressionLevel) || compressionLevel < 0 || compressionLevel > 9) {
    throw new RangeError(`compressionLevel must be a whole number 0..9, got ${compressionLevel}`);
  }
  return compressionLevel;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** IHDR of 8-bit RGB, not interlaced. */
function rgbHeader(width: number, height: number): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // bit depth, colour type RGB, deflate, adaptive filtering, no interlace
  return header;
}

/** A chunk's parts (the data is not copied): length and type, the data's parts, CRC-32 of type and data. */
function chunk(type: string, data: readonly Uint8Array[]): Uint8Array[] {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.reduce((length, part) => length + part.length, 0), 0);
  head.write(type, 4, 'latin1');
  const tail = Buffer.alloc(4);
  tail.writeUInt32BE(data.reduce((crc, part) => crc32(part, crc), crc32(head.subarray(4))), 0);
  return [head, ...data, tail];
}

/**
 * Deflate's output in the parts zlib gives (DEFLATE_PART bytes each): its
 * parts go into the PNG as they are. One output buffer of the input's size
 * and zlib's joined copy of it were two more picture-sized buffers an image.
 */
function deflateParts(data: Uint8Array, options: zlib.ZlibOptions): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    const stream = zlib.createDeflate({ ...options, chunkSize: Math.min(DEFLATE_PART, Math.max(zlib.constants.Z_MIN_CHUNK, data.length + 1024)) });
    stream.on('data', (part: Buffer) => parts.push(part));
    stream.on('error', reject);
    stream.on('end', () => resolve(parts));
    stream.end(data);
  });
}

/** zlib's output buffers: one size for every picture over it, which glibc reuses from picture to picture. */
const DEFLATE_PART = 1024 * 1024;
