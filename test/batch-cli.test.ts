/**
 * Folder runs through the command line, as CI uses them: `node bin/camviz.js`
 * in a child process. Progress output, --json against manifest.json, exit
 * codes, --shard auto, signals (SIGINT/SIGTERM) with resuming, and
 * byte-identical outputs across runs and --jobs values.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import sharp from 'sharp';

import type { Manifest } from '../src/batch/manifest.js';
import type { InputRecord } from '../src/tasks/types.js';
import { loadOnnxRuntime } from '../src/engine/onnxruntime.js';
import { asset, haveSharedAssets, mobilenetDir, repoRoot } from './helpers/assets.js';
import { type CliRun, camvizBin, cliEnv, runCli } from './helpers/cli.js';
import { listFiles, noise, readManifest } from './helpers/files.js';

const shapesJson = join(repoRoot, 'models', 'shapes', 'model.json');
/** The embedded shapes model (small inputs, fast), else the shared MobileNet. */
const modelSpec = existsSync(shapesJson) ? 'shapes' : haveSharedAssets ? mobilenetDir : undefined;
const skipWithoutModel: string | false = modelSpec === undefined ? 'neither models/shapes/model.json nor the shared MobileNet is present' : false;
const fmapLayer = modelSpec === 'shapes' ? 'conv2' : 'conv_pw_13_relu';
/** A model whose ONNX Runtime passes are long (random weights, 1000 classes): for the second SIGINT inside a pass. */
const resnetOnnx = asset('onnx', 'resnet18.onnx');
const ortStatus = loadOnnxRuntime();
const skipWithoutOrtResnet: string | false = !ortStatus.available
  ? `onnxruntime-node does not load here: ${ortStatus.reason}`
  : existsSync(resnetOnnx)
    ? false
    : `the shared ONNX ResNet-18 is absent (${resnetOnnx})`;

const workDir = await mkdtemp(join(tmpdir(), 'camviz-batch-cli-test-'));
after(() => rm(workDir, { recursive: true, force: true }));

// ------------------------------------------------------------------ helpers

/** No CI variables unless a test sets them in `extra`. */
const cleanEnv = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => cliEnv(join(workDir, 'cache'), extra);

const modelArgs = (): string[] => ['--model', modelSpec ?? 'shapes', '--backend', 'wasm'];

/** The CLI from the work folder; the model is in each call's arguments (`modelArgs()`). */
function camviz(args: string[], env: NodeJS.ProcessEnv = cleanEnv()): Promise<CliRun> {
  return runCli(args, { cwd: workDir, env, timeoutMs: 120_000 });
}

async function makeFolder(folder: string, names: readonly string[], width = 40, height = 30): Promise<string> {
  for (const [i, name] of names.entries()) {
    const path = join(folder, name);
    await mkdir(dirname(path), { recursive: true });
    const image = sharp(noise(width + (i % 5), height + (i % 3), i + 1), { raw: { width: width + (i % 5), height: height + (i % 3), channels: 3 } });
    await (name.endsWith('.jpg') ? image.jpeg({ quality: 90 }) : image.png()).toFile(path);
  }
  return folder;
}

/** The manifest without what may differ between equal runs: clock times and timings. */
function comparable(manifest: Manifest): unknown {
  const { startedAt: _startedAt, finishedAt: _finishedAt, engine, ...rest } = manifest;
  // ONNX Runtime's intra-op threads follow --jobs (one a worker, the cores for one job): the run, not its results.
  const { threads: _threads, ...engineChoice } = engine ?? {};
  return { ...rest, engine: engineChoice, records: manifest.records.map(({ timings: _timings, ...record }) => record) };
}

const ESCAPE = '\u001b';

// ------------------------------------------------------------------ fixtures

const tree = join(workDir, 'tree');
const treeNames = ['a/x.png', 'b/x.png', 'b/deep/y.jpg', 'c.png', 'd.jpg', 'e.png', 'f/g.png', 'h.png'];
const thirty = join(workDir, 'thirty');

before(async () => {
  await makeFolder(tree, treeNames);
  // Larger images with five maps each: a run lasts long enough to be interrupted.
  await makeFolder(
    thirty,
    Array.from({ length: 30 }, (_, i) => `img${String(i).padStart(2, '0')}.png`),
    320,
    240,
  );
});

