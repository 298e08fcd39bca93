/**
 * Cold start (issue 12): work a command does not need is not done. A TF.js
 * model does not import the ONNX or graph importers; guided backprop under
 * auto makes no ONNX Runtime session; what is skipped gives the same result
 * as before.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '../src/engine/tf.js';
import { useBackend, withWeightsBuiltOnCpu } from '../src/engine/backend.js';
import * as tfl from '../src/engine/tfl.js';
import { LayerGraph } from '../src/executor/graph.js';
import { readLocalModel } from '../src/model/io.js';
import { loadModel } from '../src/model/load.js';
import { modelFingerprint } from '../src/model/onnx-writer/cache.js';
import { SAVED_GRAPH_SUFFIX, loadOnnxRuntime } from '../src/engine/onnxruntime.js';
import { repoRoot } from './helpers/assets.js';
import { type CliRun, cliEnv, runCli } from './helpers/cli.js';
import { readManifest } from './helpers/files.js';
import { tinyClassifier } from './helpers/engine-models.js';

let workDir: string;
let tinyOnnx: string;

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'camviz-cold-start-'));
  tinyOnnx = join(workDir, 'tiny.onnx');
  await writeFile(tinyOnnx, tinyClassifier());
});
after(() => rm(workDir, { recursive: true, force: true }));

/** Records every camviz module a child process loads (a module hook), then loads `spec` with loadModel. */
const LOADING_SCRIPT = `
import { register } from 'node:module';
const hook = 'export async function load(url, context, next) { if (url.includes("/dist/src/")) process.stderr.write("LOADED " + url + "\\\\n"); return next(url, context); }';
register('data:text/javascript,' + encodeURIComponent(hook));
const { useBackend } = await import(process.env.CAMVIZ_TEST_BACKEND_URL);
const { loadModel } = await import(process.env.CAMVIZ_TEST_LOAD_URL);
await useBackend('cpu');
const model = await loadModel(process.env.CAMVIZ_TEST_SPEC);
process.stdout.write(JSON.stringify({ format: model.meta.format, classes: model.layersModel.outputs[0].shape.at(-1) }));
model.dispose();
`;

/** The camviz modules (paths under dist/src) loading `spec` imports, and what it loaded. */
function modulesLoadedFor(spec: string): Promise<{ modules: string[]; loaded: { format: string; classes: number } }> {
  const dist = join(repoRoot, 'dist', 'src');
  const env = {
    ...process.env,
    CAMVIZ_CACHE: join(workDir, 'cache'),
    CAMVIZ_TEST_SPEC: spec,
    CAMVIZ_TEST_BACKEND_URL: pathToFileURL(join(dist, 'engine', 'backend.js')).href,
    CAMVIZ_TEST_LOAD_URL: pathToFileURL(join(dist, 'model', 'load.js')).href,
  };
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--input-type=module', '-e', LOADING_SCRIPT], { cwd: workDir, env, timeout: 120_000 }, (error, stdout, stderr) => {
      if (error !== null) return reject(new Error(`${error.message}\n${stderr}`));
      const modules = stderr
        .split('\n')
        .filter((line) => line.startsWith('LOADED '))
        .map((line) => line.slice('LOADED '.length).replace(/^.*\/dist\/src\//, ''));
      resolve({ modules, loaded: JSON.parse(stdout) as { format: string; classes: number } });
    });
  });
}

/** The importers' modules; model/onnx/file.js only finds whether a path names an ONNX file (node's fs alone). */
const importers = (modules: readonly string[]): string[] =>
  modules.filter((path) => (path.startsWith('model/onnx/') && path !== 'model/onnx/file.js') || path.startsWith('model/tfgraph/'));

describe('lazy imports on the load path', () => {
  test('a TF.js layers model folder loads without the ONNX or graph importers', async () => {
    const { modules, loaded } = await modulesLoadedFor(join(repoRoot, 'models', 'shapes'));
    assert.deepEqual(loaded, { format: 'layers', classes: 5 });
    assert.ok(modules.includes('model/load.js'), 'the hook sees camviz modules');
    assert.deepEqual(importers(modules), []);
  });

  test('a TF.js model.json given as a file loads without the ONNX or graph importers', async () => {
    const { modules, loaded } = await modulesLoadedFor(join(repoRoot, 'models', 'shapes', 'model.json'));
    assert.deepEqual(loaded, { format: 'layers', classes: 5 });
    assert.deepEqual(importers(modules), []);
  });

  test('a zoo name loads without the ONNX or graph importers', async () => {
    const { modules, loaded } = await modulesLoadedFor('shapes');
    assert.deepEqual(loaded, { format: 'layers', classes: 5 });
    assert.deepEqual(importers(modules), []);
  });

  test('an .onnx file still loads through the ONNX importer', async () => {
    const { modules, loaded } = await modulesLoadedFor(tinyOnnx);
    assert.deepEqual(loaded, { format: 'onnx', classes: 2 });
    assert.ok(modules.includes('model/onnx/load.js'));
    assert.ok(!modules.some((path) => path.startsWith('model/tfgraph/')));
  });
});

