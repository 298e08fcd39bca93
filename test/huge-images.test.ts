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
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';

import { CamvizError, UsageError } from '../src/util/errors.js';
import { type LoadedImage, imageFromRgb, loadImage } from '../src/image/image.js';
import { noise } from './helpers/files.js';
import { type CliRun, cliEnv, runCli } from './helpers/cli.js';
import { assertAllClose } from './helpers/numeric.js';
import { pngFile, pngWithoutPixels } from './helpers/png.js';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-huge-test-'));
after(() => rm(workDir, { recursive: true, force: true }));

/** libvips' default limit (sharp's `limitInputPixels`): 0x3FFF * 0x3FFF. */
const LIBVIPS_DEFAULT_LIMIT = 268_402_689;
const size224 = { width: 224, height: 224 };

/** A PNG whose header claims `width` x `height` 8-bit RGB but which holds no pixel data. */
async function writeHeaderOnlyPng(name: string, width: number, height: number): Promise<string> {
  const path = join(workDir, name);
  await writeFile(path, pngWithoutPixels(width, height));
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
    // Decoded straight to the overlay size: 4096 x 4046 RGB, not 807 MB.
    assert.deepEqual([image.original.width, image.original.height], [4096, 4046]);
    assert.deepEqual(image.sourceSize, { width, height });
  }
});

/** The picture's pixel (x, y). */
function pictureAt(image: LoadedImage, x: number, y: number): number[] {
  const i = (y * image.original.width + x) * 3;
  return [...image.original.rgb.subarray(i, i + 3)];
}

test('an image longer than 4096 pixels is decoded straight to a long side of 4096, and the model input made from that', async () => {
  // 98 MP: within the default pixel limit.
  const path = await writeHalvesPng('98mp.png', 14000, 7000);
  for (const resize of ['stretch', 'crop', 'pad'] as const) {
    const image = await loadImage(path, { size: size224, resize, background: 'black' });
    assert.deepEqual(image.sourceSize, { width: 14000, height: 7000 });
    assert.equal(image.original.width, 4096);
    assert.equal(image.original.height, 2048);
    assert.equal(image.original.rgb.length, 4096 * 2048 * 3);
    assert.deepEqual(image.geometry.original, { width: 4096, height: 2048 });
    // The picture is the image, shrunk: black left half, white right half.
    for (const y of [0, 1024, 2047]) {
      for (const x of [0, 1000, 2000]) assert.deepEqual(pictureAt(image, x, y), [0, 0, 0], `picture (${x}, ${y})`);
      for (const x of [2100, 3000, 4095]) assert.deepEqual(pictureAt(image, x, y), [255, 255, 255], `picture (${x}, ${y})`);
    }
    if (resize === 'stretch') assertHalves(image.input, 224, 224);
    if (resize === 'crop') assert.deepEqual(image.geometry.sourceBox, { x: 1024, y: 0, width: 2048, height: 2048 });
    if (resize === 'pad') assert.deepEqual(image.geometry.inputBox, { x: 0, y: 56, width: 224, height: 112 });
  }
});

/** A PNG of these RGB pixels. */
async function writeRgbPng(name: string, rgb: Buffer, width: number, height: number): Promise<string> {
  const path = join(workDir, name);
  await sharp(rgb, { raw: { width, height, channels: 3 } }).png({ compressionLevel: 1 }).toFile(path);
  return path;
}

/** A noise PNG of `width` x `height`, and its pixels. */
async function writeNoisePng(name: string, width: number, height: number): Promise<{ path: string; rgb: Buffer }> {
  const rgb = noise(width, height, width * 7 + height);
  return { path: await writeRgbPng(name, rgb, width, height), rgb };
}


test('images up to the overlay side keep every pixel; one pixel longer is shrunk; 0 keeps the full resolution', async () => {
  const fits = await writeNoisePng('4096x5.png', 4096, 5);
  const fitting = await loadImage(fits.path, { size: size224 });
  assert.deepEqual(fitting.sourceSize, { width: 4096, height: 5 });
  assert.deepEqual(Buffer.from(fitting.original.rgb), fits.rgb);

  // A smooth ramp, so that shrinking by one pixel in 4097 changes it by less than a level or two.
  const ramp = Buffer.alloc(4097 * 5 * 3);
  for (let i = 0; i < 4097 * 5; i++) ramp.fill(Math.round(((i % 4097) * 255) / 4096), i * 3, i * 3 + 3);
  const longer = await writeRgbPng('4097x5.png', ramp, 4097, 5);
  const shrunk = await loadImage(longer, { size: size224 });
  assert.deepEqual([shrunk.original.width, shrunk.original.height], [4096, 5]);
  assert.deepEqual(shrunk.sourceSize, { width: 4097, height: 5 });
  const full = await loadImage(longer, { size: size224, maxOverlaySide: 0 });
  assert.deepEqual(Buffer.from(full.original.rgb), ramp);
  // The model input follows the picture: nearly the same as from the full resolution.
  assertAllClose(Array.from(shrunk.input), Array.from(full.input), 3, 'model input, shrunk against full resolution');

  const small = await writeNoisePng('300x150.png', 300, 150);
  const capped = await loadImage(small.path, { size: size224, maxOverlaySide: 100 });
  assert.deepEqual([capped.original.width, capped.original.height], [100, 50]);
  assert.deepEqual(capped.geometry.original, { width: 100, height: 50 });
});

