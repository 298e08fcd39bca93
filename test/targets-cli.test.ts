/**
 * `--target` through the command line (`node bin/camviz.js`, wasm), on small
 * models saved by this file, whose scores are computed here by hand: the
 * records say their target, the files are named after it, and a target
 * that does not fit the model is a usage error (exit 2, one line, before
 * any image) naming the model's outputs.
 *
 * Every model reads 4x4 RGB with `--preprocess none`, so that the model
 * input is the image's pixel values: trunk `conv` (1x1, two filters F, no
 * bias), A_k(p) = sum_i F[i][k] pixel_i(p).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import sharp from 'sharp';

import { runBatch } from '../src/batch/runner.js';
import { useBackend } from '../src/engine/backend.js';
import { camTaskOptions } from '../src/tasks/defaults.js';
import type { CamResultRecord } from '../src/tasks/types.js';
import { type CliRun, cliEnv, runCli } from './helpers/cli.js';
import { listFiles, readManifest } from './helpers/files.js';
import { onnxModelBytes } from './helpers/onnx.js';
import { assertUsageError } from './helpers/usage-error.js';
import { saveLayersModel } from './helpers/layers-model-file.js';
import { type TrunkSpec, backboneModel, segmentationModel, sigmoidModel, twoOutputModel } from './helpers/target-models.js';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-targets-cli-'));
after(() => rm(workDir, { recursive: true, force: true }));

const SIDE = 4;
const P = SIDE * SIDE;
/** F[input channel][k] */
const F = [
  [0.01, -0.02],
  [0.03, 0.01],
  [-0.01, 0.02],
];
const K = F[0]!.length;

const sum = (values: readonly number[]): number => values.reduce((s, v) => s + v, 0);
const dot = (a: readonly number[], b: readonly number[]): number => sum(a.map((v, i) => v * b[i]!));

/** A 4x4 RGB image's pixels, deterministic per seed. */
function pixels(seed: number): Uint8Array {
  return Uint8Array.from({ length: P * 3 }, (_, i) => (i * 53 + seed * 97 + 11) % 256);
}

/** A_k(p) for an image's pixels. */
function activations(rgb: Uint8Array): number[][] {
  return Array.from({ length: K }, (_, k) => Array.from({ length: P }, (_, p) => sum([0, 1, 2].map((i) => F[i]![k]! * rgb[p * 3 + i]!))));
}
const pooled = (acts: number[][]): number[] => acts.map((channel) => sum(channel) / P);

async function writeImage(name: string, rgb: Uint8Array, width = SIDE, height = SIDE): Promise<string> {
  const path = join(workDir, name);
  await sharp(Buffer.from(rgb), { raw: { width, height, channels: 3 } }).png().toFile(path);
  return path;
}

