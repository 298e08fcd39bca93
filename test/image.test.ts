import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import type { Sharp } from 'sharp';

import { CamvizError, UsageError } from '../src/util/errors.js';
import { parseBackground } from '../src/image/colour.js';
import { IMAGE_EXTENSIONS, SUPPORTED_FORMATS, type SupportedFormat } from '../src/image/formats.js';
import { RESIZE_KERNEL_DESCRIPTION, type LoadedImage, imageFromRgb, loadImage } from '../src/image/image.js';
import { imagePath, sharedAssetsDir } from './helpers/assets.js';
import { assertAllClose } from './helpers/numeric.js';
import { pngWithoutPixels } from './helpers/png.js';
import { fifoReleasedAfter, noise, skipWithoutFifos } from './helpers/files.js';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-image-test-'));
after(() => rm(workDir, { recursive: true, force: true }));

type Rgb = [number, number, number];
const RED: Rgb = [255, 0, 0];
const GREEN: Rgb = [0, 255, 0];
const BLUE: Rgb = [0, 0, 255];

/** Writes an image whose pixel (x, y) is `pixel(x, y)` (1, 3 or 4 values), encoded by `encode`. */
async function writeImage(
  name: string,
  width: number,
  height: number,
  pixel: (x: number, y: number) => readonly number[],
  encode: (image: Sharp) => Sharp,
): Promise<string> {
  const channels = pixel(0, 0).length as 1 | 3 | 4;
  const data = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data.set(pixel(x, y), (y * width + x) * channels);
  }
  const path = join(workDir, name);
  await encode(sharp(data, { raw: { width, height, channels } })).toFile(path);
  return path;
}

const constant = (colour: readonly number[]) => () => colour;

function pixelAt(rgb: Uint8Array, width: number, x: number, y: number): Rgb {
  const i = (y * width + x) * 3;
  return [rgb[i]!, rgb[i + 1]!, rgb[i + 2]!];
}

const originalPixel = (image: LoadedImage, x: number, y: number): Rgb =>
  pixelAt(image.original.rgb, image.original.width, x, y);
const inputPixel = (image: LoadedImage, x: number, y: number): Rgb =>
  pixelAt(image.input, image.geometry.input.width, x, y);

/** Every pixel of an RGB buffer equals `colour`. */
function assertAllPixels(rgb: Uint8Array, colour: Rgb, what: string): void {
  for (let i = 0; i < rgb.length; i += 3) {
    if (rgb[i] !== colour[0] || rgb[i + 1] !== colour[1] || rgb[i + 2] !== colour[2]) {
      assert.fail(`${what}: pixel ${i / 3} is [${rgb.subarray(i, i + 3)}], expected [${colour}]`);
    }
  }
}

const size224 = { width: 224, height: 224 };
const size100 = { width: 100, height: 100 };

// ---------------------------------------------------------------- colour handling

test('parseBackground accepts the documented forms and rejects others with a UsageError', () => {
  assert.deepEqual(parseBackground('#fff'), { r: 255, g: 255, b: 255 });
  assert.deepEqual(parseBackground('#1a2'), { r: 0x11, g: 0xaa, b: 0x22 });
  assert.deepEqual(parseBackground('#10A0fF'), { r: 16, g: 160, b: 255 });
  assert.deepEqual(parseBackground('white'), { r: 255, g: 255, b: 255 });
  assert.deepEqual(parseBackground(' Black '), { r: 0, g: 0, b: 0 });
  assert.deepEqual(parseBackground('12, 34,255'), { r: 12, g: 34, b: 255 });
  for (const bad of ['', 'red', '#12', '#12345', '#ggg', '1,2', '1,2,256', '-1,2,3', '1.5,2,3', 'rgb(1,2,3)']) {
    assert.throws(() => parseBackground(bad), (error: unknown) => {
      assert.ok(error instanceof UsageError, `"${bad}" should give a UsageError`);
      assert.match(error.message, /background colour/);
      return true;
    });
  }
});

