/**
 * Folder runs against a hostile user's folders: an output folder inside the
 * input folder (an earlier run's maps are not read back as images), a
 * user's own file with an output's name (never replaced), and the same
 * file reached by two paths (one input). Listing through expandInputs, runs
 * through the command line (`node bin/camviz.js`) on the embedded model.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { appendFile, cp, mkdir, mkdtemp, readFile, rename, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import sharp from 'sharp';

import { expandInputs } from '../src/batch/inputs.js';
import { createLedger, writeRecordedFile } from '../src/util/outputs-ledger.js';
import { repoRoot } from './helpers/assets.js';
import { type CliRun, cliEnv, runCli } from './helpers/cli.js';
import { noise, readManifest } from './helpers/files.js';

const skipWithoutModel: string | false = existsSync(join(repoRoot, 'models', 'shapes', 'model.json')) ? false : 'models/shapes/model.json is not present';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-folder-safety-'));
after(() => rm(workDir, { recursive: true, force: true }));
const env = cliEnv(join(workDir, 'cache'));

function camviz(args: readonly string[]): Promise<CliRun> {
  return runCli([...args, '--model', 'shapes', '--backend', 'wasm', '--jobs', '1'], { cwd: workDir, env, timeoutMs: 120_000 });
}

async function makeFolder(folder: string, names: readonly string[]): Promise<string> {
  for (const [i, name] of names.entries()) {
    const path = join(folder, name);
    await mkdir(dirname(path), { recursive: true });
    await sharp(noise(24 + i, 20, i + 1), { raw: { width: 24 + i, height: 20, channels: 3 } }).png().toFile(path);
  }
  return folder;
}

const relatives = (images: readonly { relative: string }[]): string[] => images.map((image) => image.relative);
const stderrLines = (run: CliRun): string[] => run.stderr.split('\n').filter((line) => line !== '');

describe('an output folder inside the input folder', { skip: skipWithoutModel }, () => {
  test("a second run's walk skips the first run's output folder, and says so (not under --quiet)", async () => {
    const input = await makeFolder(join(workDir, 'nested'), ['a.png', 'b.png', 'sub/c.png']);
    const first = await camviz(['gradcam', input, '--out', join(input, 'out1'), '--quiet']);
    assert.equal(first.code, 0, first.stderr);
    const second = await camviz(['gradcam', input, '--out', join(input, 'out2')]);
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual((await readManifest(join(input, 'out2'))).records.map((record) => record.relative), ['a.png', 'b.png', 'sub/c.png']);
    assert.ok(stderrLines(second).includes(`camviz: ${join(input, 'out1')} is a camviz output folder: its 3 images camviz wrote are not inputs`), second.stderr);
    // A third run, --quiet, sees neither earlier folder and says nothing.
    const third = await camviz(['gradcam', input, '--out', join(input, 'out3'), '--quiet']);
    assert.equal(third.code, 0, third.stderr);
    assert.doesNotMatch(third.stderr, /is a camviz output folder/);
    assert.equal((await readManifest(join(input, 'out3'))).summary.inputs, 3);
  });

  test('a run whose --out lies elsewhere does not read an in-place run\'s maps either; the images beside them stay inputs', async () => {
    const input = await makeFolder(join(workDir, 'in-place-then-out'), ['a.png', 'b.png']);
    assert.equal((await camviz(['gradcam', input, '--out', input, '--quiet'])).code, 0);
    const elsewhere = await camviz(['gradcam', input, '--out', join(workDir, 'elsewhere'), '--quiet']);
    assert.equal(elsewhere.code, 0, elsewhere.stderr);
    assert.deepEqual((await readManifest(join(workDir, 'elsewhere'))).records.map((record) => record.relative), ['a.png', 'b.png']);
  });
});

describe('output folders are known by their content, not their names', () => {
  test("a user's folder holding a manifest.json of its own, or a .camviz.lock that is no lock, is listed whole", async () => {
    const data = await makeFolder(join(workDir, 'not-camviz'), ['x.png', 'x.gradcam.3.png', 'notes/y.png']);
    await writeFile(join(data, 'manifest.json'), '{"files": ["x.png"]}\n');
    await writeFile(join(data, 'notes', '.camviz.lock'), 'not a lock\n');
    assert.deepEqual(relatives(await expandInputs([data])), ['notes/y.png', 'x.gradcam.3.png', 'x.png']);
  });
});

describe("the walk leaves out only what is still camviz's", () => {
  test("a map replaced by a user's picture (or edited) is an input; camviz's own, or a copy of it with its bytes, is not, and the note counts those alone", async () => {
    const root = await makeFolder(join(workDir, 'replaced-map'), ['a.png', 'b.png', 'c.png']);
    const out = join(root, 'out');
    await mkdir(out);
    await createLedger(out);
    for (const stem of ['a', 'b', 'c']) await writeRecordedFile(out, `${stem}.gradcam.1.png`, join(out, `${stem}.gradcam.1.png`), await readFile(join(root, `${stem}.png`)));
    // b's map replaced by the user's own picture; c's copied back over itself (same bytes, another file).
    await cp(join(root, 'a.png'), join(out, 'b.gradcam.1.png'));
    await cp(join(root, 'c.png'), join(out, 'c.gradcam.1.png'));
    const notes: string[] = [];
    assert.deepEqual(relatives(await expandInputs([root], { note: (message) => notes.push(message) })), ['a.png', 'b.png', 'c.png', 'out/b.gradcam.1.png']);
    assert.deepEqual(notes, [`${out} is a camviz output folder: its 2 images camviz wrote are not inputs`]);
  });
});

describe("a user's file with an output's name", { skip: skipWithoutModel }, () => {
  test('is never replaced: one line names it, that image fails, the others finish; exit 1', async () => {
    const folder = await makeFolder(join(workDir, 'foreign'), ['a.png', 'b.png', 'c.png']);
    // The shapes model's top class of these images is unknown beforehand: a --class run names the output.
    const mine = join(folder, 'b.gradcam.2.png');
    await writeFile(mine, 'my own notes, not a map\n');
    const run = await camviz(['gradcam', folder, '--out', folder, '--class', '2']);
    assert.equal(run.code, 1, run.stderr);
    assert.equal(await readFile(mine, 'utf8'), 'my own notes, not a map\n');
    const lines = stderrLines(run).filter((line) => line.includes('b.gradcam.2.png'));
    assert.deepEqual(lines, [`camviz: a file camviz did not write has this output's name: left as it is (move it, or use another --out) (${mine})`]);
    const manifest = await readManifest(folder);
    assert.deepEqual(manifest.records.map((record) => [record.relative, record.status]), [['a.png', 'ok'], ['b.png', 'error'], ['c.png', 'ok']]);
    // It stays refused on a rerun, and --skip-existing does not take it for an output.
    const again = await camviz(['gradcam', folder, '--out', folder, '--class', '2', '--skip-existing', '--quiet']);
    assert.equal(again.code, 1, again.stderr);
    assert.equal(await readFile(mine, 'utf8'), 'my own notes, not a map\n');
  });

  test("camviz's own maps are replaced, also those of a run before the last (--class 1, --class 2, --class 1 again)", async () => {
    const folder = await makeFolder(join(workDir, 'own'), ['a.png', 'b.png']);
    for (const classIndex of ['1', '2', '1']) {
      const run = await camviz(['gradcam', folder, '--out', folder, '--class', classIndex, '--quiet']);
      assert.equal(run.code, 0, `--class ${classIndex}: ${run.stderr}`);
    }
    assert.deepEqual((await readManifest(folder)).records.map((record) => record.outputs), [['a.gradcam.1.png'], ['b.gradcam.1.png']]);
  });

  test("a ledger naming a file behind a linked folder in --out does not make camviz replace the user's file there", async () => {
    const input = await makeFolder(join(workDir, 'linked-out-in'), ['sub/a.png']);
    const out = join(workDir, 'linked-out');
    const victim = join(workDir, 'linked-out-victim');
    await mkdir(out);
    await mkdir(victim);
    const mine = join(victim, 'a.gradcam.2.png');
    await writeFile(mine, 'my own file, outside --out\n');
    await symlink(victim, join(out, 'sub'));
    // A hostile (or copied) folder: its ledger vouches for a file that lies outside it, through the link.
    await writeFile(join(out, '.camviz-outputs'), '# camviz: files camviz wrote in this folder, one JSON string a line\n"sub/a.gradcam.2.png"\n');
    const run = await camviz(['gradcam', input, '--out', out, '--class', '2']);
    assert.equal(run.code, 1, run.stderr);
    assert.equal(await readFile(mine, 'utf8'), 'my own file, outside --out\n');
    assert.match(run.stderr, /a file camviz did not write has this output's name/);
  });

  test("a manifest.json in --out that is not camviz's stops the run before any work, naming it, and is left as it was", async () => {
    const input = await makeFolder(join(workDir, 'foreign-manifest-in'), ['a.png']);
    const out = join(workDir, 'foreign-manifest-out');
    await mkdir(out);
    await writeFile(join(out, 'manifest.json'), '{"mine": true}\n');
    const run = await camviz(['gradcam', input, '--out', out]);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, new RegExp(`^camviz: not camviz's \\(not a camviz manifest: .*\\): camviz replaces no file it did not write; move it, or use another --out \\(${join(out, 'manifest.json').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)$`, 'm'));
    assert.equal(await readFile(join(out, 'manifest.json'), 'utf8'), '{"mine": true}\n');
    assert.equal(existsSync(join(out, 'a.gradcam.0.png')), false);
  });

  test("--report where --out holds a page of the user's own named index.html stops before any work, naming it; camviz's own page is replaced", async () => {
    const input = await makeFolder(join(workDir, 'own-page-in'), ['a.png']);
    const out = join(workDir, 'own-page-out');
    await mkdir(out);
    const page = '<!doctype html><title>my project</title>\n';
    await writeFile(join(out, 'index.html'), page);
    const refused = await camviz(['gradcam', input, '--out', out, '--report']);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /^camviz: not camviz's \(it has no camviz generator tag\): camviz replaces no file it did not write; move it, or use another --out \(.*own-page-out\/index\.html\)$/m);
    assert.equal(await readFile(join(out, 'index.html'), 'utf8'), page);
    assert.equal(existsSync(join(out, 'a.gradcam.0.png')), false, 'no work done');
    await rm(join(out, 'index.html'));
    for (const round of [1, 2]) {
      const run = await camviz(['gradcam', input, '--out', out, '--report', '--quiet']);
      assert.equal(run.code, 0, `round ${round}: ${run.stderr}`);
    }
  });

  test("a manifest.json stamped by camviz that this version cannot read (another version's, edited) is camviz's: replaced, and --skip-existing says why it starts over", async () => {
    const input = await makeFolder(join(workDir, 'other-version-in'), ['a.png']);
    const out = join(workDir, 'other-version-out');
    await mkdir(out);
    await writeFile(join(out, 'manifest.json'), '{"camviz": "9.9.9", "command": "cam", "records": "a format of later days"}\n');
    const run = await camviz(['gradcam', input, '--out', out, '--skip-existing', '--verbose']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /--skip-existing: manifest\.json in .* is not one this camviz reads \(its 'options' is not an object\); processing every input/);
    assert.equal((await readManifest(out)).camviz === '9.9.9', false, 'the manifest was replaced');
    assert.equal((await readManifest(out)).records[0]?.status, 'ok');
  });
});

describe("a camviz map replaced or edited since camviz wrote it", { skip: skipWithoutModel }, () => {
  const REFUSED = "a file camviz did not write has this output's name: left as it is (move it, or use another --out)";
  const HEADER = '# camviz: files camviz wrote in this folder, one JSON string a line';

  /** A folder of two images with camviz's maps in place (`--class 2`, so that the maps' names are known), and the run's arguments. */
  async function ranOnce(name: string): Promise<{ folder: string; args: string[] }> {
    const folder = await makeFolder(join(workDir, name), ['a.png', 'b.png']);
    const args = ['gradcam', folder, '--out', folder, '--class', '2', '--quiet'];
    const first = await camviz(args);
    assert.equal(first.code, 0, first.stderr);
    return { folder, args };
  }

  /** The one line naming `file` in a run's errors. */
  function refusalOf(run: CliRun, file: string): string[] {
    return stderrLines(run).filter((line) => line.includes(file));
  }

  test("a user's picture copied over a map, or moved there, is left alone: that image fails, naming it; the other's map is replaced", async () => {
    const { folder, args } = await ranOnce('replaced-map');
    const copiedOver = join(folder, 'a.gradcam.2.png');
    const movedThere = join(folder, 'b.gradcam.2.png');
    const mine = await sharp(noise(24, 20, 99), { raw: { width: 24, height: 20, channels: 3 } }).png().toBuffer();
    // cp: the map's own inode, rewritten in place.
    await writeFile(copiedOver, mine);
    const before = await stat(join(folder, 'b.gradcam.2.png'), { bigint: true });
    const rerun = await camviz(args);
    assert.equal(rerun.code, 1, rerun.stderr);
    assert.deepEqual(await readFile(copiedOver), mine);
    assert.deepEqual(refusalOf(rerun, 'a.gradcam.2.png'), [`camviz: ${REFUSED} (${copiedOver})`]);
    assert.notEqual((await stat(movedThere, { bigint: true })).ino, before.ino, "camviz's own map of b.png was written again");
    // mv: another file renamed over the map.
    await writeFile(join(workDir, 'replaced-map-mine.png'), mine);
    await rename(join(workDir, 'replaced-map-mine.png'), movedThere);
    const again = await camviz(args);
    assert.equal(again.code, 1, again.stderr);
    assert.deepEqual(await readFile(movedThere), mine);
    assert.deepEqual(refusalOf(again, 'b.gradcam.2.png'), [`camviz: ${REFUSED} (${movedThere})`]);
  });

  test("camviz's own maps are replaced on a rerun, also touched, or in a copy of the folder (cp -r: new inodes and times, the same bytes)", async () => {
    const { folder, args } = await ranOnce('own-rerun');
    const map = join(folder, 'a.gradcam.2.png');
    const first = await stat(map, { bigint: true });
    const rerun = await camviz(args);
    assert.equal(rerun.code, 0, rerun.stderr);
    const second = await stat(map, { bigint: true });
    assert.notEqual(second.ino, first.ino, 'written again');
    const later = new Date(Date.now() + 60_000);
    await utimes(map, later, later);
    const touched = await camviz(args);
    assert.equal(touched.code, 0, touched.stderr);
    const copy = join(workDir, 'own-rerun-copy');
    await cp(folder, copy, { recursive: true });
    const inCopy = await camviz(['gradcam', copy, '--out', copy, '--class', '2', '--quiet']);
    assert.equal(inCopy.code, 0, inCopy.stderr);
    assert.deepEqual((await readManifest(copy)).records.map((record) => record.status), ['ok', 'ok']);
  });

  test('a run killed after recording a map and before renaming it into place leaves the map camviz\'s; a file put where a first write was killed is not', async () => {
    const { folder, args } = await ranOnce('interrupted');
    const ledger = join(folder, '.camviz-outputs');
    // What such a run leaves: the new version recorded (its temporary file's stamp and bytes), the temporary file, the old map in place.
    const pending = (name: string): string => `${JSON.stringify([name, '1:99999999:321:1700000000123456789', 'cd'.repeat(32)])}\n`;
    await appendFile(ledger, pending('a.gradcam.2.png') + pending('c.gradcam.2.png'));
    await writeFile(join(folder, '.a.gradcam.2.png.999999999.0123456789ab.tmp'), 'torn');
    // c.png's first map was never renamed into place: what is there now is a user's.
    await makeFolder(join(workDir, 'interrupted-c'), ['c.png']);
    await rename(join(workDir, 'interrupted-c', 'c.png'), join(folder, 'c.png'));
    const mine = join(folder, 'c.gradcam.2.png');
    await writeFile(mine, 'mine\n');
    const rerun = await camviz(args);
    assert.equal(rerun.code, 1, rerun.stderr);
    assert.deepEqual((await readManifest(folder)).records.map((record) => [record.relative, record.status]), [['a.png', 'ok'], ['b.png', 'ok'], ['c.png', 'error']]);
    assert.equal(await readFile(mine, 'utf8'), 'mine\n');
  });

  test("an older camviz's ledger (names alone) still vouches for its maps; once written again, a replaced map is refused", async () => {
    const { folder, args } = await ranOnce('old-ledger');
    const ledger = join(folder, '.camviz-outputs');
    await writeFile(ledger, `${HEADER}\n"a.gradcam.2.png"\n"b.gradcam.2.png"\ngarbage, not JSON\n[1, 2, 3]\n`);
    const mine = join(folder, 'a.gradcam.2.png');
    const rerun = await camviz(args);
    assert.equal(rerun.code, 0, rerun.stderr);
    await writeFile(mine, 'mine\n');
    const after = await camviz(args);
    assert.equal(after.code, 1, after.stderr);
    assert.equal(await readFile(mine, 'utf8'), 'mine\n');
  });

  test('--report: camviz\'s index.html edited since (its tag kept) stops the run before any work, naming it', async () => {
    const { folder, args } = await ranOnce('edited-report');
    const withReport = [...args, '--report'];
    assert.equal((await camviz(withReport)).code, 0);
    const page = join(folder, 'index.html');
    const edited = `${await readFile(page, 'utf8')}<!-- my notes -->\n`;
    await writeFile(page, edited);
    const map = await stat(join(folder, 'a.gradcam.2.png'), { bigint: true });
    const refused = await camviz(withReport);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, new RegExp(`^camviz: not camviz's \\(it was changed or replaced since camviz wrote it\\): .* \\(${page.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)$`, 'm'));
    assert.equal(await readFile(page, 'utf8'), edited);
    assert.equal((await stat(join(folder, 'a.gradcam.2.png'), { bigint: true })).ino, map.ino, 'no work done');
  });
});

