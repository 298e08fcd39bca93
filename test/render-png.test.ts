import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { crc32, inflateSync } from 'node:zlib';
import sharp from 'sharp';
import { encodePng } from '../src/render/index.js';
import { encodePhotoPng } from '../src/render/png.js';
import { packageCrc32 } from '../src/util/crc32.js';
import { imagePath, skipWithoutSharedAssets } from './helpers/assets.js';
import { writeFileAtomic } from '../src/util/atomic-file.js';

const dir = await mkdtemp(join(tmpdir(), 'camviz-render-png-'));
after(() => rm(dir, { recursive: true, force: true }));

function testImage(width: number, height: number): Uint8Array {
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 37 + (i >> 5)) & 0xff;
  return rgb;
}

test('encodePng makes a PNG that decodes to the same pixels', async () => {
  const [width, height] = [13, 7];
  const rgb = testImage(width, height);
  for (const compressionLevel of [0, 6, 9]) {
    const png = await encodePng(rgb, width, height, { compressionLevel });
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    // IHDR is the first chunk: width and height big-endian, bit depth 8, colour type 2 (RGB).
    assert.equal(png.toString('latin1', 12, 16), 'IHDR');
    assert.equal(png.readUInt32BE(16), width);
    assert.equal(png.readUInt32BE(20), height);
    assert.equal(png[24], 8);
    assert.equal(png[25], 2);
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    assert.equal(info.channels, 3);
    assert.deepEqual(new Uint8Array(data), rgb);
  }
});

/** The pixels a PNG decodes to (libvips' decoder), as RGB. */
async function pixelsOf(png: Buffer): Promise<{ rgb: Uint8Array; width: number; height: number }> {
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.channels, 3);
  return { rgb: new Uint8Array(data), width: info.width, height: info.height };
}

/** The filter byte of each row of an 8-bit RGB PNG with one IDAT chunk (as encodePhotoPng writes it). */
function rowFilters(png: Buffer, width: number, height: number): number[] {
  assert.equal(png.toString('latin1', 12, 16), 'IHDR');
  const idatAt = 8 + 8 + 13 + 4;
  assert.equal(png.toString('latin1', idatAt + 4, idatAt + 8), 'IDAT');
  const rows = inflateSync(png.subarray(idatAt + 8, idatAt + 8 + png.readUInt32BE(idatAt)));
  assert.equal(rows.length, (width * 3 + 1) * height);
  return Array.from({ length: height }, (_, y) => rows[y * (width * 3 + 1)]!);
}

test('encodePhotoPng at level 1: the pixels of encodePng (libvips), Up-filtered rows, odd sizes included', async () => {
  for (const [width, height] of [[1, 1], [1, 9], [9, 1], [13, 7], [256, 3]] as const) {
    const rgb = testImage(width, height);
    const png = await encodePhotoPng(rgb, width, height, { compressionLevel: 1 });
    assert.deepEqual(await pixelsOf(png), await pixelsOf(await encodePng(rgb, width, height, { compressionLevel: 1 })));
    assert.deepEqual((await pixelsOf(png)).rgb, rgb);
    assert.deepEqual(rowFilters(png, width, height), new Array(height).fill(2));
  }
});

