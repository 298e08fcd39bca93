/**
 * Folder runs under hostile conditions (issue 10): --jobs far above the
 * machine, a full disk, two runs into one --out, --out equal to the input
 * folder, absolute input paths, a killed run's leftovers, SIGHUP. Mostly
 * through the command line (`node bin/camviz.js`), as CI runs it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, open, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { availableParallelism, hostname, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import sharp from 'sharp';

import { defaultJobs, effectiveJobs, modelWeightBytes, workerFootprint } from '../src/batch/jobs.js';
import { LOCK_NAME, acquireRunLock } from '../src/batch/lock.js';
import { withoutOutputs } from '../src/batch/inputs.js';
import { mergeRuns } from '../src/batch/merge.js';
import { CamvizError } from '../src/util/errors.js';
import { WriteError, writeFileAtomic } from '../src/util/atomic-file.js';
import { runBatch } from '../src/batch/runner.js';
import { camTaskOptions } from '../src/tasks/defaults.js';
import { haveSharedAssets, mobilenetDir, repoRoot } from './helpers/assets.js';
import { type CliRun, camvizBin, cliEnv, runCli } from './helpers/cli.js';
import { listFiles, noise, readManifest } from './helpers/files.js';

const shapesJson = join(repoRoot, 'models', 'shapes', 'model.json');
/** The embedded shapes model (small inputs, fast), else the shared MobileNet. */
const modelSpec = existsSync(shapesJson) ? 'shapes' : haveSharedAssets ? mobilenetDir : undefined;
const skipWithoutModel: string | false = modelSpec === undefined ? 'neither models/shapes/model.json nor the shared MobileNet is present' : false;
const modelArgs = (): string[] => ['--model', modelSpec ?? 'shapes', '--backend', 'wasm'];

const workDir = await mkdtemp(join(tmpdir(), 'camviz-hostile-test-'));
const env = cliEnv(join(workDir, 'cache'));

function camviz(args: string[], cwd = workDir): Promise<CliRun> {
  return runCli(args, { cwd, env, timeoutMs: 120_000 });
}

async function makeFolder(folder: string, names: readonly string[], width = 40, height = 30): Promise<string> {
  for (const [i, name] of names.entries()) {
    const path = join(folder, name);
    await mkdir(dirname(path), { recursive: true });
    const w = width + (i % 5);
    const h = height + (i % 3);
    await sharp(noise(w, h, i + 1), { raw: { width: w, height: h, channels: 3 } }).png().toFile(path);
  }
  return folder;
}

const treeNames = ['a/x.png', 'b/x.png', 'b/deep/y.png', 'c.png', 'd.png', 'e.png', 'f/g.png', 'h.png'];
const tree = join(workDir, 'tree');
/** Larger images with five maps each: a run lasts long enough for a second run or a signal to meet it. */
const thirty = join(workDir, 'thirty');

before(async () => {
  await makeFolder(tree, treeNames);
  await makeFolder(
    thirty,
    Array.from({ length: 30 }, (_, i) => `img${String(i).padStart(2, '0')}.png`),
    320,
    240,
  );
});

/** A PID that no process has (a child that has exited and been reaped). */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(child.stdout);
}

/** Starts a long folder run in the background; resolves with its outcome when it exits. */
function startRun(args: string[]): { child: ChildProcess; done: Promise<CliRun> } {
  const child = spawn(process.execPath, [camvizBin, ...args], { cwd: workDir, env: { ...env, CI: 'true' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += String(chunk)));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += String(chunk)));
  const done = new Promise<CliRun>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done };
}

/** Waits until `ready()` holds (polling), or fails after a minute. */
async function waitFor(what: string, ready: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await ready())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Whether `path` exists, a dangling link (the lock) included. */
const present = async (path: string): Promise<boolean> => (await lstat(path).catch(() => undefined)) !== undefined;

/** A path as camviz shows it from the work folder (its tests' working folder). */
const shown = (path: string): string => relative(workDir, path);

