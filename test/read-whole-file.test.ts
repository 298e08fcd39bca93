/**
 * A regular file read by one request (src/util/read-whole-file.ts): the
 * bytes readFile gives, and readFile's errors by code; what is not a
 * regular file (a folder, a FIFO: not waited on) and what is over the
 * limit are refused before any byte is read; the synchronous reader of
 * caches gives undefined for all of them.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAX_FILE_BYTES, openRegularFile, openRegularFileSync, readFromStart, readRegularFile, readRegularFileSync, readWholeFile } from '../src/util/read-whole-file.js';
import { fifoReleasedAfter, skipWithoutFifos } from './helpers/files.js';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-read-whole-'));
after(() => rm(workDir, { recursive: true, force: true }));

const readRegularBytes = async (path: string, maxBytes?: number): Promise<Buffer> => (await readRegularFile(path, maxBytes)).bytes;
const readWholeBytes = async (path: string, maxBytes?: number): Promise<Buffer> => (await readWholeFile(path, maxBytes)).bytes;

for (const [name, read] of [['readWholeFile', readWholeBytes], ['readRegularFile', readRegularBytes]] as const) {
  test(`${name}: the bytes readFile gives: empty, pool-sized and several MiB`, async () => {
    for (const size of [0, 1, 4095, 3 * 1024 * 1024 + 7]) {
      const path = join(workDir, `${name}-${size}`);
      await writeFile(path, Buffer.from(Array.from({ length: size }, (_, i) => (i * 7919) % 251)));
      const bytes = await read(path);
      assert.equal(bytes.length, size);
      assert.ok(bytes.equals(await readFile(path)), `${size} bytes`);
    }
  });

  test(`${name}: readFile's errors by code; a folder (EISDIR), a FIFO (EINVAL) and a file over the limit are refused`, { timeout: 30_000 }, async () => {
    const code = async (path: string, maxBytes?: number): Promise<string | undefined> =>
      read(path, maxBytes).then(
        () => undefined,
        (error: NodeJS.ErrnoException) => error.code,
      );
    assert.equal(await code(join(workDir, 'missing')), 'ENOENT');
    assert.equal(await code(workDir), 'EISDIR');
    if (!skipWithoutFifos) {
      const fifo = join(workDir, `${name}-fifo`);
      const released = fifoReleasedAfter(fifo);
      assert.equal(await code(fifo), 'EINVAL');
      assert.equal(released(), false, 'refused without waiting for a writer');
    }
    const file = join(workDir, `${name}-ten`);
    await writeFile(file, Buffer.alloc(10));
    assert.equal(await code(file, 9), 'ERR_FS_FILE_TOO_LARGE');
    assert.equal((await read(file, 10)).length, 10);
  });
}

test('readRegularFile: the stats are those of the file read (its inode, size and change time)', async () => {
  const path = join(workDir, 'stats');
  await writeFile(path, Buffer.alloc(1234, 5));
  const { bytes, stats } = await readRegularFile(path);
  const onDisk = await stat(path, { bigint: true });
  assert.equal(bytes.length, 1234);
  assert.equal(stats.size, 1234n);
  assert.equal(stats.ino, onDisk.ino);
  assert.equal(stats.ctimeNs, onDisk.ctimeNs);
});

test('openRegularFile: a FIFO is refused at once (no writer waited for), a folder by EISDIR; the handle of a file is open', { timeout: 30_000 }, async () => {
  if (!skipWithoutFifos) {
    // One FIFO each: a releaser lets one waiting open through.
    const [fifo, fifoSync] = [join(workDir, 'open-fifo'), join(workDir, 'open-fifo-sync')];
    const released = [fifoReleasedAfter(fifo), fifoReleasedAfter(fifoSync)];
    await assert.rejects(openRegularFile(fifo), { code: 'EINVAL' });
    assert.throws(() => openRegularFileSync(fifoSync), { code: 'EINVAL' });
    assert.deepEqual(released.map((done) => done()), [false, false], 'refused without waiting for a writer');
  }
  await assert.rejects(openRegularFile(workDir), { code: 'EISDIR' });
  const path = join(workDir, 'open-file');
  await writeFile(path, 'abc');
  const { handle, stats } = await openRegularFile(path);
  try {
    assert.equal(stats.size, 3n);
    assert.equal((await readFromStart(handle, 3)).toString(), 'abc');
  } finally {
    await handle.close();
  }
});

test('readFromStart: a file cut after its size was taken gives the bytes that are left, not a buffer padded to the old size', async () => {
  const path = join(workDir, 'cut');
  const whole = Buffer.from(Array.from({ length: 100_000 }, (_, i) => i % 256));
  await writeFile(path, whole);
  const { handle, stats } = await openRegularFile(path);
  try {
    await truncate(path, 40_000);
    const bytes = await readFromStart(handle, Number(stats.size));
    assert.equal(bytes.length, 40_000);
    assert.ok(bytes.equals(whole.subarray(0, 40_000)));
  } finally {
    await handle.close();
  }
});

test('readRegularFileSync: the bytes of a regular file up to the limit; a missing file, a folder, a link to a device, a FIFO and a file over the limit give undefined at once', { timeout: 30_000 }, async () => {
  const file = join(workDir, 'sync-ten');
  const content = Buffer.from(Array.from({ length: 10 }, (_, i) => i * 3));
  await writeFile(file, content);
  assert.ok(readRegularFileSync(file, 10)?.equals(content));
  assert.equal(readRegularFileSync(file, 9), undefined, 'over the limit');
  assert.equal(readRegularFileSync(join(workDir, 'missing'), 10), undefined, 'missing');
  assert.equal(readRegularFileSync(workDir, 10), undefined, 'a folder');
  if (existsSync('/dev/zero')) {
    const device = join(workDir, 'sync-device');
    await symlink('/dev/zero', device);
    assert.equal(readRegularFileSync(device, MAX_FILE_BYTES), undefined, 'a link to /dev/zero');
  }
  if (!skipWithoutFifos) {
    const fifo = join(workDir, 'sync-fifo');
    const released = fifoReleasedAfter(fifo);
    assert.equal(readRegularFileSync(fifo, 10), undefined, 'a FIFO');
    assert.equal(released(), false, 'refused without waiting for a writer');
  }
});
