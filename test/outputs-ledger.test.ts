/**
 * The ledger of camviz's outputs (.camviz-outputs) in a hostile output
 * folder: a FIFO, a link to a file elsewhere, a folder or an oversized file
 * in its place is refused before any work, naming it; it is never appended
 * to through a link, and an append never waits for a FIFO's reader.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, constants, openSync, watch } from 'node:fs';
import { appendFile, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureWritable, foldsCaseIn } from '../src/batch/out-dir.js';
import { compactFolderLedger, replaceableOutputs, runFolderOutputs } from '../src/batch/own-outputs.js';
import { LEDGER_NAME, type WrittenVersion, addToLedger, createLedger, fileAtOutput, parseLedger, vouchFor, writeOwnOutput, writeRecordedFile } from '../src/util/outputs-ledger.js';
import { MAX_JSON_BYTES } from '../src/util/json-file.js';
import { parseTemporaryName, publishWithoutReplacing, writeFileAtomic } from '../src/util/atomic-file.js';

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

const HEADER = '# camviz: files camviz wrote in this folder, one JSON string a line';

/** The version of the file at `path` as it is now, computed here from its stat and bytes. */
async function versionOf(path: string): Promise<WrittenVersion> {
  const info = await stat(path, { bigint: true });
  return { stamp: `${info.dev}:${info.ino}:${info.size}:${info.mtimeNs}`, sha256: createHash('sha256').update(await readFile(path)).digest('hex') };
}

test('a ledger is read line by line: names alone, versions, and garbage or torn lines skipped', () => {
  const version = ['b.png', '1:2:3:4', 'ef'.repeat(32)];
  const parsed = parseLedger(`${HEADER}\n"a.png"\n${JSON.stringify(version)}\nnot json\n{"a": 1}\n["c.png", "1:2:3:4"]\n[1, 2, 3]\n"a.png"\n["b.png", "5:6:7:8", "00"]\n"torn`);
  assert.deepEqual(parsed?.files, new Map([['a.png', []], ['b.png', [{ stamp: '1:2:3:4', sha256: 'ef'.repeat(32) }, { stamp: '5:6:7:8', sha256: '00' }]]]));
  assert.equal(parseLedger('"a.png"\n'), undefined, 'no header: not a ledger');
});

test('writeRecordedFile records the file as it lies in place, before it is there; each rewrite adds a version', async () => {
  const out = await folder('recorded');
  await createLedger(out);
  const path = join(out, 'a.gradcam.1.png');
  await writeRecordedFile(out, 'a.gradcam.1.png', path, 'first');
  const first = await versionOf(path);
  await writeRecordedFile(out, 'a.gradcam.1.png', path, 'second!');
  assert.deepEqual((await runFolderOutputs(out)).files.get('a.gradcam.1.png'), [first, await versionOf(path)]);
  // A write whose record cannot be made (the ledger became a folder) never appears.
  await rm(join(out, LEDGER_NAME));
  await mkdir(join(out, LEDGER_NAME));
  await assert.rejects(writeRecordedFile(out, 'b.gradcam.1.png', join(out, 'b.gradcam.1.png'), 'x'), namingLedger(out, /cannot write/));
  assert.deepEqual((await readdir(out)).sort(), [LEDGER_NAME, 'a.gradcam.1.png']);
});