/** `text` matched literally in a RegExp. */
const literal = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const pngCount = async (folder: string): Promise<number> => (existsSync(folder) ? (await readdir(folder)).filter((name) => name.endsWith('.png')).length : 0);

// ------------------------------------------------------------------ --jobs

describe('--jobs is capped', () => {
  test('at the cores, and at the workers free memory holds (one worker at least)', () => {
    const mobilenetWeights = 2_600_000 * 4;
    const one = workerFootprint(mobilenetWeights);
    assert.deepEqual(effectiveJobs({ requested: 1000, cores: 2, freeBytes: 64 * 2 ** 30, weightBytes: mobilenetWeights }), { jobs: 2, cappedBy: 'cores' });
    assert.deepEqual(effectiveJobs({ requested: 1000, cores: 64, freeBytes: 3.5 * one, weightBytes: mobilenetWeights }), { jobs: 3, cappedBy: 'memory' });
    assert.deepEqual(effectiveJobs({ requested: 8, cores: 64, freeBytes: one / 2, weightBytes: mobilenetWeights }), { jobs: 1, cappedBy: 'memory' });
    assert.deepEqual(effectiveJobs({ requested: 2, cores: 2, freeBytes: 2 * one, weightBytes: mobilenetWeights }), { jobs: 2 });
    // Unknown weights (a URL model not yet downloaded): the cores alone decide.
    assert.deepEqual(effectiveJobs({ requested: 4, cores: 64, freeBytes: 0, weightBytes: undefined }), { jobs: 4 });
  });

  test('the default: one process where ONNX Runtime may run the model, a worker per core on tfjs', () => {
    const cores = availableParallelism();
    const withOrtModule = <T>(specifier: string | undefined, run: () => T): T => {
      const before = process.env['CAMVIZ_ORT_MODULE'];
      if (specifier === undefined) delete process.env['CAMVIZ_ORT_MODULE'];
      else process.env['CAMVIZ_ORT_MODULE'] = specifier;
      try {
        return run();
      } finally {
        if (before === undefined) delete process.env['CAMVIZ_ORT_MODULE'];
        else process.env['CAMVIZ_ORT_MODULE'] = before;
      }
    };
    const missing = 'camviz-no-such-onnxruntime-module';
    assert.equal(withOrtModule(missing, () => defaultJobs('onnxruntime', false)), 1, 'asked for: one process, whether or not it loads (the run then says why not)');
    assert.equal(defaultJobs('tfjs', false), cores);
    assert.equal(defaultJobs('onnxruntime', true), cores, 'work that needs tfjs (guided backprop) gets workers');
    assert.equal(withOrtModule(missing, () => defaultJobs('auto', false)), cores, 'auto without ONNX Runtime installed: tfjs, workers');
    // With onnxruntime-node installed (it is a dependency of this checkout, optional for users).
    const installed = withOrtModule(undefined, () => defaultJobs('auto', false));
    assert.equal(installed, existsSync(join(repoRoot, 'node_modules', 'onnxruntime-node', 'package.json')) ? 1 : cores);
  });

  test('an ONNX model counts its file size as its weights, given as the file or its folder', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'camviz-jobs-onnx-'));
    try {
      await writeFile(join(folder, 'model.onnx'), Buffer.alloc(12_345));
      assert.equal(await modelWeightBytes(join(folder, 'model.onnx')), 12_345);
      assert.equal(await modelWeightBytes(folder), 12_345);
      assert.equal(await modelWeightBytes(join(folder, 'absent.onnx')), undefined);
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });

  test('--jobs 1000: one line says so, and the run starts no more workers than cores', { skip: skipWithoutModel }, async () => {
    const cores = availableParallelism();
    const out = join(workDir, 'jobs-cli');
    const run = await camviz(['gradcam', tree, '--out', out, '--jobs', '1000', '--batch-size', '1', '--quiet', ...modelArgs()]);
    assert.equal(run.code, 0, run.stderr);
    const expected = Math.min(cores, treeNames.length);
    if (cores < treeNames.length) assert.match(run.stderr, new RegExp(`^camviz: --jobs 1000 capped at ${expected} \\((cores|memory)\\)$`, 'm'));
    assert.equal((await readManifest(out)).summary.ok, treeNames.length);

    const lines: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array) => lines.push(String(chunk)) > 0) as typeof process.stderr.write;
    let result: Awaited<ReturnType<typeof runBatch>>;
    try {
      const task = camTaskOptions(join(workDir, 'jobs-lib'), { model: { model: modelSpec ?? 'shapes', backend: 'wasm' }, batchSize: 1 });
      result = await runBatch({ task, inputs: [tree], jobs: 1000, manifest: true, quiet: true });
    } finally {
      process.stderr.write = write;
    }
    assert.equal(result.exitCode, 0, lines.join(''));
    assert.ok(result.jobs <= cores, `${result.jobs} workers on ${cores} cores`);
    assert.ok(result.jobs >= 1);
    if (cores < treeNames.length) assert.ok(lines.some((line) => new RegExp(`^camviz: --jobs 1000 capped at ${result.jobs} \\(`).test(line)), lines.join(''));
  });
});

