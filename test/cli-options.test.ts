/**
 * How the command line reads its options, as a new user types them: options
 * before or after the inputs, repeated or comma-separated lists, empty or
 * out-of-range values refused as usage errors (exit 2, one line, before any
 * image), what a single-image run says it wrote, and the help. On the
 * embedded shapes model (no shared assets needed), wasm, one worker.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { repoRoot } from './helpers/assets.js';
import { type CliRun, cliEnv, runCli } from './helpers/cli.js';
import { assertUsageError } from './helpers/usage-error.js';
import { listFiles } from './helpers/files.js';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-cli-options-'));
after(() => rm(workDir, { recursive: true, force: true }));

const shapes = join(repoRoot, 'fixtures', 'shapes');
const circleStar = join(shapes, 'circle-star.png');

/** The CLI as typed, run from the work folder; the caller places every argument (the point of these tests). */
function camviz(...args: string[]): Promise<CliRun> {
  return runCli(args, { cwd: workDir, env: cliEnv(join(workDir, 'cache')), timeoutMs: 120_000 });
}

/** The shapes model on the wasm backend: appended after the caller's arguments. */
const shapesModel = ['--model', 'shapes', '--backend', 'wasm'];
/** The same, in this thread (one worker), for runs that process images. */
const onShapes = [...shapesModel, '-j', '1'];

let outCount = 0;
function freshOut(): string {
  return join(workDir, `out-${++outCount}`);
}

function parseJson<T>(run: CliRun): T {
  assert.equal(run.code, 0, `exit ${run.code}: ${run.stderr}`);
  return JSON.parse(run.stdout) as T;
}

interface CamRecord {
  layer: string;
  class: { index: number; label: string | null };
}

interface FmapRecord {
  layer: string;
}

describe('options that take a list: before or after the inputs, repeated or comma-separated', () => {
  test('gradcam --class 3 IMAGE: the option before the input (it used to swallow the input: exit 2)', async () => {
    const records = parseJson<CamRecord[]>(await camviz('gradcam', '--class', '3', circleStar, '--json', '-q', '--out', freshOut(), ...onShapes));
    assert.deepEqual(records.map((record) => record.class.index), [3]);
  });

  test('--class 0 --class 3 and --class 0,3 name the same two classes; --layer a --layer b and --layer a,b the same two layers', async () => {
    const repeated = parseJson<CamRecord[]>(
      await camviz('gradcam', '--class', '0', '--layer', 'conv3_relu', circleStar, '--class', '3', '--layer', 'conv4_relu', '--json', '-q', '--out', freshOut(), ...onShapes),
    );
    const listed = parseJson<CamRecord[]>(await camviz('gradcam', circleStar, '--class', '0,3', '--layer', 'conv3_relu,conv4_relu', '--json', '-q', '--out', freshOut(), ...onShapes));
    for (const records of [repeated, listed]) {
      assert.deepEqual(records.map((record) => record.class.index), [0, 3]);
      assert.deepEqual(records.map((record) => record.layer), ['conv3_relu+conv4_relu', 'conv3_relu+conv4_relu']);
    }
  });

  test('fmap --layer L IMAGE, --layer a --layer b and --layer a,b', async () => {
    const before = parseJson<FmapRecord[]>(await camviz('fmap', '--layer', 'conv1_relu', circleStar, '--json', '-q', '--out', freshOut(), ...onShapes));
    assert.deepEqual(before.map((record) => record.layer), ['conv1_relu']);
    const repeated = parseJson<FmapRecord[]>(await camviz('fmap', '--layer', 'conv1_relu', circleStar, '--layer', 'conv2_relu', '--json', '-q', '--out', freshOut(), ...onShapes));
    const listed = parseJson<FmapRecord[]>(await camviz('fmap', circleStar, '--layer', 'conv1_relu,conv2_relu', '--json', '-q', '--out', freshOut(), ...onShapes));
    for (const records of [repeated, listed]) assert.deepEqual(records.map((record) => record.layer), ['conv1_relu', 'conv2_relu']);
  });
});