test('fileAtOutput: nothing there, a recorded version (same stamp, or same bytes), a name alone; not an edit, a replacement or a link', async () => {
  const out = await folder('may-replace');
  const path = join(out, 'a.x.png');
  await writeFile(path, 'camviz wrote this');
  const written = await versionOf(path);
  const earlier = (versions: readonly WrittenVersion[]) => ({ foldsCase: false, files: [{ name: 'a.x.png', versions }] });
  assert.equal(await fileAtOutput(join(out, 'free.x.png'), 'free.x.png', earlier([])), 'nothing');
  assert.equal(await fileAtOutput(path, 'a.x.png', earlier([written])), "camviz's");
  assert.equal(await fileAtOutput(path, 'a.x.png', earlier([])), "camviz's", 'a name alone (an older ledger) vouches');
  assert.equal(await fileAtOutput(path, 'a.x.png', { foldsCase: false, files: [] }), 'foreign', 'not listed');
  // Rewritten in place with the same bytes (a backup restored, touched): same size, same sha256.
  await writeFile(path, 'camviz wrote this');
  assert.notEqual((await versionOf(path)).stamp, written.stamp);
  assert.equal(await fileAtOutput(path, 'a.x.png', earlier([written])), "camviz's");
  // Edited: same size, other bytes; or another size.
  await writeFile(path, 'camviz wrote THIS');
  assert.equal(await fileAtOutput(path, 'a.x.png', earlier([written])), 'foreign');
  await writeFile(path, 'mine');
  assert.equal(await fileAtOutput(path, 'a.x.png', earlier([written])), 'foreign');
  // Emptied (what a power cut leaves of an output not flushed): nothing to lose where camviz wrote; a user's own empty file elsewhere stays.
  await writeFile(path, '');
  assert.equal(await fileAtOutput(path, 'a.x.png', earlier([written])), "camviz's");
  assert.equal(await fileAtOutput(path, 'a.x.png', { foldsCase: false, files: [] }), 'foreign');
  await rm(path);
  await symlink(join(out, 'elsewhere'), path);
  assert.equal(await fileAtOutput(path, 'a.x.png', earlier([written])), 'foreign');
});

test('the real probe of this file system: it tells case apart (Linux), and leaves nothing behind', async () => {
  const out = await folder('probe');
  assert.equal(await foldsCaseIn(out), false);
  assert.deepEqual(await readdir(out), []);
  // A folder that cannot be probed is taken to fold case: the safe side.
  assert.equal(await foldsCaseIn(join(out, 'missing')), true);
});

/** The names of the files `probe` makes in `folder` while it runs (seen through inotify). */
async function namesMadeBy(folder: string, probe: () => Promise<unknown>): Promise<Set<string>> {
  const made = new Set<string>();
  const watcher = watch(folder, (_, name) => {
    if (name !== null) made.add(name);
  });
  try {
    await probe();
    // inotify's events come on the event loop's next turns.
    await new Promise((resolve) => setTimeout(resolve, 50));
  } finally {
    watcher.close();
  }
  return made;
}

for (const [what, probe] of [
  ['case', foldsCaseIn],
  ['writability', ensureWritable],
] as const) {
  test(`the ${what} probe's file is named as camviz's temporary files are: a run killed while probing leaves one the next run sweeps`, async () => {
    const out = await folder(`${what}-probe-name`);
    const made = await namesMadeBy(out, () => probe(out));
    assert.ok(made.size > 0, 'the probe was seen');
    for (const name of made) assert.equal(parseTemporaryName(name)?.pid, process.pid, name);
  });
}

describe('a file system that folds case (a stand-in view: Linux tells case apart)', () => {
  const folding = (stored: readonly string[]) => ({ foldsCase: async () => true, list: async () => [...stored] });

  test("a name alone ('cat.gradcam.2.png', an older ledger's) does not vouch for a user's 'Cat.gradcam.2.png', the same file there", async () => {
    const out = await folder('folds-name-alone');
    // The file a folding file system finds at cat.gradcam.2.png, stored as Cat.gradcam.2.png.
    await writeFile(join(out, 'cat.gradcam.2.png'), 'mine');
    const files = new Map([['cat.gradcam.2.png', []]]);
    const folded = (await replaceableOutputs(out, files, folding(['Cat.gradcam.2.png'])))('cat.');
    assert.deepEqual(folded.files, []);
    assert.equal(await fileAtOutput(join(out, 'cat.gradcam.2.png'), 'cat.gradcam.2.png', folded), 'foreign');
    // Stored as spelled, it is the older camviz's map: replaced, as before.
    const asSpelled = (await replaceableOutputs(out, files, folding(['cat.gradcam.2.png'])))('cat.');
    assert.equal(await fileAtOutput(join(out, 'cat.gradcam.2.png'), 'cat.gradcam.2.png', asSpelled), "camviz's");
    // A name alone vouches only for its own spelling.
    assert.equal(vouchFor({ foldsCase: true, files: [{ name: 'cat.gradcam.2.png', versions: [] }] }, 'Cat.gradcam.2.png'), undefined);
  });

  test("the versions of 'cat.gradcam.2.png' are looked up for 'Cat.gradcam.2.png' (one file there), and outweigh a name alone", async () => {
    const out = await folder('folds-versions');
    const path = join(out, 'cat.gradcam.2.png');
    await writeFile(path, 'camviz wrote this');
    const written = await versionOf(path);
    const files = new Map<string, WrittenVersion[]>([['cat.gradcam.2.png', [written]], ['Cat.gradcam.2.png', []]]);
    const upper = (await replaceableOutputs(out, files, folding(['cat.gradcam.2.png'])))('Cat.');
    assert.deepEqual(vouchFor(upper, 'Cat.gradcam.2.png'), [written]);
    assert.equal(await fileAtOutput(path, 'Cat.gradcam.2.png', upper), "camviz's");
    await writeFile(path, 'mine');
    assert.equal(await fileAtOutput(path, 'Cat.gradcam.2.png', upper), 'foreign', 'replaced since: its name alone does not vouch');
    // Where the file system tells case apart, 'Cat.' finds only its own spelling.
    const sensitive = (await replaceableOutputs(out, files, { foldsCase: async () => false, list: async () => [] }))('Cat.');
    assert.deepEqual(sensitive.files, [{ name: 'Cat.gradcam.2.png', versions: [] }]);
  });
});