// ------------------------------------------------------------------ progress and output

describe('folder runs from the command line', { skip: skipWithoutModel }, () => {
  test('CI=true: plain progress lines, no escape codes, a summary line; outputs mirror the tree', async () => {
    const out = join(workDir, 'out-ci');
    const started = performance.now();
    const run = await camviz(['gradcam', tree, '--out', out, '--jobs', '1', ...modelArgs()], cleanEnv({ CI: 'true' }));
    const seconds = (performance.now() - started) / 1000;
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, '');
    assert.ok(!run.stderr.includes(ESCAPE));
    const lines = run.stderr.trimEnd().split('\n');
    assert.equal(lines[0], 'camviz: 8 images to process');
    assert.match(lines.at(-1)!, /^camviz: 8 of 8 images, 8 ok, 0 failed, in \S+ \([\d.?]+\/s\); .*out-ci\/manifest\.json$/);
    // In between, only progress lines, at most one per 5 s.
    for (const line of lines.slice(1, -1)) assert.match(line, /^camviz: \d+\/8 images, /);
    assert.ok(lines.length - 2 <= Math.ceil(seconds / 5), `${lines.length - 2} progress lines in ${seconds.toFixed(1)} s`);

    const manifest = await readManifest(out);
    assert.deepEqual(manifest.records.map((record) => record.relative), [...treeNames].sort());
    const expected = manifest.records.map((record) => `${record.relative.replace(/\.[^.]+$/, '')}.gradcam.${record.predictions![0]!.index}.png`);
    assert.deepEqual(manifest.records.map((record) => record.outputs[0]), expected);
    assert.deepEqual(await listFiles(out), ['manifest.json', ...expected].sort());
  });

  test('stderr not a terminal (CI unset): plain lines too; --quiet prints nothing', async () => {
    const out = join(workDir, 'out-pipe');
    const run = await camviz(['gradcam', tree, '--out', out, '--jobs', '1', ...modelArgs()]);
    assert.equal(run.code, 0, run.stderr);
    assert.ok(!run.stderr.includes(ESCAPE));
    assert.match(run.stderr, /^camviz: 8 images to process\n/);
    assert.match(run.stderr, /\ncamviz: 8 of 8 images, 8 ok, 0 failed, .*\n$/);
    const quiet = await camviz(['gradcam', tree, '--out', join(workDir, 'out-quiet'), '--jobs', '1', '--quiet', ...modelArgs()]);
    assert.equal(quiet.code, 0);
    assert.equal(quiet.stderr, '');
    assert.equal(quiet.stdout, '');
  });

  test('cam --json prints the manifest\'s results, with paths under --out as given', async () => {
    const run = await camviz(['cam', tree, '--out', 'out-json', '--top-k', '2', '--jobs', '1', '--json', '--quiet', ...modelArgs()]);
    assert.equal(run.code, 0, run.stderr);
    const printed = JSON.parse(run.stdout) as Record<string, unknown>[];
    const manifest = await readManifest(join(workDir, 'out-json'));
    const expected = manifest.records.flatMap((record) => (record.results ?? []).map((result) => ({ ...result, png: join('out-json', (result as { png: string }).png) })));
    assert.equal(printed.length, 16);
    assert.deepEqual(printed, expected);
  });

  test('fmap --json prints the manifest\'s results too', async () => {
    const run = await camviz(['fmap', tree, '--out', 'out-fmap', '--layer', fmapLayer, '--jobs', '1', '--json', '--quiet', ...modelArgs()]);
    assert.equal(run.code, 0, run.stderr);
    const printed = JSON.parse(run.stdout) as Record<string, unknown>[];
    const manifest = await readManifest(join(workDir, 'out-fmap'));
    const expected = manifest.records.flatMap((record) =>
      (record.results ?? []).map((result) => {
        const { png, json } = result as { png: string; json: string };
        return { ...result, png: join('out-fmap', png), json: join('out-fmap', json) };
      }),
    );
    assert.equal(printed.length, 8);
    assert.deepEqual(printed, expected);
  });

  test('several paths: folders keep their name, equal file names in different folders do not collide', async () => {
    const out = join(workDir, 'out-several');
    const run = await camviz(['gradcam', join(tree, 'a'), join(tree, 'b'), join(tree, 'c.png'), '--out', out, '--jobs', '1', '--quiet', ...modelArgs()]);
    assert.equal(run.code, 0, run.stderr);
    const manifest = await readManifest(out);
    assert.deepEqual(manifest.records.map((record) => record.relative), ['a/x.png', 'b/deep/y.jpg', 'b/x.png', 'c.png']);
    const files = await listFiles(out);
    assert.equal(files.filter((file) => file.endsWith('.png')).length, 4);
    assert.ok(files.some((file) => file.startsWith('a/x.gradcam.')) && files.some((file) => file.startsWith('b/x.gradcam.')));
  });

  test('--glob filters the folder; predict --json lists each input with predictions or its error', async () => {
    const missing = join(workDir, 'missing.png');
    const run = await camviz(['predict', tree, missing, '--glob', '**/*.jpg', '--top', '2', '--jobs', '1', '--json', '--quiet', ...modelArgs()]);
    assert.equal(run.code, 1);
    const printed = JSON.parse(run.stdout) as { input: string; predictions?: unknown[]; error?: string }[];
    assert.deepEqual(printed.map((entry) => entry.input), [missing, join(tree, 'b/deep/y.jpg'), join(tree, 'd.jpg')]);
    assert.equal(printed[0]!.error, `file not found (${missing})`);
    assert.equal(printed[1]!.predictions?.length, 2);
    assert.equal(run.stderr, `camviz: file not found (${missing})\n`);
  });

  test('exit codes: 1 when any input failed (the rest finished), 2 for usage errors (nothing written)', async () => {
    const out = join(workDir, 'out-mixed');
    const missing = join(workDir, 'nope.png');
    const run = await camviz(['gradcam', tree, missing, '--out', out, '--jobs', '1', '--quiet', ...modelArgs()]);
    assert.equal(run.code, 1);
    assert.equal(run.stderr, `camviz: file not found (${missing})\n`);
    const manifest = await readManifest(out);
    assert.deepEqual(manifest.summary, { inputs: 9, ok: 8, error: 1 });

    for (const args of [['--shard', '3/2'], ['--shard', 'auto'], ['--png-compression', '10']]) {
      const usage = await camviz(['gradcam', tree, '--out', join(workDir, 'out-usage'), ...args, ...modelArgs()]);
      assert.equal(usage.code, 2, args.join(' '));
      assert.equal(usage.stderr.split('\n').filter((line) => line !== '').length, 1, usage.stderr);
      assert.match(usage.stderr, /^camviz: /);
      assert.ok(!existsSync(join(workDir, 'out-usage')), 'nothing written');
    }
  });

  test('--verbose adds the stack of a failed image (from a worker thread too); without it, one line', async () => {
    const folder = await makeFolder(join(workDir, 'verbose'), ['a.png']);
    await writeFile(join(folder, 'b.png'), '');
    for (const verbose of [true, false]) {
      const run = await camviz(['gradcam', folder, '--out', join(workDir, `out-verbose-${verbose}`), '--jobs', '2', '--quiet', ...(verbose ? ['--verbose'] : []), ...modelArgs()]);
      assert.equal(run.code, 1, run.stderr);
      const lines = run.stderr.split('\n').filter((line) => line !== '');
      assert.equal(lines[0], `camviz: empty file (0 bytes) (${join(folder, 'b.png')})`);
      // The CLI runs from its bundle (scripts/bundle-cli.ts); a worker thread from the modules.
      if (verbose) assert.ok(lines.some((line) => /^\s+at .*(image\.js|camviz\.cjs)/.test(line)), run.stderr);
      else assert.equal(lines.length, 1, run.stderr);
    }
  });

  test('predict --out keeps a manifest whose records carry what --json prints', async () => {
    const out = join(workDir, 'out-predict');
    const run = await camviz(['predict', tree, '--out', out, '--json', '--jobs', '1', '--quiet', '--top', '2', ...modelArgs()]);
    assert.equal(run.code, 0, run.stderr);
    const printed = JSON.parse(run.stdout) as { input: string; predictions: unknown[] }[];
    const manifest = await readManifest(out);
    assert.equal(manifest.command, 'predict');
    assert.deepEqual(manifest.records.map((record) => ({ input: record.input, predictions: record.predictions })), printed);
    assert.equal(printed.length, treeNames.length);
    assert.deepEqual(await listFiles(out), ['manifest.json']);
  });

  test('--fail-fast with the default workers and batches: the batches not yet computing are dropped, exit 1', async () => {
    const folder = await makeFolder(join(workDir, 'failfast'), Array.from({ length: 24 }, (_, i) => `img-${String(i).padStart(2, '0')}.png`));
    await writeFile(join(folder, '000-empty.png'), '');
    // predict too: its dropped batches once made records of nothing ("Cannot read properties of undefined").
    for (const command of ['gradcam', 'predict']) {
      const out = join(workDir, `out-failfast-${command}`);
      const run = await camviz([command, folder, '--out', out, '--fail-fast', '--jobs', '2', '--quiet', ...modelArgs()]);
      assert.equal(run.code, 1, run.stderr);
      assert.equal(run.stderr.split('\n').filter((line) => line !== '').length, 1, run.stderr);
      const manifest = await readManifest(out);
      assert.equal(manifest.interrupted, true);
      assert.equal(manifest.records.find((record) => record.status === 'error')?.relative, '000-empty.png');
      // Each worker holds three batches of four; at most the other worker's batch under way finishes.
      assert.ok(manifest.records.length <= 1 + 2 * 4, `${command}: ${manifest.records.length} of 25 inputs processed`);
    }
  });

  test('a TensorBoard log folder that cannot be made: one line, exit 1, and the worker threads stop (the process exits)', async () => {
    const blocker = join(workDir, 'not-a-folder');
    await writeFile(blocker, 'a file where a folder should be');
    const run = await camviz(['fmap', tree, '--layer', fmapLayer, '--out', join(workDir, 'out-tb-fail'), '--tensorboard', join(blocker, 'logs'), '--jobs', '2', '--quiet', ...modelArgs()]);
    // A hung process is killed by the timeout and has no exit code.
    assert.equal(run.code, 1, run.stderr);
    assert.equal(run.stderr.split('\n').filter((line) => line !== '').length, 1, run.stderr);
    assert.match(run.stderr, /^camviz: TensorBoard log folder is not writable \(ENOTDIR\) \(.*not-a-folder/);
  });

  test('a run that fails before writing anything leaves no output folder it made; one that was there stays', async () => {
    const parent = join(workDir, 'out-made');
    const out = join(parent, 'deeper', 'out');
    const unknownLayer = await camviz(['gradcam', tree, '--out', out, '--layer', 'no_such_layer', '--jobs', '1', '--quiet', ...modelArgs()]);
    assert.equal(unknownLayer.code, 2, unknownLayer.stderr);
    assert.equal(existsSync(parent), false, 'the folders the run made are gone');
    await mkdir(out, { recursive: true });
    const again = await camviz(['gradcam', tree, '--out', out, '--layer', 'no_such_layer', '--jobs', '1', '--quiet', ...modelArgs()]);
    assert.equal(again.code, 2, again.stderr);
    assert.deepEqual(await readdir(out), [], 'the folder that was there stays, empty');
  });

  test('--shard auto: GitLab\'s CI_NODE_INDEX/CI_NODE_TOTAL split a folder exactly once', async () => {
    const seen: string[] = [];
    for (const index of [1, 2]) {
      const out = join(workDir, `out-shard-${index}`);
      const run = await camviz(['gradcam', tree, '--out', out, '--shard', 'auto', '--jobs', '1', '--quiet', ...modelArgs()], cleanEnv({ CI: 'true', CI_NODE_INDEX: String(index), CI_NODE_TOTAL: '2' }));
      assert.equal(run.code, 0, run.stderr);
      const manifest = await readManifest(out);
      assert.deepEqual(manifest.shard, [{ index, count: 2 }]);
      const expected = [...treeNames].sort().filter((_, position) => position % 2 === index - 1);
      assert.deepEqual(manifest.records.map((record) => record.relative), expected);
      seen.push(...expected);
    }
    assert.deepEqual(seen.sort(), [...treeNames].sort());
    // Kubernetes gives a 0-based index only: --shard-count completes it.
    const k8s = await camviz(['gradcam', tree, '--out', join(workDir, 'out-k8s'), '--shard', 'auto', '--shard-count', '4', '--jobs', '1', '--quiet', ...modelArgs()], cleanEnv({ JOB_COMPLETION_INDEX: '0' }));
    assert.equal(k8s.code, 0, k8s.stderr);
    assert.deepEqual((await readManifest(join(workDir, 'out-k8s'))).records.map((record) => record.relative), [...treeNames].sort().filter((_, position) => position % 4 === 0));
  });
});