test('RGBA PNG is flattened onto the background with exact alpha blending', async () => {
  // Alphas 51 and 102 are 0.2 and 0.4, so the blends below are whole numbers.
  const pixels: readonly (readonly number[])[] = [
    [200, 100, 50, 51],
    [10, 20, 30, 0],
    [255, 0, 0, 255],
    [0, 255, 125, 102],
  ];
  const path = await writeImage('rgba.png', 4, 1, (x) => pixels[x]!, (image) => image.png());
  const blend = (colour: readonly number[], background: number): Rgb => {
    const alpha = colour[3]! / 255;
    return [0, 1, 2].map((c) => colour[c]! * alpha + background * (1 - alpha)) as Rgb;
  };
  const expectedOnWhite: Rgb[] = [[244, 224, 214], [255, 255, 255], [255, 0, 0], [153, 255, 203]];
  const expectedOnBlack: Rgb[] = [[40, 20, 10], [0, 0, 0], [255, 0, 0], [0, 102, 50]];
  // The hand-written values agree with the blending formula.
  pixels.forEach((colour, x) => {
    assert.deepEqual(blend(colour, 255), expectedOnWhite[x]);
    assert.deepEqual(blend(colour, 0), expectedOnBlack[x]);
  });

  const onWhite = await loadImage(path, { size: { width: 4, height: 1 } });
  const onBlack = await loadImage(path, { size: { width: 4, height: 1 }, background: 'black' });
  assert.equal(onWhite.format, 'png');
  for (let x = 0; x < 4; x++) {
    assert.deepEqual(originalPixel(onWhite, x, 0), expectedOnWhite[x], `white, pixel ${x}`);
    assert.deepEqual(originalPixel(onBlack, x, 0), expectedOnBlack[x], `black, pixel ${x}`);
  }
  // Same size in and out: the model input is the flattened original.
  assert.deepEqual(onWhite.input, onWhite.original.rgb);
});

test('EXIF orientation 6 is applied: sizes swap and the left half ends up on top', async () => {
  const path = await writeImage(
    'exif6.jpg',
    40,
    20,
    (x) => (x < 20 ? RED : BLUE),
    (image) => image.jpeg({ quality: 95 }).withMetadata({ orientation: 6 }),
  );
  assert.equal((await sharp(path).metadata()).orientation, 6, 'fixture carries the EXIF tag');

  const image = await loadImage(path, { size: { width: 20, height: 40 } });
  assert.equal(image.original.width, 20);
  assert.equal(image.original.height, 40);
  assert.deepEqual(image.geometry.original, { width: 20, height: 40 });
  for (const y of [2, 10, 17]) assertAllClose(originalPixel(image, 10, y), RED, 40, `top half, row ${y}`);
  for (const y of [22, 30, 37]) assertAllClose(originalPixel(image, 10, y), BLUE, 40, `bottom half, row ${y}`);
});

test('grayscale PNG loads as RGB with R = G = B equal to the grey value', async () => {
  const grey = (x: number, y: number): number => (x * 17 + y * 29) % 256;
  const path = await writeImage('grey.png', 9, 7, (x, y) => [grey(x, y)], (image) => image.toColourspace('b-w').png());
  const header = await sharp(path).metadata();
  assert.equal(header.channels, 1, 'fixture is single-channel');

  const image = await loadImage(path, { size: { width: 9, height: 7 } });
  for (let y = 0; y < 7; y++) {
    for (let x = 0; x < 9; x++) {
      const g = grey(x, y);
      assert.deepEqual(originalPixel(image, x, y), [g, g, g], `pixel ${x},${y}`);
    }
  }
});

const gradient = (x: number, y: number): Rgb => [(x * 23) % 256, (y * 41) % 256, (x * y * 7) % 256];

test('16-bit PNG becomes 8-bit within 1 of the 8-bit source', async () => {
  const path = await writeImage('rgb16.png', 12, 10, gradient, (image) => image.toColourspace('rgb16').png());
  const header = await sharp(path).metadata();
  assert.equal(header.depth, 'ushort', 'fixture is 16-bit');

  const image = await loadImage(path, { size: { width: 12, height: 10 } });
  for (let y = 0; y < 10; y++) {
    for (let x = 0; x < 12; x++) assertAllClose(originalPixel(image, x, y), gradient(x, y), 1, `pixel ${x},${y}`);
  }
});