async function writeMask(name: string, width: number, height: number, inside: (x: number, y: number) => boolean): Promise<string> {
  const path = join(workDir, name);
  const data = Buffer.alloc(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[y * width + x] = inside(x, y) ? 255 : 0;
  await sharp(data, { raw: { width, height, channels: 1 } }).png().toFile(path);
  return path;
}

/** Saves a layers model as model.json + weights.bin in a fresh folder. */
async function saveModel(name: string, model: tfl.LayersModel): Promise<string> {
  const folder = join(workDir, name);
  await saveLayersModel(model, folder);
  model.dispose();
  return folder;
}

const TRUNK: TrunkSpec = { side: SIDE, kernel: F };

const SIGMOID_W = [0.8, -0.6];
const VALUE_W = [
  [0.3, -1, 2],
  [1, 0.5, -0.25],
]; // VALUE_W[k][unit]
const PROBS_W = [
  [1, -1],
  [0.5, 2],
]; // PROBS_W[k][class]
const SEG_K = [
  [1, -0.5],
  [-2, 1],
]; // SEG_K[k][class]

let outCount = 0;

/** The CLI on `model` with raw pixel inputs, wasm, one worker, quiet, into a fresh folder. */
async function camviz(model: string, ...args: string[]): Promise<{ run: CliRun; out: string }> {
  const out = join(workDir, `out-${++outCount}`);
  const run = await runCli([...args, '--model', model, '--preprocess', 'none', '--backend', 'wasm', '-j', '1', '-q', '--out', out], {
    cwd: workDir,
    env: cliEnv(join(workDir, 'cache')),
    timeoutMs: 120_000,
  });
  return { run, out };
}

function recordsOf(run: CliRun): CamResultRecord[] {
  assert.equal(run.code, 0, `exit ${run.code}: ${run.stderr}`);
  return JSON.parse(run.stdout) as CamResultRecord[];
}

function assertNear(actual: number | null, expected: number, what: string): void {
  assert.ok(actual !== null, `${what}: null`);
  assert.ok(Math.abs(actual - expected) <= 1e-4 * Math.max(1, Math.abs(expected)), `${what}: ${actual} vs ${expected}`);
}

const models: Record<'sigmoid' | 'twoOutputs' | 'segmentation' | 'backbone', string> = { sigmoid: '', twoOutputs: '', segmentation: '', backbone: '' };
const image = pixels(1);
let imagePath = '';

before(async () => {
  await useBackend('cpu');
  models.sigmoid = await saveModel('sigmoid', sigmoidModel(TRUNK, SIGMOID_W));
  models.twoOutputs = await saveModel('two-outputs', twoOutputModel(TRUNK, PROBS_W, VALUE_W));
  models.segmentation = await saveModel('segmentation', segmentationModel(TRUNK, SEG_K));
  await writeFile(join(models.segmentation, 'camviz.json'), JSON.stringify({ labels: ['road', 'car'] }));
  models.backbone = await saveModel('backbone', backboneModel(TRUNK));
  imagePath = await writeImage('image.png', image);
});

describe('sigmoid heads', () => {
  const logit = (): number => dot(SIGMOID_W, pooled(activations(image)));

  test('are detected: the default target is sigmoid, Y the logit, the file named as for a class', async () => {
    const { run, out } = await camviz(models.sigmoid, 'gradcam', imagePath, '--json');
    const [record] = recordsOf(run);
    assert.deepEqual(record!.target, { kind: 'sigmoid', class: 0, negated: false });
    assertNear(record!.score, logit(), 'score');
    assertNear(record!.probability, 1 / (1 + Math.exp(-logit())), 'probability');
    assert.deepEqual(await listFiles(out), ['image.gradcam.0.png', 'manifest.json']);
  });

  test('--class neg explains the negative class: the negated logit, its own file', async () => {
    const { run, out } = await camviz(models.sigmoid, 'gradcam', imagePath, '--class', 'neg', '--json');
    const [record] = recordsOf(run);
    assert.deepEqual(record!.target, { kind: 'sigmoid', class: 0, negated: true });
    assertNear(record!.score, -logit(), 'score');
    assert.deepEqual(await listFiles(out), ['image.gradcam.0.neg.png', 'manifest.json']);
  });

  test('an ONNX export ending in a Sigmoid node is a sigmoid head too: Y is the logit before it, not the probability', async () => {
    // NCHW input -> Conv 1x1 (weights F) -> GlobalAveragePool -> Flatten -> Gemm (SIGMOID_W) -> Sigmoid.
    const folder = join(workDir, 'onnx-sigmoid');
    await mkdir(folder, { recursive: true });
    const model = onnxModelBytes({
      inputs: [{ name: 'input', shape: ['batch', 3, SIDE, SIDE] }],
      outputs: [{ name: 'probability', shape: ['batch', 1] }],
      initializers: [
        { name: 'conv.weight', dims: [K, 3, 1, 1], values: Array.from({ length: K * 3 }, (_, i) => F[i % 3]![Math.floor(i / 3)]!) },
        { name: 'fc.weight', dims: [1, K], values: SIGMOID_W },
      ],
      nodes: [
        { name: '/conv/Conv', opType: 'Conv', inputs: ['input', 'conv.weight'], outputs: ['features'] },
        { name: '/pool/GlobalAveragePool', opType: 'GlobalAveragePool', inputs: ['features'], outputs: ['pooled'] },
        { name: '/Flatten', opType: 'Flatten', inputs: ['pooled'], outputs: ['flat'] },
        { name: '/fc/Gemm', opType: 'Gemm', inputs: ['flat', 'fc.weight'], outputs: ['logit'], attributes: [{ name: 'transB', i: 1 }] },
        { name: '/Sigmoid', opType: 'Sigmoid', inputs: ['logit'], outputs: ['probability'] },
      ],
    });
    await writeFile(join(folder, 'model.onnx'), model);
    const [positive] = recordsOf((await camviz(join(folder, 'model.onnx'), 'gradcam', imagePath, '--layer', 'conv', '--json')).run);
    assert.deepEqual(positive!.target, { kind: 'sigmoid', class: 0, negated: false });
    assertNear(positive!.score, logit(), 'score');
    const [negative] = recordsOf((await camviz(join(folder, 'model.onnx'), 'gradcam', imagePath, '--layer', 'conv', '--class', 'neg', '--json')).run);
    assertNear(negative!.score, -logit(), 'negated score');
  });

  test('--score prob does not combine with --target sigmoid', async () => {
    assertUsageError((await camviz(models.sigmoid, 'gradcam', imagePath, '--score', 'prob', '--target', 'sigmoid')).run, /--score prob is --target prob/);
  });
});

describe('two outputs', () => {
  test('--target output in the library: the record\'s probability is null in memory (not NaN), in the manifest, and the JSON is as --json prints it', async () => {
    const outDir = join(workDir, `out-${++outCount}`);
    const task = camTaskOptions(outDir, { model: { model: models.twoOutputs, backend: 'cpu', preprocess: 'none' }, target: { kind: 'output', output: 'value', unit: 2 } });
    const result = await runBatch({ task, inputs: [imagePath], jobs: 1, manifest: true, quiet: true });
    assert.equal(result.exitCode, 0);
    const [record] = result.records;
    const camRecord = record!.results![0] as CamResultRecord;
    assert.equal(camRecord.probability, null);
    assert.equal(record!.predictions![0]!.probability, null);
    const manifest = await readManifest(outDir);
    assert.equal((manifest.records[0]!.results![0] as CamResultRecord).probability, null);
    assert.equal(JSON.stringify(manifest.records[0]!.results), JSON.stringify(record!.results));
    const { run } = await camviz(models.twoOutputs, 'gradcam', imagePath, '--target', 'output', '--output', 'value', '--unit', '2', '--json');
    // As --json prints it, but for the paths (absolute there, relative to the output folder here).
    const withoutPaths = ({ input: _input, png: _png, ...rest }: CamResultRecord): Partial<CamResultRecord> => rest;
    assert.deepEqual(recordsOf(run).map(withoutPaths), (record!.results as CamResultRecord[]).map(withoutPaths));
  });

  test('--target output --output value --unit 2: Y is that unit, named in the record and the file', async () => {
    const { run, out } = await camviz(models.twoOutputs, 'gradcam', imagePath, '--target', 'output', '--output', 'value', '--unit', '2', '--json');
    const [record] = recordsOf(run);
    assert.deepEqual(record!.target, { kind: 'output', output: 'value', unit: 2 });
    assert.equal(record!.probability, null);
    assertNear(record!.score, dot(VALUE_W.map((row) => row[2]!), pooled(activations(image))), 'score');
    const manifest = await readManifest(out);
    // The same record as --json's, but for paths: the manifest's are relative to its folder.
    const withoutPaths = ({ input: _input, png: _png, ...rest }: CamResultRecord): Partial<CamResultRecord> => rest;
    assert.deepEqual((manifest.records[0]!.results as CamResultRecord[]).map(withoutPaths), [withoutPaths(record!)]);
    assert.equal(manifest.records[0]!.predictions![0]!.probability, null);
    assert.deepEqual(await listFiles(out), ['image.gradcam.output.value.2.png', 'manifest.json']);
    // By index, the same output.
    const [byIndex] = recordsOf((await camviz(models.twoOutputs, 'gradcam', imagePath, '--target', 'output', '--output', '1', '--unit', '2', '--json')).run);
    assert.equal(byIndex!.score, record!.score);
  });

  test('usage errors name the outputs: unknown --output, --unit beyond the output, --class with output, region on a classifier', async () => {
    const outputs = /0 'probs' \[\?, 2\], 1 'value' \[\?, 3\]/;
    assertUsageError((await camviz(models.twoOutputs, 'gradcam', imagePath, '--target', 'output', '--output', 'nope', '--unit', '0')).run, new RegExp(`--output 'nope' is not a model output; .*${outputs.source}`));
    assertUsageError((await camviz(models.twoOutputs, 'gradcam', imagePath, '--target', 'output', '--output', 'value', '--unit', '3')).run, /--unit 3 is beyond output 'value' \[\?, 3\]: its units are 0 to 2/);
    assertUsageError((await camviz(models.twoOutputs, 'gradcam', imagePath, '--target', 'output', '--output', 'value')).run, /give --unit/);
    assertUsageError((await camviz(models.twoOutputs, 'gradcam', imagePath, '--target', 'output', '--class', '1')).run, /--target output picks its unit with --unit, not --class/);
    assertUsageError((await camviz(models.twoOutputs, 'gradcam', imagePath, '--target', 'output', '--unit', '1', '--top-k', '2')).run, /--top-k does not apply to --target output/);
    const region = await camviz(models.twoOutputs, 'gradcam', imagePath, '--target', 'region', '--region', '0,0,2,2');
    assertUsageError(region.run, new RegExp(`--target region needs a segmentation output .*${outputs.source}`));
    assert.deepEqual(await listFiles(region.out, { missingAsEmpty: true }), [], 'nothing written');
  });
});

describe('prob', () => {
  test('--score prob is --target prob: the same record and the same raw map, in the file of the class', async () => {
    const runs = await Promise.all([['--target', 'prob'], ['--score', 'prob']].map((flags) => camviz(models.twoOutputs, 'gradcam', imagePath, ...flags, '--class', '1', '--raw', '--json')));
    const [byTarget, byScore] = runs.map(({ run }) => recordsOf(run)[0]!);
    assert.deepEqual(byTarget!.target, { kind: 'prob', class: 1 });
    assert.deepEqual(byScore!.target, byTarget!.target);
    assert.equal(byScore!.score, byTarget!.score);
    // Y is the probability of class 1 of the softmax head `probs`.
    const logits = [0, 1].map((c) => dot(PROBS_W.map((row) => row[c]!), pooled(activations(image))));
    assertNear(byTarget!.score, Math.exp(logits[1]!) / (Math.exp(logits[0]!) + Math.exp(logits[1]!)), 'probability');
    const maps = await Promise.all(runs.map(({ out }) => readFile(join(out, 'image.gradcam.1.npy'))));
    assert.ok(maps[0]!.equals(maps[1]!), 'the same raw map');
  });
});

describe('segmentation', () => {
  /** Y_c = sum_p M(p) sum_k SEG_K[k][c] A_k(p) */
  const regionScore = (mask: readonly number[], c: number): number => {
    const acts = activations(image);
    return sum(mask.map((m, p) => m * sum(acts.map((channel, k) => SEG_K[k]![c]! * channel[p]!))));
  };
  /** The box 1,1,3,3 of the 4x4 image: cells (1..2, 1..2). */
  const BOX = [0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0];

  test('--target region --region: class c\'s pre-softmax score summed over the box (the class by its label)', async () => {
    const { run, out } = await camviz(models.segmentation, 'cam', imagePath, '--method', 'hirescam', '--layer', 'conv', '--target', 'region', '--region', '1,1,3,3', '--class', 'car', '--json');
    const [record] = recordsOf(run);
    assert.deepEqual(record!.class, { index: 1, label: 'car' });
    assert.deepEqual(record!.target, { kind: 'region', class: 1, output: 'seg', region: [1, 1, 3, 3] });
    assertNear(record!.score, regionScore(BOX, 1), 'score');
    assert.deepEqual(await listFiles(out), ['image.hirescam.region.1.png', 'manifest.json']);
  });

  test('--mask of another size is rescaled to the image: the same region, the same score', async () => {
    // 8x8 mask of the box 1..3 of the 4x4 image: pixels 2..6.
    const mask = await writeMask('mask.png', 8, 8, (x, y) => x >= 2 && x < 6 && y >= 2 && y < 6);
    const [record] = recordsOf((await camviz(models.segmentation, 'gradcam', imagePath, '--layer', 'conv', '--target', 'region', '--mask', mask, '--class', '0', '--json')).run);
    assert.deepEqual(record!.target, { kind: 'region', class: 0, output: 'seg', mask });
    assertNear(record!.score, regionScore(BOX, 0), 'score');
  });

  test('usage errors: an empty mask (named), a box that is empty, no region at all, --mask without --target region', async () => {
    const empty = await writeMask('empty.png', 4, 4, () => false);
    const run = (await camviz(models.segmentation, 'gradcam', imagePath, '--target', 'region', '--mask', empty)).run;
    assertUsageError(run, /the mask is empty/);
    assert.ok(run.stderr.includes(empty), run.stderr);
    assertUsageError((await camviz(models.segmentation, 'gradcam', imagePath, '--target', 'region', '--region', '3,3,1,1')).run, /--region '3,3,1,1': the box is empty/);
    assertUsageError((await camviz(models.segmentation, 'gradcam', imagePath, '--target', 'region')).run, /needs --region x0,y0,x1,y1 or --mask/);
    const mask = await writeMask('mask-2.png', 4, 4, (x) => x < 2);
    assertUsageError((await camviz(models.segmentation, 'gradcam', imagePath, '--mask', mask)).run, /--mask does not apply to --target class/);
  });
});

describe('similarity', () => {
  test('to the image itself is 1; the record names the reference and the default embedding (the pooled features)', async () => {
    const { run, out } = await camviz(models.twoOutputs, 'gradcam', imagePath, '--target', 'similarity', '--reference', imagePath, '--json');
    const [record] = recordsOf(run);
    assert.deepEqual(record!.target, { kind: 'similarity', embedding: 'gap', reference: imagePath });
    assertNear(record!.score, 1, 'cosine similarity');
    assert.deepEqual(await listFiles(out), ['image.gradcam.similarity.png', 'manifest.json']);
  });

  test('to another image: the cosine of the pooled features, by hand', async () => {
    const other = pixels(7);
    const otherPath = await writeImage('other.png', other);
    const [record] = recordsOf((await camviz(models.twoOutputs, 'cam', imagePath, '--method', 'scorecam', '--target', 'similarity', '--reference', otherPath, '--embedding', 'gap', '--json')).run);
    const e = pooled(activations(image));
    const r = pooled(activations(other));
    assertNear(record!.score, dot(e, r) / Math.sqrt(dot(e, e) * dot(r, r)), 'cosine similarity');
  });

  test('usage errors: no --reference, a reference that is not there, an unknown embedding layer', async () => {
    assertUsageError((await camviz(models.twoOutputs, 'gradcam', imagePath, '--target', 'similarity')).run, /--target similarity needs --reference/);
    assertUsageError((await camviz(models.twoOutputs, 'gradcam', imagePath, '--target', 'similarity', '--reference', join(workDir, 'absent.png'))).run, /cannot read the --reference image .*absent\.png/);
    assertUsageError((await camviz(models.twoOutputs, 'gradcam', imagePath, '--target', 'similarity', '--reference', imagePath, '--embedding', 'nope')).run, /layer 'nope' is not in the model/);
  });
});

describe('no class head', () => {
  test('Eigen-CAM runs on a backbone (no score needed); a method that needs a score is refused, naming the output', async () => {
    const { run, out } = await camviz(models.backbone, 'cam', imagePath, '--method', 'eigencam', '--layer', 'conv', '--json');
    const [record] = recordsOf(run);
    assert.deepEqual(record!.class, { index: 0, label: null });
    assert.deepEqual(await listFiles(out), ['image.eigencam.0.png', 'manifest.json']);
    assertUsageError((await camviz(models.backbone, 'gradcam', imagePath, '--layer', 'conv')).run, /the model has no class head for --target class \(the model's output: 0 'features' \[\?, 4, 4, 2\]\)/);
    assertUsageError((await camviz(models.backbone, 'cam', imagePath, '--method', 'eigencam', '--class', '3')).run, /the model has no class head \(the model's output: 0 'features' \[\?, 4, 4, 2\]\): --class does not apply/);
  });
});

test('the test models are where the CLI reads them', () => {
  for (const folder of Object.values(models)) assert.ok(existsSync(join(folder, 'model.json')), folder);
});
