/**
 * `camviz fmap` end to end: the CLI (wasm, hooks, fused graph) against an
 * independent path — the same weights loaded by tfjs' own loader into a
 * multi-output tf.model on the cpu backend. The .npy must hold that
 * activation, the PNG must be its make_grid tiling (checked pixel by pixel
 * from the activation, not through src/render/grid.ts), and the TensorBoard
 * file must carry the same PNGs.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import sharp from 'sharp';
import { useBackend } from '../src/engine/backend.js';
import { loadImage } from '../src/image/image.js';
import { decodeNpy } from '../src/render/npy.js';
import { imagePath, mobilenetDir, repoRoot, skipWithoutSharedAssets } from './helpers/assets.js';
import { type CliRun, cliEnv, runCli } from './helpers/cli.js';
import { noise } from './helpers/files.js';
import { loadWithTfjs } from './helpers/layers.js';
import { decodeEvent, readRecords } from './helpers/tensorboard.js';
import { saveLayersModel } from './helpers/layers-model-file.js';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-fmap-test-'));
after(() => rm(workDir, { recursive: true, force: true }));

before(async () => {
  await useBackend('cpu');
});

function camviz(...args: string[]): Promise<CliRun> {
  return runCli([...args, '--backend', 'wasm', '-j', '1', '-q'], { cwd: workDir, env: cliEnv(join(workDir, 'cache')), timeoutMs: 180_000 });
}

/** One entry of `fmap --json`, as issue and `--help` document it. */
interface FmapRecord {
  input: string;
  layer: string;
  shape: [number, number, number];
  png: string;
  npy?: string;
}

function parseRecords(run: CliRun): FmapRecord[] {
  assert.equal(run.code, 0, `exit ${run.code}: ${run.stderr}`);
  return JSON.parse(run.stdout) as FmapRecord[];
}

// ---------------------------------------------------------------- the independent path

/** The named layers' outputs for one model-size RGB image, from a multi-output tf.model. */
function activationsOf(model: tfl.LayersModel, layers: readonly string[], rgb: Uint8Array, size: number, scale: (value: tf.Tensor) => tf.Tensor): Float32Array[] {
  const probe = tfl.model({ inputs: model.inputs, outputs: layers.map((name) => model.getLayer(name).output as tfl.SymbolicTensor) });
  const outputs = tf.tidy(() => {
    const input = scale(tf.cast(tf.tensor4d(rgb, [1, size, size, 3], 'int32'), 'float32'));
    const result = probe.predict(input);
    return Array.isArray(result) ? result : [result];
  });
  const values = outputs.map((output) => output.dataSync() as Float32Array);
  tf.dispose(outputs);
  return values;
}

function assertCloseRelative(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let worst = 0;
  let scale = 1e-12;
  for (let i = 0; i < expected.length; i++) {
    worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  assert.ok(worst <= tolerance * scale, `${what}: max abs difference ${worst.toExponential(3)} > ${tolerance} x ${scale.toPrecision(4)}`);
}

/**
 * Checks a grid PNG against make_grid(normalize=True, scale_each=True,
 * nrow=ceil(sqrt(C)), padding) computed here from the activation: the
 * layout by formula, every tile pixel as its channel's min-max normalised
 * value (range floored at 1e-5, as make_grid does), rounded like
 * save_image, and the padding black.
 */
async function assertGridOf(pngPath: string, activation: Float32Array, shape: readonly number[], padding: number, tileSize: number): Promise<void> {
  const [height, width, channels] = shape;
  assert.ok(shape.length === 3 && height !== undefined && width !== undefined && channels !== undefined, `${pngPath}: an [H, W, C] shape, got [${shape.join(', ')}]`);
  const { data, info } = await sharp(pngPath).raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.channels, 3, `${pngPath}: RGB`);
  const columns = Math.ceil(Math.sqrt(channels));
  const rows = Math.ceil(channels / columns);
  const scale = Math.max(1, Math.ceil(tileSize / Math.min(height, width)));
  const tileWidth = width * scale;
  const tileHeight = height * scale;
  assert.deepEqual([info.width, info.height], [columns * (tileWidth + padding) + padding, rows * (tileHeight + padding) + padding], `${pngPath}: grid size`);
  const pixel = (x: number, y: number): number[] => [...data.subarray((y * info.width + x) * 3, (y * info.width + x) * 3 + 3)];
  for (let channel = 0; channel < channels; channel++) {
    let min = Infinity;
    let max = -Infinity;
    for (let i = channel; i < activation.length; i += channels) {
      min = Math.min(min, activation[i]!);
      max = Math.max(max, activation[i]!);
    }
    const range = Math.max(max - min, 1e-5);
    const left = padding + (channel % columns) * (tileWidth + padding);
    const top = padding + Math.floor(channel / columns) * (tileHeight + padding);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const expected = Math.floor(((activation[(y * width + x) * channels + channel]! - min) / range) * 255 + 0.5);
        // Both corners of the enlarged pixel, so that the nearest-neighbour scale is checked too.
        for (const [px, py] of [[left + x * scale, top + y * scale], [left + x * scale + scale - 1, top + y * scale + scale - 1]] as const) {
          const [r, g, b] = pixel(px, py);
          assert.ok(r === g && g === b, `${pngPath}: channel ${channel} at (${x}, ${y}) is gray`);
          assert.ok(Math.abs(r! - expected) <= 1, `${pngPath}: channel ${channel} at (${x}, ${y}): ${r} vs ${expected}`);
        }
      }
    }
    assert.deepEqual(pixel(left - 1, top - 1), [0, 0, 0], `${pngPath}: padding before tile ${channel}`);
  }
}

