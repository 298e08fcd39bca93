/**
 * Planned runs (tasks/cam-plan.ts, issue 12's cold start): a run that
 * computes a plannable Grad-CAM on ONNX Runtime writes its model's plan; a
 * later one-image run of the same request runs from it, loading neither
 * tfjs nor the model's layers, and writes what the full run writes, to
 * the byte: the same PNGs, maps and records. A plan is
 * used only while every file it depends on is unchanged, and never for a
 * request it does not serve.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadOnnxRuntime, releaseOrtSessions } from '../src/engine/onnxruntime.js';
import { camTargets } from '../src/cam/request.js';
import { SETTLED_MS } from '../src/model/file-fingerprints.js';
import { loadModel } from '../src/model/load.js';
import { decodeNpy } from '../src/render/npy.js';
import { type PlanSource, takeCamPlan, writeCamPlan } from '../src/tasks/cam-plan.js';
import type { ModelSpec } from '../src/tasks/types.js';
import { repoRoot, sharedAssetsDir, skipWithoutSharedAssets } from './helpers/assets.js';
import { runCli } from './helpers/cli.js';

const ortStatus = loadOnnxRuntime();
const skipWithoutOrt: string | false = ortStatus.available ? false : `onnxruntime-node does not load here: ${ortStatus.reason}`;

const shapesModel = join(repoRoot, 'models', 'shapes');
const shapesImage = join(repoRoot, 'fixtures', 'shapes', 'circle-star.png');

let workDir: string;
/** Prints `TFJS LOADED` at a process's exit when it required tfjs-core: NODE_OPTIONS=--require of it. */
let tfjsProbe: string;

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'camviz-planned-'));
  tfjsProbe = join(workDir, 'tfjs-probe.cjs');
  await writeFile(
    tfjsProbe,
    "process.on('exit', () => { if (Object.keys(require.cache).some((key) => key.includes('@tensorflow/tfjs-core'))) require('fs').writeSync(2, 'TFJS LOADED\\n'); });\n",
  );
});
after(() => rm(workDir, { recursive: true, force: true }));

interface Run {
  readonly out: string;
  readonly loadedTfjs: boolean;
  readonly stderr: string;
}

/** `camviz gradcam <image> ...args --raw --verbose` into a fresh folder, with the cache `cache` (and `env` beside it). */
async function gradcam(cache: string, image: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const out = await mkdtemp(join(workDir, 'out-'));
  const run = await runCli(['gradcam', image, ...args, '--raw', '--verbose', '--out', out], {
    cwd: workDir,
    env: { ...process.env, ...env, CAMVIZ_CACHE: cache, NODE_OPTIONS: `--require ${tfjsProbe}` },
    timeoutMs: 120_000,
  });
  assert.equal(run.code, 0, run.stderr);
  return { out, loadedTfjs: run.stderr.includes('TFJS LOADED'), stderr: run.stderr };
}

/**
 * Waits until the files of `folder` last changed SETTLED_MS before now (a
 * fresh clone's): plans trust only files settled before the run started.
 */
async function waitUntilSettled(folder: string): Promise<void> {
  const changed = await Promise.all((await readdir(folder)).map(async (name) => (await stat(join(folder, name))).ctimeMs));
  const wait = Math.max(...changed) + SETTLED_MS + 1_000 - Date.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
}

interface RunOutputs {
  /** The PNGs written, by name; each with its --raw map. */
  readonly pngs: readonly string[];
  readonly maps: ReadonlyMap<string, Float32Array>;
  readonly manifest: { records: { results: Record<string, unknown>[]; predictions: Record<string, unknown>[] }[]; model: unknown; engine: unknown; backend: unknown };
}

async function outputsOf(out: string): Promise<RunOutputs> {
  const names = await readdir(out);
  const pngs = names.filter((name) => name.endsWith('.png')).sort();
  assert.ok(pngs.length > 0, `PNGs in ${names.join(', ')}`);
  const maps = new Map<string, Float32Array>();
  for (const png of pngs) maps.set(png, decodeNpy(await readFile(join(out, png.replace(/\.png$/, '.npy')))).data as Float32Array);
  return { pngs, maps, manifest: JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as RunOutputs['manifest'] };
}