describe('the same file by two paths is one input', () => {
  test('a link and its target, a linked folder and the folder: the first name in order is kept, and --verbose says so', async () => {
    const root = await makeFolder(join(workDir, 'links'), ['a.png', 'real/b.png']);
    await symlink('a.png', join(root, 'z-link.png'));
    await symlink('real', join(root, 'view'));
    const notes: string[] = [];
    const images = await expandInputs([root], { note: (message) => notes.push(message) });
    assert.deepEqual(relatives(images), ['a.png', 'real/b.png']);
    assert.deepEqual(notes, [
      `${join(root, 'view', 'b.png')} is the same file as ${join(root, 'real', 'b.png')}: one input, named as the first`,
      `${join(root, 'z-link.png')} is the same file as ${join(root, 'a.png')}: one input, named as the first`,
    ]);
    // Given twice on the command line, through the link first: the link's name is kept.
    assert.deepEqual(relatives(await expandInputs([join(root, 'z-link.png'), join(root, 'a.png')])), ['z-link.png']);
  });

  test('a link loop and a link leading out of the folder: listed as before (the loop reported when loaded), no hang', async () => {
    const root = await makeFolder(join(workDir, 'loops'), ['a.png']);
    const outside = await makeFolder(join(workDir, 'outside'), ['o.png']);
    await symlink('loop2.png', join(root, 'loop1.png'));
    await symlink('loop1.png', join(root, 'loop2.png'));
    await symlink('.', join(root, 'self'));
    await symlink(join(outside, 'o.png'), join(root, 'out.png'));
    assert.deepEqual(relatives(await expandInputs([root])), ['a.png', 'loop1.png', 'loop2.png', 'out.png']);
  });
});
