/**
 * The command line's bundle (scripts/bundle-cli.ts): `bin/camviz.js` runs
 * the one file the build made, through the code cache, the same program as
 * the modules it was made from, and falls back to those modules when the
 * bundle is missing or older than them.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { bundleIsCurrent } from '../src/util/bundle-choice.js';
import { repoRoot } from './helpers/assets.js';
import { camvizBin, cliEnv } from './helpers/cli.js';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-cli-bundle-'));
after(() => rm(workDir, { recursive: true, force: true }));

const cliFolder = join(repoRoot, 'dist', 'src', 'cli');
const bundlePath = join(cliFolder, 'camviz.cjs');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runNode(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: workDir, env, timeout: 120_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, stdout, stderr });
    });
  });
}

test('the build bundles the command line, and bin/camviz.js runs that bundle', async () => {
  const [bundled, compiled] = await Promise.all([stat(bundlePath), stat(join(cliFolder, 'run.js'))]);
  assert.ok(bundled.mtimeMs >= compiled.mtimeMs, 'the bundle is older than the compiled modules: run `npm run build`');
  // A preloaded script lists, at exit, the CommonJS files the process loaded: the bundle is one of them.
  const preload = join(workDir, 'list-loaded.cjs');
  await writeFile(preload, "process.on('exit', () => process.stderr.write('LOADED ' + JSON.stringify(Object.keys(require.cache)) + '\\n'));\n");
  const run = await runNode(['--require', preload, camvizBin, '--version']);
  assert.equal(run.code, 0, run.stderr);
  const loaded = JSON.parse(/^LOADED (.*)$/m.exec(run.stderr)?.[1] ?? '[]') as string[];
  assert.ok(loaded.includes(bundlePath), `bundle not loaded; loaded: ${loaded.filter((path) => !path.includes('node_modules')).join(', ')}`);
});

test("a folder run's worker threads load their bundle", async () => {
  const preload = join(workDir, 'list-worker-loaded.cjs');
  await writeFile(
    preload,
    "const { isMainThread } = require('node:worker_threads');\n" +
      "if (!isMainThread) process.on('exit', () => process.stderr.write('WORKER LOADED ' + JSON.stringify(Object.keys(require.cache)) + '\\n'));\n",
  );
  const run = await runNode(['--require', preload, camvizBin, 'predict', join(repoRoot, 'fixtures', 'shapes'), '--model', join(repoRoot, 'models', 'shapes'), '--jobs', '2', '--out', join(workDir, 'jobs'), '--quiet'], cliEnv(join(workDir, 'cache-jobs')));
  assert.equal(run.code, 0, run.stderr);
  const workers = [...run.stderr.matchAll(/^WORKER LOADED (.*)$/gm)].map((match) => JSON.parse(match[1]!) as string[]);
  assert.equal(workers.length, 2, run.stderr);
  for (const loaded of workers) assert.ok(loaded.includes(join(repoRoot, 'dist', 'src', 'batch', 'worker.cjs')), loaded.filter((path) => !path.includes('node_modules')).join(', '));
});

test('a bundle stands for its modules while it is at least as new as they are', async () => {
  const folder = join(workDir, 'choice');
  await mkdir(folder);
  const bundle = join(folder, 'entry.cjs');
  const modules = join(folder, 'entry.js');
  const url = (path: string): URL => pathToFileURL(path);
  assert.equal(bundleIsCurrent(url(bundle), url(modules)), false, 'no bundle');
  await writeFile(bundle, '');
  assert.equal(bundleIsCurrent(url(bundle), url(modules)), true, 'no modules to be older than');
  await writeFile(modules, '');
  const at = new Date('2026-01-01T00:00:00Z');
  const later = new Date('2026-01-01T00:00:10Z');
  await utimes(bundle, at, at);
  await utimes(modules, later, later);
  assert.equal(bundleIsCurrent(url(bundle), url(modules)), false, 'the modules compiled after the bundle');
  await utimes(bundle, later, later);
  assert.equal(bundleIsCurrent(url(bundle), url(modules)), true, 'as new as the modules');
});

test('the bundle compiles through the code cache: an entry from a run that did work, used by the next', async () => {
  // The cache writes no entry for a file changed in the last 2 s (src/engine/code-cache.ts): a bundle just built waits.
  const settledAt = (await stat(bundlePath)).mtimeMs + 2_500;
  if (Date.now() < settledAt) await new Promise((resolve) => setTimeout(resolve, settledAt - Date.now()));
  const env = cliEnv(join(workDir, 'cache-code'));
  const folder = join(workDir, 'cache-code', 'v8', `${process.version}-${process.arch}`);
  const entries = async (): Promise<string[]> => (await readdir(folder).catch(() => [])).filter((name) => name.startsWith('camviz.cjs-'));
  const gradcam = async (out: string): Promise<void> => {
    const run = await runNode([camvizBin, 'gradcam', join(repoRoot, 'fixtures', 'shapes', 'circle.png'), '--model', join(repoRoot, 'models', 'shapes'), '--out', join(workDir, out), '--quiet'], env);
    assert.equal(run.code, 0, run.stderr);
  };
  // --version compiles a third of what a command does: its entry would keep later runs compiling the rest.
  assert.equal((await runNode([camvizBin, '--version'], env)).code, 0);
  assert.deepEqual(await entries(), []);
  await gradcam('first');
  const [entry] = await entries();
  assert.ok(entry !== undefined, 'no code cache entry for the bundle');
  const written = await stat(join(folder, entry));
  // The next run accepts the entry: it is not rewritten (a rejected or stale one would be, at exit).
  await gradcam('second');
  assert.deepEqual(await entries(), [entry]);
  assert.equal((await stat(join(folder, entry))).mtimeMs, written.mtimeMs);
});

test('the bundle writes the same PNG as the modules it was made from', async () => {
  const image = join(repoRoot, 'fixtures', 'shapes', 'circle.png');
  const model = join(repoRoot, 'models', 'shapes');
  const outputs: Buffer[] = [];
  for (const [name, entry] of [['bundle', camvizBin], ['modules', join(cliFolder, 'launch.js')]] as const) {
    const out = join(workDir, name);
    const run = await runNode([entry, 'gradcam', image, '--model', model, '--out', out, '--quiet'], cliEnv(join(workDir, `cache-${name}`)));
    assert.equal(run.code, 0, run.stderr);
    const written = (await readdir(out)).filter((file) => file.endsWith('.png'));
    assert.equal(written.length, 1, `${name} wrote ${written.join(', ')}`);
    outputs.push(await readFile(join(out, written[0]!)));
  }
  assert.ok(outputs[0]!.equals(outputs[1]!), 'the bundle and the modules wrote different PNGs');
});

/**
 * A copy of bin/camviz.js (and its package.json) over a stand-in build:
 * the real launch-support bundle (or none), whose two entry points say
 * which of them ran.
 */