/**
 * The planned run wrote what the full run wrote, to the byte: the same
 * PNGs, the same raw maps, the same records. Both take the map with one
 * arithmetic (cam/channel-weighted-map.ts) and the probabilities with one
 * softmax (executor/softmax.ts).
 */
async function assertSameOutputs(full: string, planned: string): Promise<void> {
  const [a, b] = await Promise.all([outputsOf(full), outputsOf(planned)]);
  assert.deepEqual(b.pngs, a.pngs, 'the same file names: classes and method');
  for (const png of a.pngs) {
    const [mapA, mapB] = [a.maps.get(png)!, b.maps.get(png)!];
    assert.ok(Math.max(...mapA) > 0, 'a map that is not all zero');
    assert.deepEqual(Array.from(mapB), Array.from(mapA), `${png}: the raw map`);
    assert.ok((await readFile(join(planned, png))).equals(await readFile(join(full, png))), `${png}: the same bytes`);
  }
  const [recordA, recordB] = [a.manifest.records[0]!, b.manifest.records[0]!];
  assert.deepEqual(recordB.results, recordA.results);
  assert.deepEqual(recordB.predictions, recordA.predictions);
  assert.deepEqual(b.manifest.model, a.manifest.model);
  assert.deepEqual(b.manifest.engine, a.manifest.engine);
  assert.deepEqual(b.manifest.backend, a.manifest.backend);
}

