/**
 * Out of file descriptors (a low `ulimit -n` and a folder run's overlapping
 * reads and writes): an open that finds none free is tried again once
 * files close, and one that never finds one says so, naming the file,
 * instead of calling the image unsupported. Each case runs in a child
 * process under `ulimit -n 64` that takes every descriptor left
 * (helpers/fd-starved.ts) and frees some after a while, or none.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

import { isOutOfDescriptors, retryWhileOutOfDescriptors } from '../src/util/fd-retry.js';
import { noise } from './helpers/files.js';

const starved = fileURLToPath(new URL('./helpers/fd-starved.js', import.meta.url));
const skipWithoutUlimit: string | false = process.platform === 'win32' ? 'no ulimit' : false;

const workDir = await mkdtemp(join(tmpdir(), 'camviz-fd-'));
after(() => rm(workDir, { recursive: true, force: true }));

const small = join(workDir, 'small.png');
/** Over the 16 MiB that are read into memory: libvips opens this one itself. */
const large = join(workDir, 'large.png');

before(async () => {
  await sharp(noise(40, 30, 1), { raw: { width: 40, height: 30, channels: 3 } }).png().toFile(small);
  const [width, height] = [2600, 2400];
  await sharp(noise(width, height, 2), { raw: { width, height, channels: 3 } }).png({ compressionLevel: 0 }).toFile(large);
});

/** What fd-starved.js reports of `action` on `path`, descriptors freed after `freeAfterMs`. */
function starvedRun(action: 'read' | 'write', path: string, freeAfterMs: readonly number[]): Promise<{ ok?: true; error?: string }> {
  const command = `ulimit -n 64 && exec "$0" "$1" "$2" "$3" "$4"`;
  return new Promise((resolve, reject) => {
    execFile('/bin/sh', ['-c', command, process.execPath, starved, action, path, freeAfterMs.join(',')], { timeout: 60_000 }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`${error.message}\n${stderr}`));
      else resolve(JSON.parse(stdout) as { ok?: true; error?: string });
    });
  });
}

describe('out of file descriptors', { skip: skipWithoutUlimit }, () => {
  test('a write that finds none free is written once a file closes', async () => {
    const target = join(workDir, 'written.txt');
    assert.deepEqual(await starvedRun('write', target, [50]), { ok: true });
    assert.equal(await readFile(target, 'utf8'), 'written while descriptors were short\n');
    assert.deepEqual((await readdir(workDir)).filter((name) => name.endsWith('.tmp')), [], 'no temporary file is left');
  });

  test('an image read that finds none free is decoded once a file closes', async () => {
    assert.deepEqual(await starvedRun('read', small, [50]), { ok: true });
  });

  test('a large image, which libvips opens itself, is decoded once files close (not "not a supported image")', async () => {
    // One descriptor for camviz's own open, one later for libvips'.
    assert.deepEqual(await starvedRun('read', large, [50, 150]), { ok: true });
  });

  test('none ever free: one line saying so, naming the file, for a read, a large read and a write', async () => {
    const target = join(workDir, 'never.txt');
    const [read, largeRead, write] = await Promise.all([starvedRun('read', small, []), starvedRun('read', large, [50]), starvedRun('write', target, [])]);
    assert.deepEqual(read, { error: `cannot read file: too many open files (EMFILE) (${small})` });
    assert.deepEqual(largeRead, { error: `cannot read file: too many open files (EMFILE) (${large})` });
    assert.deepEqual(write, { error: `cannot write: too many open files (EMFILE) (${target})` });
  });
});

test('retryWhileOutOfDescriptors: tries EMFILE and ENFILE again a bounded number of times, other errors never', async () => {
  const failing = (code: string, times: number): { open: () => Promise<string>; calls: () => number } => {
    let calls = 0;
    return {
      open: async () => {
        if (++calls <= times) throw Object.assign(new Error(code), { code });
        return 'opened';
      },
      calls: () => calls,
    };
  };
  const waits = [1, 1, 1];
  const emfile = failing('EMFILE', 2);
  assert.equal(await retryWhileOutOfDescriptors(emfile.open, waits), 'opened');
  assert.equal(emfile.calls(), 3);
  const enfile = failing('ENFILE', 10);
  await assert.rejects(retryWhileOutOfDescriptors(enfile.open, waits), (error: unknown) => isOutOfDescriptors(error));
  assert.equal(enfile.calls(), 4, 'the first try and one after each wait');
  const denied = failing('EACCES', 1);
  await assert.rejects(retryWhileOutOfDescriptors(denied.open, waits), /EACCES/);
  assert.equal(denied.calls(), 1);
});
