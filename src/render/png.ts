/**
 * PNG encoding of packed RGB pixels, and writing files so that a crash or a
 * full disk never leaves a half-written picture under the final name.
 */
import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import sharp from '../sharp.js';

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

/**
 * Writes `data` to `path` through a temporary file in the same folder
 * (`.<name>.<pid>.<random>.tmp`), flushed to disk before it is renamed over
 * `path`, so readers see either the old file or the complete new one. The
 * temporary file is removed on any failure.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let handle: FileHandle | undefined;
  let created = false;
  try {
    handle = await open(temp, 'wx');
    created = true;
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(temp, path);
  } catch (error) {
    await handle?.close().catch(() => undefined);
    // Only a file this call made: never one that was in the way of 'wx'.
    if (created) await rm(temp, { force: true }).catch(() => undefined);
    throw error;
  }
}
