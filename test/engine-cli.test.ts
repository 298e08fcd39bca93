/**
 * `--engine` on the command line (issue 12): ONNX Runtime and tfjs write
 * the same outputs for the shared ONNX MobileNet; a missing ONNX Runtime is
 * a usage error under `--engine onnxruntime` and a fallback (said with
 * --verbose) under auto; a model ONNX Runtime refuses runs on tfjs, said
 * once for a folder run of two workers; `doctor` shows ONNX Runtime; the
 * manifest records the engine.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { loadOnnxRuntime } from '../src/engine/onnxruntime.js';
import { encodePng } from '../src/render/png.js';
import { asset, repoRoot } from './helpers/assets.js';
import { type CliRun, cliEnv, runCli } from './helpers/cli.js';
import { tinyClassifier } from './helpers/engine-models.js';
import { onnxModelBytes } from './helpers/onnx.js';
import { tinyModel as tinyOnnxModel } from './helpers/tiny-onnx.js';
import { noise, readManifest } from './helpers/files.js';
import { readNpy } from './helpers/npy.js';
import { maxAbsDifference } from './helpers/numeric.js';
import { assertUsageError } from './helpers/usage-error.js';

const ortStatus = loadOnnxRuntime();
const skipWithoutOrt: string | false = ortStatus.available ? false : `onnxruntime-node does not load here: ${ortStatus.reason}`;
const mobilenetOnnx = asset('onnx', 'mobilenet_v1_0.75_224.onnx');
const photo = asset('onnx', 'images', 'dog_cat_224.png');
const skipWithoutMobilenet: string | false = skipWithoutOrt || (existsSync(mobilenetOnnx) && existsSync(photo) ? false : `the shared ONNX MobileNet is absent (${mobilenetOnnx})`);
const MISSING_ORT = '/nonexistent/onnxruntime-node';
const require = createRequire(import.meta.url);

let workDir: string;
let cacheDir: string;
let tinyModel: string;
let refusedModel: string;
let images: string;

/** camviz with a private cache, wasm, no CAMVIZ_ENGINE/CAMVIZ_ORT_* from the caller's environment, and `extra`. */
function camviz(args: readonly string[], extra: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  const env = cliEnv(cacheDir, extra);
  for (const name of ['CAMVIZ_ENGINE', 'CAMVIZ_ORT_THREADS', 'CAMVIZ_ORT_MODULE', 'CAMVIZ_VERBOSE']) if (!(name in extra)) delete env[name];
  return runCli(args, { cwd: workDir, env, timeoutMs: 240_000 });
}

/** The largest value (spreading a feature map into Math.max overflows the stack). */
function largest(values: Float32Array): number {
  return values.reduce((max, value) => Math.max(max, value), -Infinity);
}

/** Lines of stderr matching `pattern`. */
function linesMatching(text: string, pattern: RegExp): string[] {
  return text.split('\n').filter((line) => pattern.test(line));
}

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'camviz-engine-cli-'));
  cacheDir = join(workDir, 'cache');
  tinyModel = join(workDir, 'tiny.onnx');
  refusedModel = join(workDir, 'refused.onnx');
  images = join(workDir, 'images');
  await writeFile(tinyModel, tinyClassifier());
  await writeFile(refusedModel, tinyClassifier(true));
  await mkdir(images);
  for (const seed of [1, 2]) await writeFile(join(images, `noise-${seed}.png`), await encodePng(noise(32, 24, seed), 32, 24));
});

after(async () => {
  await rm(workDir, { recursive: true, force: true });
});