// ------------------------------------------------------------------ determinism

describe('determinism', { skip: skipWithoutModel }, () => {
  test('the same inputs give byte-identical PNGs and equal manifests across runs and --jobs 1/2', async () => {
    const outs = ['det-j1', 'det-j2', 'det-j1-again'].map((name) => join(workDir, name));
    const jobs = ['1', '2', '1'];
    for (const [i, out] of outs.entries()) {
      const run = await camviz(['cam', tree, '--out', out, '--top-k', '2', '--batch-size', '3', '--jobs', jobs[i]!, '--quiet', ...modelArgs()]);
      assert.equal(run.code, 0, run.stderr);
    }
    const files = await listFiles(outs[0]!);
    assert.equal(files.filter((file) => file.endsWith('.png')).length, 16);
    const reference = comparable(await readManifest(outs[0]!));
    for (const out of outs.slice(1)) {
      assert.deepEqual(await listFiles(out), files);
      for (const file of files.filter((name) => name.endsWith('.png'))) {
        assert.ok((await readFile(join(out, file))).equals(await readFile(join(outs[0]!, file))), `${file} differs in ${out}`);
      }
      assert.deepEqual(comparable(await readManifest(out)), reference);
    }
  });

  test('fmap grids and legends are identical with --jobs 1 and 2', async () => {
    const outs = ['det-fmap-1', 'det-fmap-2'].map((name) => join(workDir, name));
    for (const [i, out] of outs.entries()) {
      const run = await camviz(['fmap', tree, '--out', out, '--layer', fmapLayer, '--jobs', String(i + 1), '--quiet', ...modelArgs()]);
      assert.equal(run.code, 0, run.stderr);
    }
    const files = (await listFiles(outs[0]!)).filter((file) => file !== 'manifest.json');
    assert.equal(files.length, 16);
    for (const file of files) assert.ok((await readFile(join(outs[1]!, file))).equals(await readFile(join(outs[0]!, file))), file);
    assert.deepEqual(comparable(await readManifest(outs[1]!)), comparable(await readManifest(outs[0]!)));
  });
});