test('a ledger grown by rewrites is compacted under the lock: what vouches for each file now is kept, the rest dropped', async () => {
  const out = await folder('compact');
  await createLedger(out);
  const own = join(out, 'own.x.png');
  for (let i = 0; i < 2500; i++) await appendFile(join(out, LEDGER_NAME), `${JSON.stringify(['own.x.png', `1:${i}:99:${i}`, 'aa'])}\n${JSON.stringify(['gone.x.png', `1:${i}:5:${i}`, 'bb'])}\n`);
  await writeRecordedFile(out, 'own.x.png', own, 'camviz wrote this');
  await writeRecordedFile(out, 'replaced.x.png', join(out, 'replaced.x.png'), 'camviz wrote this too');
  await writeFile(join(out, 'replaced.x.png'), 'mine');
  await appendFile(join(out, LEDGER_NAME), '"old.x.png"\n');
  await compactFolderLedger(out);
  const files = (await runFolderOutputs(out)).files;
  assert.deepEqual([...files.keys()].sort(), ['old.x.png', 'own.x.png', 'replaced.x.png']);
  assert.deepEqual(files.get('own.x.png'), [await versionOf(own)]);
  assert.deepEqual(files.get('old.x.png'), []);
  const earlier = (name: string) => ({ foldsCase: false, files: [{ name, versions: files.get(name) ?? [] }] });
  assert.equal(await fileAtOutput(own, 'own.x.png', earlier('own.x.png')), "camviz's");
  assert.equal(await fileAtOutput(join(out, 'replaced.x.png'), 'replaced.x.png', earlier('replaced.x.png')), 'foreign', 'still a user\'s');
  // Small: left as it is.
  const before = await readFile(join(out, LEDGER_NAME), 'utf8');
  await compactFolderLedger(out);
  assert.equal(await readFile(join(out, LEDGER_NAME), 'utf8'), before);
});

