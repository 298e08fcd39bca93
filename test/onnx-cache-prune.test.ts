/**
 * The ONNX cache (`<cache>/onnx/`) prunes itself when camviz writes to it:
 * files this build can never read again go (another writer version's
 * entries, saved sessions of the older names, a dead process's temporaries),
 * and this version's entries are bounded in size, least recently used first.
 * Fake entries (a few bytes under camviz's names) check what is removed and
 * what is left alone; the embedded `shapes` model checks that the cache
 * still works after pruning, in process and from the command line.
 */
import { FIRST_SESSIONS_NAME } from '../src/model/session-ahead.js';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { useBackend } from '../src/engine/backend.js';
import { loadOnnxRuntime, releaseOrtSessions, withSession } from '../src/engine/onnxruntime.js';
import { loadModel } from '../src/model/load.js';
import { onnxTrunkOfModel } from '../src/model/onnx-writer/index.js';
import { FILE_FINGERPRINTS_NAME } from '../src/model/file-fingerprints.js';
import { DEFAULT_ONNX_CACHE_MB, ONNX_CACHE_LIMIT_VARIABLE, RECENT_USE_MS, TEMPORARY_GRACE_MS, onnxCacheLimitBytes, pruneOnnxCache } from '../src/model/onnx-writer/prune.js';
import { WRITER_VERSION } from '../src/model/onnx-writer/write.js';
import { repoRoot } from './helpers/assets.js';
import { tinyClassifier } from './helpers/engine-models.js';
import { type CliRun, cliEnv, runCli } from './helpers/cli.js';
import { withEnv } from './helpers/env.js';
import { assertUsageError } from './helpers/usage-error.js';

let workDir: string;
before(async () => {
  await useBackend('wasm');
  workDir = await mkdtemp(join(tmpdir(), 'camviz-onnx-prune-'));
});
after(async () => {
  await rm(workDir, { recursive: true, force: true });
});

/** A written model's cache key: `<64 hex>-<H>x<W>`, the hex made from `seed`. */
function keyOf(seed: string, size = 8): string {
  return `${seed.repeat(64).slice(0, 64)}-${size}x${size}`;
}

/** A 32-hex saved-session hash made from `seed`. */
function hash32(seed: string): string {
  return seed.repeat(32).slice(0, 32);
}

/** A record as cache.ts writes them (writerVersion first). */
function record(version: number): string {
  return `${JSON.stringify({ writerVersion: version, sha256: '0'.repeat(64), table: {}, size: 4 })}\n`;
}

/** A written entry (`.onnx`, `.json`) and one saved session named after it, each file `bytes` long apart from the record. */
async function writeEntry(folder: string, key: string, version: number, bytes = 4): Promise<string[]> {
  const names = [`${key}.onnx`, `${key}.json`, `${key}.${hash32('e')}.ort`];
  await writeFile(join(folder, names[0]!), 'x'.repeat(bytes));
  await writeFile(join(folder, names[1]!), record(version));
  await writeFile(join(folder, names[2]!), 'x'.repeat(bytes));
  return names;
}

/** Sets the mtime of `names` in `folder` to `at` (ms since the epoch). */
async function setTime(folder: string, names: readonly string[], at: number): Promise<void> {
  for (const name of names) await utimes(join(folder, name), at / 1000, at / 1000);
}

/** A PID no process has: a child that has exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', '']);
  assert.equal(child.status, 0);
  return child.pid!;
}

async function freshFolder(name: string): Promise<string> {
  const folder = join(workDir, name);
  await mkdir(folder, { recursive: true });
  return folder;
}

/** Root may write into a read-only folder: the check then runs as nobody, through setpriv. */
const skipReadOnly: string | false = process.getuid?.() !== 0 || spawnSync('setpriv', ['--version']).status === 0 ? false : 'running as root without setpriv to drop to nobody';

/** Runs `run` with CAMVIZ_ONNX_CACHE_MB set to `value` (undefined: unset), then puts the caller's value back. */
function withLimitVariable<T>(value: string | undefined, run: () => T | Promise<T>): Promise<T> {
  return withEnv(ONNX_CACHE_LIMIT_VARIABLE, value, run);
}

const sorted = async (folder: string): Promise<string[]> => (await readdir(folder)).sort();
/** The folder's files but the index of fingerprints by file identity (cache.ts: not an entry, bounded by its own count, written only for settled model files). */
/** The cache's entries, without its two indexes (fingerprints by file identity, first sessions by model file). */
const entryFiles = async (folder: string): Promise<string[]> => (await sorted(folder)).filter((name) => name !== FILE_FINGERPRINTS_NAME && name !== FIRST_SESSIONS_NAME);

