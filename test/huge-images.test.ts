/**
 * Images too big to hold at full resolution: libvips' own pixel limit must
 * not override camviz's (--max-pixels), and big images must not be decoded
 * at full resolution. The test images are built by hand as 1-bit PNGs, which
 * hold hundreds of megapixels in a few hundred kilobytes and take a fraction
 * of a second to write.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';

import { CamvizError } from '../src/util/errors.js';
import { loadImage } from '../src/image/image.js';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-huge-test-'));
after(() => rm(workDir, { recursive: true, force: true }));

/** libvips' default limit (sharp's `limitInputPixels`): 0x3FFF * 0x3FFF. */
const LIBVIPS_DEFAULT_LIMIT = 268_402_689;
const size224 = { width: 224, height: 224 };

function pngChunk(type: string, data: Uint8Array): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

function pngFile(width: number, height: number, bitDepth: number, colourType: number, idat: Uint8Array): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([bitDepth, colourType, 0, 0, 0], 8); // deflate, standard filters, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', header),
    pngChunk('IDAT', idat),
    pngChunk('IEND', new Uint8Array(0)),
  ]);
}

/** A PNG whose header claims `width` x `height` 8-bit RGB but which holds no pixel data. */
async function writeHeaderOnlyPng(name: string, width: number, height: number): Promise<string> {
  const path = join(workDir, name);
  await writeFile(path, pngFile(width, height, 8, 2, new Uint8Array(0)));
  return path;
}

/** A 1-bit greyscale PNG, black on the left half and white on the right. */
async function writeHalvesPng(name: string, width: number, height: number): Promise<string> {
  const rowBytes = Math.ceil(width / 8);
  const row = Buffer.alloc(1 + rowBytes); // filter byte 0 (none), then the bits
  for (let x = Math.floor(width / 2); x < width; x++) row[1 + (x >> 3)]! |= 0x80 >> (x & 7);
  const rows = Buffer.alloc(row.length * height);
  for (let y = 0; y < height; y++) row.copy(rows, y * row.length);
  const path = join(workDir, name);
  await writeFile(path, pngFile(width, height, 1, 0, deflateSync(rows)));
  return path;
}

async function rejection(promise: Promise<unknown>): Promise<CamvizError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof CamvizError, `expected a CamvizError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the image to be refused');
}

/** The model input of a black-left, white-right image: black and white halves, grey only near the middle. */
function assertHalves(input: Uint8Array, width: number, height: number): void {
  for (const y of [0, height >> 1, height - 1]) {
    for (const x of [0, (width >> 2), width - (width >> 2), width - 1]) {
      const i = (y * width + x) * 3;
      const expected = x < width / 2 ? 0 : 255;
      assert.deepEqual([...input.subarray(i, i + 3)], [expected, expected, expected], `input pixel (${x}, ${y})`);
    }
  }
}

test('an image above libvips\' 268 MP limit gets camviz\'s pixel-limit message, not "corrupt header"', async () => {
  const path = await writeHeaderOnlyPng('300mp-header.png', 20000, 15000);
  assert.ok(20000 * 15000 > LIBVIPS_DEFAULT_LIMIT);
  const refused = await rejection(loadImage(path, { size: size224 }));
  assert.equal(refused.file, path);
  assert.match(refused.message, /^image is 20000x15000 = 300\.0 megapixels, above the limit of 100 megapixels \(--max-pixels\)$/);
  const refusedByUserLimit = await rejection(loadImage(path, { size: size224, maxPixels: 250_000_000 }));
  assert.match(refusedByUserLimit.message, /^image is 20000x15000 = 300\.0 megapixels, above the limit of 250 megapixels \(--max-pixels\)$/);
});

test('--max-pixels 0, or a limit above libvips\' own, decodes an image of more than 268 MP', async () => {
  // 16500 x 16300 = 268.95 MP: just above libvips' default limit.
  const width = 16500;
  const height = 16300;
  assert.ok(width * height > LIBVIPS_DEFAULT_LIMIT);
  const path = await writeHalvesPng('269mp.png', width, height);
  for (const maxPixels of [0, 300_000_000]) {
    const image = await loadImage(path, { size: size224, maxPixels });
    assert.equal(image.format, 'png');
    assert.deepEqual(image.geometry.input, size224);
    assertHalves(image.input, 224, 224);
  }
});
