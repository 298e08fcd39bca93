/**
 * The small JSON indexes beside the ONNX cache (src/model/entry-index.ts:
 * fingerprints by file identity, first sessions by model file) read as
 * empty, without waiting, when the file is missing, foreign, oversized or
 * not a regular file: a FIFO there must not hang a run's start.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readEntryIndex, readEntryIndexSync, writeEntryIndex } from '../src/model/entry-index.js';
import { fifoReleasedAfter, skipWithoutFifos } from './helpers/files.js';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-entry-index-'));
after(() => rm(workDir, { recursive: true, force: true }));

const isNumber = (value: unknown): number | undefined => (typeof value === 'number' ? value : undefined);

test('an index written is read back by both readers, its unchecked entries dropped', async () => {
  const path = join(workDir, 'index.json');
  await writeEntryIndex(path, { a: 1 }, 'b', 2, 10);
  assert.deepEqual(await readEntryIndex(path, isNumber), { a: 1, b: 2 });
  assert.deepEqual(readEntryIndexSync(path, isNumber), { a: 1, b: 2 });
  await writeFile(path, JSON.stringify({ entries: { a: 1, b: 'two' } }));
  assert.deepEqual(await readEntryIndex(path, isNumber), { a: 1 });
});

test('a missing, foreign or oversized index, a folder or a link to a device reads as empty', async () => {
  const cases = {
    missing: join(workDir, 'missing.json'),
    foreign: join(workDir, 'foreign.json'),
    oversized: join(workDir, 'oversized.json'),
    folder: join(workDir, 'folder.json'),
    device: join(workDir, 'device.json'),
  };
  await writeFile(cases.foreign, '[1, 2, 3]');
  await writeFile(cases.oversized, `{"entries": {"a": 1}}${' '.repeat(1024 * 1024)}`);
  await mkdir(cases.folder);
  await symlink('/dev/zero', cases.device);
  for (const [name, path] of Object.entries(cases)) {
    assert.deepEqual(await readEntryIndex(path, isNumber), {}, name);
    assert.deepEqual(readEntryIndexSync(path, isNumber), {}, `${name} (sync)`);
  }
});

test('an index that is a FIFO reads as empty at once, not waited on for a writer', { skip: skipWithoutFifos, timeout: 30_000 }, async () => {
  const fifo = join(workDir, 'fifo.json');
  const released = fifoReleasedAfter(fifo);
  assert.deepEqual(readEntryIndexSync(fifo, isNumber), {});
  assert.deepEqual(await readEntryIndex(fifo, isNumber), {});
  assert.equal(released(), false, 'read without waiting for a writer');
});
