/** PNG encoding of packed RGB pixels. */
import sharp from '../util/sharp.js';

export interface PngOptions {
  /** zlib level 0 (fastest, largest) .. 9 (slowest, smallest); default 6. */
  compressionLevel?: number;
}

export async function encodePng(rgb: Uint8Array, width: number, height: number, options: PngOptions = {}): Promise<Buffer> {
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
  return sharp(rgb, { raw: { width, height, channels: 3 } })
    .png({ compressionLevel })
    .toBuffer();
}