describe('empty lists are usage errors, before any image', () => {
  for (const spec of [',', '', ' , ']) {
    test(`--class '${spec}': exit 2 naming --class, nothing written`, async () => {
      const out = freshOut();
      assertUsageError(await camviz('gradcam', circleStar, '--class', spec, '--out', out, ...onShapes), /--class .*names no class/);
      assert.deepEqual(await listFiles(out, { missingAsEmpty: true }), []);
    });
  }

  test("--layer ',' (gradcam and fmap): exit 2 naming --layer", async () => {
    assertUsageError(await camviz('gradcam', circleStar, '--layer', ',', '--out', freshOut(), ...onShapes), /--layer .*names no layer/);
    assertUsageError(await camviz('fmap', circleStar, '--layer', '', '--out', freshOut(), ...onShapes), /--layer .*names no layer/);
  });

  test("--out '' (an unset variable) is a usage error for every command that writes, and nothing lands in the current folder", async () => {
    // The private cache (CAMVIZ_CACHE) lives in the work folder too.
    const written = async (): Promise<string[]> => (await readdir(workDir)).filter((name) => name !== 'cache');
    const cwdBefore = await written();
    for (const args of [
      ['gradcam', circleStar, '--out', '', ...onShapes],
      ['fmap', circleStar, '--out', ' ', ...onShapes],
      ['predict', circleStar, '--out', '', ...onShapes],
      ['merge', workDir, '--out', ''],
      ['compare', workDir, workDir, '--out', ''],
    ]) {
      assertUsageError(await camviz(...args), /--out is empty: give the output folder/);
    }
    assert.deepEqual(await written(), cwdBefore);
  });

  test('a comma-separated list with a blank part keeps the classes it names', async () => {
    const records = parseJson<CamRecord[]>(await camviz('gradcam', circleStar, '--class', '3,', '--json', '-q', '--out', freshOut(), ...onShapes));
    assert.deepEqual(records.map((record) => record.class.index), [3]);
  });
});

describe('numeric options out of range: a usage error stating the limit, before any image', () => {
  // [command and its arguments, the message]: each used to fail inside the
  // model or libvips (exit 1, an internal message), or to be taken silently.
  const cases: [string[], RegExp][] = [
    [['predict', circleStar, '--size', '4'], /^camviz: --size '4' must be 8 to 4096 pixels a side$/], // wasm: memory access out of bounds
    [['gradcam', circleStar, '--size', '1'], /^camviz: --size '1' must be 8 to 4096 pixels a side$/],
    [['gradcam', circleStar, '--size', '100000'], /^camviz: --size '100000' must be 8 to 4096 pixels a side$/], // libvips: out of memory
    [['fmap', circleStar, '--layer', 'conv1_relu', '--size', '64x5000'], /--size '64x5000' must be 8 to 4096 pixels a side$/],
    [['layers', '--size', '2'], /--size '2' must be 8 to 4096 pixels a side$/],
    [['fmap', circleStar, '--layer', 'conv1_relu', '--tile-size', '100000'], /^camviz: --tile-size '100000' must be a whole number from 1 to 256$/], // Invalid typed array length
    [['fmap', circleStar, '--layer', 'conv1_relu', '--padding', '100000'], /^camviz: --padding '100000' must be a whole number from 0 to 32$/],
    [['gradcam', circleStar, '--batch-size', '100000'], /^camviz: --batch-size '100000' must be a whole number from 1 to 64$/],
    [['predict', circleStar, '--batch-size', '0'], /--batch-size '0' must be a whole number from 1 to 64$/],
    // Number('') is 0: an empty --max-pixels meant "no limit", an empty --alpha a map-less blend.
    [['predict', circleStar, '--max-pixels', ''], /^camviz: --max-pixels '' must be a whole number of at least 0$/],
    [['gradcam', circleStar, '--alpha', ''], /^camviz: --alpha '' must be a number from 0 to 1$/],
    [['gradcam', circleStar, '--alpha', '0x1'], /--alpha '0x1' must be a number from 0 to 1$/],
    [['gradcam', circleStar, '--alpha', '1.5'], /--alpha '1.5' must be a number from 0 to 1$/],
    [['predict', circleStar, '--top', '2.5'], /--top '2.5' must be a whole number of at least 1$/],
    [['gradcam', circleStar, '--top-k', '0'], /--top-k '0' must be a whole number of at least 1$/],
    [['gradcam', circleStar, '--jobs', '-1'], /--jobs '-1' must be a whole number of at least 1$/],
    [['gradcam', circleStar, '--jobs', '1.5'], /--jobs '1.5' must be a whole number of at least 1$/],
    [['fmap', circleStar, '--layer', 'conv1_relu', '--tensorboard', join(workDir, 'tb'), '--step', '1e3'], /--step '1e3' must be a whole number of at least 0$/],
  ];
  for (const [args, message] of cases) {
    test(`${args[0]} ${args.slice(2).join(' ')}`, async () => {
      const out = freshOut();
      // Refused before any worker starts: no -j here, which some cases set themselves (and layers has not).
      assertUsageError(await camviz(...args, ...(args[0] === 'layers' ? [] : ['--out', out]), ...shapesModel), message);
      assert.deepEqual(await listFiles(out, { missingAsEmpty: true }), []);
    });
  }

  test('the limits are workable: --size 8, --tile-size 256, --padding 32, --batch-size 64, --alpha .25', async () => {
    const cam = parseJson<CamRecord[]>(await camviz('gradcam', circleStar, '--size', '8', '--batch-size', '64', '--alpha', '.25', '--json', '-q', '--out', freshOut(), ...onShapes));
    assert.equal(cam.length, 1);
    const fmap = parseJson<FmapRecord[]>(await camviz('fmap', circleStar, '--layer', 'conv4_relu', '--tile-size', '256', '--padding', '32', '--json', '-q', '--out', freshOut(), ...onShapes));
    assert.equal(fmap.length, 1);
  });
});