async function standInBuild(name: string, { withBundle = true, withSupport = true } = {}): Promise<{ bin: string; bundle: string; modules: string; support: string; supportModule: string }> {
  const root = join(workDir, name);
  const cli = join(root, 'dist', 'src', 'cli');
  await mkdir(join(root, 'bin'), { recursive: true });
  await mkdir(cli, { recursive: true });
  await writeFile(join(root, 'package.json'), '{"type": "module"}\n');
  const bin = join(root, 'bin', 'camviz.js');
  await copyFile(camvizBin, bin);
  await copyFile(join(repoRoot, 'bin', 'package.json'), join(root, 'bin', 'package.json'));
  const support = join(cli, 'launch-support.cjs');
  if (withSupport) await copyFile(join(cliFolder, 'launch-support.cjs'), support);
  // The compiled module the support bundle was made from, whose time the bundle's is compared with.
  const supportModule = join(cli, 'launch-support.js');
  await writeFile(supportModule, '');
  await writeFile(join(cli, 'launch.js'), "console.log('modules');\n");
  // The compiled entry point whose time the bundle's is compared with.
  const modules = join(cli, 'run.js');
  await writeFile(modules, '');
  const bundle = join(cli, 'camviz.cjs');
  if (withBundle) await writeFile(bundle, "console.log('bundle');\n");
  const at = new Date('2026-01-01T00:00:00Z');
  const later = new Date('2026-01-01T00:00:10Z');
  for (const compiled of [modules, supportModule]) await utimes(compiled, at, at);
  for (const made of [...(withBundle ? [bundle] : []), ...(withSupport ? [support] : [])]) await utimes(made, later, later);
  return { bin, bundle, modules, support, supportModule };
}