describe('the same outputs on ONNX Runtime and tfjs (shared ONNX MobileNet)', { skip: skipWithoutMobilenet }, () => {
  const common = (): string[] => ['--model', mobilenetOnnx, '--preprocess', 'tf', '--jobs', '1'];

  test('gradcam: the same class and score, maps within 1e-4 of their maximum; the manifest names the engine', async () => {
    const runs: Record<string, { json: { class: { index: number }; score: number; npy: string }[]; out: string }> = {};
    for (const engine of ['tfjs', 'onnxruntime']) {
      const out = join(workDir, `gradcam-${engine}`);
      const run = await camviz(['gradcam', photo, ...common(), '--engine', engine, '--top-k', '2', '--raw', '--json', '--out', out]);
      assert.equal(run.code, 0, run.stderr);
      runs[engine] = { json: JSON.parse(run.stdout), out };
      const manifest = await readManifest(out);
      assert.equal(manifest.engine?.kind, engine);
      assert.equal(manifest.engine?.requested, engine);
    }
    const tfjs = runs['tfjs']!;
    const ort = runs['onnxruntime']!;
    assert.equal(ort.json.length, 2);
    assert.deepEqual(ort.json.map((result) => result.class.index), tfjs.json.map((result) => result.class.index));
    for (const [i, result] of ort.json.entries()) {
      const expected = tfjs.json[i]!;
      assert.ok(Math.abs(result.score - expected.score) < 1e-3 * Math.abs(expected.score), `score ${result.score} vs ${expected.score}`);
      const a = readNpy(result.npy);
      const b = readNpy(expected.npy);
      assert.deepEqual(a.shape, b.shape);
      const peak = largest(b.data);
      assert.ok(peak > 0, 'the tfjs map is not empty');
      assert.ok(maxAbsDifference(a.data, b.data) <= 1e-4 * peak, `class ${result.class.index}: maps differ by ${maxAbsDifference(a.data, b.data)} (max ${peak})`);
    }
  });

  test('fmap: the same activations', async () => {
    const npys: string[] = [];
    for (const engine of ['tfjs', 'onnxruntime']) {
      const run = await camviz(['fmap', photo, ...common(), '--engine', engine, '--layer', 'conv_pw_5_relu', '--raw', '--json', '--out', join(workDir, `fmap-${engine}`)]);
      assert.equal(run.code, 0, run.stderr);
      const [result] = JSON.parse(run.stdout) as { npy: string; shape: number[] }[];
      assert.deepEqual(result!.shape, [28, 28, 192]);
      npys.push(result!.npy);
    }
    const [a, b] = npys.map((path) => readNpy(path));
    const difference = maxAbsDifference(a!.data, b!.data);
    assert.ok(difference <= 1e-4 * largest(b!.data), `activations differ by ${difference}`);
  });

  test('predict: the same top classes and probabilities', async () => {
    const outputs: { predictions: { index: number; probability: number }[] }[][] = [];
    for (const engine of ['tfjs', 'onnxruntime']) {
      const run = await camviz(['predict', photo, ...common(), '--engine', engine, '--top', '5', '--json']);
      assert.equal(run.code, 0, run.stderr);
      outputs.push(JSON.parse(run.stdout));
    }
    const [tfjs, ort] = outputs.map((records) => records[0]!.predictions);
    assert.deepEqual(ort!.map((p) => p.index), tfjs!.map((p) => p.index));
    assert.ok(maxAbsDifference(ort!.map((p) => p.probability), tfjs!.map((p) => p.probability)) < 1e-4);
  });
});

