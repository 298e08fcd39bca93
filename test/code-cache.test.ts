/**
 * The V8 code cache of camviz's CommonJS dependencies (src/engine/code-cache.ts,
 * issue 12): each check runs fresh processes with CAMVIZ_CACHE in a
 * temporary folder. A small script turns the cache on and requires fake
 * packages under a node_modules folder, and reports what the modules saw
 * and what the cache did (codeCacheStats); the command line is run as users
 * run it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { type CodeCacheStats, codeCacheEntriesOf, codeCacheFolder } from '../src/engine/code-cache.js';
import { crc32 } from '../src/util/crc32.js';
import { repoRoot } from './helpers/assets.js';
import { cliEnv, runCli } from './helpers/cli.js';
import { withEnvSync } from './helpers/env.js';
import { listFiles, noise } from './helpers/files.js';

let workDir: string;
/** The folder the fake packages are in: the script's require starts from a file in it. */
let appDir: string;

/** A fake package's source: it reports how its code was run (the same with and without the cache), `value` in eager and in lazily compiled code. */
function packageSource(value: string): string {
  return `'use strict'; const firstLineError = new Error('first line');
const path = require('path');
const dep = require('./dep.js');
exports.probe = {
  value: '${value}',
  lazyValue: lazy(),
  thisIsExports: this === module.exports,
  filename: __filename,
  dirname: __dirname,
  resolved: require.resolve('./dep.js'),
  resolvedFromPaths: require.resolve('other', { paths: [path.join(__dirname, 'elsewhere')] }),
  lookupPaths: require.resolve.paths('anything'),
  cacheIsNodes: require.cache === require('module')._cache,
  inCache: require.cache[__filename] === module,
  extensionsAreNodes: require.extensions === require('module')._extensions,
  main: require.main === undefined ? 'undefined' : require.main.filename,
  parent: module.parent ? module.parent.filename : null,
  children: module.children.map((child) => child.filename),
  depParent: dep.parent,
  badResolve: (() => { try { require.resolve(42); return 'no error'; } catch (error) { return error.code; } })(),
  firstLineAt: firstLineError.stack.split('\\n')[1].trim(),
};
function lazy() { return 'lazy ${value}'; }
// Padding: files under 8 KiB are left to Node.
// ${'x'.repeat(9000)}
`;
}

/** Writes node_modules/<name> (index.js, a small dep.js, a package it resolves from elsewhere/) under appDir. */
async function writePackage(name: string, value: string): Promise<string> {
  const folder = join(appDir, 'node_modules', name);
  await mkdir(join(folder, 'elsewhere', 'node_modules', 'other'), { recursive: true });
  await writeFile(join(folder, 'index.js'), packageSource(value));
  // Whole seconds, which utimes can set back exactly (it takes no nanoseconds).
  await utimes(join(folder, 'index.js'), PACKAGE_TIME, PACKAGE_TIME);
  await writeFile(join(folder, 'dep.js'), 'module.exports = { parent: module.parent.filename };\n');
  await writeFile(join(folder, 'elsewhere', 'node_modules', 'other', 'index.js'), 'module.exports = 1;\n');
  return join(folder, 'index.js');
}

const PACKAGE_TIME = 1_767_225_600; // 2026-01-01, in seconds

const CODE_CACHE_URL = pathToFileURL(join(repoRoot, 'dist', 'src', 'engine', 'code-cache.js')).href;

/** Turns the cache on, requires each of REQUIRES (from a file in appDir), prints what the modules saw and the cache's counts. */
const REQUIRING_SCRIPT = `
const { enableCodeCache, codeCacheStats } = await import(process.env.CODE_CACHE_URL);
const on = enableCodeCache();
const { createRequire } = await import('node:module');
const require = createRequire(process.env.APP_FILE);
const results = {};
for (const name of process.env.REQUIRES.split(',')) {
  const loaded = require(name);
  results[name] = loaded.probe === undefined ? loaded : { ...loaded.probe, imported: await loaded.imported };
}
process.stdout.write(JSON.stringify({ on, stats: codeCacheStats(), results }));
`;