test('the overlay side applies after EXIF orientation', async () => {
  // Stored 5000 x 100, red on the left and blue on the right; orientation 6
  // turns it into 100 x 5000 with red on top.
  const width = 5000;
  const height = 100;
  const rgb = Buffer.alloc(width * height * 3);
  for (let i = 0; i < width * height; i++) rgb.set(i % width < width / 2 ? [255, 0, 0] : [0, 0, 255], i * 3);
  const path = join(workDir, 'exif6-long.jpg');
  await sharp(rgb, { raw: { width, height, channels: 3 } }).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toFile(path);

  const image = await loadImage(path, { size: size224 });
  assert.deepEqual(image.sourceSize, { width: 100, height: 5000 });
  assert.deepEqual([image.original.width, image.original.height], [82, 4096]);
  for (const y of [100, 1000, 2000]) assertAllClose(pictureAt(image, 41, y), [255, 0, 0], 40, `top half, row ${y}`);
  for (const y of [2100, 3000, 4000]) assertAllClose(pictureAt(image, 41, y), [0, 0, 255], 40, `bottom half, row ${y}`);
});

test('RGB already in memory is shrunk to the overlay side too', async () => {
  const rgb = noise(5000, 10, 3);
  const image = await imageFromRgb(rgb, 5000, 10, { size: size224 });
  assert.deepEqual(image.sourceSize, { width: 5000, height: 10 });
  assert.deepEqual([image.original.width, image.original.height], [4096, 8]);
  const full = await imageFromRgb(rgb, 5000, 10, { size: size224, maxOverlaySide: 0 });
  assert.equal(full.original.rgb, rgb);
});

test('a bad overlay side is a usage error', async () => {
  for (const maxOverlaySide of [-1, 1.5, Number.NaN]) {
    await assert.rejects(imageFromRgb(new Uint8Array(3), 1, 1, { size: size224, maxOverlaySide }), (error: unknown) => {
      assert.ok(error instanceof UsageError, `${maxOverlaySide}: expected a UsageError, got ${String(error)}`);
      assert.match(error.message, /^--max-overlay-side must be 0 \(full resolution\) or a positive whole number, got /);
      return true;
    });
  }
});

// ---------------------------------------------------------------- the command line

/** `camviz gradcam` on the embedded model, in one process, offline. */
function gradcam(...args: string[]): Promise<CliRun> {
  const command = ['gradcam', ...args, '--model', 'shapes', '--quiet', '--jobs', '1'];
  return runCli(command, { cwd: workDir, env: cliEnv(join(workDir, 'cache')), timeoutMs: 120_000 });
}

test('camviz: an image above libvips\' limit is refused with the --max-pixels message', async () => {
  const path = await writeHeaderOnlyPng('300mp-cli.png', 20000, 15000);
  const run = await gradcam(path, '--out', join(workDir, 'out-300mp'));
  assert.equal(run.code, 1, run.stderr);
  assert.equal(
    run.stderr.trim(),
    `camviz: image is 20000x15000 = 300.0 megapixels, above the limit of 100 megapixels (--max-pixels) (${path})`,
  );
});

test('camviz: overlays of long images are 4096 on their long side; --max-overlay-side 0 keeps the full resolution', async () => {
  const { path } = await writeNoisePng('5000x40.png', 5000, 40);
  const sizeOf = async (out: string): Promise<number[]> => {
    const metadata = await sharp(join(out, '5000x40.gradcam.0.png')).metadata();
    return [metadata.width, metadata.height];
  };
  const capped = join(workDir, 'out-capped');
  const cappedRun = await gradcam(path, '--out', capped, '--class', '0');
  assert.equal(cappedRun.code, 0, cappedRun.stderr);
  assert.deepEqual(await sizeOf(capped), [4096, 33]);

  const full = join(workDir, 'out-full');
  const fullRun = await gradcam(path, '--out', full, '--class', '0', '--max-overlay-side', '0');
  assert.equal(fullRun.code, 0, fullRun.stderr);
  assert.deepEqual(await sizeOf(full), [5000, 40]);

  const bad = await gradcam(path, '--out', full, '--max-overlay-side', '-1');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--max-overlay-side '-1' must be a whole number of at least 0/);
});