// ---------------------------------------------------------------- the embedded model (always present)

describe('camviz fmap on the embedded shapes model', () => {
  const shapesDir = join(repoRoot, 'models', 'shapes');
  const image = join(repoRoot, 'fixtures', 'shapes', 'circle-star.png');
  // conv2 is a raw convolution that the executor fuses with its BatchNorm and ReLU: capturing it must undo that.
  const layers = ['conv2', 'conv3_relu'];

  test('--raw, --json and --tensorboard: the activation, its grid and the same grid in TensorBoard', async () => {
    const out = join(workDir, 'shapes-out');
    const logdir = join(workDir, 'shapes-tb');
    const run = await camviz('fmap', image, '--model', 'shapes', ...layers.flatMap((layer) => ['--layer', layer]), '--raw', '--json', '--out', out, '--tensorboard', logdir, '--step', '7', '--padding', '3');
    const records = parseRecords(run);
    assert.deepEqual(records.map((record) => record.layer), layers);

    const model = await loadWithTfjs(shapesDir);
    const { input } = await loadImage(image, { size: { width: 64, height: 64 } });
    const expected = activationsOf(model, layers, input, 64, (pixels) => tf.div(pixels, 255));
    for (const [i, record] of records.entries()) {
      const shape = (model.getLayer(record.layer).outputShape as number[]).slice(1);
      assert.deepEqual(record.shape, shape, `${record.layer}: shape`);
      assert.equal(record.input, image);
      assert.equal(record.png, join(out, `circle-star.${record.layer}.fmap.png`));
      assert.equal(record.npy, join(out, `circle-star.${record.layer}.fmap.npy`));
      const npy = decodeNpy(await readFile(record.npy!));
      assert.deepEqual(npy.shape, shape, `${record.layer}: .npy shape [H, W, C]`);
      assertCloseRelative(npy.data, expected[i]!, 1e-4, `${record.layer}: .npy vs the multi-output model`);
      await assertGridOf(record.png, npy.data, shape, 3, 64);

      const legend = JSON.parse(await readFile(record.png.replace(/\.png$/, '.json'), 'utf8')) as { layer: string; shape: number[]; channelsShown: number; padding: number };
      assert.deepEqual([legend.layer, legend.shape, legend.channelsShown, legend.padding], [record.layer, shape, shape[2], 3]);
    }

    const files = await readdir(logdir);
    assert.equal(files.length, 1, 'one event file');
    const events = readRecords(await readFile(join(logdir, files[0]!))).map(decodeEvent);
    assert.equal(events[0]!.fileVersion, 'brain.Event:2');
    const images = events.slice(1).flatMap((event) => event.images.map((summary) => ({ ...summary, step: event.step })));
    assert.deepEqual(images.map((summary) => [summary.tag, summary.step]), layers.map((layer) => [`feature map in ${layer}`, 7n]));
    for (const [i, summary] of images.entries()) {
      const png = await readFile(records[i]!.png);
      assert.ok(summary.png.equals(png), `${summary.tag}: the summary holds the grid PNG's bytes`);
      const { width, height } = await sharp(png).metadata();
      assert.deepEqual([summary.width, summary.height, summary.colorspace], [BigInt(width!), BigInt(height!), 3n]);
    }
  });

  test('a folder run steps TensorBoard once per image, in sorted order', async () => {
    const logdir = join(workDir, 'shapes-tb-folder');
    const run = await camviz('fmap', join(repoRoot, 'fixtures', 'shapes'), '--model', 'shapes', '--layer', 'conv4_relu', '--json', '--out', join(workDir, 'shapes-folder-out'), '--tensorboard', logdir);
    const records = parseRecords(run);
    const inputs = records.map((record) => record.input);
    assert.equal(inputs.length, 8);
    assert.deepEqual(inputs, [...inputs].sort());
    const [file] = await readdir(logdir);
    const events = readRecords(await readFile(join(logdir, file!))).slice(1).map(decodeEvent);
    assert.deepEqual(events.map((event) => event.step), inputs.map((_, i) => BigInt(i)));
    for (const [i, event] of events.entries()) assert.ok(event.images[0]!.png.equals(await readFile(records[i]!.png)), `step ${i} is ${inputs[i]}`);
  });
});

// ---------------------------------------------------------------- a model with a free input size