describe('what this build can never read again', () => {
  test('another writer version, the older saved-session names and dead runs\' temporaries are removed; all else is left', async () => {
    const folder = await freshFolder('obsolete');
    const outside = await freshFolder('outside');
    const now = Date.now();
    const old = now - 2 * TEMPORARY_GRACE_MS;

    const current = await writeEntry(folder, keyOf('a'), WRITER_VERSION);
    const otherVersion = await writeEntry(folder, keyOf('b'), WRITER_VERSION - 1);
    const newerVersion = await writeEntry(folder, keyOf('c'), WRITER_VERSION + 1);
    const onnxFileSession = `${'d'.repeat(64)}.${hash32('f')}.ort`;
    const oldNames = [`${hash32('1')}.ort`, `${hash32('2')}.ort.onnx`];
    const dead = deadPid();
    const deadTemporaries = [`.${keyOf('a')}.onnx.${dead}.${'ab'.repeat(6)}.tmp`, `.${hash32('3')}.ort.${dead}.${'cd'.repeat(6)}.tmp`];
    const kept = [
      `.${keyOf('a')}.json.${process.pid}.${'ef'.repeat(6)}.tmp`, // a live process's
      `.${keyOf('e')}.onnx.${dead}.${'12'.repeat(6)}.tmp`, // a dead process's, but fresh: maybe a PID from another namespace
      `.notes.txt.${dead}.${'34'.repeat(6)}.tmp`, // a dead process's temporary of a name not camviz's
      'notes.txt',
      `${hash32('4')}.ort.bak`,
      `${keyOf('f')}.onnx.orig`,
      `${keyOf('a')}.npy`,
    ];
    for (const name of [onnxFileSession, ...oldNames, ...deadTemporaries, ...kept]) await writeFile(join(folder, name), 'data');
    await setTime(folder, [...deadTemporaries, ...kept], old);
    await setTime(folder, [kept[1]!], now);
    // Links named as obsolete files, to files and a folder outside: neither the links nor what they point to are touched.
    const target = join(outside, 'target.onnx');
    await writeFile(target, 'outside');
    await writeFile(join(outside, 'other.json'), record(WRITER_VERSION - 1));
    const links = [`${hash32('5')}.ort`, `${keyOf('9')}.json`, `${keyOf('9')}.onnx`, `${hash32('6')}.ort.onnx`];
    await symlink(target, join(folder, links[0]!));
    await symlink(join(outside, 'other.json'), join(folder, links[1]!));
    await symlink(target, join(folder, links[2]!));
    await symlink(outside, join(folder, links[3]!));
    // A folder named as an obsolete file.
    await mkdir(join(folder, `${hash32('7')}.ort`));
    await writeFile(join(folder, `${hash32('7')}.ort`, 'inside'), 'x');

    const result = await pruneOnnxCache(folder, { limitBytes: 0, now });
    assert.deepEqual([...result.removed].sort(), [...otherVersion, ...newerVersion, ...oldNames, ...deadTemporaries].sort());
    assert.deepEqual(await sorted(folder), [...current, onnxFileSession, ...kept, ...links, `${hash32('7')}.ort`].sort());
    assert.equal(await readFile(target, 'utf8'), 'outside');
    assert.deepEqual(await sorted(outside), ['other.json', 'target.onnx']);
    assert.deepEqual(await readdir(join(folder, `${hash32('7')}.ort`)), ['inside']);
  });

  test('an entry whose record is missing or does not say its version is kept (being written, or damaged: cache.ts rewrites it)', async () => {
    const folder = await freshFolder('unknown-version');
    const names = [`${keyOf('a')}.onnx`, `${keyOf('b')}.onnx`, `${keyOf('b')}.json`, `${keyOf('b')}.${hash32('0')}.ort`, `${keyOf('c')}.${hash32('0')}.ort`];
    for (const name of names) await writeFile(join(folder, name), '{"sha256":"…", "writerVersion": 1}');
    const result = await pruneOnnxCache(folder, { limitBytes: 0 });
    assert.deepEqual(result.removed, []);
    assert.deepEqual(await sorted(folder), names.sort());
  });
});

