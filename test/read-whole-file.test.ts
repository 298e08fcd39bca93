/**
 * A regular file read by one request (src/util/read-whole-file.ts): the
 * bytes readFile gives, and readFile's errors by code; what is not a
 * regular file (a folder, a FIFO: not waited on) and what is over the
 * limit are refused before any byte is read.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readWholeFile, readWholeFileWhenIdle } from '../src/util/read-whole-file.js';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-read-whole-'));
after(() => rm(workDir, { recursive: true, force: true }));

for (const [name, read] of [['readWholeFile', readWholeFile], ['readWholeFileWhenIdle', readWholeFileWhenIdle]] as const) {
  test(`${name}: the bytes readFile gives: empty, pool-sized and several MiB`, async () => {
    for (const size of [0, 1, 4095, 3 * 1024 * 1024 + 7]) {
      const path = join(workDir, `${name}-${size}`);
      await writeFile(path, Buffer.from(Array.from({ length: size }, (_, i) => (i * 7919) % 251)));
      const bytes = await read(path);
      assert.equal(bytes.length, size);
      assert.ok(bytes.equals(await readFile(path)), `${size} bytes`);
    }
  });

  test(`${name}: readFile's errors by code; a folder, a FIFO and a file over the limit are refused`, { timeout: 30_000 }, async () => {
    const code = async (path: string, maxBytes?: number): Promise<string | undefined> =>
      read(path, maxBytes).then(
        () => undefined,
        (error: NodeJS.ErrnoException) => error.code,
      );
    assert.equal(await code(join(workDir, 'missing')), 'ENOENT');
    assert.equal(await code(workDir), 'EINVAL');
    const fifo = join(workDir, `${name}-fifo`);
    execFileSync('mkfifo', [fifo]);
    assert.equal(await code(fifo), 'EINVAL');
    const file = join(workDir, `${name}-ten`);
    await writeFile(file, Buffer.alloc(10));
    assert.equal(await code(file, 9), 'ERR_FS_FILE_TOO_LARGE');
    assert.equal((await read(file, 10)).length, 10);
  });
}
