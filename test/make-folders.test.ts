/**
 * `mkdir -p` without Node 20's recursive mkdir (src/util/make-folders.ts),
 * which loops for ever where a file system answers ENOENT for a folder it
 * cannot make (/proc): the same results and error codes otherwise.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeFolders, makeFoldersSync } from '../src/util/make-folders.js';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-make-folders-'));
after(() => rm(workDir, { recursive: true, force: true }));

for (const [name, make] of [
  ['makeFolders', makeFolders],
  ['makeFoldersSync', async (path: string) => makeFoldersSync(path)],
] as const) {
  test(`${name}: the missing folders made, the highest returned (as Node's recursive mkdir returns it); undefined when there`, async () => {
    const top = join(workDir, `${name}-a`);
    const deep = join(top, 'b', 'c');
    assert.equal(await make(deep), top);
    assert.ok(statSync(deep).isDirectory());
    assert.equal(await make(deep), undefined);
    assert.equal(await make(join(top, 'b')), undefined);
    assert.deepEqual(await mkdir(join(top, 'x', 'y'), { recursive: true }), join(top, 'x'), 'as Node returns it');
  });

  test(`${name}: a file in the way is ENOTDIR, a file at the path EEXIST; under /proc ENOENT at once (Node's own loops for ever)`, async () => {
    const file = join(workDir, `${name}-file`);
    await writeFile(file, 'a file');
    await assert.rejects(make(join(file, 'sub')), { code: 'ENOTDIR' });
    await assert.rejects(make(file), { code: 'EEXIST' });
    if (existsSync('/proc/self')) await assert.rejects(make(join('/proc', `camviz-${process.pid}`, 'out')), { code: 'ENOENT' });
  });
}