/** conv (3x3, valid, ReLU) -> global average pooling -> dense softmax, on inputs of any size. */
function freeSizeModel(): tfl.LayersModel {
  const input = tfl.input({ shape: [null, null, 3] });
  const conv = tfl.layers.conv2d({ filters: 5, kernelSize: 3, activation: 'relu', name: 'conv' }).apply(input) as tfl.SymbolicTensor;
  const pooled = tfl.layers.globalAveragePooling2d({ name: 'pool' }).apply(conv) as tfl.SymbolicTensor;
  const output = tfl.layers.dense({ units: 3, activation: 'softmax', name: 'probs' }).apply(pooled) as tfl.SymbolicTensor;
  const model = tfl.model({ inputs: input, outputs: output });
  // Deterministic weights with mixed signs, so that channels differ and some cells are cut by the ReLU.
  model.setWeights(model.getWeights().map((weight, w) => tf.tensor(Array.from({ length: weight.size }, (_, i) => Math.sin(1.3 * i + w) * 0.4), weight.shape)));
  return model;
}

/** Saves a layers model as model.json + weights.bin in `folder`. */

describe('camviz fmap on a model whose input size is not fixed', () => {
  test('--size 48x24 (not square): the activation keeps its own shape [22, 46, 5] in the .npy, the legend and the grid', async () => {
    const model = freeSizeModel();
    const folder = join(workDir, 'dyn');
    await saveLayersModel(model, folder);
    // The image is already 48 x 24, so the model input is its pixels (x / 255, the default preprocessing).
    const pixels = noise(48, 24, 11);
    const image = join(workDir, 'wide.png');
    await sharp(pixels, { raw: { width: 48, height: 24, channels: 3 } }).png().toFile(image);
    const out = join(workDir, 'dyn-out');
    const run = await camviz('fmap', image, '--model', folder, '--size', '48x24', '--layer', 'conv', '--raw', '--json', '--out', out);
    const [record] = parseRecords(run);
    const shape = [22, 46, 5];
    assert.deepEqual(record!.shape, shape);

    const expected = tf.tidy(() => {
      const probe = tfl.model({ inputs: model.inputs, outputs: model.getLayer('conv').output as tfl.SymbolicTensor });
      const input = tf.div(tf.tensor4d(Float32Array.from(pixels), [1, 24, 48, 3]), 255);
      return (probe.predict(input) as tf.Tensor).dataSync() as Float32Array;
    });
    model.dispose();
    const npy = decodeNpy(await readFile(record!.npy!));
    assert.deepEqual(npy.shape, shape, '.npy shape [H, W, C]');
    assertCloseRelative(npy.data, expected, 1e-4, 'conv: .npy vs tfjs-layers');
    await assertGridOf(record!.png, npy.data, shape, 2, 64);
    const legend = JSON.parse(await readFile(record!.png.replace(/\.png$/, '.json'), 'utf8')) as { shape: number[] };
    assert.deepEqual(legend.shape, shape);
  });
});

// ---------------------------------------------------------------- MobileNet v1 0.75 (shared assets)

describe('camviz fmap on MobileNet v1 0.75 (shared assets)', { skip: skipWithoutSharedAssets }, () => {
  test('--all-conv captures the 27 convolutions in one pass; their activations match the multi-output model', async () => {
    const out = join(workDir, 'mobilenet-out');
    const photo = imagePath('both.png');
    const run = await camviz('fmap', photo, '--model', mobilenetDir, '--all-conv', '--raw', '--json', '--out', out, '--max-channels', '16');
    const records = parseRecords(run);
    const expectedLayers = ['conv1', ...Array.from({ length: 13 }, (_, i) => [`conv_dw_${i + 1}`, `conv_pw_${i + 1}`]).flat()];
    assert.deepEqual(records.map((record) => record.layer), expectedLayers);

    const model = await loadWithTfjs(mobilenetDir);
    for (const record of records) {
      assert.deepEqual(record.shape, (model.getLayer(record.layer).outputShape as number[]).slice(1), `${record.layer}: shape`);
    }
    // Three depths, each a convolution whose BatchNorm and ReLU6 the executor folds in.
    const checked = ['conv1', 'conv_dw_6', 'conv_pw_13'];
    const { input } = await loadImage(photo, { size: { width: 224, height: 224 } });
    const expected = activationsOf(model, checked, input, 224, (pixels) => tf.sub(tf.div(pixels, 127.5), 1));
    for (const [i, layer] of checked.entries()) {
      const record = records.find((candidate) => candidate.layer === layer)!;
      const npy = decodeNpy(await readFile(record.npy!));
      assertCloseRelative(npy.data, expected[i]!, 1e-4, `${layer}: .npy vs the multi-output model`);
      const { width, height } = await sharp(record.png).metadata();
      // --max-channels 16: a 4 x 4 grid of 2 px padded tiles, each enlarged to >= 64 px.
      const tile = record.shape[0] * Math.max(1, Math.ceil(64 / record.shape[0]));
      assert.deepEqual([width, height], [4 * (tile + 2) + 2, 4 * (tile + 2) + 2], `${layer}: grid size`);
    }
  });
});