// ------------------------------------------------------------------ a full disk

/** Mounts a tmpfs at `dir` (tests run as root); false where mounting is not allowed. */
function mountTmpfs(dir: string, options: string): boolean {
  return spawnSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir], { stdio: 'ignore' }).status === 0;
}

const small = join(workDir, 'small-disk');
await mkdir(small, { recursive: true });
const haveTmpfs = mountTmpfs(small, 'size=512k');
after(() => {
  if (haveTmpfs) spawnSync('umount', [small], { stdio: 'ignore' });
  return rm(workDir, { recursive: true, force: true });
});

/** Fills the file system holding `folder` up to the last byte. */
async function fillDisk(folder: string): Promise<void> {
  const block = Buffer.alloc(4096, 1);
  const handle = await open(join(folder, 'filler'), 'w');
  try {
    for (;;) await handle.write(block);
  } catch (error) {
    assert.equal((error as NodeJS.ErrnoException).code, 'ENOSPC');
  } finally {
    await handle.close().catch(() => undefined);
  }
}

test('a failed atomic write is a WriteError naming the file, keeping the code, leaving no temporary file', async () => {
  const folder = join(workDir, 'atomic');
  await mkdir(join(folder, 'in-the-way.json'), { recursive: true });
  const target = join(folder, 'in-the-way.json');
  await assert.rejects(writeFileAtomic(target, '{}'), (error: unknown) => {
    assert.ok(error instanceof WriteError);
    assert.equal(error.describe(), `cannot write: a folder is in the way (EISDIR) (${target})`);
    assert.equal(error.code, 'EISDIR');
    return true;
  });
  assert.deepEqual(await readdir(folder), ['in-the-way.json']);
});