/** The Up-filtered rows one byte at a time (the encoder's first form), to compare the word-wise filter with. */
function upFilteredByBytes(rgb: Uint8Array, width: number, height: number): Uint8Array {
  const stride = width * 3;
  const rows = new Uint8Array((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    rows[y * (stride + 1)] = 2;
    for (let i = 0; i < stride; i++) rows[y * (stride + 1) + 1 + i] = rgb[y * stride + i]! - (y === 0 ? 0 : rgb[(y - 1) * stride + i]!);
  }
  return rows;
}

test('encodePhotoPng\'s rows are the byte-by-byte Up filter: every width modulo 4, random bytes, a view at an odd offset', async () => {
  let seed = 7;
  const random = (): number => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
  for (const [width, height] of [[1, 1], [1, 5], [2, 4], [3, 3], [4, 6], [5, 2], [7, 7], [33, 5], [101, 4]] as const) {
    // Bytes 0 and 255 side by side and random ones: every borrow case of the word-wise subtraction.
    const backing = Uint8Array.from({ length: width * height * 3 + 3 }, (_, i) => (i % 7 === 0 ? 0 : i % 5 === 0 ? 255 : random()));
    const rgb = backing.subarray(3); // byteOffset 3: the DataView must honour it
    const png = await encodePhotoPng(rgb, width, height, { compressionLevel: 1 });
    const idatAt = 8 + 8 + 13 + 4;
    const rows = inflateSync(png.subarray(idatAt + 8, idatAt + 8 + png.readUInt32BE(idatAt)));
    assert.deepEqual(new Uint8Array(rows), upFilteredByBytes(rgb, width, height), `${width}x${height}`);
    assert.deepEqual((await pixelsOf(png)).rgb, rgb, `${width}x${height}`);
  }
});

/** Each chunk of a PNG whose stored CRC-32 is not that of its type and data. */
function badChunkCrcs(png: Buffer): string[] {
  const bad: string[] = [];
  for (let at = 8; at < png.length; ) {
    const length = png.readUInt32BE(at);
    const typeAndData = png.subarray(at + 4, at + 8 + length);
    if (crc32(typeAndData) !== png.readUInt32BE(at + 8 + length)) bad.push(png.toString('latin1', at + 4, at + 8));
    at += 12 + length;
  }
  return bad;
}

test('encodePhotoPng: pictures whose rows deflate to several of zlib\'s output parts, of different sizes at once and again (its row buffers kept and reused), each its own pixels with valid CRCs', async () => {
  let seed = 11;
  const noise = (width: number, height: number): Uint8Array => Uint8Array.from({ length: width * height * 3 }, () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24);
  const sizes = [[640, 480], [320, 200], [1200, 800], [50, 50], [641, 479], [1, 1]] as const;
  for (let round = 0; round < 2; round++) {
    const pictures = sizes.map(([width, height]) => ({ width, height, rgb: noise(width, height) }));
    const pngs = await Promise.all(pictures.map(({ rgb, width, height }) => encodePhotoPng(rgb, width, height, { compressionLevel: 1 })));
    for (const [i, png] of pngs.entries()) {
      const { rgb, width, height } = pictures[i]!;
      assert.deepEqual(badChunkCrcs(png), [], `${width}x${height}`);
      assert.deepEqual(await pixelsOf(png), { rgb, width, height }, `${width}x${height}, round ${round}`);
    }
    // Random bytes barely compress: the largest's IDAT is more than two of zlib's output parts (1 MiB each).
    assert.ok(pngs[2]!.length > 2 * 1024 * 1024);
  }
});

test('encodePhotoPng on real photos: the same pixels as libvips, in a smaller file', { skip: skipWithoutSharedAssets }, async () => {
  for (const name of ['creative_commons_elephant.jpg', 'dog_cat.jpg', 'snake.png']) {
    const { data, info } = await sharp(imagePath(name)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const rgb = new Uint8Array(data);
    const ours = await encodePhotoPng(rgb, info.width, info.height, { compressionLevel: 1 });
    const libvips = await encodePng(rgb, info.width, info.height, { compressionLevel: 1 });
    assert.deepEqual(await pixelsOf(ours), { rgb, width: info.width, height: info.height }, name);
    assert.ok(ours.length < libvips.length, `${name}: ${ours.length} bytes, libvips ${libvips.length}`);
  }
});

test('encodePhotoPng at other levels is encodePng', async () => {
  const rgb = testImage(13, 7);
  for (const compressionLevel of [0, 2, 6, 9]) {
    assert.deepEqual(await encodePhotoPng(rgb, 13, 7, { compressionLevel }), await encodePng(rgb, 13, 7, { compressionLevel }));
  }
  await assert.rejects(encodePhotoPng(new Uint8Array(11), 2, 2, { compressionLevel: 1 }), RangeError);
  await assert.rejects(encodePhotoPng(new Uint8Array(12), 2, 2, { compressionLevel: 1.5 }), RangeError);
});

test('the CRC-32 for Node versions without zlib.crc32 is zlib\'s (unsigned, and continued from earlier bytes)', () => {
  const data = testImage(50, 20);
  assert.equal(packageCrc32(data), crc32(data));
  assert.equal(packageCrc32(data.subarray(7), packageCrc32(data.subarray(0, 7))), crc32(data));
  assert.equal(packageCrc32(new Uint8Array(0)), 0);
  assert.ok(packageCrc32(data) >= 0);
});

test('encodePng checks its input', async () => {
  await assert.rejects(encodePng(new Uint8Array(11), 2, 2), RangeError);
  await assert.rejects(encodePng(new Uint8Array(12), 2, 2, { compressionLevel: 10 }), RangeError);
  await assert.rejects(encodePng(new Uint8Array(0), 0, 0), RangeError);
});

test('writeFileAtomic writes and replaces a file, leaving no temporary file', async () => {
  const sub = join(dir, 'ok');
  await mkdir(sub);
  const path = join(sub, 'out.png');
  await writeFileAtomic(path, new Uint8Array([1, 2, 3]));
  assert.deepEqual([...(await readFile(path))], [1, 2, 3]);
  await writeFileAtomic(path, 'replaced');
  assert.equal(await readFile(path, 'utf8'), 'replaced');
  assert.deepEqual(await readdir(sub), ['out.png']);
});

test('writeFileAtomic removes its temporary file when the rename fails', async () => {
  const sub = join(dir, 'fail');
  await mkdir(sub);
  // A non-empty folder in the way: the temporary file is written, the rename is refused.
  const target = join(sub, 'taken');
  await mkdir(target);
  await writeFile(join(target, 'keep'), 'x');
  await assert.rejects(writeFileAtomic(target, 'data'));
  assert.deepEqual(await readdir(sub), ['taken']);
  assert.deepEqual(await readdir(target), ['keep']);
});

test('writeFileAtomic fails cleanly when the folder does not exist', async () => {
  await assert.rejects(writeFileAtomic(join(dir, 'missing', 'out.png'), 'data'), { code: 'ENOENT' });
});