interface ScriptRun {
  on: boolean;
  stats: CodeCacheStats;
  results: Record<string, unknown>;
  stderr: string;
}

function requireInFreshProcess(cache: string, requires: readonly string[], extraEnv: NodeJS.ProcessEnv = {}, nodeOptions: readonly string[] = []): Promise<ScriptRun> {
  const env: NodeJS.ProcessEnv = { ...process.env, CAMVIZ_CACHE: cache, CODE_CACHE_URL, APP_FILE: join(appDir, 'app.js'), REQUIRES: requires.join(',') };
  delete env['CAMVIZ_CODE_CACHE'];
  Object.assign(env, extraEnv);
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [...nodeOptions, '--input-type=module', '-e', REQUIRING_SCRIPT], { cwd: appDir, env, timeout: 60_000 }, (error, stdout, stderr) => {
      if (error !== null) return reject(new Error(`${error.message}\n${stderr}`));
      resolve({ ...(JSON.parse(stdout) as Omit<ScriptRun, 'stderr'>), stderr });
    });
  });
}

const counts = (changes: Partial<CodeCacheStats>): CodeCacheStats => ({ accepted: 0, rejected: 0, missing: 0, stale: 0, damaged: 0, direct: 0, ...changes });

/** The entry files of `file` in the code cache under `cache`. */
const entriesOf = (cache: string, file: string): string[] => withEnvSync('CAMVIZ_CACHE', cache, () => codeCacheEntriesOf(realpathSync(file)));

let packageA: string;
let packageB: string;
let packageC: string;
let packageD: string;
let packageE: string;
let packageZ: string;
let bigAppFile: string;

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'camviz-code-cache-'));
  appDir = join(workDir, 'app');
  packageA = await writePackage('pkg-a', 'first');
  packageB = await writePackage('pkg-b', 'first');
  packageC = await writePackage('pkg-c', 'first');
  packageD = await writePackage('pkg-d', 'first');
  packageZ = await writePackage('pkg-z', 'first');
  await writeFile(packageD, `${await readFile(packageD, 'utf8')}exports.imported = import('node:path').then((module) => typeof module.join);\n`);
  // Non-ASCII text (a two-byte string for V8) after a byte order mark, which Node keeps as U+FEFF.
  packageE = await writePackage('pkg-e', 'dépendance ✓ 𝄞');
  await writeFile(packageE, `\uFEFF${await readFile(packageE, 'utf8')}`);
  await utimes(packageE, PACKAGE_TIME, PACKAGE_TIME);
  // As large as the packages, outside node_modules: left to Node.
  bigAppFile = join(appDir, 'big.js');
  await writeFile(bigAppFile, `module.exports = { big: true };\n// ${'x'.repeat(9000)}\n`);
  // Entries are written only for files changed over 2 s before they were read (a change within the
  // file system's time resolution would keep the file's times): let the files just written settle.
  await sleep(2100);
});
after(() => rm(workDir, { recursive: true, force: true }));

/**
 * The entry with the source length in its header changed, its lengths and
 * CRC made valid again (the layout of src/engine/code-cache.ts: magic,
 * header length, data length, CRC-32 of header and data, header, data).
 */
function withStoredLength(entry: Buffer, change: (length: number) => number): Buffer {
  const preamble = 20;
  const headerBytes = entry.readUInt32LE(8);
  const version = JSON.parse(entry.subarray(preamble, preamble + headerBytes).toString('utf8')) as { length: number };
  const header = Buffer.from(JSON.stringify({ ...version, length: change(version.length) }), 'utf8');
  const data = entry.subarray(preamble + headerBytes);
  const start = Buffer.alloc(preamble);
  entry.copy(start, 0, 0, 8);
  start.writeUInt32LE(header.length, 8);
  start.writeUInt32LE(data.length, 12);
  start.writeUInt32LE(crc32(data, crc32(header)), 16);
  return Buffer.concat([start, header, data]);
}