describe('planned runs of the embedded model', { skip: skipWithoutOrt }, () => {
  let cache: string;
  let full: Run;
  let planned: Run;
  before(async () => {
    cache = await mkdtemp(join(workDir, 'cache-'));
    await waitUntilSettled(shapesModel);
    full = await gradcam(cache, shapesImage, ['--model', 'shapes']);
    planned = await gradcam(cache, shapesImage, ['--model', 'shapes']);
  });

  test('the first run loads the model and writes its plan; the second runs from it, without tfjs', async () => {
    assert.equal(full.loadedTfjs, true);
    assert.equal((await readdir(join(cache, 'plans'))).length, 1);
    assert.equal(planned.loadedTfjs, false, planned.stderr);
    assert.match(planned.stderr, /running from the model's plan/);
  });

  test("the planned run writes the full run's PNG, map and records", async () => {
    await assertSameOutputs(full.out, planned.out);
  });

  test('classes asked for, by index or name, and the top k run from the plan too, as the full run explains them', async () => {
    for (const args of [['--class', '1'], ['--class', 'star,circle'], ['--top-k', '3']]) {
      const fullRun = await gradcam(cache, shapesImage, ['--model', 'shapes', ...args], { CAMVIZ_PLANS: '0' });
      const plannedRun = await gradcam(cache, shapesImage, ['--model', 'shapes', ...args]);
      assert.equal(plannedRun.loadedTfjs, false, `${args.join(' ')} runs from the plan`);
      await assertSameOutputs(fullRun.out, plannedRun.out);
    }
  });

  test('a --class the model does not have is the same usage error (exit 2) with or without the plan', async () => {
    const runs = [];
    for (const env of [{}, { CAMVIZ_PLANS: '0' }]) {
      runs.push(await runCli(['gradcam', shapesImage, '--model', 'shapes', '--class', 'hexagon', '--out', join(workDir, 'usage')], { cwd: workDir, env: { ...process.env, ...env, CAMVIZ_CACHE: cache }, timeoutMs: 120_000 }));
    }
    assert.equal(runs[0]!.code, 2, runs[0]!.stderr);
    assert.equal(runs[0]!.stderr, runs[1]!.stderr);
    assert.equal(runs[1]!.code, 2);
  });

  test('requests a plan does not serve load the model: another method, layer or engine, smoothing, a folder', async () => {
    const others: (readonly string[])[] = [['--layer', 'conv2'], ['--engine', 'tfjs'], ['--aug-smooth'], ['--score', 'prob']];
    for (const args of others) {
      const run = await gradcam(cache, shapesImage, ['--model', 'shapes', ...args]);
      assert.equal(run.loadedTfjs, true, `${args.join(' ')} loads tfjs`);
    }
    // A folder's run, even of one image, is never planned: its outputs do not depend on how the folder is split.
    const folderRun = await gradcam(cache, join(repoRoot, 'fixtures', 'shapes'), ['--model', 'shapes', '--glob', 'circle-star.png']);
    assert.equal(folderRun.loadedTfjs, true, 'a folder of one image loads the model');
    const camRun = await runCli(['cam', shapesImage, '--model', 'shapes', '--method', 'gradcampp', '--out', join(workDir, 'pp'), '--verbose'], {
      cwd: workDir,
      env: { ...process.env, CAMVIZ_CACHE: cache, NODE_OPTIONS: `--require ${tfjsProbe}` },
      timeoutMs: 120_000,
    });
    assert.equal(camRun.code, 0, camRun.stderr);
    assert.match(camRun.stderr, /TFJS LOADED/);
  });

  test('a damaged plan is not used: the run loads the model, and writes the plan again', async () => {
    const folder = join(cache, 'plans');
    const [name] = await readdir(folder);
    const path = join(folder, name!);
    const bytes = await readFile(path);
    const middle = bytes.length >> 1;
    bytes[middle] = bytes[middle]! ^ 0xff;
    await writeFile(path, bytes);
    const damaged = await gradcam(cache, shapesImage, ['--model', 'shapes']);
    assert.equal(damaged.loadedTfjs, true);
    await assertSameOutputs(full.out, damaged.out);
    const again = await gradcam(cache, shapesImage, ['--model', 'shapes']);
    assert.equal(again.loadedTfjs, false, 'the plan was written again');
  });

  test('a plan whose saved graph is gone: the run loads the model (which saves the graph again)', async () => {
    const onnx = join(cache, 'onnx');
    for (const name of await readdir(onnx)) if (name.endsWith('.ort')) await rm(join(onnx, name));
    const run = await gradcam(cache, shapesImage, ['--model', 'shapes']);
    assert.equal(run.loadedTfjs, true);
    assert.match(run.stderr, /the model's plan does not run here/);
    await assertSameOutputs(full.out, run.out);
    assert.equal((await gradcam(cache, shapesImage, ['--model', 'shapes'])).loadedTfjs, false);
  });
});

describe('a plan holds while the files it depends on are unchanged', { skip: skipWithoutOrt }, () => {
  let folder: string;
  let spec: ModelSpec;
  let source: PlanSource;
  const savedCache = process.env['CAMVIZ_CACHE'];
  /** Files changed a moment ago count as settled for these writes (the default is this process's start, less SETTLED_MS). */
  const settledBefore = (): number => Date.now() + SETTLED_MS + 60_000;

  before(async () => {
    process.env['CAMVIZ_CACHE'] = await mkdtemp(join(workDir, 'cache-'));
    folder = join(workDir, 'shapes-copy');
    await cp(shapesModel, folder, { recursive: true });
    spec = { model: folder, engine: 'onnxruntime' };
    const model = await loadModel(folder, { engine: 'onnxruntime' });
    try {
      const [layer] = camTargets(model, []);
      const pass = (await model.executor()).passPlan?.(layer!);
      assert.ok(pass !== undefined, 'the embedded model has a pooled linear head on ONNX Runtime');
      source = { spec, pass, meta: model.meta, layerLabel: layer!.path, backend: { kind: 'wasm', package: '@tensorflow/tfjs-backend-wasm' }, modelFiles: model.sourceFiles!.identities.map((identity) => identity.path) };
    } finally {
      model.dispose();
    }
  });
  after(() => {
    if (savedCache === undefined) delete process.env['CAMVIZ_CACHE'];
    else process.env['CAMVIZ_CACHE'] = savedCache;
  });

  test('files changed since the process started are not trusted: no plan is written', async () => {
    assert.equal(await writeCamPlan(source), false);
    assert.equal((await takeCamPlan(spec)).plan, undefined);
  });

  test('written, it is found with the kernel and names it was written with', async () => {
    assert.equal(await writeCamPlan(source, settledBefore()), true);
    const plan = (await takeCamPlan(spec)).plan;
    assert.ok(plan !== undefined);
    assert.deepEqual(plan.pass, source.pass);
    assert.equal(plan.layerLabel, source.layerLabel);
    assert.deepEqual(plan.meta.labels, source.meta.labels);
    // Other settings are other plans.
    assert.equal((await takeCamPlan({ ...spec, preprocess: 'torch' })).plan, undefined);
    assert.equal((await takeCamPlan({ ...spec, size: '64' })).plan, undefined);
  });

  test('a changed weight file, a camviz.json added, a changed labels file: each undoes it', async () => {
    const weights = (await readdir(folder)).find((name) => name.endsWith('.bin'))!;
    assert.ok((await takeCamPlan(spec)).plan !== undefined);
    // The same bytes written again: a write is a write (the file's change time moves).
    await writeFile(join(folder, weights), await readFile(join(folder, weights)));
    assert.equal((await takeCamPlan(spec)).plan, undefined, 'weights rewritten');

    await writeCamPlan(source, settledBefore());
    assert.ok((await takeCamPlan(spec)).plan !== undefined);
    await writeFile(join(folder, 'camviz.json'), JSON.stringify({ preprocess: 'unit' }));
    assert.equal((await takeCamPlan(spec)).plan, undefined, 'camviz.json added');

    const labels = join(workDir, 'labels.json');
    await writeFile(labels, JSON.stringify(['a', 'b', 'c', 'd', 'e']));
    const withLabels: PlanSource = { ...source, spec: { ...spec, labels } };
    assert.equal(await writeCamPlan(withLabels, settledBefore()), true);
    assert.ok((await takeCamPlan(withLabels.spec)).plan !== undefined);
    await writeFile(labels, JSON.stringify(['v', 'w', 'x', 'y', 'z']));
    assert.equal((await takeCamPlan(withLabels.spec)).plan, undefined, 'labels changed');
  });
});

describe('plans and links, forged plans, a cache that cannot hold plans', { skip: skipWithoutOrt }, () => {
  const savedCache = process.env['CAMVIZ_CACHE'];
  let cache: string;
  /** Files changed a moment ago count as settled for these writes. */
  const settledBefore = (): number => Date.now() + SETTLED_MS + 60_000;
  /** The plan a full run of `folder` would write, as the cam task makes it. */
  async function sourceOf(folder: string): Promise<PlanSource> {
    const model = await loadModel(folder, { engine: 'onnxruntime' });
    try {
      const [layer] = camTargets(model, []);
      const pass = (await model.executor()).passPlan!(layer!)!;
      return { spec: { model: folder }, pass, meta: model.meta, layerLabel: layer!.path, backend: { kind: 'wasm', package: '@tensorflow/tfjs-backend-wasm' }, modelFiles: model.sourceFiles!.usedPaths };
    } finally {
      model.dispose();
    }
  }
  /**
   * `folder` holding a link to the embedded model's model.json and copies of
   * its weights (a weight link may not leave the folder), beside a link to
   * `camvizJson`.
   */
  async function linkedCopy(name: string, camvizJson: string): Promise<string> {
    const folder = join(workDir, name);
    await mkdir(folder);
    for (const file of await readdir(shapesModel)) {
      if (file === 'model.json') await symlink(join(shapesModel, file), join(folder, file));
      else if (file !== 'camviz.json') await cp(join(shapesModel, file), join(folder, file));
    }
    await symlink(camvizJson, join(folder, 'camviz.json'));
    return folder;
  }

  before(async () => {
    cache = await mkdtemp(join(workDir, 'cache-'));
    process.env['CAMVIZ_CACHE'] = cache;
    // This process's sessions were made in other caches: the executor's first session must save its graph in this one.
    releaseOrtSessions();
  });
  after(() => {
    if (savedCache === undefined) delete process.env['CAMVIZ_CACHE'];
    else process.env['CAMVIZ_CACHE'] = savedCache;
  });

  test('two folders linking one model are two plans: each run finds its own folder\'s camviz.json', async () => {
    const shapesJson = JSON.parse(await readFile(join(shapesModel, 'camviz.json'), 'utf8')) as Record<string, unknown>;
    const renamed = join(workDir, 'renamed.json');
    await writeFile(renamed, JSON.stringify({ ...shapesJson, labels: ['A', 'B', 'C', 'D', 'E'] }));
    const original = join(workDir, 'original.json');
    await writeFile(original, JSON.stringify(shapesJson));
    const [first, second] = [await linkedCopy('linked-1', original), await linkedCopy('linked-2', renamed)];
    assert.equal(await writeCamPlan(await sourceOf(first), settledBefore()), true);
    assert.ok((await takeCamPlan({ model: first })).plan !== undefined);
    assert.equal((await takeCamPlan({ model: second })).plan, undefined, 'the other folder has no plan');
    assert.equal(await writeCamPlan(await sourceOf(second), settledBefore()), true);
    assert.deepEqual((await takeCamPlan({ model: second })).plan?.meta.labels, ['A', 'B', 'C', 'D', 'E']);
    assert.notDeepEqual((await takeCamPlan({ model: first })).plan?.meta.labels, ['A', 'B', 'C', 'D', 'E']);
  });

  test('a link in the model folder pointed elsewhere undoes the plan, though the file it led to is unchanged', async () => {
    const original = join(workDir, 'original.json');
    const folder = await linkedCopy('linked-3', original);
    assert.equal(await writeCamPlan(await sourceOf(folder), settledBefore()), true);
    assert.ok((await takeCamPlan({ model: folder })).plan !== undefined);
    const other = join(workDir, 'other.json');
    await writeFile(other, await readFile(original));
    await rm(join(folder, 'camviz.json'));
    await symlink(other, join(folder, 'camviz.json'));
    const read = await takeCamPlan({ model: folder });
    assert.equal(read.plan, undefined);
    assert.match(read.why ?? '', /camviz\.json changed since it was written/);
  });

  test('a sealed plan its saved graph does not match is removed, and the run loads the model: its outputs are the full run\'s', async () => {
    const folder = await linkedCopy('linked-4', join(workDir, 'original.json'));
    const source = await sourceOf(folder);
    // The activations' channels on the wrong axis: the seal holds (camviz wrote it), the pass's shapes do not.
    const forged: PlanSource = { ...source, pass: { ...source.pass, channelAxis: source.pass.channelAxis === 1 ? 3 : 1 } };
    assert.equal(await writeCamPlan(forged, settledBefore()), true);
    const run = await gradcam(cache, shapesImage, ['--model', folder]);
    assert.equal(run.loadedTfjs, true);
    assert.match(run.stderr, /the model's plan does not run here \(.*the plan is removed\)/);
    assert.equal((await takeCamPlan({ model: folder })).plan, undefined);
    const reference = await gradcam(cache, shapesImage, ['--model', folder], { CAMVIZ_PLANS: '0' });
    await assertSameOutputs(reference.out, run.out);
  });

  test('a cache where plans cannot be written: the run succeeds all the same', async () => {
    const blocked = await mkdtemp(join(workDir, 'cache-'));
    await writeFile(join(blocked, 'plans'), 'a file where the folder would be');
    await waitUntilSettled(shapesModel);
    const first = await gradcam(blocked, shapesImage, ['--model', 'shapes']);
    const second = await gradcam(blocked, shapesImage, ['--model', 'shapes']);
    assert.equal(second.loadedTfjs, true, 'no plan, so the model is loaded');
    await assertSameOutputs(first.out, second.out);
  });
});

describe('planned runs of the shared models', { skip: skipWithoutOrt || skipWithoutSharedAssets }, () => {
  const image = join(sharedAssetsDir, 'images', 'both.png');
  const models: [string, string[]][] = [
    ['MobileNet v1 (TF.js)', ['--model', join(sharedAssetsDir, 'models', 'mobilenet_v1_0.75_224')]],
    ['MobileNet v1 (ONNX export)', ['--model', join(sharedAssetsDir, 'onnx', 'mobilenet_v1_0.75_224.onnx'), '--preprocess', 'tf']],
    ['Darknet-tiny (identity head)', ['--model', join(sharedAssetsDir, 'models', 'darknet_tiny'), '--preprocess', 'unit', '--labels', join(sharedAssetsDir, 'models', 'darknet_tiny', 'darknet_imagenet_classes.json')]],
  ];
  for (const [name, args] of models) {
    test(`${name}: the planned run writes the full run's outputs`, async () => {
      const cache = await mkdtemp(join(workDir, 'cache-'));
      const full = await gradcam(cache, image, args);
      const planned = await gradcam(cache, image, args);
      assert.equal(full.loadedTfjs, true);
      assert.equal(planned.loadedTfjs, false, planned.stderr);
      await assertSameOutputs(full.out, planned.out);
    });
  }
});