describe('the size bound', () => {
  test('evicts whole entries, least recently used first, never the one kept nor one used in the last minute, until the rest fit', async () => {
    const folder = await freshFolder('bound');
    const now = Date.now();
    // Four entries of 100 + 100 bytes and a record each, used hours ago; the oldest first.
    const entries = [];
    for (const [i, seed] of ['1', '2', '3', '4'].entries()) {
      const names = await writeEntry(folder, keyOf(seed), WRITER_VERSION, 100);
      await setTime(folder, names, now - (10 - i) * 3_600_000);
      entries.push(names);
    }
    // The oldest-written entry was read since (its record touched, as a hit does): the most recently used.
    await setTime(folder, [entries[0]![1]!], now - 2 * RECENT_USE_MS);
    // Another run's entry, written just now: not evicted, though it is over the bound.
    const anotherRun = await writeEntry(folder, keyOf('5'), WRITER_VERSION, 1000);
    const sizeOf = async (names: readonly string[]): Promise<number> => {
      let total = 0;
      for (const name of names) total += (await stat(join(folder, name))).size;
      return total;
    };
    const entrySize = await sizeOf(entries[1]!);
    // Room for the other run's entry and two entries and a half: the two least recently used go (entries 2 and 3), except the one kept (3), so 2 and 4 go.
    const limitBytes = (await sizeOf(anotherRun)) + Math.floor(entrySize * 2.5);
    const result = await pruneOnnxCache(folder, { limitBytes, keep: [keyOf('3')] });
    assert.deepEqual([...result.removed].sort(), [...entries[1]!, ...entries[3]!].sort());
    assert.equal(result.removed[0], entries[1]![1], 'the record is removed first: a reader never trusts a record whose model is gone');
    assert.deepEqual(await sorted(folder), [...entries[0]!, ...entries[2]!, ...anotherRun].sort());
    assert.equal(result.freedBytes, 2 * entrySize);

    // 0: no bound.
    assert.deepEqual((await pruneOnnxCache(folder, { limitBytes: 0 })).removed, []);
    // A kept entry larger than the bound stays, alone.
    const alone = await pruneOnnxCache(folder, { limitBytes: 1, keep: [keyOf('3')] });
    assert.deepEqual([...alone.removed].sort(), [...entries[0]!].sort());
    assert.deepEqual(await sorted(folder), [...entries[2]!, ...anotherRun].sort());
  });

  test('CAMVIZ_ONNX_CACHE_MB sets it in MiB, 0 for none; a value that is not a size is a usage error', async () => {
    assert.equal(await withLimitVariable(undefined, onnxCacheLimitBytes), DEFAULT_ONNX_CACHE_MB * 2 ** 20);
    assert.equal(await withLimitVariable('0', onnxCacheLimitBytes), 0);
    assert.equal(await withLimitVariable('1.5', onnxCacheLimitBytes), 1.5 * 2 ** 20);
    for (const wrong of ['-1', 'ten', '1e3', '5 MB']) {
      await withLimitVariable(wrong, () =>
        assert.throws(onnxCacheLimitBytes, (error: Error & { exitCode?: number }) => {
          assert.equal(error.exitCode, 2);
          assert.match(error.message, /CAMVIZ_ONNX_CACHE_MB must be a size in MiB \(0: no bound\)/);
          return true;
        }),
      );
    }
  });
});