describe('reading weights without copies', () => {
  test('peekValues gives the values dataSync gives, on wasm (a view on its heap) and on cpu', async () => {
    for (const backend of ['wasm', 'cpu'] as const) {
      await useBackend(backend);
      const tensors = [tf.tensor1d([1.5, -2, 3.25], 'float32'), tf.tensor1d([7, -8, 9], 'int32'), tf.tensor1d([1, 0, 1], 'bool')];
      try {
        for (const tensor of tensors) assert.deepEqual(Array.from(tf.peekValues(tensor)), Array.from(tensor.dataSync() as ArrayLike<number>), `${backend} ${tensor.dtype}`);
      } finally {
        tf.dispose(tensors);
      }
    }
  });

  test('the writer cache key hashes the same bytes with heap views as with dataSync copies', async () => {
    await useBackend('wasm');
    const model = await loadModel('shapes');
    try {
      const graph = LayerGraph.fromModel(model.layersModel!);
      const viewed = modelFingerprint(graph);
      // With the cpu backend active the weights (still on wasm) are read through dataSync.
      await useBackend('cpu');
      const copied = modelFingerprint(graph);
      assert.match(viewed, /^[0-9a-f]{64}$/);
      assert.equal(viewed, copied);
    } finally {
      model.dispose();
      await useBackend('wasm');
    }
  });
});

const ortStatus = loadOnnxRuntime();
const skipWithoutOrt: string | false = ortStatus.available ? false : `onnxruntime-node does not load here: ${ortStatus.reason}`;
const shapesImage = join(repoRoot, 'fixtures', 'shapes', 'circle-star.png');

/** camviz with the private cache `cacheDir`, and no engine settings from the caller's environment. */
function camviz(args: readonly string[], cacheDir: string, extra: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  const env = cliEnv(cacheDir, extra);
  for (const name of ['CAMVIZ_ENGINE', 'CAMVIZ_ORT_THREADS', 'CAMVIZ_ORT_MODULE', 'CAMVIZ_VERBOSE']) delete env[name];
  return runCli(args, { cwd: workDir, env, timeoutMs: 240_000 });
}

/** The optimised graphs ONNX Runtime saved in the cache: one per session camviz made. */
async function savedSessions(cacheDir: string): Promise<string[]> {
  const names = await readdir(join(cacheDir, 'onnx')).catch(() => [] as string[]);
  return names.filter((name) => name.endsWith(SAVED_GRAPH_SUFFIX));
}

describe('guided backprop under --engine auto', { skip: skipWithoutOrt }, () => {
  test('runs on tfjs without making an ONNX Runtime session, and writes what --engine tfjs writes', async () => {
    const cacheDir = join(workDir, 'guided-cache');
    const auto = join(workDir, 'guided-auto');
    const run = await camviz(['cam', shapesImage, '--model', 'shapes', '--method', 'guidedbackprop', '--out', auto, '--quiet', '--jobs', '1'], cacheDir);
    assert.equal(run.code, 0, run.stderr);
    const { engine } = await readManifest(auto);
    assert.equal(engine?.kind, 'tfjs');
    assert.equal(engine?.requested, 'auto');
    assert.match(engine?.reason ?? '', /guided backprop runs wholly on tfjs/);
    assert.equal(engine?.fallback, undefined, 'not a fallback: ONNX Runtime works here');
    assert.deepEqual(await savedSessions(cacheDir), []);

    const tfjs = join(workDir, 'guided-tfjs');
    const reference = await camviz(['cam', shapesImage, '--model', 'shapes', '--method', 'guidedbackprop', '--out', tfjs, '--quiet', '--jobs', '1', '--engine', 'tfjs'], cacheDir);
    assert.equal(reference.code, 0, reference.stderr);
    const png = (await readManifest(auto)).records[0]!.outputs![0]!;
    assert.deepEqual(await readFile(join(auto, png)), await readFile(join(tfjs, png)));
  });

  test('Grad-CAM under auto still runs on ONNX Runtime (its session is made and saved)', async () => {
    const cacheDir = join(workDir, 'gradcam-cache');
    const out = join(workDir, 'gradcam-auto');
    const run = await camviz(['cam', shapesImage, '--model', 'shapes', '--method', 'gradcam', '--out', out, '--quiet', '--jobs', '1'], cacheDir);
    assert.equal(run.code, 0, run.stderr);
    assert.equal((await readManifest(out)).engine?.kind, 'onnxruntime');
    assert.equal((await savedSessions(cacheDir)).length, 1);
  });
});

