/**
 * The command line as users run it: `node bin/camviz.js ...` in a child
 * process, checking exit codes, stdout and stderr.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { imagePath, mobilenetDir, repoRoot, skipWithoutSharedAssets } from './helpers/assets.js';
import { type CliRun, runCli } from './helpers/cli.js';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-cli-test-'));
after(() => rm(workDir, { recursive: true, force: true }));

/** A loopback port on which nothing listens (it was just released): the zoo is offline. */
const offlinePort = await new Promise<number>((resolve) => {
  const server = createServer();
  server.listen(0, '127.0.0.1', () => {
    const { port } = server.address() as AddressInfo;
    server.close(() => resolve(port));
  });
});

/** Runs the CLI offline: an empty cache and a zoo origin that does not exist. */
function camviz(...args: string[]): Promise<CliRun> {
  const env = {
    ...process.env,
    CAMVIZ_CACHE: join(workDir, 'cache'),
    CAMVIZ_ZOO_URL: `http://127.0.0.1:${offlinePort}/`,
    CAMVIZ_BACKEND: 'wasm',
  };
  return runCli(args, { cwd: repoRoot, env, timeoutMs: 120_000 });
}

const packageVersion = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;

describe('camviz CLI basics', () => {
  test("--version prints package.json's version", async () => {
    for (const flag of ['--version', '-V']) {
      const run = await camviz(flag);
      assert.equal(run.code, 0);
      assert.equal(run.stdout.trim(), packageVersion);
    }
  });

  test('--help exits 0 and shows the commands and examples', async () => {
    const run = await camviz('--help');
    assert.equal(run.code, 0);
    assert.match(run.stdout, /Usage: camviz/);
    assert.match(run.stdout, /Examples:/);
    assert.match(run.stdout, /camviz predict photo\.jpg/);
    for (const command of ['predict', 'layers', 'doctor']) assert.match(run.stdout, new RegExp(`\\n\\s+${command}\\b`));
    const sub = await camviz('predict', '--help');
    assert.equal(sub.code, 0);
    assert.match(sub.stdout, /--json/);
    assert.match(sub.stdout, /Examples:/);
  });

  test('an unknown option exits 2 with a message on stderr', async () => {
    const run = await camviz('predict', 'x.png', '--frobnicate');
    assert.equal(run.code, 2);
    assert.match(run.stderr, /unknown option '--frobnicate'/);
    assert.equal(run.stdout, '');
    const top = await camviz('--frobnicate');
    assert.equal(top.code, 2);
  });

  test('an unknown command and a bad choice exit 2', async () => {
    assert.equal((await camviz('frobnicate')).code, 2);
    assert.equal((await camviz('layers', '--backend', 'quantum')).code, 2);
  });

  // The embedded shapes model ships with camviz: this needs no shared assets.
  test('predict on a missing file: exactly one line on stderr, exit 1', async () => {
    const missing = join(workDir, 'no-such-image.png');
    const run = await camviz('predict', missing, '--model', 'shapes');
    assert.equal(run.code, 1);
    assert.equal(run.stderr, `camviz: file not found (${missing})\n`);
    assert.equal(run.stdout, '');
  });

  test('predict --json on both.png: [{input, predictions: [{index, label, probability}]}]', { skip: skipWithoutSharedAssets }, async () => {
    const input = imagePath('both.png');
    const run = await camviz('predict', input, '--model', mobilenetDir, '--json', '--top', '3');
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr, '');
    const parsed = JSON.parse(run.stdout) as unknown;
    assert.ok(Array.isArray(parsed) && parsed.length === 1);
    const record = parsed[0] as Record<string, unknown>;
    assert.deepEqual(Object.keys(record).sort(), ['input', 'predictions']);
    assert.equal(record['input'], input);
    const predictions = record['predictions'] as Record<string, unknown>[];
    assert.equal(predictions.length, 3);
    for (const prediction of predictions) {
      assert.deepEqual(Object.keys(prediction).sort(), ['index', 'label', 'probability']);
      assert.ok(Number.isInteger(prediction['index']));
      assert.equal(typeof prediction['label'], 'string');
      assert.equal(typeof prediction['probability'], 'number');
    }
    const probabilities = predictions.map((prediction) => prediction['probability'] as number);
    assert.deepEqual(probabilities, [...probabilities].sort((a, b) => b - a), 'most probable first');
    // The assets' README: 243 bull mastiff 0.81, 282 tiger cat 0.12.
    assert.equal(predictions[0]!['index'], 243);
    assert.equal(predictions[0]!['label'], 'bull mastiff');
    assert.ok(Math.abs(probabilities[0]! - 0.81) < 0.01);
    assert.equal(predictions[1]!['index'], 282);
  });

  test('predict: a missing file among good ones gives a record with an error, exit 1', { skip: skipWithoutSharedAssets }, async () => {
    const missing = join(workDir, 'gone.jpg');
    const run = await camviz('predict', imagePath('both.png'), missing, '--model', mobilenetDir, '--json', '--top', '1');
    assert.equal(run.code, 1);
    const records = JSON.parse(run.stdout) as { input: string; predictions?: unknown[]; error?: string }[];
    assert.equal(records.length, 2);
    assert.equal(records[0]!.predictions?.length, 1);
    assert.equal(records[1]!.error, `file not found (${missing})`);
    // Progress lines may accompany a folder run; the failure is reported once.
    const failures = run.stderr.split('\n').filter((line) => line.includes('file not found'));
    assert.deepEqual(failures, [`camviz: file not found (${missing})`]);
  });

  test('layers --json: [{name, className, outputShape, params, camTarget, default}], one default conv_pw_13_relu', { skip: skipWithoutSharedAssets }, async () => {
    const run = await camviz('layers', '--model', mobilenetDir, '--json');
    assert.equal(run.code, 0, run.stderr);
    const layers = JSON.parse(run.stdout) as Record<string, unknown>[];
    assert.ok(Array.isArray(layers) && layers.length > 50);
    for (const layer of layers) {
      assert.deepEqual(Object.keys(layer).sort(), ['camTarget', 'className', 'default', 'name', 'outputShape', 'params']);
    }
    const defaults = layers.filter((layer) => layer['default'] === true);
    assert.equal(defaults.length, 1);
    assert.equal(defaults[0]!['name'], 'conv_pw_13_relu');
    assert.deepEqual(defaults[0]!['outputShape'], [null, 7, 7, 768]);
    const byName = new Map(layers.map((layer) => [layer['name'] as string, layer]));
    assert.deepEqual(byName.get('conv_pw_5_relu')?.['outputShape'], [null, 28, 28, 192]);
    assert.equal(byName.get('conv_pw_5_relu')?.['camTarget'], true);
    assert.equal(byName.get('reshape_2')?.['camTarget'], false);
    // Every weight in model.json is some layer's parameter.
    const manifest = (JSON.parse(readFileSync(join(mobilenetDir, 'model.json'), 'utf8')) as { weightsManifest: { weights: { shape: number[] }[] }[] }).weightsManifest;
    const weightCount = manifest.flatMap((group) => group.weights).reduce((sum, weight) => sum + weight.shape.reduce((a, b) => a * b, 1), 0);
    assert.equal(layers.reduce((sum, layer) => sum + (layer['params'] as number), 0), weightCount);
  });

  test('layers (table) names the score layer', { skip: skipWithoutSharedAssets }, async () => {
    const run = await camviz('layers', '--model', mobilenetDir);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /conv_pw_13_relu\s.*CAM \(default\)/);
    assert.match(run.stdout, /score layer: conv_preds/);
  });

  test('the default zoo model, offline and not cached: one line naming --model shapes, exit 1', async () => {
    const image = join(repoRoot, 'fixtures', 'shapes', 'star.png');
    // The user's own example (gradcam --class 281), predict, and layers.
    for (const args of [['gradcam', image, '--class', '281', '--out', join(workDir, 'offline-out')], ['predict', image], ['layers', '--json']]) {
      const run = await camviz(...args);
      assert.equal(run.code, 1, args[0]);
      assert.equal(run.stdout, '');
      const lines = run.stderr.split('\n').filter((line) => line !== '');
      assert.equal(lines.length, 1, `${args[0]}: ${run.stderr}`);
      assert.match(lines[0]!, /^camviz: .*--model shapes/);
    }
  });

  test('doctor exits 0, lists wasm as loaded and tfjs-node-gpu as not installed', async () => {
    const gpuInstalled = (() => {
      try {
        createRequire(join(repoRoot, 'package.json')).resolve('@tensorflow/tfjs-node-gpu');
        return true;
      } catch {
        return false;
      }
    })();
    const run = await camviz('doctor', '--json');
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(run.stdout) as { backends: { backend: string; package: string; status: string }[]; versions: Record<string, string | null> };
    const wasm = report.backends.find((entry) => entry.backend === 'wasm');
    assert.equal(wasm?.status, 'loaded');
    const gpu = report.backends.find((entry) => entry.package === '@tensorflow/tfjs-node-gpu');
    assert.ok(gpu !== undefined);
    if (!gpuInstalled) assert.equal(gpu.status, 'not installed');
    assert.equal(report.versions['camviz'], packageVersion);
    assert.equal(report.versions['@tensorflow/tfjs-core'], '4.22.0');

    const text = await camviz('doctor');
    assert.equal(text.code, 0);
    assert.match(text.stdout, /^\s*wasm\s+loaded\b/m);
    if (!gpuInstalled) assert.match(text.stdout, /^\s*gpu\s+not installed\s+@tensorflow\/tfjs-node-gpu/m);
  });
});
