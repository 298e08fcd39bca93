import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import sharp from 'sharp';
import { encodePng } from '../src/render/index.js';
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