// ------------------------------------------------------------------ signals

interface Interrupted {
  run: CliRun;
  out: string;
  /** How many PNGs existed when the signal was sent. */
  pngsAtSignal: number;
}

interface InterruptOptions {
  /**
   * Sends the signal again once the run has said it heard the first (two
   * signals sent before the process is scheduled would arrive as one).
   */
  twice?: boolean;
  /** The model and batch size; by default the shapes model (modelArgs()) in batches of 2. */
  runArgs?: readonly string[];
}

/** Starts a folder run of `thirty`, sends `signal` once the first maps are written (again if asked), and waits. */
async function interruptRun(name: string, signal: NodeJS.Signals, jobs: number, { twice = false, runArgs = ['--batch-size', '2', ...modelArgs()] }: InterruptOptions = {}): Promise<Interrupted> {
  const out = join(workDir, name);
  const child: ChildProcess = spawn(
    process.execPath,
    [camvizBin, 'gradcam', thirty, '--out', out, '--top-k', '5', '--jobs', String(jobs), ...runArgs],
    { cwd: workDir, env: cleanEnv({ CI: 'true' }), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += String(chunk)));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += String(chunk)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, exitSignal) => resolve({ code, signal: exitSignal })));
  let pngsAtSignal = 0;
  const deadline = Date.now() + 60_000;
  for (;;) {
    const pngs = existsSync(out) ? (await readdir(out)).filter((file) => file.endsWith('.png')).length : 0;
    if (pngs > 0) {
      pngsAtSignal = pngs;
      break;
    }
    if (child.exitCode !== null || Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  child.kill(signal);
  if (twice) {
    while (!stderr.includes(`${signal}: finishing the images in progress`) && child.exitCode === null && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    child.kill(signal);
  }
  const { code, signal: exitSignal } = await exited;
  return { run: { code, signal: exitSignal, stdout, stderr }, out, pngsAtSignal };
}

/** Every record's outputs exist and decode; `exact`: nothing else is in the folder (no temporary or orphan files). */
async function checkOutputs(out: string, records: readonly InputRecord[], exact: boolean): Promise<void> {
  for (const record of records) {
    assert.equal(record.status, 'ok', record.relative);
    assert.equal(record.outputs.length, 5, record.relative);
    for (const output of record.outputs) {
      const { info } = await sharp(join(out, output)).raw().toBuffer({ resolveWithObject: true });
      assert.deepEqual([info.width, info.height], [320 + (Number(record.relative.slice(3, 5)) % 5), 240 + (Number(record.relative.slice(3, 5)) % 3)]);
    }
  }
  const files = await listFiles(out);
  if (exact) assert.deepEqual(files, ['manifest.json', ...records.flatMap((record) => record.outputs)].sort());
  for (const file of files.filter((name) => name.endsWith('.png'))) {
    await sharp(join(out, file)).raw().toBuffer(); // no half-written PNG under any name
  }
}

/** No map on disk without its record, and no record without its maps (batch-pool-stop.test.ts makes a thread terminated mid-batch). */
async function mapsMatchRecords(out: string, records: readonly InputRecord[]): Promise<void> {
  const onDisk = (await listFiles(out)).filter((file) => file.endsWith('.png'));
  assert.deepEqual(onDisk, records.flatMap((record) => record.outputs).filter((file) => file.endsWith('.png')).sort());
}

describe('signals', { skip: skipWithoutModel }, () => {
  for (const [signal, jobs, exitCode] of [['SIGINT', 1, 130], ['SIGTERM', 2, 143]] as const) {
    test(`${signal} (--jobs ${jobs}): exit ${exitCode}, the finished inputs in the manifest, no partial output`, async () => {
      const { run, out, pngsAtSignal } = await interruptRun(`sig-${signal}`, signal, jobs);
      assert.ok(pngsAtSignal > 0, 'the signal came after the first maps');
      assert.equal(run.code, exitCode, run.stderr);
      assert.match(run.stderr, new RegExp(`camviz: ${signal}: finishing the images in progress`));
      assert.match(run.stderr, new RegExp(`camviz: \\d+ of 30 images, \\d+ ok, 0 failed, .*; stopped by ${signal}\\n$`));
      const manifest = await readManifest(out);
      assert.equal(manifest.interrupted, true);
      assert.ok(manifest.finishedAt !== null);
      assert.ok(manifest.records.length > 0 && manifest.records.length < 30, `${manifest.records.length} of 30 done`);
      assert.deepEqual(manifest.summary, { inputs: manifest.records.length, ok: manifest.records.length, error: 0 });
      // Records are a prefix-free subset in input order.
      const names = manifest.records.map((record) => record.relative);
      assert.deepEqual(names, [...names].sort());
      await checkOutputs(out, manifest.records, true);
    });
  }

  test('--skip-existing resumes the interrupted run: finished inputs kept, the rest done, same bytes as a whole run', async () => {
    const out = join(workDir, 'sig-SIGINT');
    const before = await readManifest(out);
    const keptOutput = before.records[0]!.outputs[0]!;
    const keptTime = (await stat(join(out, keptOutput))).mtimeMs;
    const run = await camviz(['gradcam', thirty, '--out', out, '--top-k', '5', '--batch-size', '2', '--jobs', '2', '--skip-existing', '--quiet', ...modelArgs()]);
    assert.equal(run.code, 0, run.stderr);
    const manifest = await readManifest(out);
    assert.equal(manifest.interrupted, false);
    assert.deepEqual(manifest.summary, { inputs: 30, ok: 30, error: 0 });
    assert.equal(manifest.records.filter((record) => record.resumed === true).length, before.records.length);
    assert.equal((await stat(join(out, keptOutput))).mtimeMs, keptTime);
    await checkOutputs(out, manifest.records, true);

    const whole = join(workDir, 'sig-whole');
    const reference = await camviz(['gradcam', thirty, '--out', whole, '--top-k', '5', '--batch-size', '2', '--jobs', '2', '--quiet', ...modelArgs()]);
    assert.equal(reference.code, 0, reference.stderr);
    for (const file of (await listFiles(whole)).filter((name) => name.endsWith('.png'))) {
      assert.ok((await readFile(join(out, file))).equals(await readFile(join(whole, file))), file);
    }
    const strip = (m: Manifest) => (comparable(m) as { records: Record<string, unknown>[] }).records.map(({ resumed: _resumed, ...record }) => record);
    assert.deepEqual(strip(manifest), strip(await readManifest(whole)));
  });

  test('a second SIGINT with worker threads stops at once and still writes the manifest (exit 130)', async () => {
    const { run, out } = await interruptRun('sig-twice', 'SIGINT', 2, { twice: true });
    assert.equal(run.code, 130, run.stderr);
    assert.match(run.stderr, /camviz: stopping now\n/);
    assert.match(run.stderr, /stopped by SIGINT\n$/);
    const manifest = await readManifest(out);
    assert.equal(manifest.interrupted, true);
    await checkOutputs(out, manifest.records, false);
    await mapsMatchRecords(out, manifest.records);
  });

  // Batches of 8 through ResNet-18 keep each worker inside ONNX Runtime most
  // of the time. When the second signal terminated the workers, a thread
  // terminated there aborted the process (Napi::Error, SIGABRT, no manifest)
  // in about half the runs of this set-up; this test failed on that build
  // in each of 4 executions (at its 1st, 1st, 1st and 3rd run).
  test('a second SIGINT while the workers are inside ONNX Runtime does not abort: exit 130, manifest, whole records (5 runs)', { skip: skipWithoutOrtResnet }, async () => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const { run, out } = await interruptRun(`sig-twice-ort-${attempt}`, 'SIGINT', 2, { twice: true, runArgs: ['--batch-size', '8', '--model', resnetOnnx, '--backend', 'wasm'] });
      assert.equal(run.signal, null, `run ${attempt}: the process died of ${run.signal}: ${run.stderr}`);
      assert.equal(run.code, 130, `run ${attempt}: ${run.stderr}`);
      assert.match(run.stderr, /camviz: stopping now\n/);
      const manifest = await readManifest(out);
      // Batches of 8 on two workers: all 30 images may be in flight when the signals come, and then none is lost.
      const lost = manifest.records.length < 30;
      assert.equal(manifest.interrupted, lost);
      assert.match(run.stderr, lost ? /stopped by SIGINT\n$/ : /SIGINT came, but every input was done\n$/);
      await checkOutputs(out, manifest.records, false);
      await mapsMatchRecords(out, manifest.records);
    }
  });
});