describe('pruning is best effort', () => {
  test('a folder that vanishes before or during the prune, or is a file, gives no error', async () => {
    assert.deepEqual((await pruneOnnxCache(join(workDir, 'never-made'), { limitBytes: 1 })).removed, []);
    const file = join(workDir, 'a-file');
    await writeFile(file, 'x');
    const messages: string[] = [];
    assert.deepEqual((await pruneOnnxCache(file, { limitBytes: 1, log: (message) => messages.push(message) })).removed, []);
    assert.match(messages.join('\n'), /cannot prune the ONNX cache: ENOTDIR/);
    // Removed after 0 to 40 turns of the event loop: before, during and after the prune's steps.
    for (const turns of [0, 1, 2, 5, 10, 20, 40]) {
      const folder = await freshFolder(`vanishing-${turns}`);
      const names: string[] = [];
      for (const seed of '0123456789') names.push(...(await writeEntry(folder, keyOf(seed), seed < '5' ? WRITER_VERSION - 1 : WRITER_VERSION)));
      const pruning = pruneOnnxCache(folder, { limitBytes: 1 });
      for (let i = 0; i < turns; i++) await new Promise(setImmediate);
      await rm(folder, { recursive: true, force: true });
      const result = await pruning;
      assert.ok(result.removed.every((name) => names.includes(name)));
    }
  });

  test('a read-only cache folder gives no error; the first file it cannot remove stops the pruning, said once', { skip: skipReadOnly }, async (t) => {
    // In a child process, as nobody (setpriv) when the tests run as root, who may write into a read-only folder;
    // its folder is beside the work folder, which only its owner may enter.
    const parent = await mkdtemp(join(tmpdir(), 'camviz-onnx-prune-read-only-'));
    t.after(() => rm(parent, { recursive: true, force: true }));
    await chmod(parent, 0o777);
    const pruneModule = pathToFileURL(join(repoRoot, 'dist', 'src', 'model', 'onnx-writer', 'prune.js')).href;
    const script = `
      import { mkdirSync, writeFileSync, chmodSync, readdirSync } from 'node:fs';
      import { pruneOnnxCache } from ${JSON.stringify(pruneModule)};
      const folder = ${JSON.stringify(join(parent, 'onnx'))};
      mkdirSync(folder);
      for (const name of ${JSON.stringify([`${keyOf('a')}.onnx`, `${hash32('1')}.ort`, `${hash32('2')}.ort.onnx`])}) writeFileSync(folder + '/' + name, 'xxxx');
      writeFileSync(folder + '/${keyOf('a')}.json', ${JSON.stringify(record(WRITER_VERSION - 1))});
      chmodSync(folder, 0o555);
      const messages = [];
      const result = await pruneOnnxCache(folder, { limitBytes: 1, log: (message) => messages.push(message) });
      chmodSync(folder, 0o755);
      console.log(JSON.stringify({ result, messages, left: readdirSync(folder).length }));`;
    const asRoot = process.getuid?.() === 0;
    const command = asRoot ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath] : [process.execPath];
    const child = spawnSync(command[0]!, [...command.slice(1), '--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(child.status, 0, child.stderr);
    const { result, messages, left } = JSON.parse(child.stdout) as { result: { removed: string[] }; messages: string[]; left: number };
    assert.deepEqual(result.removed, []);
    assert.equal(left, 4);
    assert.equal(messages.length, 1, messages.join('\n'));
    assert.match(messages[0]!, /^cannot prune the ONNX cache: EACCES \(/);
  });
});

const ortStatus = loadOnnxRuntime();
const skipWithoutOrt: string | false = ortStatus.available ? false : `onnxruntime-node does not load here: ${ortStatus.reason}`;

describe('the cache still works after pruning', () => {
  test('the shapes model written into a folder of stale files: they go, it stays, the next load is a hit', async () => {
    const folder = await freshFolder('shapes');
    const stale = [...(await writeEntry(folder, keyOf('b'), WRITER_VERSION - 1)), `${hash32('1')}.ort.onnx`];
    for (const name of stale.slice(3)) await writeFile(join(folder, name), 'old');
    // A current entry, older than any: the bound (set below the shapes model's size) evicts it, never the model just written.
    const older = await writeEntry(folder, keyOf('c'), WRITER_VERSION);
    await setTime(folder, older, Date.now() - 3_600_000);
    const model = await loadModel('shapes');
    try {
      await withLimitVariable('0.001', async () => {
        const first = await onnxTrunkOfModel(model, { cache: folder });
        assert.equal(first.origin, 'written');
        const files = await entryFiles(folder);
        assert.deepEqual(files, [`${first.cacheKey}.json`, `${first.cacheKey}.onnx`]);
        assert.ok((await stat(join(folder, files[1]!))).size > 1024, 'the written model is larger than the bound');
        const recordPath = join(folder, `${first.cacheKey}.json`);
        await utimes(recordPath, 1, 1);
        const second = await onnxTrunkOfModel(model, { cache: folder });
        assert.equal(second.origin, 'cache');
        assert.ok((await stat(recordPath)).mtimeMs > Date.now() - 60_000, 'a hit touches the record: the entry was used now');
        assert.ok(Buffer.from(second.withOutputs([])).equals(first.withOutputs([])));
      });
    } finally {
      model.dispose();
    }
  });

  test('a saved session written prunes the folder (keeping its model); one read is touched', { skip: skipWithoutOrt }, async () => {
    // The cache module listens to the engine's saved sessions once it is loaded (as engine choice loads it).
    await import('../src/model/onnx-writer/cache.js');
    assert.ok(ortStatus.available);
    const folder = await freshFolder('sessions');
    const now = Date.now();
    const stale = [...(await writeEntry(folder, keyOf('b'), WRITER_VERSION - 1)), `${hash32('1')}.ort`];
    await writeFile(join(folder, stale[3]!), 'old');
    // An ONNX file's key: its sha256, then the input size; the saved session is named after the sha256.
    const sha = 'c'.repeat(64);
    const use = async (): Promise<void> => {
      releaseOrtSessions();
      await withSession(ortStatus.module, `${sha}:16x16|logits`, () => tinyClassifier(), 1, async () => undefined, folder);
    };
    try {
      // 104 bytes: every entry but the session's own is over it.
      await withLimitVariable('0.0001', async () => {
        const older = await writeEntry(folder, keyOf('d'), WRITER_VERSION);
        await setTime(folder, older, now - 3_600_000);
        await use();
        const files = await sorted(folder);
        assert.equal(files.length, 1, files.join(', '));
        assert.match(files[0]!, new RegExp(`^${sha}\\.[0-9a-f]{32}\\.ort$`));
        await setTime(folder, files, now - 3_600_000);
        await use();
        assert.deepEqual(await sorted(folder), files);
        assert.ok((await stat(join(folder, files[0]!))).mtimeMs > now - 60_000, 'a saved session read is touched: used now');
      });
    } finally {
      releaseOrtSessions();
    }
  });

  test('a wrong CAMVIZ_ONNX_CACHE_MB is a usage error before any work, on either engine (tfjs never writes the cache)', async () => {
    const image = join(repoRoot, 'fixtures', 'shapes', 'circle-star.png');
    for (const engine of ['tfjs', 'auto']) {
      const env = cliEnv(join(workDir, 'wrong-limit-cache'), { CAMVIZ_ENGINE: engine, CAMVIZ_ONNX_CACHE_MB: 'ten' });
      const run = await runCli(['predict', image, '--model', 'shapes'], { cwd: workDir, env, timeoutMs: 240_000 });
      assertUsageError(run, /CAMVIZ_ONNX_CACHE_MB must be a size in MiB \(0: no bound\), not "ten"/);
    }
  });

  test('from the command line: the saved session is named after its model, stale files go, the second run reads the cache', { skip: skipWithoutOrt }, async () => {
    const cacheDir = join(workDir, 'cli-cache');
    const folder = join(cacheDir, 'onnx');
    await mkdir(folder, { recursive: true });
    const stale = [...(await writeEntry(folder, keyOf('b'), WRITER_VERSION - 1)), `${hash32('1')}.ort`, `${hash32('1')}.ort.onnx`];
    for (const name of stale.slice(3)) await writeFile(join(folder, name), 'old');
    const image = join(repoRoot, 'fixtures', 'shapes', 'circle-star.png');
    const camviz = (extra: NodeJS.ProcessEnv = {}): Promise<CliRun> => {
      const env = cliEnv(cacheDir, { CAMVIZ_ENGINE: 'onnxruntime', ...extra });
      for (const name of ['CAMVIZ_ORT_MODULE', 'CAMVIZ_ONNX_CACHE_MB']) if (!(name in extra)) delete env[name];
      return runCli(['predict', image, '--model', 'shapes', '--json'], { cwd: workDir, env, timeoutMs: 240_000 });
    };
    const first = await camviz();
    assert.equal(first.code, 0, first.stderr);
    const files = await entryFiles(folder);
    assert.equal(files.length, 3, files.join(', '));
    const record = files.find((name) => name.endsWith('.json'))!;
    const session = files.find((name) => name.endsWith('.ort'))!;
    const key = record.slice(0, -'.json'.length);
    const model = `${key}.onnx`;
    assert.match(key, /^[0-9a-f]{64}-\d+x\d+$/);
    assert.ok(files.includes(model));
    assert.match(session, new RegExp(`^${key}\\.[0-9a-f]{32}\\.ort$`));
    const written = await stat(join(folder, model));

    const second = await camviz();
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout, first.stdout);
    assert.deepEqual(await entryFiles(folder), files);
    assert.equal((await stat(join(folder, model))).mtimeMs, written.mtimeMs, 'read from the cache, not written again');

    const wrong = await camviz({ CAMVIZ_ONNX_CACHE_MB: 'lots' });
    assert.equal(wrong.code, 2, wrong.stderr);
    assert.match(wrong.stderr, /^camviz: CAMVIZ_ONNX_CACHE_MB must be a size in MiB \(0: no bound\), not "lots"/m);
  });
});
