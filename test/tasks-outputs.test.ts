/**
 * OutputSet, the writer of one image's outputs: atomic files that are not
 * flushed to disk one by one (the manifest is), folders made when missing.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OutputSet } from '../src/tasks/common.js';
import { writeFileAtomic } from '../src/util/atomic-file.js';

const dir = await mkdtemp(join(tmpdir(), 'camviz-outputs-test-'));
after(() => rm(dir, { recursive: true, force: true }));

/** Counts FileHandle.sync calls (fsync) made while `fn` runs. */
async function syncsDuring(fn: () => Promise<unknown>): Promise<number> {
  const probe = await open(join(dir, 'probe'), 'w');
  const prototype = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
  await probe.close();
  const original = prototype.sync;
  let calls = 0;
  prototype.sync = function (this: unknown) {
    calls++;
    return original.call(this);
  };
  try {
    await fn();
  } finally {
    prototype.sync = original;
  }
  return calls;
}

test('writeFileAtomic flushes the file to disk by default (the manifest keeps its fsync)', async () => {
  assert.equal(await syncsDuring(() => writeFileAtomic(join(dir, 'manifest.json'), '{}\n')), 1);
  assert.equal(await syncsDuring(() => writeFileAtomic(join(dir, 'plain.bin'), new Uint8Array([1]), { durable: false })), 0);
  assert.equal(await readFile(join(dir, 'manifest.json'), 'utf8'), '{}\n');
  assert.deepEqual([...(await readFile(join(dir, 'plain.bin')))], [1]);
});

test('OutputSet writes outputs whole without an fsync each, making missing folders, and names them relative to --out', async () => {
  const out = join(dir, 'out');
  await mkdir(out);
  const outputs = new OutputSet(out);
  const syncs = await syncsDuring(async () => {
    assert.equal(await outputs.write(join(out, 'a.png'), new Uint8Array([1, 2])), 'a.png');
    assert.equal(await outputs.write(join(out, 'deep', 'er', 'b.png'), new Uint8Array([3])), 'deep/er/b.png');
    assert.equal(await outputs.write(join(out, 'deep', 'er', 'c.npy'), 'c'), 'deep/er/c.npy');
  });
  assert.equal(syncs, 0);
  assert.deepEqual(outputs.written, ['a.png', 'deep/er/b.png', 'deep/er/c.npy']);
  assert.deepEqual([...(await readFile(join(out, 'deep', 'er', 'b.png')))], [3]);
  assert.deepEqual((await readdir(join(out, 'deep', 'er'))).sort(), ['b.png', 'c.npy'], 'no temporary file left');
});

test('OutputSet: a file in the way of an output folder fails as mkdir reports it, and nothing is left', async () => {
  const out = join(dir, 'blocked');
  await mkdir(out);
  await writeFile(join(out, 'a'), 'not a folder');
  const outputs = new OutputSet(out);
  await assert.rejects(outputs.write(join(out, 'a', 'x.png'), new Uint8Array([1])), { code: 'EEXIST' });
  assert.deepEqual(outputs.written, []);
  assert.deepEqual(await readdir(out), ['a']);
});

test('writeFileAtomic writes a file whose name is near the 255-byte limit (its temporary name is cut to fit)', async () => {
  // 250 bytes: 'é' is two bytes in UTF-8, so a cut must keep whole characters.
  const name = `${'é'.repeat(60)}${'x'.repeat(126)}.png`;
  assert.equal(Buffer.byteLength(name), 250);
  await writeFileAtomic(join(dir, name), new Uint8Array([7]), { durable: false });
  assert.deepEqual([...(await readFile(join(dir, name)))], [7]);
  assert.deepEqual((await readdir(dir)).filter((entry) => entry.endsWith('.tmp')), []);
});