// ------------------------------------------------------------------ terminal

const haveScript = spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0;

/** Runs the CLI under `script`, which gives it a pseudo-terminal; returns the transcript. */
async function onTerminal(name: string, columns: number): Promise<{ code: number | null; transcript: string }> {
  const log = join(workDir, `${name}.log`);
  const command = `stty cols ${columns} rows 24; exec ${process.execPath} ${camvizBin} gradcam ${tree} --out ${join(workDir, name)} --jobs 1 ${modelArgs().join(' ')}`;
  const env = cleanEnv({ TERM: 'xterm-256color' });
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn('script', ['-q', '-e', '-c', command, log], { env, stdio: 'ignore', timeout: 120_000 });
    child.on('exit', (exitCode) => resolve(exitCode));
  });
  return { code, transcript: await readFile(log, 'utf8') };
}

describe('on a terminal', { skip: skipWithoutModel || (!haveScript && 'the script command (util-linux) is not installed') }, () => {
  test('an ora spinner (escape codes) and the summary line', async () => {
    const { code, transcript } = await onTerminal('tty-80', 80);
    assert.equal(code, 0, transcript);
    assert.ok(transcript.includes(ESCAPE), 'escape codes');
    assert.match(transcript, /camviz: 8 of 8 images, 8 ok, 0 failed/);
    assert.ok(!transcript.includes('images to process'), 'no plain start line on a terminal');
  });

  test('a terminal without a width (as CI runners open them): plain lines, and the run ends', async () => {
    const { code, transcript } = await onTerminal('tty-0', 0);
    assert.equal(code, 0);
    assert.ok(transcript.length < 10_000, `a short transcript (${transcript.length} characters)`);
    assert.match(transcript, /camviz: 8 images to process\r?\n/);
    assert.match(transcript, /camviz: 8 of 8 images, 8 ok, 0 failed/);
  });
});
