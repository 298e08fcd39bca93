/**
 * PNG files written byte by byte: headers that claim any size, and pixel
 * data at any bit depth, for images no encoder would make cheaply.
 */
import { crc32 } from 'node:zlib';

/** One chunk: length, type, data, CRC of type and data. */
export function pngChunk(type: string, data: Uint8Array): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/**
 * A PNG of `width` x `height` with this bit depth and colour type (0 grey,
 * 2 RGB, ...), deflate, standard filters, no interlace, and `idat` (zlib
 * data of the filtered rows) as its one IDAT chunk.
 */
export function pngFile(width: number, height: number, bitDepth: number, colourType: number, idat: Uint8Array): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([bitDepth, colourType, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', header),
    pngChunk('IDAT', idat),
    pngChunk('IEND', new Uint8Array(0)),
  ]);
}

/** A PNG whose header claims `width` x `height` 8-bit RGB but whose image data is empty. */
export function pngWithoutPixels(width: number, height: number): Buffer {
  return pngFile(width, height, 8, 2, new Uint8Array(0));
}