/** Makes a child process write the CommonJS modules it loaded (node's require cache) to `listFile` at exit. */
async function moduleListOptions(listFile: string): Promise<NodeJS.ProcessEnv> {
  const hook = join(workDir, 'list-modules.cjs');
  await writeFile(hook, `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(listFile)}, Object.keys(require.cache).join('\\n')));\n`);
  return { NODE_OPTIONS: `--require ${hook}` };
}

describe('a warm writer cache', { skip: skipWithoutOrt }, () => {
  test('writes the same PNG as the cold run, without loading protobufjs (nothing is encoded)', async () => {
    const cacheDir = join(workDir, 'warm-cache');
    const runs: { out: string; modules: string[] }[] = [];
    for (const name of ['cold', 'warm']) {
      const out = join(workDir, `writer-${name}`);
      const listFile = join(workDir, `modules-${name}.txt`);
      const run = await camviz(['gradcam', shapesImage, '--model', 'shapes', '--engine', 'onnxruntime', '--out', out, '--quiet', '--jobs', '1'], cacheDir, await moduleListOptions(listFile));
      assert.equal(run.code, 0, run.stderr);
      runs.push({ out, modules: (await readFile(listFile, 'utf8')).split('\n') });
    }
    const [cold, warm] = runs as [(typeof runs)[0], (typeof runs)[0]];
    const usesProtobufjs = (modules: string[]): boolean => modules.some((path) => /[\\/]node_modules[\\/]protobufjs[\\/]/.test(path));
    assert.ok(usesProtobufjs(cold.modules), 'the cold run writes (encodes) the ONNX model');
    assert.ok(!usesProtobufjs(warm.modules), 'the warm run encodes nothing');
    const png = (await readManifest(cold.out)).records[0]!.outputs![0]!;
    assert.deepEqual(await readFile(join(warm.out, png)), await readFile(join(cold.out, png)));
  });
});

describe('weights built on the cpu backend while wasm is active', () => {
  test('the build runs on cpu, and wasm is active again after it, also when it fails', async () => {
    await useBackend('wasm');
    assert.equal(await withWeightsBuiltOnCpu(async () => tf.getBackend()), 'cpu');
    assert.equal(tf.getBackend(), 'wasm');
    await assert.rejects(
      withWeightsBuiltOnCpu(async () => {
        throw new Error('a model that does not build');
      }),
      /a model that does not build/,
    );
    assert.equal(tf.getBackend(), 'wasm');
    // Any other backend is left as it is, and so is wasm set by hand rather than by useBackend.
    await useBackend('cpu');
    assert.equal(await withWeightsBuiltOnCpu(async () => tf.getBackend()), 'cpu');
    await tf.setBackend('wasm');
    assert.equal(await withWeightsBuiltOnCpu(async () => tf.getBackend()), 'wasm');
    await useBackend('wasm');
  });

  test('the model predicts exactly what tfjs-layers\' own load on wasm predicts, and wasm stays active', async () => {
    await useBackend('wasm');
    const model = await loadModel('shapes');
    const files = await readLocalModel(model.meta.modelJsonPath);
    const reference = await tfl.loadLayersModel({ load: async () => files.artifacts });
    try {
      assert.equal(tf.getBackend(), 'wasm');
      const { width, height } = model.meta.inputSize;
      const input = tf.randomUniform([2, height, width, 3], 0, 255, 'float32', 7);
      const outputs = [model.layersModel!.predict(input) as tf.Tensor, reference.predict(input) as tf.Tensor];
      try {
        assert.deepEqual(Array.from(outputs[0]!.dataSync()), Array.from(outputs[1]!.dataSync()));
      } finally {
        tf.dispose([input, ...outputs]);
      }
      assert.equal(tf.getBackend(), 'wasm');
    } finally {
      model.dispose();
      reference.dispose();
    }
  });
});