describe('choosing the engine on the command line', () => {
  test('--engine bogus and CAMVIZ_ENGINE=bogus are usage errors', async () => {
    assertUsageError(await camviz(['predict', join(images, 'noise-1.png'), '--model', tinyModel, '--engine', 'bogus']), /--engine.*bogus/);
    assertUsageError(await camviz(['predict', join(images, 'noise-1.png'), '--model', tinyModel], { CAMVIZ_ENGINE: 'bogus' }), /CAMVIZ_ENGINE 'bogus' is not an engine/);
  });

  test('ONNX Runtime missing: --engine onnxruntime is a usage error naming the install option, before any output', async () => {
    const out = join(workDir, 'missing-strict');
    const run = await camviz(['gradcam', images, '--model', tinyModel, '--engine', 'onnxruntime', '--out', out, '--jobs', '1'], { CAMVIZ_ORT_MODULE: MISSING_ORT });
    assertUsageError(run, /--engine onnxruntime: ONNX Runtime is unavailable: .*is not installed: npm install onnxruntime-node .*ONNXRUNTIME_NODE_INSTALL=skip/);
    assert.ok(!existsSync(join(out, 'noise-1.gradcam.0.png')));
  });

  test('ONNX Runtime missing: auto runs on tfjs; --verbose says so once, the manifest says why', async () => {
    const out = join(workDir, 'missing-auto');
    const run = await camviz(['gradcam', images, '--model', tinyModel, '--out', out, '--jobs', '2', '--batch-size', '1', '--verbose'], { CAMVIZ_ORT_MODULE: MISSING_ORT });
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(linesMatching(run.stderr, /engine/), [`camviz: engine: tfjs (ONNX Runtime is unavailable: ${MISSING_ORT} is not installed)`]);
    const manifest = await readManifest(out);
    assert.equal(manifest.summary.ok, 2);
    assert.equal(manifest.engine?.kind, 'tfjs');
    assert.equal(manifest.engine?.requested, 'auto');
    assert.match(manifest.engine?.reason ?? '', /is not installed/);
    // Without --verbose, nothing is said about it.
    const quiet = await camviz(['predict', join(images, 'noise-1.png'), '--model', tinyModel], { CAMVIZ_ORT_MODULE: MISSING_ORT });
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.equal(quiet.stderr, '');
  });

  test('an ONNX Runtime that never answers: the run ends saying so, exit 1, and leaves no lock in its output folder', async () => {
    const stuck = join(workDir, 'stuck-ort.cjs');
    await writeFile(stuck, "module.exports = { InferenceSession: { create: () => new Promise(() => {}) }, Tensor: class {}, env: { versions: { common: '1.31.1' } } };\n");
    const out = join(workDir, 'stuck-out');
    const run = await camviz(['gradcam', images, '--model', tinyModel, '--engine', 'onnxruntime', '--out', out, '--jobs', '1'], { CAMVIZ_ORT_MODULE: stuck });
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /internal error: the command stopped before it finished/);
    assert.equal(existsSync(join(out, '.camviz.lock')), false, 'the lock was removed at exit');
  });

  test('doctor shows the onnxruntime line: its version and providers, or why it is absent', async () => {
    const missing = await camviz(['doctor'], { CAMVIZ_ORT_MODULE: MISSING_ORT });
    assert.equal(missing.code, 0, missing.stderr);
    assert.deepEqual(linesMatching(missing.stdout, /^onnxruntime: /).length, 1);
    assert.match(missing.stdout, /^onnxruntime: not installed: \/nonexistent\/onnxruntime-node is not installed; --engine auto runs everything on tfjs \(to add it: npm install onnxruntime-node/m);
    const json = await camviz(['doctor', '--json'], { CAMVIZ_ORT_MODULE: MISSING_ORT });
    assert.equal((JSON.parse(json.stdout) as { onnxruntime: { status: string } }).onnxruntime.status, 'not installed');
    if (!ortStatus.available) return;
    const present = await camviz(['doctor']);
    assert.match(present.stdout, new RegExp(`^onnxruntime: loaded onnxruntime-node ${ortStatus.version.replace(/\./g, '\\.')}, providers cpu`, 'm'));
  });
});