describe('a full disk', { skip: skipWithoutModel }, () => {
  test('(tmpfs) every image names the output it could not write; the earlier manifest is removed, one line says so; summary; exit 1', { skip: !haveTmpfs && 'cannot mount a tmpfs here (needs root)' }, async () => {
    const out = join(small, 'out');
    const first = await camviz(['gradcam', tree, '--out', out, '--jobs', '1', '--quiet', ...modelArgs()]);
    assert.equal(first.code, 0, first.stderr);
    assert.ok(existsSync(join(out, 'manifest.json')));
    await fillDisk(small);

    const run = await camviz(['gradcam', tree, '--out', out, '--jobs', '1', ...modelArgs()]);
    assert.equal(run.code, 1, run.stderr);
    const failures = run.stderr.split('\n').filter((line) => line.includes('ENOSPC'));
    // One line per image, naming the output file (the manifest's line apart).
    const imageLines = failures.filter((line) => !line.includes('manifest.json'));
    assert.equal(imageLines.length, treeNames.length, run.stderr);
    for (const line of imageLines) assert.match(line, new RegExp(`^camviz: cannot write: no space left on device \\(ENOSPC\\) \\(${literal(out)}/.+\\.gradcam\\.\\d\\.png\\)$`));
    assert.match(run.stderr, new RegExp(`^camviz: manifest.json not written: no space left on device \\(ENOSPC\\); the earlier manifest.json was removed \\(${literal(shown(join(out, 'manifest.json')))}\\)$`, 'm'));
    assert.match(run.stderr, /^camviz: 8 of 8 images, 0 ok, 8 failed, in .*; manifest\.json not written\n$/m);
    assert.ok(!existsSync(join(out, 'manifest.json')), 'the earlier manifest would pass for this run');
    // No temporary file is left behind, nor the lock.
    assert.deepEqual((await listFiles(out)).filter((file) => file.split('/').pop()!.startsWith('.')), []);
  });

  test('a manifest that cannot be written (a folder in its way): one line naming it and the cause, the summary, exit 1', async () => {
    const out = join(workDir, 'manifest-blocked');
    await mkdir(join(out, 'manifest.json'), { recursive: true });
    const run = await camviz(['gradcam', tree, '--out', out, '--jobs', '1', ...modelArgs()]);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, new RegExp(`^camviz: manifest.json not written: a folder is in the way \\(EISDIR\\) \\(${literal(shown(join(out, 'manifest.json')))}\\)$`, 'm'));
    assert.match(run.stderr, /^camviz: 8 of 8 images, 8 ok, 0 failed, in .*; manifest\.json not written\n$/m);
  });

  test('an error camviz does not expect (a file where an output folder must go) is one line naming the input', async () => {
    const out = join(workDir, 'unexpected');
    await mkdir(out, { recursive: true });
    await writeFile(join(out, 'a'), 'not a folder');
    const run = await camviz(['gradcam', tree, '--out', out, '--jobs', '1', ...modelArgs()]);
    assert.equal(run.code, 1, run.stderr);
    const line = run.stderr.split('\n').find((text) => text.includes('EEXIST'));
    assert.ok(line !== undefined, run.stderr);
    assert.match(line, new RegExp(`^camviz: [^\\n]*\\(${literal(join(tree, 'a', 'x.png'))}\\)$`));
    const record = (await readManifest(out)).records.find((item) => item.relative === 'a/x.png')!;
    assert.equal(`camviz: ${record.error}`, line);
  });
});

// ------------------------------------------------------------------ two runs, one folder