let caches = 0;
const freshCache = (): string => join(workDir, `cache-${++caches}`);

describe('the code cache of dependencies', () => {
  test('the first run writes an entry for each file of 8 KiB or more under node_modules, the next runs its code; modules see what Node gives them', async () => {
    const cache = freshCache();
    const requires = ['pkg-a', './big.js'];
    const off = await requireInFreshProcess(cache, requires, { CAMVIZ_CODE_CACHE: '0' });
    assert.equal(off.on, false);
    assert.deepEqual(await listFiles(cache, { missingAsEmpty: true }), [], 'CAMVIZ_CODE_CACHE=0 writes nothing');
    const first = await requireInFreshProcess(cache, requires);
    assert.equal(first.on, true);
    assert.deepEqual(first.stats, counts({ missing: 1 }));
    assert.equal(entriesOf(cache, packageA).length, 1);
    assert.deepEqual(entriesOf(cache, join(appDir, 'node_modules', 'pkg-a', 'dep.js')), [], 'a small file has no entry');
    assert.deepEqual(entriesOf(cache, bigAppFile), [], 'a file outside node_modules has no entry');
    assert.equal((await listFiles(cache)).length, 1);
    const second = await requireInFreshProcess(cache, requires);
    assert.deepEqual(second.stats, counts({ accepted: 1, direct: 1 }), 'V8 took the entry, read straight from the file');
    for (const run of [first, second]) {
      assert.deepEqual(run.results, off.results);
      assert.equal(run.stderr, '');
    }
    const probe = off.results['pkg-a'] as Record<string, unknown>;
    assert.equal(probe['badResolve'], 'ERR_INVALID_ARG_TYPE');
    assert.equal(probe['inCache'], true);
  });

  test('entries made under other V8 flags are kept beside: runs with and without a flag each take their own', async () => {
    const cache = freshCache();
    // As a folder run sets it (src/batch/runner.ts); V8 rejects data made under other flags.
    const flagged = ['--heap-growing-percent=300'];
    assert.deepEqual((await requireInFreshProcess(cache, ['pkg-a'])).stats, counts({ missing: 1 }));
    assert.deepEqual((await requireInFreshProcess(cache, ['pkg-a'], {}, flagged)).stats, counts({ missing: 1 }));
    assert.equal(entriesOf(cache, packageA).length, 2);
    for (let i = 0; i < 2; i++) {
      assert.deepEqual((await requireInFreshProcess(cache, ['pkg-a'])).stats, counts({ accepted: 1, direct: 1 }));
      assert.deepEqual((await requireInFreshProcess(cache, ['pkg-a'], {}, flagged)).stats, counts({ accepted: 1, direct: 1 }));
    }
  });

  test('a file that may call import() is left to Node: its import() works, no entry is made', async () => {
    const cache = freshCache();
    const off = await requireInFreshProcess(cache, ['pkg-d'], { CAMVIZ_CODE_CACHE: '0' });
    for (let i = 0; i < 2; i++) {
      const run = await requireInFreshProcess(cache, ['pkg-d']);
      assert.deepEqual(run.stats, counts({}));
      assert.deepEqual(run.results, off.results);
      assert.equal(run.stderr, '', 'no experimental warning');
    }
    assert.equal((off.results['pkg-d'] as Record<string, unknown>)['imported'], 'function');
    assert.deepEqual(entriesOf(cache, packageD), []);
  });

  test('a file rewritten in place with its size and mtime kept is compiled afresh, and its new code runs', async () => {
    const cache = freshCache();
    await requireInFreshProcess(cache, ['pkg-b']);
    assert.equal(entriesOf(cache, packageB).length, 1);
    const before = await stat(packageB, { bigint: true });
    // Same length: V8's own check (the source's length) cannot see this change.
    await writeFile(packageB, (await readFile(packageB, 'utf8')).replaceAll('first', 'again'));
    await utimes(packageB, PACKAGE_TIME, PACKAGE_TIME);
    const after = await stat(packageB, { bigint: true });
    assert.equal(after.size, before.size);
    assert.equal(after.mtimeNs, before.mtimeNs, 'the mtime is set back');
    assert.equal(after.ino, before.ino, 'rewritten in place');
    assert.equal(after.dev, before.dev);
    const changed = await requireInFreshProcess(cache, ['pkg-b']);
    assert.deepEqual(changed.stats, counts({ stale: 1 }));
    const probe = changed.results['pkg-b'] as Record<string, unknown>;
    assert.equal(probe['value'], 'again');
    assert.equal(probe['lazyValue'], 'lazy again');
  });

  test('a cut-off, garbage or altered entry is ignored and written again', async () => {
    const cache = freshCache();
    const expected = (await requireInFreshProcess(cache, ['pkg-c'])).results;
    const [entry] = entriesOf(cache, packageC);
    assert.ok(entry !== undefined);
    const whole = await readFile(entry);
    const damages: [string, Buffer][] = [
      ['cut off', whole.subarray(0, whole.length >> 1)],
      ['garbage', noise(whole.length, 1, 7, 1)],
      // V8 does not check its data's checksum in release builds: this is caught by the entry's own CRC.
      ['one byte of the code altered', Buffer.concat([whole.subarray(0, -1), Buffer.from([whole.at(-1)! ^ 0xff])])],
      // Byte 30 is in the header (the file's version, as JSON, after 20 bytes of magic and lengths).
      ['one byte of the header altered', Buffer.concat([whole.subarray(0, 30), Buffer.from([whole[30]! ^ 0x01]), whole.subarray(31)])],
      ['empty', Buffer.alloc(0)],
    ];
    for (const [damage, bytes] of damages) {
      await writeFile(entry, bytes);
      const damaged = await requireInFreshProcess(cache, ['pkg-c']);
      assert.deepEqual(damaged.stats, counts({ damaged: 1 }), damage);
      assert.deepEqual(damaged.results, expected, damage);
      const next = await requireInFreshProcess(cache, ['pkg-c']);
      assert.deepEqual(next.stats, counts({ accepted: 1, direct: 1 }), `${damage}: written again`);
    }
  });

  test('an entry replaced by a link to an endless device, or by a folder, is a miss: not read without end, and written again', { skip: existsSync('/dev/zero') ? false : 'no /dev/zero here', timeout: 60_000 }, async () => {
    const cache = freshCache();
    const expected = (await requireInFreshProcess(cache, ['pkg-z'])).results;
    const [entry] = entriesOf(cache, packageZ);
    assert.ok(entry !== undefined);
    for (const [replacement, make] of [
      ['a link to /dev/zero', () => symlink('/dev/zero', entry)],
      ['a folder', () => mkdir(entry)],
    ] as const) {
      await rm(entry, { recursive: true, force: true });
      await make();
      const replaced = await requireInFreshProcess(cache, ['pkg-z']);
      assert.deepEqual(replaced.stats, counts({ missing: 1 }), replacement);
      assert.deepEqual(replaced.results, expected, replacement);
      // The folder stays (an entry is renamed into place, which a folder refuses); the link is replaced.
      if (replacement === 'a folder') continue;
      const next = await requireInFreshProcess(cache, ['pkg-z']);
      assert.deepEqual(next.stats, counts({ accepted: 1, direct: 1 }), `${replacement}: written again`);
    }
  });

  test('a file taken from its entry is read as Node reads it: non-ASCII text after a byte order mark, and ASCII', async () => {
    const cache = freshCache();
    const requires = ['pkg-e', 'pkg-a'];
    const off = await requireInFreshProcess(cache, requires, { CAMVIZ_CODE_CACHE: '0' });
    assert.equal((off.results['pkg-e'] as Record<string, unknown>)['lazyValue'], 'lazy dépendance ✓ 𝄞');
    assert.deepEqual((await requireInFreshProcess(cache, requires)).stats, counts({ missing: 2 }));
    for (let i = 0; i < 2; i++) {
      const run = await requireInFreshProcess(cache, requires);
      assert.deepEqual(run.stats, counts({ accepted: 2, direct: 2 }), 'both read straight from their files');
      assert.deepEqual(run.results, off.results);
      assert.equal(run.stderr, '');
    }
  });

  test("an entry whose source length is not the file's is not used: compiled afresh and written again", async () => {
    const cache = freshCache();
    const expected = (await requireInFreshProcess(cache, ['pkg-e'])).results;
    const [entry] = entriesOf(cache, packageE);
    assert.ok(entry !== undefined);
    await writeFile(entry, withStoredLength(await readFile(entry), (length) => length + 1));
    const wrong = await requireInFreshProcess(cache, ['pkg-e']);
    assert.deepEqual(wrong.stats, counts({ stale: 1 }));
    assert.deepEqual(wrong.results, expected);
    assert.deepEqual((await requireInFreshProcess(cache, ['pkg-e'])).stats, counts({ accepted: 1, direct: 1 }), 'written again');
  });

  test('a cache folder that cannot be made costs only the cache: exit 0, nothing on stderr', async () => {
    const cache = freshCache();
    await mkdir(cache, { recursive: true });
    // A file where the code cache's folder would be: every write fails (ENOTDIR), as root too.
    await writeFile(join(cache, 'v8'), 'in the way');
    for (let i = 0; i < 2; i++) {
      const run = await requireInFreshProcess(cache, ['pkg-a']);
      assert.deepEqual(run.stats, counts({ missing: 1 }));
      assert.equal(run.stderr, '');
    }
    const image = join(repoRoot, 'fixtures', 'shapes', 'circle-star.png');
    const args = ['predict', image, '--model', 'shapes', '--engine', 'tfjs'];
    const normal = await runCli(args, { cwd: workDir, env: cliEnv(freshCache()), timeoutMs: 120_000 });
    const blocked = await runCli(args, { cwd: workDir, env: cliEnv(cache), timeoutMs: 120_000 });
    assert.equal(blocked.code, 0);
    assert.equal(blocked.stderr, '');
    assert.equal(blocked.stdout, normal.stdout);
  });
});

