import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import sharp from 'sharp';
import { EventWriter, encodePng } from '../src/render/index.js';
import { findPython } from './helpers/python.js';
import { crc32c, decodeEvent, decodeMessage, readRecords } from './helpers/tensorboard.js';

const dir = await mkdtemp(join(tmpdir(), 'camviz-render-tb-'));
after(() => rm(dir, { recursive: true, force: true }));

// ---- Tests ----

test('the test CRC32C is right (RFC 3720 check value)', () => {
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
});

test('the test decoder refuses a truncated varint instead of reading past the end', () => {
  // Field 1 (varint) whose value's first byte says "more follows", then nothing.
  assert.throws(() => decodeMessage(Buffer.from([0x08, 0x80])), RangeError);
});

function picture(width: number, height: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: width * height * 3 }, (_, i) => (i * seed + 11) & 0xff);
}

test('an event file TensorBoard can read: version record, then image summaries', async () => {
  const logdir = join(dir, 'run1');
  const before = Date.now() / 1000;
  const writer = await EventWriter.create(logdir, { hostname: 'testhost' });
  const first = picture(5, 3, 7);
  const second = picture(4, 6, 13);
  writer.addImage('gradcam/cat.jpg', await encodePng(first, 5, 3), 5, 3, 0, 1700000000.25);
  writer.addImage('layers/conv_1', await encodePng(second, 4, 6), 4, 6, 41);
  await writer.close();
  await writer.close(); // a second close does nothing

  const files = await readdir(logdir);
  const [file] = files;
  assert.ok(files.length === 1 && file !== undefined, `one event file, got ${files.join(', ')}`);
  assert.match(file, /^events\.out\.tfevents\.\d{10}\.testhost$/);
  assert.equal(join(logdir, file), writer.path);
  const seconds = Number(file.split('.')[3]);
  assert.ok(Math.abs(seconds - before) <= 2);

  const events = readRecords(await readFile(writer.path)).map(decodeEvent);
  const [version, firstImage, secondImage, ...extra] = events;
  assert.ok(version !== undefined && firstImage !== undefined && secondImage !== undefined && extra.length === 0, `3 events, got ${events.length}`);
  assert.equal(version.fileVersion, 'brain.Event:2');
  assert.equal(version.images.length, 0);
  assert.ok(Math.abs(version.wallTime - before) < 5);

  assert.equal(firstImage.wallTime, 1700000000.25);
  assert.equal(firstImage.step, 0n);
  assert.equal(secondImage.step, 41n);
  assert.ok(secondImage.wallTime >= before);
  const expected = [
    { event: firstImage, tag: 'gradcam/cat.jpg', width: 5, height: 3, pixels: first },
    { event: secondImage, tag: 'layers/conv_1', width: 4, height: 6, pixels: second },
  ];
  for (const want of expected) {
    const [image, ...more] = want.event.images;
    assert.ok(image !== undefined && more.length === 0, `${want.tag}: one image`);
    assert.equal(image.tag, want.tag);
    assert.equal(image.width, BigInt(want.width));
    assert.equal(image.height, BigInt(want.height));
    assert.equal(image.colorspace, 3n);
    const { data, info } = await sharp(image.png).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height, info.channels], [want.width, want.height, 3]);
    assert.deepEqual(new Uint8Array(data), want.pixels);
  }
});

test('a second writer in the same second gets its own file; closed writers refuse images', async () => {
  const logdir = join(dir, 'run2');
  const a = await EventWriter.create(logdir, { hostname: 'h' });
  const b = await EventWriter.create(logdir, { hostname: 'h' });
  assert.notEqual(a.path, b.path);
  const png = await encodePng(picture(2, 2, 3), 2, 2);
  a.addImage('x', png, 2, 2, 1);
  await a.close();
  await b.close();
  assert.throws(() => a.addImage('x', png, 2, 2, 2), /closed/);
  assert.equal(readRecords(await readFile(a.path)).length, 2);
  assert.equal(readRecords(await readFile(b.path)).length, 1);
  assert.throws(() => b.addImage('', png, 2, 2, 1), RangeError);
  assert.throws(() => b.addImage('x', png, 2, 2, 1.5), RangeError);
});

const tensorboardPython = findPython('tensorboard');

test('TensorBoard itself reads the file', { skip: tensorboardPython === null ? 'no python3 with tensorboard' : false }, async () => {
  const logdir = join(dir, 'run3');
  const writer = await EventWriter.create(logdir);
  writer.addImage('map', await encodePng(picture(3, 2, 5), 3, 2), 3, 2, 7);
  await writer.close();
  const script = `
import sys
from tensorboard.backend.event_processing import event_accumulator
acc = event_accumulator.EventAccumulator(sys.argv[1], size_guidance={'images': 0})
acc.Reload()
[image] = acc.Images('map')
print(image.step, image.width, image.height)
`;
  const run = spawnSync(tensorboardPython!, ['-c', script, logdir], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout.trim(), '7 3 2');
});