describe('one run at a time in an output folder', { skip: skipWithoutModel }, () => {
  test('a second run into the same --out is refused, naming the PID and host; the first keeps every record', async () => {
    const out = join(workDir, 'shared-out');
    const args = ['gradcam', thirty, '--out', out, '--top-k', '5', '--batch-size', '2', '--jobs', '1', ...modelArgs()];
    const first = startRun(args);
    await waitFor('the first run to take the lock', async () => (await present(join(out, LOCK_NAME))) || first.child.exitCode !== null);
    const second = await camviz(args);
    const firstRun = await first.done;
    assert.equal(second.code, 1, second.stderr);
    assert.match(second.stderr, new RegExp(`^camviz: another camviz run \\(PID ${first.child.pid} on ${hostname()}\\) is writing into this folder`));
    assert.equal(second.stderr.trim().split('\n').length, 1, second.stderr);
    assert.equal(firstRun.code, 0, firstRun.stderr);
    const manifest = await readManifest(out);
    assert.deepEqual(manifest.summary, { inputs: 30, ok: 30, error: 0 });
    assert.ok(!(await present(join(out, LOCK_NAME))), 'the lock is released');
  });

  test('a stale lock (its PID is gone) is taken over with a note; stale temporary files go, a live process\'s stay', async () => {
    const out = join(workDir, 'stale-out');
    await mkdir(join(out, 'b'), { recursive: true });
    const dead = deadPid();
    await symlink(`${dead}@${hostname()}#00000000`, join(out, LOCK_NAME));
    const staleTemp = join(out, 'b', `.x.gradcam.1.png.${dead}.0123456789ab.tmp`);
    const liveTemp = join(out, `.c.gradcam.1.png.${process.pid}.0123456789ab.tmp`);
    await writeFile(staleTemp, 'half a png');
    await writeFile(liveTemp, 'being written');
    const run = await camviz(['gradcam', tree, '--out', out, '--jobs', '1', ...modelArgs()]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, new RegExp(`^camviz: taking over the lock of PID ${dead}, which is no longer running \\(${literal(join(out, LOCK_NAME))}\\)$`, 'm'));
    assert.ok(!existsSync(staleTemp), 'a killed run\'s temporary file is removed');
    assert.ok(existsSync(liveTemp), 'a live process\'s temporary file is left alone');
    assert.ok(!(await present(join(out, LOCK_NAME))));
    assert.equal((await readManifest(out)).summary.ok, treeNames.length);
  });

  test('the lock is a link naming this run while it runs', async () => {
    const out = join(workDir, 'lock-content');
    const run = startRun(['gradcam', thirty, '--out', out, '--top-k', '5', '--jobs', '1', ...modelArgs()]);
    await waitFor('the lock', async () => (await present(join(out, LOCK_NAME))) || run.child.exitCode !== null);
    const info = await lstat(join(out, LOCK_NAME)).catch(() => undefined);
    const target = info?.isSymbolicLink() ? await readlink(join(out, LOCK_NAME)) : undefined;
    run.child.kill('SIGTERM');
    await run.done;
    // And, where /proc says, the process's start (clock ticks after boot): a later process with the same PID is not this run.
    assert.match(target ?? '', new RegExp(`^${run.child.pid}@${hostname()}#[0-9a-f]+${process.platform === 'linux' ? '\\+\\d+' : ''}$`));
  });
});

describe('the lock, in this process', () => {
  test('held by a live process (this one): refused; released: taken again; another host\'s: refused; unreadable: taken over with a note', async () => {
    const out = join(workDir, 'lock-unit');
    await mkdir(out, { recursive: true });
    const notes: string[] = [];
    const lock = await acquireRunLock(out, (note) => notes.push(note));
    await assert.rejects(acquireRunLock(out, () => undefined), (error: unknown) => error instanceof CamvizError && error.message.includes(`PID ${process.pid} on ${hostname()}`));
    await lock.release();
    assert.ok(!(await present(join(out, LOCK_NAME))));
    await (await acquireRunLock(out, () => undefined)).release();

    // A run on another machine sharing the folder: its life cannot be checked here, so it is not taken over.
    await symlink(`1@elsewhere.example#00`, join(out, LOCK_NAME));
    await assert.rejects(acquireRunLock(out, () => undefined), (error: unknown) => error instanceof CamvizError && /PID 1 on elsewhere\.example/.test(error.message));
    await rm(join(out, LOCK_NAME));

    await symlink('garbage', join(out, LOCK_NAME));
    const taken = await acquireRunLock(out, (note) => notes.push(note));
    assert.deepEqual(notes, [`removed an unreadable ${LOCK_NAME} (${join(out, LOCK_NAME)})`]);
    await taken.release();
  });
});