describe('a model that takes one image at a time though its input says any number (a Reshape to batch 1)', () => {
  const engines = ortStatus.available ? ['tfjs', 'onnxruntime'] : ['tfjs'];
  let batchOneModel: string;
  before(async () => {
    batchOneModel = join(workDir, 'batch-one.onnx');
    await writeFile(batchOneModel, tinyClassifier(false, 'reshape-to-batch-1'));
  });

  for (const engine of engines) {
    test(`${engine}: a folder run in batches of 4 fails no image, and each image's predictions are its own run's; nothing but camviz's lines on stderr`, async () => {
      const alone: unknown[] = [];
      for (const name of await readdir(images)) {
        const run = await camviz(['predict', join(images, name), '--model', batchOneModel, '--engine', engine, '--json']);
        assert.equal(run.code, 0, run.stderr);
        alone.push(...(JSON.parse(run.stdout) as { predictions: unknown }[]).map((record) => record.predictions));
      }
      const predicted = await camviz(['predict', images, '--model', batchOneModel, '--engine', engine, '--batch-size', '4', '--jobs', '1', '--json']);
      assert.equal(predicted.code, 0, predicted.stderr);
      assert.deepEqual((JSON.parse(predicted.stdout) as { predictions: unknown }[]).map((record) => record.predictions), alone);
      for (const command of ['gradcam', 'fmap']) {
        const out = join(workDir, `batch-one-${engine}-${command}`);
        const layer = command === 'fmap' ? ['--layer', 'relu'] : [];
        const run = await camviz([command, images, ...layer, '--model', batchOneModel, '--engine', engine, '--batch-size', '4', '--jobs', '1', '--out', out]);
        assert.equal(run.code, 0, run.stderr);
        const foreign = run.stderr.split('\n').filter((line) => line !== '' && !line.startsWith('camviz: '));
        assert.deepEqual(foreign, [], 'no line from ONNX Runtime\'s own logger');
        const manifest = await readManifest(out);
        assert.equal(manifest.summary.ok, 2);
        assert.equal(manifest.engine?.kind, engine);
      }
    });
  }
});