test('bin/camviz.js runs the modules when the bundle or the launcher\'s own is missing or older than their modules', async () => {
  // No code cache written for the stand-ins.
  const env = { ...process.env, CAMVIZ_CODE_CACHE: '0' };
  const current = await standInBuild('current');
  assert.deepEqual(await runNode([current.bin], env), { code: 0, stdout: 'bundle\n', stderr: '' });

  // `tsc` alone rewrote the modules after the bundles were made.
  const newer = new Date('2026-01-01T00:00:20Z');
  const stale = await standInBuild('stale');
  await utimes(stale.modules, newer, newer);
  assert.equal((await runNode([stale.bin], env)).stdout, 'modules\n');
  const staleSupport = await standInBuild('stale-support');
  await utimes(staleSupport.supportModule, newer, newer);
  assert.equal((await runNode([staleSupport.bin], env)).stdout, 'modules\n');

  assert.equal((await runNode([(await standInBuild('missing', { withBundle: false })).bin], env)).stdout, 'modules\n');
  assert.equal((await runNode([(await standInBuild('missing-support', { withSupport: false })).bin], env)).stdout, 'modules\n');
});

test('bin/camviz.js reports a dependency the bundle cannot find as it is (not as a missing build), and runs no modules after it', async () => {
  const broken = await standInBuild('broken');
  await writeFile(broken.bundle, "require('camviz-no-such-package');\n");
  const run = await runNode([broken.bin], { ...process.env, CAMVIZ_CODE_CACHE: '0' });
  assert.notEqual(run.code, 0);
  assert.match(run.stderr, /Cannot find module 'camviz-no-such-package'/);
  assert.doesNotMatch(run.stderr, /npm run build/);
  assert.equal(run.stdout, '', 'the modules did not run');
});

test('bin/camviz.js with no build at all: one line saying so, exit 1', async () => {
  const root = join(workDir, 'unbuilt');
  await mkdir(join(root, 'bin'), { recursive: true });
  await writeFile(join(root, 'package.json'), '{"type": "module"}\n');
  await copyFile(camvizBin, join(root, 'bin', 'camviz.js'));
  await copyFile(join(repoRoot, 'bin', 'package.json'), join(root, 'bin', 'package.json'));
  const run = await runNode([join(root, 'bin', 'camviz.js'), '--version']);
  assert.equal(run.code, 1);
  assert.match(run.stderr, /^camviz: not built \(.*launch\.js is missing\): run npm run build\n$/);
});

test('bin/camviz.js is CommonJS: besides Node\'s own modules, the one file it requires is the launcher\'s bundle', async () => {
  const preload = join(workDir, 'list-esm.cjs');
  // Module._load sees every CommonJS file; an ES module entry would be imported instead, and never pass through it.
  await writeFile(preload, "const Module = require('node:module'); const seen = []; const load = Module._load; Module._load = function (request, parent, isMain) { if (isMain || (parent && parent.filename && parent.filename.endsWith('camviz.js'))) seen.push(request); return load.apply(this, arguments); }; process.on('exit', () => process.stderr.write('FIRST ' + JSON.stringify(seen) + '\\n'));\n");
  const run = await runNode(['--require', preload, camvizBin, '--version']);
  assert.equal(run.code, 0, run.stderr);
  const first = JSON.parse(/^FIRST (.*)$/m.exec(run.stderr)?.[1] ?? '[]') as string[];
  assert.deepEqual(first, [camvizBin, 'node:fs', 'node:path', 'node:url', join(repoRoot, 'dist', 'src', 'cli', 'launch-support.cjs')]);
});