describe('the lock of a dead run whose PID is alive again (PIDs are reused)', () => {
  test("a lock naming this process's PID with a token it does not hold is taken over; one this process holds is not", async () => {
    const out = join(workDir, 'lock-own-pid');
    await mkdir(out, { recursive: true });
    await symlink(`${process.pid}@${hostname()}#deadbeef`, join(out, LOCK_NAME));
    const notes: string[] = [];
    const lock = await acquireRunLock(out, (note) => notes.push(note));
    assert.deepEqual(notes, [`taking over the lock of PID ${process.pid}, which is no longer running (${join(out, LOCK_NAME)})`]);
    // The same process's second run into the folder (the library's) is still refused.
    await assert.rejects(acquireRunLock(out, () => undefined), (error: unknown) => error instanceof CamvizError && error.message.includes(`PID ${process.pid} on ${hostname()}`));
    await lock.release();
  });

  test("a lock naming a live process whose start is not the one it recorded is taken over; its own start, or none recorded, is not", { skip: process.platform !== 'linux' ? 'process start times from /proc' : false }, async () => {
    const out = join(workDir, 'lock-reused-pid');
    await mkdir(out, { recursive: true });
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    try {
      const path = join(out, LOCK_NAME);
      const stat = await readFile(`/proc/${other.pid}/stat`, 'utf8');
      const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
      for (const recorded of [`+${start}`, '']) {
        await symlink(`${other.pid}@${hostname()}#00${recorded}`, path);
        await assert.rejects(acquireRunLock(out, () => undefined), (error: unknown) => error instanceof CamvizError && error.message.includes(`PID ${other.pid}`), `recorded '${recorded}'`);
        await rm(path);
      }
      // Another start: the PID's earlier process, whose run is gone.
      await symlink(`${other.pid}@${hostname()}#00+${Number(start) - 1}`, path);
      const notes: string[] = [];
      const lock = await acquireRunLock(out, (note) => notes.push(note));
      assert.deepEqual(notes, [`taking over the lock of PID ${other.pid}, which is no longer running (${path})`]);
      await lock.release();
    } finally {
      other.kill();
    }
  });
});

describe('merge', { skip: skipWithoutModel }, () => {
  test('removes temporary files a killed merge left in --out (a dead PID), not a live process\'s', async () => {
    const shards = ['1/2', '2/2'].map((shard, i) => ({ shard, out: join(workDir, `merge-shard-${i + 1}`) }));
    for (const { shard, out } of shards) {
      const run = await camviz(['gradcam', tree, '--out', out, '--shard', shard, '--jobs', '1', '--quiet', ...modelArgs()]);
      assert.equal(run.code, 0, run.stderr);
    }
    const merged = join(workDir, 'merged');
    await mkdir(join(merged, 'b'), { recursive: true });
    const staleTemp = join(merged, 'b', `.x.gradcam.3.png.${deadPid()}.0123456789ab.tmp`);
    const liveTemp = join(merged, `.c.gradcam.3.png.${process.pid}.0123456789ab.tmp`);
    await writeFile(staleTemp, 'half a png');
    await writeFile(liveTemp, 'being written');
    const result = await mergeRuns(shards.map(({ out }) => out), merged);
    assert.equal(result.manifest.summary.ok, treeNames.length);
    assert.ok(!existsSync(staleTemp));
    assert.ok(existsSync(liveTemp));
  });
});

// ------------------------------------------------------------------ --out is the input folder

describe('--out equal to the input folder', { skip: skipWithoutModel }, () => {
  test('works in place; outputs (maps, grids, report thumbnails) are never read back as inputs', async () => {
    const names = Array.from({ length: 12 }, (_, i) => `p${String(i).padStart(2, '0')}.png`).concat(['sub/q.v2.png']);
    const folder = await makeFolder(join(workDir, 'in-place'), names);
    const runs = [
      ['gradcam', folder, '--out', folder, '--report'],
      ['fmap', folder, '--out', folder, '--layer', modelSpec === 'shapes' ? 'conv2' : 'conv_pw_13_relu'],
      ['gradcam', folder, '--out', folder, '--top-k', '2', '--skip-existing'],
    ];
    for (const args of runs) {
      const run = await camviz([...args, '--jobs', '1', '--quiet', ...modelArgs()]);
      assert.equal(run.code, 0, `${args.join(' ')}: ${run.stderr}`);
      const manifest = await readManifest(folder);
      assert.deepEqual(manifest.records.map((record) => record.relative), [...names].sort(), args.join(' '));
    }
    assert.ok((await listFiles(folder)).some((file) => file.startsWith('_report/thumbs/')), 'the report made thumbnails');
  });

  test('several inputs under --out: each input folder inside it is read without the outputs', async () => {
    const parent = join(workDir, 'parent');
    await makeFolder(join(parent, 'one'), ['a.png', 'b.png']);
    await makeFolder(join(parent, 'two'), ['c.png']);
    for (let round = 0; round < 2; round++) {
      const run = await camviz(['gradcam', join(parent, 'one'), join(parent, 'two'), '--out', parent, '--jobs', '1', '--quiet', ...modelArgs()]);
      assert.equal(run.code, 0, run.stderr);
      assert.deepEqual((await readManifest(parent)).records.map((record) => record.relative), ['one/a.png', 'one/b.png', 'two/c.png']);
    }
  });
});

