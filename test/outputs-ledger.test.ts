/**
 * The ledger of camviz's outputs (.camviz-outputs) in a hostile output
 * folder: a FIFO, a link to a file elsewhere, a folder or an oversized file
 * in its place is refused before any work, naming it; it is never appended
 * to through a link, and an append never waits for a FIFO's reader.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runFolderOutputs } from '../src/batch/own-outputs.js';
import { LEDGER_NAME, addToLedger, createLedger } from '../src/util/outputs-ledger.js';
import { MAX_JSON_BYTES } from '../src/util/json-file.js';

const dir = await mkdtemp(join(tmpdir(), 'camviz-ledger-test-'));
const fifos: string[] = [];
after(async () => {
  // A writer blocked on a FIFO (the bug these tests guard against) is released by a reader, so that the process can end.
  for (const fifo of fifos) {
    try {
      closeSync(openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK));
    } catch {
      // Already gone.
    }
  }
  await rm(dir, { recursive: true, force: true });
});

async function folder(name: string): Promise<string> {
  const path = join(dir, name);
  await mkdir(path);
  return path;
}

async function fifoLedger(name: string): Promise<string> {
  const out = await folder(name);
  const path = join(out, LEDGER_NAME);
  execFileSync('mkfifo', [path]);
  fifos.push(path);
  return out;
}

/** A version as addToLedger records one; these tests look at the ledger's handling, not at any file. */
const SOME_VERSION = { stamp: '1:2:3:4', sha256: 'ab'.repeat(32) };

const REFUSAL = /^not camviz's \(.+\): camviz replaces no file it did not write/;

/** A rejection whose one-line message matches `message` and that names the folder's ledger. */
function namingLedger(out: string, message: RegExp): (error: Error & { file?: string }) => boolean {
  return (error) => {
    assert.match(error.message, message);
    assert.equal(error.file, join(out, LEDGER_NAME));
    return true;
  };
}

test('a FIFO named .camviz-outputs in --out stops the run before any work, naming it', async () => {
  const out = await fifoLedger('fifo');
  await assert.rejects(runFolderOutputs(out), namingLedger(out, REFUSAL));
});

test('an append to a ledger that became a FIFO fails at once instead of waiting for a reader', { timeout: 20_000 }, async () => {
  const out = await fifoLedger('fifo-append');
  await assert.rejects(addToLedger(out, 'a.gradcam.0.png', SOME_VERSION), namingLedger(out, /FIFO/));
});

test('a ledger that is a link to a file elsewhere is refused, and never appended to', async () => {
  const out = await folder('linked');
  const elsewhere = join(dir, 'elsewhere-ledger');
  const text = '# camviz: files camviz wrote in this folder, one JSON string a line\n"a.gradcam.0.png"\n';
  await writeFile(elsewhere, text);
  await symlink(elsewhere, join(out, LEDGER_NAME));
  await assert.rejects(runFolderOutputs(out), namingLedger(out, REFUSAL));
  assert.equal(await createLedger(out), false);
  await assert.rejects(addToLedger(out, 'b.gradcam.0.png', SOME_VERSION), namingLedger(out, /symbolic link/));
  assert.equal(await readFile(elsewhere, 'utf8'), text);
});

test('a folder named .camviz-outputs, or a ledger too large to read, is refused rather than taken for no ledger', async () => {
  const withFolder = await folder('ledger-folder');
  await mkdir(join(withFolder, LEDGER_NAME));
  await assert.rejects(runFolderOutputs(withFolder), namingLedger(withFolder, /not a regular file/));
  const huge = await folder('huge');
  await writeFile(join(huge, LEDGER_NAME), '# camviz: files camviz wrote in this folder, one JSON string a line\n');
  // Sparse: no disk space is used.
  await truncate(join(huge, LEDGER_NAME), MAX_JSON_BYTES + 1);
  await assert.rejects(runFolderOutputs(huge), namingLedger(huge, /larger than/));
});

test("a plain ledger is read back, and a missing one is no ledger", async () => {
  const out = await folder('plain');
  assert.equal((await runFolderOutputs(out)).isOutputFolder, false);
  // --out a file: no ledger there either (the run's check of the folder says what is wrong).
  await writeFile(join(dir, 'a-file'), '');
  assert.equal((await runFolderOutputs(join(dir, 'a-file'))).isOutputFolder, false);
  assert.equal(await createLedger(out), true);
  await addToLedger(out, 'sub/a\nb.png', SOME_VERSION);
  const outputs = await runFolderOutputs(out);
  assert.equal(outputs.isOutputFolder, true);
  assert.deepEqual([...outputs.files], [['sub/a\nb.png', [SOME_VERSION]]]);
});