test('16-bit PNG with an embedded sRGB profile keeps its colours', async () => {
  // sharp processes profiled 16-bit RGB in a P3 working space; without the
  // loader's fix the colours come out P3-encoded (off by tens of levels).
  // With it, an sRGB-tagged 16-bit file decodes like an untagged one.
  const path = await writeImage(
    'rgb16-icc.png',
    12,
    10,
    gradient,
    (image) => image.toColourspace('rgb16').withIccProfile('srgb').png(),
  );
  const header = await sharp(path).metadata();
  assert.equal(header.depth, 'ushort');
  assert.equal(header.hasProfile, true, 'fixture carries an ICC profile');

  const image = await loadImage(path, { size: { width: 12, height: 10 } });
  for (let y = 0; y < 10; y++) {
    for (let x = 0; x < 12; x++) assertAllClose(originalPixel(image, x, y), gradient(x, y), 1, `pixel ${x},${y}`);
  }
});

test('CMYK JPEG loads as RGB', async () => {
  const colour: Rgb = [120, 160, 200];
  const path = await writeImage('cmyk.jpg', 16, 16, constant(colour), (image) =>
    image.toColourspace('cmyk').jpeg({ quality: 95 }),
  );
  const header = await sharp(path).metadata();
  assert.equal(header.space, 'cmyk', 'fixture is CMYK');
  assert.equal(header.channels, 4);

  const image = await loadImage(path, { size: { width: 8, height: 8 } });
  assert.equal(image.format, 'jpeg');
  assert.equal(image.original.rgb.length, 16 * 16 * 3);
  // RGB -> CMYK -> RGB through sharp's built-in CMYK profile (perceptual intent)
  // and JPEG is not lossless; an in-gamut colour comes back within a few levels.
  assertAllClose(originalPixel(image, 8, 8), colour, 8, 'centre pixel');
});

test('animated GIF gives the first frame', async () => {
  // Two 6x2 frames stacked as pages: red, then blue.
  const frames = Buffer.alloc(6 * 4 * 3);
  for (let i = 0; i < 6 * 4; i++) frames.set(i < 12 ? RED : BLUE, i * 3);
  const path = join(workDir, 'animated.gif');
  await sharp(frames, { raw: { width: 6, height: 4, channels: 3, pageHeight: 2 } }).gif().toFile(path);
  const header = await sharp(path).metadata();
  assert.equal(header.pages, 2, 'fixture has two frames');

  const image = await loadImage(path, { size: { width: 6, height: 2 } });
  assert.equal(image.format, 'gif');
  assert.deepEqual(image.geometry.original, { width: 6, height: 2 });
  assertAllPixels(image.original.rgb, RED, 'first frame');
});

test('TIFF and lossless WebP load with exact pixels', async () => {
  const tiff = await writeImage('image.tiff', 10, 6, gradient, (image) => image.tiff({ compression: 'lzw' }));
  const webp = await writeImage('image.webp', 10, 6, gradient, (image) => image.webp({ lossless: true }));
  for (const [path, format] of [[tiff, 'tiff'], [webp, 'webp']] as const) {
    const image = await loadImage(path, { size: { width: 10, height: 6 } });
    assert.equal(image.format, format);
    for (let y = 0; y < 6; y++) {
      for (let x = 0; x < 10; x++) assert.deepEqual(originalPixel(image, x, y), gradient(x, y), `${format} ${x},${y}`);
    }
  }
});

test('JPEG with a wrong extension is still read by content', async () => {
  const path = await writeImage('actually-a-jpeg.png', 8, 8, constant(GREEN), (image) => image.jpeg({ quality: 95 }));
  const image = await loadImage(path, { size: { width: 8, height: 8 } });
  assert.equal(image.format, 'jpeg');
});

// ---------------------------------------------------------------- resize modes and geometry