describe('what a run says it wrote (stdout, without --json)', () => {
  test('a single image: one "wrote <path>" line per file, the path as --out was given', async () => {
    const cam = await camviz('gradcam', circleStar, '--class', '3', '--raw', '--out', 'single', ...onShapes);
    assert.equal(cam.code, 0, cam.stderr);
    assert.equal(cam.stdout, 'wrote single/circle-star.gradcam.3.png\nwrote single/circle-star.gradcam.3.npy\n');
    assert.deepEqual(await listFiles(join(workDir, 'single')), ['circle-star.gradcam.3.npy', 'circle-star.gradcam.3.png', 'manifest.json']);
    const fmap = await camviz('fmap', circleStar, '--layer', 'conv1_relu', ...onShapes);
    assert.equal(fmap.code, 0, fmap.stderr);
    assert.equal(fmap.stdout, 'wrote camviz-out/circle-star.conv1_relu.fmap.png\nwrote camviz-out/circle-star.conv1_relu.fmap.json\n');
  });

  test('a folder: only the summary line (stderr), unless --verbose lists every file', async () => {
    const quiet = await camviz('gradcam', shapes, '--out', 'folder', '--class', '3', ...onShapes);
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.equal(quiet.stdout, '');
    assert.match(quiet.stderr, /camviz: 8 of 8 images, 8 ok, 0 failed/);
    const verbose = await camviz('--verbose', 'gradcam', shapes, '--out', 'folder-verbose', '--class', '3', ...onShapes);
    assert.equal(verbose.code, 0, verbose.stderr);
    const pngs = (await listFiles(join(workDir, 'folder-verbose'))).filter((name) => name.endsWith('.png'));
    assert.equal(pngs.length, 8);
    assert.deepEqual(verbose.stdout.trimEnd().split('\n').sort(), pngs.map((name) => `wrote folder-verbose/${name}`));
  });
});

describe('the same spelling everywhere', () => {
  test('predict takes --top-k as --top, and cam takes --top as --top-k', async () => {
    for (const flag of ['--top', '--top-k', '-k']) {
      const predicted = parseJson<{ predictions: unknown[] }[]>(await camviz('predict', flag, '2', circleStar, '--json', '-q', ...onShapes));
      assert.equal(predicted[0]!.predictions.length, 2, `predict ${flag}`);
      const explained = parseJson<CamRecord[]>(await camviz('cam', flag, '2', circleStar, '--json', '-q', '--out', freshOut(), ...onShapes));
      assert.equal(explained.length, 2, `cam ${flag}`);
    }
  });

  test('--help documents one spelling and names the other', async () => {
    // Help text wraps: compared with its white space collapsed.
    const predict = (await camviz('predict', '--help')).stdout.replace(/\s+/g, ' ');
    assert.match(predict, /-k, --top <k> [^-]*\(also --top-k\)/);
    const cam = (await camviz('gradcam', '--help')).stdout.replace(/\s+/g, ' ');
    assert.match(cam, /-k, --top-k <k> [^-]*\(also --top\)/);
  });
});

describe('--help', () => {
  test('lists the exit codes, the signals ones included', async () => {
    for (const args of [['--help'], ['gradcam', '--help'], ['cam', '--help'], ['fmap', '--help'], ['predict', '--help']]) {
      const run = await camviz(...args);
      assert.equal(run.code, 0);
      const help = run.stdout.replace(/\s+/g, ' ');
      for (const code of [/\b0 success/, /\b1 a failure/, /\b2 a usage error/, /\b130 .*SIGINT/, /\b143 .*SIGTERM/, /\b129 .*SIGHUP/]) {
        assert.match(help, code, `${args.join(' ')}: ${code}`);
      }
    }
  });
});