test('an append cut short (a full disk, a file size limit) fails its write, which never appears; the next append is read all the same', async () => {
  const out = await folder('short-append');
  await createLedger(out);
  const ledger = join(out, LEDGER_NAME);
  // Filled to 40 bytes below the 1024 the child may write to a file: the version's line (about 130 bytes) is cut short there.
  await appendFile(ledger, `${JSON.stringify('x'.repeat(1024 - 40 - (await stat(ledger)).size - 3))}\n`);
  const script = `
    const { writeRecordedFile } = await import(${JSON.stringify(new URL('../src/util/outputs-ledger.js', import.meta.url).href)});
    await writeRecordedFile(${JSON.stringify(out)}, 'a.x.png', ${JSON.stringify(join(out, 'a.x.png'))}, 'camviz wrote this').then(() => console.log('written'), (error) => console.log(error.code));`;
  const said = execFileSync('prlimit', ['--fsize=1024', process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8' }).trim();
  assert.equal((await stat(ledger)).size, 1024, 'the line was cut short at the limit');
  assert.equal(said, 'EFBIG');
  assert.deepEqual(await readdir(out), [LEDGER_NAME], 'unrecorded, the file does not appear');
  // The torn line has no end: the next append runs on after it, and is read all the same.
  await addToLedger(out, 'b.x.png', SOME_VERSION);
  assert.deepEqual((await runFolderOutputs(out)).files.get('b.x.png'), [SOME_VERSION]);
});

test('a new file is put in place only if nothing came to its name meanwhile: a file planted just before is left, and the write fails (EEXIST)', async () => {
  const out = await folder('no-replace');
  const path = join(out, 'a.x.png');
  const plant = () => writeFile(path, 'planted');
  await assert.rejects(writeFileAtomic(path, 'camviz', { noReplace: true, beforeRename: plant }), (error: Error & { code?: string; file?: string }) => {
    assert.equal(error.code, 'EEXIST');
    assert.equal(error.file, path);
    return true;
  });
  assert.equal(await readFile(path, 'utf8'), 'planted');
  assert.deepEqual(await readdir(out), ['a.x.png'], 'no temporary file left');
  // Without noReplace (camviz replacing its own file), the rename replaces what is there: the window that stays open.
  await writeFileAtomic(path, 'camviz', { beforeRename: plant });
  assert.equal(await readFile(path, 'utf8'), 'camviz');
  await rm(path);
  await writeFileAtomic(path, 'new', { noReplace: true });
  assert.equal(await readFile(path, 'utf8'), 'new');
  assert.deepEqual(await readdir(out), ['a.x.png'], 'the temporary name is gone once the file is linked in place');
});

test('writeOwnOutput: a file that appears at a new output\'s name after the look is a user\'s, left as it is; the version was recorded before, as the ordering requires', async () => {
  const out = await folder('own-output-race');
  await createLedger(out);
  const path = join(out, 'a.x.png');
  const nothingEarlier = { foldsCase: false, files: [] };
  let recordedFirst = false;
  const plant = async () => {
    // The ledger lists the version before the file is put in place, as for any write.
    recordedFirst = (await runFolderOutputs(out)).files.get('a.x.png')?.length === 1;
    await writeFile(path, 'the user\'s picture');
  };
  assert.equal(await writeOwnOutput(out, 'a.x.png', path, 'map', nothingEarlier, { beforeRename: plant }), 'foreign');
  assert.equal(recordedFirst, true);
  assert.equal(await readFile(path, 'utf8'), 'the user\'s picture');
  assert.deepEqual((await readdir(out)).sort(), [LEDGER_NAME, 'a.x.png']);
  // What was recorded does not vouch for the user's file: another file, other bytes.
  assert.equal(await fileAtOutput(path, 'a.x.png', { foldsCase: false, files: [...(await runFolderOutputs(out)).files].map(([name, versions]) => ({ name, versions })) }), 'foreign');
  // With nothing in the way, it is written and recorded; written again (camviz's own file), it is replaced.
  await rm(path);
  assert.equal(await writeOwnOutput(out, 'a.x.png', path, 'map', nothingEarlier), 'written');
  const own = { foldsCase: false, files: [{ name: 'a.x.png', versions: (await runFolderOutputs(out)).files.get('a.x.png') ?? [] }] };
  assert.equal(await writeOwnOutput(out, 'a.x.png', path, 'map 2', own), 'written');
  assert.equal(await readFile(path, 'utf8'), 'map 2');
});

test('on a file system that makes no hard links (link fails EPERM, ENOTSUP, EXDEV), a new file is renamed into place as before; EEXIST is not such a failure', async () => {
  const out = await folder('no-hard-links');
  for (const code of ['EPERM', 'ENOTSUP', 'EXDEV', 'ENOSYS']) {
    const temp = join(out, `.a.${code}.tmp`);
    await writeFile(temp, code);
    const noLinks = () => Promise.reject(Object.assign(new Error(code), { code }));
    await publishWithoutReplacing(temp, join(out, 'a.x.png'), noLinks);
    assert.equal(await readFile(join(out, 'a.x.png'), 'utf8'), code);
    assert.deepEqual(await readdir(out), ['a.x.png']);
  }
  const temp = join(out, '.a.tmp');
  await writeFile(temp, 'camviz');
  await assert.rejects(publishWithoutReplacing(temp, join(out, 'a.x.png')), { code: 'EEXIST' });
  assert.equal(await readFile(join(out, 'a.x.png'), 'utf8'), 'ENOSYS');
});