describe('the input sides a graph fixes', () => {
  const engines = ortStatus.available ? ['tfjs', 'onnxruntime'] : ['tfjs'];

  test('--size that contradicts a fixed side is a usage error naming the model and its size, on every engine', async () => {
    for (const engine of [...engines, 'auto']) {
      const run = await camviz(['predict', join(images, 'noise-1.png'), '--model', tinyModel, '--size', '32', '--engine', engine]);
      assertUsageError(run, /--size 32x32 does not fit the model's input 'input', fixed at 16x16 \(width x height\): give that size, or export the model with dynamic sides \(.*tiny\.onnx\)/);
    }
    // The size it declares is fine.
    const run = await camviz(['predict', join(images, 'noise-1.png'), '--model', tinyModel, '--size', '16']);
    assert.equal(run.code, 0, run.stderr);
  });

  for (const engine of engines) {
    test(`${engine}: one side fixed and one given as -1 (unknown): the run takes the fixed side for both, as the model alone`, async () => {
      const oneSide = join(workDir, 'one-side.onnx');
      await writeFile(oneSide, tinyClassifier(false, 'flatten', [-1, 16]));
      const layers = await camviz(['layers', '--model', oneSide, '--json']);
      assert.equal(layers.code, 0, layers.stderr);
      const ran = await camviz(['predict', join(images, 'noise-1.png'), '--model', oneSide, '--engine', engine, '--json']);
      const reference = await camviz(['predict', join(images, 'noise-1.png'), '--model', tinyModel, '--engine', engine, '--json']);
      assert.equal(ran.code, 0, ran.stderr);
      assert.deepEqual(JSON.parse(ran.stdout)[0].predictions, JSON.parse(reference.stdout)[0].predictions);
    });
  }
});

describe('per-model fallback and threads', { skip: skipWithoutOrt }, () => {
  test('a model ONNX Runtime refuses runs on tfjs under auto, said once for a run of two workers, naming the file and the reason', async () => {
    const out = join(workDir, 'refused-auto');
    const run = await camviz(['gradcam', images, '--model', refusedModel, '--out', out, '--jobs', '2', '--batch-size', '1']);
    assert.equal(run.code, 0, run.stderr);
    const said = linesMatching(run.stderr, /tfjs/);
    assert.equal(said.length, 1, run.stderr);
    assert.match(said[0]!, /^camviz: running on tfjs: ONNX Runtime refuses the model: .*not_a_relu_attribute.* \(.*refused\.onnx\)$/);
    const manifest = await readManifest(out);
    assert.equal(manifest.summary.ok, 2);
    assert.equal(manifest.engine?.kind, 'tfjs');
    assert.equal(manifest.engine?.fallback, 'rejected');
  });

  test('a model ONNX Runtime refuses is an error under --engine onnxruntime (exit 1, naming the file)', async () => {
    const run = await camviz(['predict', join(images, 'noise-1.png'), '--model', refusedModel, '--engine', 'onnxruntime']);
    assert.equal(run.code, 1, run.stderr);
    assert.equal(run.stdout, '');
    assert.match(run.stderr.trimEnd(), /^camviz: --engine onnxruntime: ONNX Runtime refuses the model: .*not_a_relu_attribute.* \(.*refused\.onnx\)$/);
  });

  test('ONNX Runtime threads: one a worker with --jobs 2, the cores with --jobs 1, CAMVIZ_ORT_THREADS for both; a CAMVIZ_ORT_THREADS that is not 1 to 256 threads is a usage error', async () => {
    const threadsOf = async (jobs: string, extra: NodeJS.ProcessEnv = {}): Promise<number | undefined> => {
      const out = join(workDir, `threads-${jobs}-${Object.keys(extra).length}`);
      const run = await camviz(['fmap', images, '--model', tinyModel, '--layer', 'relu', '--out', out, '--jobs', jobs, '--batch-size', '1'], extra);
      assert.equal(run.code, 0, run.stderr);
      const manifest = await readManifest(out);
      assert.equal(manifest.engine?.kind, 'onnxruntime');
      return manifest.engine?.threads;
    };
    assert.equal(await threadsOf('2'), 1);
    assert.equal(await threadsOf('1'), availableParallelism());
    assert.equal(await threadsOf('2', { CAMVIZ_ORT_THREADS: '3' }), 3);
    assert.equal(await threadsOf('1', { CAMVIZ_ORT_THREADS: '' }), availableParallelism(), 'empty: as unset');
    // Taken silently for 1 before (or, for thousands, 6 s and 488 MB of threads).
    for (const value of ['abc', '0', '-3', '2.5', '5000']) {
      const out = join(workDir, `threads-bad-${value}`);
      assertUsageError(await camviz(['fmap', images, '--model', tinyModel, '--layer', 'relu', '--out', out], { CAMVIZ_ORT_THREADS: value }), new RegExp(`CAMVIZ_ORT_THREADS must be a whole number of threads from 1 to 256, not "${value.replace('.', '\\.')}"`));
      assert.equal(existsSync(join(out, 'manifest.json')), false, `${value}: nothing written`);
    }
  });

  test("the ONNX writer's cache says on stderr when it finds its entry damaged and writes it again", async () => {
    const shapes = join(repoRoot, 'fixtures', 'shapes', 'circle-star.png');
    const first = await camviz(['predict', shapes, '--model', 'shapes', '--engine', 'onnxruntime']);
    assert.equal(first.code, 0, first.stderr);
    const onnxFolder = join(cacheDir, 'onnx');
    // A written model's record sits beside it: <key>.json and <key>.onnx.
    const names = await readdir(onnxFolder);
    const records = names.filter((name) => name.endsWith('.json') && names.includes(name.replace(/\.json$/, '.onnx')));
    assert.equal(records.length, 1, records.join(', '));
    await writeFile(join(onnxFolder, records[0]!), 'not JSON');
    const again = await camviz(['predict', shapes, '--model', 'shapes', '--engine', 'onnxruntime']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /the cached ONNX model is damaged \(its record is not JSON\); writing it again/);
    assert.equal(again.stdout, first.stdout);
  });

  test('an ONNX Runtime that never answers: the run ends with 1 and one line saying it stopped before it finished, not 0 with nothing done', async () => {
    // The real module, except that making a session never settles.
    const hanging = join(workDir, 'hanging-ort.cjs');
    await writeFile(hanging, `const real = require(${JSON.stringify(require.resolve('onnxruntime-node'))});\nmodule.exports = { ...real, InferenceSession: { create: () => new Promise(() => {}) } };\n`);
    const out = join(workDir, 'out-hanging');
    const run = await camviz(['predict', join(images, 'noise-1.png'), '--model', tinyModel, '--engine', 'onnxruntime', '--out', out], { CAMVIZ_ORT_MODULE: hanging });
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /^camviz: internal error: the command stopped before it finished/m);
  });

  test('a model whose output is NaN (a damaged weight) fails each image with one line on either engine: no "NaN%", no picture', async () => {
    const model = tinyOnnxModel();
    const damaged = join(workDir, 'nan-bias.onnx');
    await writeFile(damaged, onnxModelBytes({ ...model, initializers: model.initializers!.map((tensor) => (tensor.name === 'fc.bias' ? { ...tensor, values: tensor.values!.map(() => Number.NaN) } : tensor)) }));
    const image = join(images, 'noise-1.png');
    for (const engine of ['onnxruntime', 'tfjs']) {
      const predict = await camviz(['predict', image, '--model', damaged, '--preprocess', 'none', '--engine', engine]);
      assert.equal(predict.code, 1, `predict on ${engine}: ${predict.stderr}`);
      assert.doesNotMatch(predict.stdout, /NaN/, engine);
      assert.match(predict.stderr, /the model's output is not a number \(NaN\): its weights may be damaged/, engine);
      const out = join(workDir, `out-nan-${engine}`);
      const gradcam = await camviz(['gradcam', image, '--model', damaged, '--preprocess', 'none', '--engine', engine, '--out', out]);
      assert.equal(gradcam.code, 1, `gradcam on ${engine}: ${gradcam.stderr}`);
      assert.match(gradcam.stderr, /not a number \(NaN\)/, engine);
      assert.deepEqual((await readdir(out)).filter((name) => name.endsWith('.png')), [], `${engine}: no picture`);
    }
  });

  test("ONNX Runtime's telemetry is off unless the user sets ORT_DISABLE_TELEMETRY: nothing written under HOME", async () => {
    // ORT keeps its telemetry device id under ~/.cache/Microsoft when telemetry is on.
    const deviceFolder = (home: string): string => join(home, '.cache', 'Microsoft');
    const runWithHome = async (name: string, extra: NodeJS.ProcessEnv): Promise<string> => {
      const home = join(workDir, name);
      await mkdir(home);
      const env: NodeJS.ProcessEnv = { HOME: home, ...extra };
      if (!('ORT_DISABLE_TELEMETRY' in extra)) env['ORT_DISABLE_TELEMETRY'] = undefined;
      const run = await camviz(['fmap', images, '--model', tinyModel, '--layer', 'relu', '--engine', 'onnxruntime', '--out', join(home, 'out'), '--jobs', '1'], env);
      assert.equal(run.code, 0, run.stderr);
      return home;
    };
    assert.equal(existsSync(deviceFolder(await runWithHome('home-default', {}))), false, 'camviz opts out by default');
    // Worker threads that load ORT: a folder run's workers, and the session a second one-image run makes ahead.
    // A worker's process.env is its own copy, which ORT never reads: the main thread's setting must come first.
    const inWorkers = join(workDir, 'home-workers');
    await mkdir(inWorkers);
    const image = join(images, (await readdir(images))[0]!);
    const workerEnv: NodeJS.ProcessEnv = { HOME: inWorkers, ORT_DISABLE_TELEMETRY: undefined };
    for (const args of [[images, '--jobs', '2'], [image], [image]]) {
      const run = await camviz(['fmap', ...args, '--model', tinyModel, '--layer', 'relu', '--engine', 'onnxruntime', '--out', join(inWorkers, 'out')], workerEnv);
      assert.equal(run.code, 0, run.stderr);
    }
    assert.equal(existsSync(deviceFolder(inWorkers)), false, 'camviz opts out in worker threads too');
    // The user's own choice wins (and shows that this test sees the folder when ORT writes it).
    assert.equal(existsSync(deviceFolder(await runWithHome('home-opted-in', { ORT_DISABLE_TELEMETRY: '0' }))), true, 'ORT_DISABLE_TELEMETRY=0 keeps ORT\'s telemetry');
  });
});