describe('the command line with the code cache', () => {
  const image = join(repoRoot, 'fixtures', 'shapes', 'circle-star.png');
  const tfjsCore = realpathSync(createRequire(import.meta.url).resolve('@tensorflow/tfjs-core'));

  /** Every entry with its modification time: a rewritten entry gets a new one (or a new name). */
  async function entryTimes(cache: string): Promise<Map<string, number>> {
    const folder = withEnvSync('CAMVIZ_CACHE', cache, codeCacheFolder);
    const names = await listFiles(folder, { missingAsEmpty: true });
    return new Map(await Promise.all(names.map(async (name) => [name, (await stat(join(folder, name))).mtimeMs] as const)));
  }

  test('camviz predict on the embedded model prints the same with and without the cache; CAMVIZ_CODE_CACHE=0 writes nothing', async () => {
    const cache = freshCache();
    const predict = (extra: NodeJS.ProcessEnv = {}) => runCli(['predict', image, '--model', 'shapes'], { cwd: workDir, env: cliEnv(cache, extra), timeoutMs: 120_000 });
    const off = await predict({ CAMVIZ_CODE_CACHE: '0' });
    assert.equal(off.code, 0, off.stderr);
    assert.deepEqual(entriesOf(cache, tfjsCore), []);
    assert.equal((await listFiles(cache, { missingAsEmpty: true })).some((name) => name.startsWith('v8/')), false);
    const first = await predict();
    assert.equal(entriesOf(cache, tfjsCore).length, 1, 'tfjs-core has an entry');
    const written = await entryTimes(cache);
    const second = await predict();
    assert.deepEqual(await entryTimes(cache), written, 'the second run took every entry (a missing, rejected or stale one is written again)');
    for (const run of [first, second]) {
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stderr, '');
      assert.equal(run.stdout, off.stdout);
    }
  });
});
