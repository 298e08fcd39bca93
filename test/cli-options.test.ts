/**
 * How the command line reads its options, as a new user types them: options
 * before or after the inputs, repeated or comma-separated lists, empty or
 * out-of-range values refused as usage errors (exit 2, one line, before any
 * image), what a single-image run says it wrote, and the help. On the
 * embedded shapes model (no shared assets needed), wasm, one worker.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
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

/** The shapes model on the wasm backend in this thread: appended after the caller's arguments. */
const onShapes = ['--model', 'shapes', '--backend', 'wasm', '-j', '1'];

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

  test('a comma-separated list with a blank part keeps the classes it names', async () => {
    const records = parseJson<CamRecord[]>(await camviz('gradcam', circleStar, '--class', '3,', '--json', '-q', '--out', freshOut(), ...onShapes));
    assert.deepEqual(records.map((record) => record.class.index), [3]);
  });
});