/** 300x100: left third red, middle green, right third blue. */
const thirds = (x: number): Rgb => (x < 100 ? RED : x < 200 ? GREEN : BLUE);

test('crop takes the centred square of a 300x100 image', async () => {
  const path = await writeImage('thirds.png', 300, 100, thirds, (image) => image.png());
  const image = await loadImage(path, { size: size100, resize: 'crop' });
  assert.deepEqual(image.geometry, {
    mode: 'crop',
    original: { width: 300, height: 100 },
    input: { width: 100, height: 100 },
    sourceBox: { x: 100, y: 0, width: 100, height: 100 },
    inputBox: { x: 0, y: 0, width: 100, height: 100 },
  });
  assertAllPixels(image.input, GREEN, 'cropped input');
  assert.equal(image.original.width, 300, 'the original is kept whole');
});

test('crop of a tall image to a wide input keeps the input aspect', async () => {
  const path = await writeImage('tall.png', 50, 200, constant([9, 9, 9]), (image) => image.png());
  const image = await loadImage(path, { size: { width: 40, height: 20 }, resize: 'crop' });
  // Aspect 2:1 from 50 wide: 50x25, centred in 200 rows: y = (200 - 25) / 2 = 87.5 -> 87.
  assert.deepEqual(image.geometry.sourceBox, { x: 0, y: 87, width: 50, height: 25 });
  assert.deepEqual(image.geometry.inputBox, { x: 0, y: 0, width: 40, height: 20 });
});

test('pad fits a 300x100 image into 100x100, centred, padded with the background', async () => {
  const colour: Rgb = [10, 200, 30];
  const path = await writeImage('wide.png', 300, 100, constant(colour), (image) => image.png());
  const image = await loadImage(path, { size: size100, resize: 'pad', background: '#102030' });
  // Scale 1/3: 300x100 -> 100x33.33, rounded to 100x33; (100 - 33) / 2 = 33.5 -> 33 rows above, 34 below.
  assert.deepEqual(image.geometry, {
    mode: 'pad',
    original: { width: 300, height: 100 },
    input: { width: 100, height: 100 },
    sourceBox: { x: 0, y: 0, width: 300, height: 100 },
    inputBox: { x: 0, y: 33, width: 100, height: 33 },
  });
  const pad: Rgb = [0x10, 0x20, 0x30];
  for (let y = 0; y < 100; y++) {
    const expected = y >= 33 && y < 66 ? colour : pad;
    for (const x of [0, 50, 99]) assert.deepEqual(inputPixel(image, x, y), expected, `pixel ${x},${y}`);
  }
});

test('pad of a tall image pads left and right', async () => {
  const path = await writeImage('tall-pad.png', 30, 90, constant([0, 0, 0]), (image) => image.png());
  const image = await loadImage(path, { size: { width: 64, height: 64 }, resize: 'pad' });
  // Scale 64/90: width 21.33 -> 21; x = (64 - 21) / 2 = 21.5 -> 21.
  assert.deepEqual(image.geometry.inputBox, { x: 21, y: 0, width: 21, height: 64 });
  assert.deepEqual(inputPixel(image, 20, 10), [255, 255, 255], 'default white pad left');
  assert.deepEqual(inputPixel(image, 21, 10), [0, 0, 0]);
  assert.deepEqual(inputPixel(image, 41, 10), [0, 0, 0]);
  assert.deepEqual(inputPixel(image, 42, 10), [255, 255, 255], 'pad right');
});

test('stretch fills the input exactly; a constant image stays constant', async () => {
  const colour: Rgb = [37, 142, 219];
  const path = await writeImage('constant.png', 7, 5, constant(colour), (image) => image.png());
  for (const size of [{ width: 3, height: 2 }, { width: 11, height: 13 }, { width: 224, height: 224 }]) {
    const image = await loadImage(path, { size });
    assert.deepEqual(image.geometry, {
      mode: 'stretch',
      original: { width: 7, height: 5 },
      input: size,
      sourceBox: { x: 0, y: 0, width: 7, height: 5 },
      inputBox: { x: 0, y: 0, ...size },
    });
    assert.equal(image.input.length, size.width * size.height * 3);
    assertAllPixels(image.input, colour, `${size.width}x${size.height}`);
  }
});