test('outputs beside their images are told from images: <stem>.<what>.<class|fmap>.png of an image <stem>.<ext> in the same folder', () => {
  const files = ['/d/a.png', '/d/a.gradcam.3.png', '/d/a.conv2.fmap.png', '/d/q.v2.jpg', '/d/q.v2.gradcam++.0.png', '/d/x.y.1.png', '/d/e/a.gradcam.1.png', '/d.z/b.png', '/d.z/b.1.png'];
  assert.deepEqual(withoutOutputs(files), ['/d/a.png', '/d/q.v2.jpg', '/d/x.y.1.png', '/d/e/a.gradcam.1.png', '/d.z/b.png', '/d.z/b.1.png']);
});

// ------------------------------------------------------------------ inputs as given

describe('inputs are shown as the user gave them', { skip: skipWithoutModel }, () => {
  test('an absolute path stays absolute from a deep working folder: predict\'s listing, messages, the manifest', async () => {
    const deep = join(workDir, 'deep', 'er', 'still');
    await mkdir(deep, { recursive: true });
    const good = join(tree, 'c.png');
    const bad = join(workDir, 'broken.png');
    await writeFile(bad, 'not an image');
    const out = join(workDir, 'absolute-out');
    const run = await camviz(['predict', good, bad, '--top', '1', '--out', out, ...modelArgs()], deep);
    assert.equal(run.code, 1, run.stderr);
    assert.equal(run.stdout.split('\n')[0], good);
    assert.match(run.stderr, new RegExp(`^camviz: .*\\(${literal(bad)}\\)$`, 'm'));
    assert.ok(!run.stdout.includes('..') && !run.stderr.includes('..'), run.stdout + run.stderr);
    const manifest = await readManifest(out);
    assert.deepEqual(manifest.records.map((record) => record.input).sort(), [bad, good].sort());
  });
});

// ------------------------------------------------------------------ smaller ones

describe('resuming and signals', { skip: skipWithoutModel }, () => {
  test('--skip-existing without a manifest says that every input is processed', async () => {
    const out = join(workDir, 'skip-none');
    const run = await camviz(['gradcam', tree, '--out', out, '--skip-existing', '--jobs', '1', '--quiet', ...modelArgs()]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr, `camviz: --skip-existing: no manifest.json in ${shown(out)}; processing every input\n`);
  });

  test('SIGHUP stops like SIGTERM: the images in progress finish, the manifest is written, exit 129', async () => {
    const out = join(workDir, 'hangup');
    const run = startRun(['gradcam', thirty, '--out', out, '--top-k', '5', '--batch-size', '2', '--jobs', '2', ...modelArgs()]);
    await waitFor('the first maps', async () => (await pngCount(out)) > 0 || run.child.exitCode !== null);
    run.child.kill('SIGHUP');
    const result = await run.done;
    assert.equal(result.code, 129, result.stderr);
    assert.match(result.stderr, /camviz: SIGHUP: finishing the images in progress/);
    assert.match(result.stderr, /; stopped by SIGHUP\n$/);
    const manifest = await readManifest(out);
    assert.equal(manifest.interrupted, true);
    assert.ok(manifest.records.length > 0 && manifest.records.length < 30, `${manifest.records.length} of 30`);
    assert.deepEqual(await listFiles(out), ['manifest.json', ...manifest.records.flatMap((record) => record.outputs)].sort());
  });
});