test('stretch keeps red on the left and blue on the right', async () => {
  const path = await writeImage('red-blue.png', 8, 4, (x) => (x < 4 ? RED : BLUE), (image) => image.png());
  const image = await loadImage(path, { size: { width: 4, height: 2 } });
  for (let y = 0; y < 2; y++) {
    // Output columns 0 and 3 only see source pixels of one colour (triangle of radius 2 source pixels).
    assert.deepEqual(inputPixel(image, 0, y), RED);
    assert.deepEqual(inputPixel(image, 3, y), BLUE);
    const [r1, , b1] = inputPixel(image, 1, y);
    const [r2, , b2] = inputPixel(image, 2, y);
    assert.ok(r1 > b1 && b2 > r2, `inner columns lean to their side: ${r1},${b1} / ${r2},${b2}`);
  }
});

/**
 * PIL's BILINEAR resample written out naively: separable triangle filter whose
 * radius grows with the shrink factor, rounded to uint8 after each pass.
 */
function pilBilinear(rgb: Uint8Array, width: number, height: number, outWidth: number, outHeight: number): Uint8Array {
  const weights = (inSize: number, outSize: number): { first: number; values: number[] }[] => {
    const scale = inSize / outSize;
    const filterScale = Math.max(scale, 1);
    return Array.from({ length: outSize }, (_, i) => {
      const centre = (i + 0.5) * scale;
      const first = Math.max(0, Math.floor(centre - filterScale + 0.5));
      const last = Math.min(inSize, Math.floor(centre + filterScale + 0.5));
      const raw = Array.from({ length: last - first }, (_, k) => {
        const distance = Math.abs((first + k - centre + 0.5) / filterScale);
        return Math.max(0, 1 - distance);
      });
      const total = raw.reduce((a, b) => a + b, 0);
      return { first, values: raw.map((value) => value / total) };
    });
  };
  const clampByte = (value: number): number => Math.min(255, Math.max(0, Math.round(value)));
  const across = weights(width, outWidth);
  const down = weights(height, outHeight);
  const rows = new Uint8Array(height * outWidth * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < outWidth; x++) {
      for (let c = 0; c < 3; c++) {
        const { first, values } = across[x]!;
        const sum = values.reduce((acc, w, k) => acc + w * rgb[(y * width + first + k) * 3 + c]!, 0);
        rows[(y * outWidth + x) * 3 + c] = clampByte(sum);
      }
    }
  }
  const out = new Uint8Array(outHeight * outWidth * 3);
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      for (let c = 0; c < 3; c++) {
        const { first, values } = down[y]!;
        const sum = values.reduce((acc, w, k) => acc + w * rows[((first + k) * outWidth + x) * 3 + c]!, 0);
        out[(y * outWidth + x) * 3 + c] = clampByte(sum);
      }
    }
  }
  return out;
}

// Shrinking only: when enlarging, libvips samples at x_out / scale - 0.5 instead of
// (x_out + 0.5) / scale - 0.5 (half an output pixel off PIL; mean difference ~3.4 on
// this image at 100x90), a known difference reported to the lead, not asserted here.
test('stretch is close to PIL BILINEAR (naive reference) when shrinking', async () => {
  const smooth = (x: number, y: number): Rgb => [
    Math.round(127 + 100 * Math.sin(x / 6)),
    Math.round(127 + 100 * Math.cos(y / 4)),
    Math.round(127 + 60 * Math.sin((x + y) / 9)),
  ];
  const path = await writeImage('smooth.png', 64, 48, smooth, (image) => image.png());
  const source = await loadImage(path, { size: { width: 64, height: 48 } });
  for (const size of [{ width: 32, height: 24 }, { width: 21, height: 17 }, { width: 9, height: 40 }]) {
    const image = await loadImage(path, { size });
    const expected = pilBilinear(source.original.rgb, 64, 48, size.width, size.height);
    let worst = 0;
    let total = 0;
    image.input.forEach((value, i) => {
      const difference = Math.abs(value - expected[i]!);
      worst = Math.max(worst, difference);
      total += difference;
    });
    // libvips uses fixed-point weights, and for shrinks of 4x or more a box pre-shrink
    // (64 -> 9 here) before the triangle filter: measured worst 2 / 3 / 5, mean 0.06 / 0.29 / 0.92.
    assert.ok(worst <= 6, `${size.width}x${size.height}: worst difference ${worst}`);
    const mean = total / image.input.length;
    assert.ok(mean < 1.5, `${size.width}x${size.height}: mean difference ${mean}`);
  }
});

// ---------------------------------------------------------------- limits and bad input

/** Asserts `promise` rejects with a one-line CamvizError about `path` whose message matches `pattern`. */
async function assertFails(promise: Promise<unknown>, path: string, pattern: RegExp): Promise<CamvizError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof CamvizError, `expected a CamvizError, got ${String(caught)}`);
  assert.match(caught.message, pattern);
  assert.equal(caught.file, path);
  assert.ok(!caught.message.includes(path), `message repeats the path: ${caught.message}`);
  assert.ok(!caught.describe().includes('\n'), `not one line: ${caught.describe()}`);
  return caught;
}

test('the pixel limit refuses an image from its header, before decoding', async () => {
  const path = await writeImage('40x30.png', 40, 30, gradient, (image) => image.png());
  const small = { width: 4, height: 4 };
  await assertFails(
    loadImage(path, { size: small, maxPixels: 1000 }),
    path,
    /^image is 40x30 = 0\.0012 megapixels, above the limit of 0\.001 megapixels \(--max-pixels\)$/,
  );
  // A truncated file with an intact header: decoding would fail with "truncated",
  // so the pixel-limit error proves nothing was decoded.
  const bytes = await readFile(path);
  const truncated = join(workDir, '40x30-truncated.png');
  await writeFile(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
  await assertFails(loadImage(truncated, { size: small, maxPixels: 1000 }), truncated, /megapixels/);

  await loadImage(path, { size: small, maxPixels: 1200 });
  await loadImage(path, { size: small, maxPixels: 0 });
});

test('the default limit refuses a 12000x9000 header (108 MP) without any pixel data', async () => {
  const path = join(workDir, 'huge-header.png');
  await writeFile(path, pngWithoutPixels(12000, 9000));
  await assertFails(
    loadImage(path, { size: size224 }),
    path,
    /^image is 12000x9000 = 108\.0 megapixels, above the limit of 100 megapixels \(--max-pixels\)$/,
  );
  // With the limit lifted, decoding is attempted and finds no pixel data.
  await assertFails(loadImage(path, { size: size224, maxPixels: 0 }), path, /^truncated or corrupt PNG/);
});

test('bad files give a CamvizError naming the problem and the file', async () => {
  const options = { size: { width: 8, height: 8 } };
  const missing = join(workDir, 'missing.png');
  await assertFails(loadImage(missing, options), missing, /^file not found$/);

  const folder = join(workDir, 'folder.png');
  await mkdir(folder);
  await assertFails(loadImage(folder, options), folder, /^is a directory, not an image$/);

  // Opened without waiting for a writer and checked through the descriptor: no hang, whenever the FIFO was swapped in.
  if (!skipWithoutFifos) {
    const fifo = join(workDir, 'fifo.png');
    const released = fifoReleasedAfter(fifo);
    await assertFails(loadImage(fifo, options), fifo, /^not a regular file$/);
    assert.equal(released(), false, 'refused without waiting for a writer');
  }

  const empty = join(workDir, 'empty.jpg');
  await writeFile(empty, '');
  await assertFails(loadImage(empty, options), empty, /empty file/);

  const text = join(workDir, 'text.png');
  await writeFile(text, 'this is not an image, just some text\n');
  await assertFails(loadImage(text, options), text, /^not a supported image \(PNG, JPEG, WebP, GIF, TIFF\)$/);

  const svg = join(workDir, 'drawing.png');
  await writeFile(svg, '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>');
  await assertFails(loadImage(svg, options), svg, /^not a supported image/);

  const png = await writeImage('whole.png', 64, 48, gradient, (image) => image.png());
  const pngBytes = await readFile(png);
  const truncatedPng = join(workDir, 'truncated.png');
  await writeFile(truncatedPng, pngBytes.subarray(0, Math.floor(pngBytes.length * 0.6)));
  await assertFails(loadImage(truncatedPng, options), truncatedPng, /^truncated or corrupt PNG: \S/);

  const jpeg = await writeImage('whole.jpg', 64, 48, gradient, (image) => image.jpeg());
  const jpegBytes = await readFile(jpeg);
  const truncatedJpeg = join(workDir, 'truncated.jpg');
  await writeFile(truncatedJpeg, jpegBytes.subarray(0, Math.floor(jpegBytes.length * 0.6)));
  await assertFails(loadImage(truncatedJpeg, options), truncatedJpeg, /^truncated or corrupt JPEG: .*premature end/i);

  const headerOnly = join(workDir, 'header-only.jpg');
  await writeFile(headerOnly, jpegBytes.subarray(0, 100));
  await assertFails(loadImage(headerOnly, options), headerOnly, /^truncated or corrupt JPEG header: .*premature end/i);
});

test('bad options are usage errors', async () => {
  const path = await writeImage('options.png', 4, 4, constant(RED), (image) => image.png());
  for (const options of [
    { size: { width: 0, height: 4 } },
    { size: { width: 4.5, height: 4 } },
    { size: { width: 4, height: 4 }, background: 'nope' },
    { size: { width: 4, height: 4 }, maxPixels: -1 },
  ]) {
    await assert.rejects(loadImage(path, options), UsageError);
  }
});

test('IMAGE_EXTENSIONS are what the installed sharp reads from files, in the supported formats', () => {
  const fromSharp = (Object.keys(SUPPORTED_FORMATS) as SupportedFormat[]).flatMap((id) => {
    const info = sharp.format[id];
    return info.input.file ? (info.input.fileSuffix ?? []).map((suffix) => suffix.toLowerCase()) : [];
  });
  assert.deepEqual([...IMAGE_EXTENSIONS].sort(), [...new Set(fromSharp)].sort());
});

test('IMAGE_EXTENSIONS and RESIZE_KERNEL_DESCRIPTION', () => {
  for (const extension of ['.png', '.jpg', '.jpeg', '.webp', '.gif', '.tif', '.tiff']) {
    assert.ok(IMAGE_EXTENSIONS.includes(extension), extension);
  }
  for (const extension of IMAGE_EXTENSIONS) assert.match(extension, /^\.[a-z0-9]+$/);
  for (const unsupported of ['.bmp', '.svg', '.avif']) assert.ok(!IMAGE_EXTENSIONS.includes(unsupported), unsupported);
  assert.ok(!RESIZE_KERNEL_DESCRIPTION.includes('\n'));
  assert.match(RESIZE_KERNEL_DESCRIPTION, /bilinear/);
});

// ---------------------------------------------------------------- shared images

const sharedImagesDir = join(sharedAssetsDir, 'images');
const sharedImages = existsSync(sharedImagesDir)
  ? readdirSync(sharedImagesDir).filter((name) => /\.(png|jpe?g)$/i.test(name))
  : [];
const skipWithoutImages = sharedImages.length > 0 ? false : `no images in ${sharedImagesDir}`;

test('the shared images load', { skip: skipWithoutImages }, async () => {
  for (const name of sharedImages) {
    const path = imagePath(name);
    const header = await sharp(path).metadata();
    for (const resize of ['stretch', 'crop', 'pad'] as const) {
      const image = await loadImage(path, { size: size224, resize });
      assert.equal(image.original.width, header.autoOrient.width, name);
      assert.equal(image.original.height, header.autoOrient.height, name);
      assert.equal(image.original.rgb.length, header.autoOrient.width * header.autoOrient.height * 3, name);
      assert.equal(image.input.length, 224 * 224 * 3, name);
    }
  }
});

test('both.png stretched to 224 equals sharp in one pipeline', { skip: existsSync(imagePath('both.png')) ? false : 'both.png absent' }, async () => {
  const path = imagePath('both.png');
  const image = await loadImage(path, { size: size224 });
  const direct = await sharp(path).removeAlpha().resize(224, 224, { fit: 'fill', kernel: 'linear' }).raw().toBuffer();
  assert.equal(image.input.length, direct.length);
  assert.ok(Buffer.from(image.input).equals(direct), 'same pixels');
});

/** The file decoded by libvips from its path, as loadImage decoded it before it read files into memory. */
async function decodedFromPath(path: string): Promise<{ rgb: Uint8Array; width: number; height: number }> {
  const { data, info } = await sharp(path, { failOn: 'truncated', autoOrient: true, page: 0, pages: 1 })
    .flatten({ background: '#ffffff' })
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { rgb: new Uint8Array(data), width: info.width, height: info.height };
}

test('photos read once into memory decode as from their path; the model input is that of the decoded pixels', { skip: skipWithoutImages }, async () => {
  for (const name of sharedImages) {
    const path = imagePath(name);
    const fromPath = await decodedFromPath(path);
    for (const resize of ['stretch', 'crop', 'pad'] as const) {
      const image = await loadImage(path, { size: size224, resize });
      assert.deepEqual(image.original, fromPath, name);
      const again = await imageFromRgb(fromPath.rgb, fromPath.width, fromPath.height, { size: size224, resize });
      assert.deepEqual(image.input, again.input, `${name} (${resize})`);
    }
  }
});

test('a file above 16 MiB is decoded from its path, with the same pixels', async () => {
  // Uncompressed noise: 2400 x 2400 x 3 bytes is more than 16 MiB as a PNG.
  const [width, height] = [2400, 2400];
  const pixels = noise(width, height, 7);
  const path = join(workDir, 'big-noise.png');
  await sharp(pixels, { raw: { width, height, channels: 3 } }).png({ compressionLevel: 0 }).toFile(path);
  assert.ok((await readFile(path)).length > 16 * 2 ** 20);
  const image = await loadImage(path, { size: size224 });
  assert.deepEqual(image.original, { width, height, rgb: new Uint8Array(pixels) });
  assert.deepEqual(image.original, await decodedFromPath(path));
});

test('an image over 16 MiB, which libvips reads itself, decodes as sharp decodes the file; its errors name the file, and its descriptor is closed', { timeout: 120_000 }, async () => {
  // Noise at compression level 0: 2,400 x 2,400 RGB is 17.3 MB of PNG, past the 16 MiB read whole.
  const [width, height] = [2400, 2400];
  const big = join(workDir, 'big.png');
  await sharp(noise(width, height, 7), { raw: { width, height, channels: 3 } }).png({ compressionLevel: 0 }).toFile(big);
  assert.ok((await readFile(big)).length > 16 * 2 ** 20, 'the file is past the in-memory size');
  const openDescriptors = (): number => (process.platform === 'linux' ? readdirSync('/proc/self/fd').length : 0);
  const before = openDescriptors();
  const loaded = await loadImage(big, { size: size224, maxOverlaySide: 4096 });
  assert.equal(openDescriptors(), before, 'the descriptor libvips read through is closed');
  const expected = await sharp(big).raw().toBuffer();
  assert.deepEqual([loaded.original.width, loaded.original.height], [width, height]);
  assert.ok(Buffer.from(loaded.original.rgb).equals(expected), 'the pixels are the file\'s');

  const cut = join(workDir, 'big-cut.png');
  const bytes = await readFile(big);
  await writeFile(cut, bytes.subarray(0, bytes.length - 4 * 2 ** 20));
  // The diagnosis reads the tail through the descriptor checked, as libvips reads the pixels.
  await assertFails(loadImage(cut, { size: size224, maxOverlaySide: 4096 }), cut, /^truncated or corrupt PNG: the file ends before its IEND chunk \(truncated\)$/);
  assert.equal(openDescriptors(), before, 'closed after a failure too');
});
