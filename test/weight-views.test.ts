/**
 * Weights decoded as views of the read weight files (src/engine/weight-views.ts):
 * the same tensors as tfjs' own io.decodeWeights, bit for bit, without its
 * copy of each weight where a view is possible; and a model loaded through
 * camviz has weights equal to tfjs-layers' own load of the same files.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import * as tf from '../src/engine/tf.js';
import { useBackend } from '../src/engine/backend.js';
import * as tfl from '../src/engine/tfl.js';
import { decodeWeightViews } from '../src/engine/weight-views.js';
import { readLocalModel, readModelAhead } from '../src/model/io.js';
import { loadModel } from '../src/model/load.js';
import { readOnnxAhead } from '../src/model/onnx/file.js';
import { mobilenetDir, repoRoot, skipWithoutSharedAssets } from './helpers/assets.js';
import { type CliRun, cliEnv, runCli } from './helpers/cli.js';
import { fifoReleasedAfter, readManifest } from './helpers/files.js';

type Spec = tf.io.WeightsManifestEntry;

let workDir: string;
before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'camviz-weight-views-'));
  await useBackend('cpu');
});
after(() => rm(workDir, { recursive: true, force: true }));

/** tfjs' own decodeWeights, taken before camviz's loader wraps it. */
const tfjsDecode = (createRequire(import.meta.url)('@tensorflow/tfjs-core') as typeof import('@tensorflow/tfjs-core')).io.decodeWeights;

/** The bytes of a tensor's values (the cpu backend's own array). */
function bytesOf(tensor: tf.Tensor): Uint8Array {
  const values = tensor.dataSync() as tf.TypedArray;
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

function assertSameTensors(actual: tf.NamedTensorMap, expected: tf.NamedTensorMap): void {
  assert.deepEqual(Object.keys(actual), Object.keys(expected));
  for (const [name, tensor] of Object.entries(expected)) {
    const got = actual[name]!;
    assert.equal(got.dtype, tensor.dtype, name);
    assert.deepEqual(got.shape, tensor.shape, name);
    assert.deepEqual(bytesOf(got), bytesOf(tensor), name);
  }
}

/** The array the cpu backend keeps for a tensor (dataSync converts bool values into a new array). */
function storedValues(tensor: tf.Tensor): tf.TypedArray {
  const backend = tf.backend() as unknown as { data: { get(dataId: object): { values: tf.TypedArray } } };
  return backend.data.get(tensor.dataId).values;
}

/** Whether the tensor's values are a view of `buffer` (no copy). */
const isViewOf = (tensor: tf.Tensor, buffer: ArrayBuffer): boolean => storedValues(tensor).buffer === buffer;

/** Shards of one byte stream, cut at `cuts`. */
function cutInto(bytes: Uint8Array, cuts: readonly number[]): ArrayBuffer[] {
  const ends = [...cuts, bytes.length];
  return ends.map((end, i) => bytes.slice(i === 0 ? 0 : ends[i - 1], end).buffer);
}

describe('decodeWeightViews', () => {
  // 12 + 3 + 8 + 8 + 3 + 16 + 4 bytes: the uint8-quantized weight leaves `misaligned` at byte 15.
  const specs: Spec[] = [
    { name: 'aligned', dtype: 'float32', shape: [3] },
    { name: 'quantized', dtype: 'float32', shape: [3], quantization: { dtype: 'uint8', min: -1, scale: 0.5 } },
    { name: 'misaligned', dtype: 'float32', shape: [2] },
    { name: 'counts', dtype: 'int32', shape: [2] },
    { name: 'flags', dtype: 'bool', shape: [3] },
    { name: 'spanning', dtype: 'float32', shape: [2, 2] },
    { name: 'half', dtype: 'float32', shape: [2], quantization: { dtype: 'float16' } },
  ];
  const stream = new Uint8Array(54);
  const view = new DataView(stream.buffer);
  [1.5, -2.25, 3e-8].forEach((value, i) => view.setFloat32(i * 4, value, true));
  stream.set([0, 7, 255], 12);
  [6.5, -0.125].forEach((value, i) => view.setFloat32(15 + i * 4, value, true));
  [-7, 123456].forEach((value, i) => view.setInt32(23 + i * 4, value, true));
  stream.set([1, 0, 1], 31);
  [0.1, 0.2, 0.3, 0.4].forEach((value, i) => view.setFloat32(34 + i * 4, value, true));
  view.setUint16(50, 0x3c00, true); // 1.0 in float16
  view.setUint16(52, 0xc000, true); // -2.0

  test('gives tfjs\' own tensors, bit for bit, for every kind of weight and shard split', () => {
    // One shard; a cut inside `spanning`; cuts that leave later shards misaligned.
    for (const cuts of [[], [42], [15, 23, 34], [1, 2, 3, 50]]) {
      const shards = cutInto(stream, cuts);
      const views = decodeWeightViews(shards, specs, tfjsDecode);
      const copies = tfjsDecode(shards, specs);
      try {
        assertSameTensors(views, copies);
      } finally {
        tf.dispose([...Object.values(views), ...Object.values(copies)]);
      }
    }
  });

  test('views the weights stored as used that lie aligned in one shard, and copies the others', () => {
    // Shard 2 starts at byte 23: `counts` and `flags` are aligned in it, `spanning` crosses into shard 3.
    const shards = cutInto(stream, [23, 42]);
    const weights = decodeWeightViews(shards, specs, tfjsDecode);
    try {
      const viewed = Object.keys(weights).filter((name) => shards.some((shard) => isViewOf(weights[name]!, shard)));
      assert.deepEqual(viewed, ['aligned', 'counts', 'flags']);
    } finally {
      tf.dispose(Object.values(weights));
    }
  });

  test('weight data shorter than the specs is an error, and nothing decoded is kept', () => {
    const before = tf.memory().numTensors;
    assert.throws(() => decodeWeightViews(cutInto(stream.slice(0, 40), [20]), specs, tfjsDecode), /ends before weight 'spanning'/);
    assert.equal(tf.memory().numTensors, before);
  });

  test('string weights (no fixed size) are decoded by tfjs as before', () => {
    const { data, specs: stringSpecs } = encodeStrings(['a', 'bc']);
    const weights = decodeWeightViews([data], stringSpecs, tfjsDecode);
    try {
      assert.deepEqual(
        (weights['names']!.dataSync() as unknown as Uint8Array[]).map((bytes) => Buffer.from(bytes).toString()),
        ['a', 'bc'],
      );
    } finally {
      tf.dispose(Object.values(weights));
    }
  });
});

/** A string weight as tfjs encodes it (its length, then its bytes). */
function encodeStrings(values: string[]): { data: ArrayBuffer; specs: Spec[] } {
  const parts = values.flatMap((value) => {
    const bytes = Buffer.from(value);
    const length = Buffer.alloc(4);
    length.writeUInt32LE(bytes.length);
    return [length, bytes];
  });
  return { data: new Uint8Array(Buffer.concat(parts)).buffer, specs: [{ name: 'names', dtype: 'string', shape: [values.length] }] };
}

/** Every weight of camviz's load of `folder` equals tfjs-layers' own load of the same files, bit for bit. */
async function assertLoadsLikeTfjs(folder: string, referenceFolder = folder): Promise<tfl.LayersModel> {
  const model = await loadModel(folder);
  const files = await readLocalModel(referenceFolder);
  const reference = await tfl.loadLayersModel({ load: async () => files.artifacts });
  try {
    const actual = model.layersModel!.weights;
    const expected = reference.weights;
    assert.equal(actual.length, expected.length);
    actual.forEach((weight, i) => {
      assert.equal(weight.originalName, expected[i]!.originalName);
      assert.deepEqual(bytesOf(weight.read()), bytesOf(expected[i]!.read()), weight.originalName);
    });
    return model.layersModel!;
  } finally {
    reference.dispose();
    // The caller reads the weights' buffers; the model is released at the end of the file's tests.
    disposeLater.push(() => model.dispose());
  }
}

const disposeLater: (() => void)[] = [];
after(() => disposeLater.forEach((dispose) => dispose()));

/** How many distinct buffers hold a model's weights: one per weight when each was copied out, one per weight file when viewed. */
function weightBuffers(model: tfl.LayersModel): number {
  return new Set(model.weights.map((weight) => storedValues(weight.read()).buffer)).size;
}

const shapesFolder = join(repoRoot, 'models', 'shapes');

/** The shapes model with its weight file cut into four at odd offsets (1001, 4099, 4100): weights spanning two files, and misaligned ones. */
async function splitShapesModel(name: string): Promise<string> {
  const folder = join(workDir, name);
  await cp(shapesFolder, folder, { recursive: true });
  const json = JSON.parse(await readFile(join(shapesFolder, 'model.json'), 'utf8')) as { weightsManifest: { paths: string[] }[] };
  const [group] = json.weightsManifest;
  const bytes = new Uint8Array(await readFile(join(shapesFolder, group!.paths[0]!)));
  const shards = cutInto(bytes, [1001, 4099, 4100]);
  await rm(join(folder, group!.paths[0]!));
  group!.paths = shards.map((_, i) => `part-${i}.bin`);
  await Promise.all(shards.map((shard, i) => writeFile(join(folder, `part-${i}.bin`), new Uint8Array(shard))));
  await writeFile(join(folder, 'model.json'), JSON.stringify(json));
  return folder;
}

describe('loading a TF.js layers model', () => {
  test('the shapes model: weights equal to tfjs-layers\' own load, all views of its one weight file', async () => {
    const model = await assertLoadsLikeTfjs(shapesFolder);
    assert.equal(model.weights.length, 22);
    assert.equal(weightBuffers(model), 1);
  });

  test('weights split over shards at odd offsets (some spanning two, some misaligned) load as tfjs loads them', async () => {
    const folder = await splitShapesModel('shards');
    const model = await assertLoadsLikeTfjs(folder, shapesFolder);
    // The four files' buffers, plus one of its own for each weight copied (spanning two files, or misaligned after byte 1001).
    const buffers = weightBuffers(model);
    assert.ok(buffers > 4 && buffers < model.weights.length, `${buffers} buffers for ${model.weights.length} weights`);
  });

  test('MobileNet v1 0.75: weights equal to tfjs-layers\' own load, all views of its 55 weight files', { skip: skipWithoutSharedAssets }, async () => {
    const model = await assertLoadsLikeTfjs(mobilenetDir);
    assert.equal(model.weights.length, 137);
    assert.equal(weightBuffers(model), 55);
  });
});

describe('the zeros a load first makes its weights as (sharedZerosLoad)', () => {
  const layers = createRequire(import.meta.url)('@tensorflow/tfjs-layers') as typeof import('@tensorflow/tfjs-layers');
  const zerosOf = (shape: number[], dtype?: tf.DataType): tf.Tensor => layers.initializers.zeros().apply(shape, dtype);

  test('inside a load: float32 zeros on cpu are views of one shared buffer, all 0; other dtypes their own', async () => {
    const made = await tfl.sharedZerosLoad(async () => [zerosOf([3, 4]), zerosOf([1000]), zerosOf([2, 2], 'int32')]);
    try {
      const [small, large, ints] = made as [tf.Tensor, tf.Tensor, tf.Tensor];
      assert.equal(storedValues(small).buffer, storedValues(large).buffer);
      assert.notEqual(storedValues(ints).buffer, storedValues(large).buffer);
      for (const tensor of made) assert.ok((tensor.dataSync() as tf.TypedArray).every((value) => value === 0));
      assert.deepEqual(small.shape, [3, 4]);
      assert.equal(ints.dtype, 'int32');
    } finally {
      tf.dispose(made);
    }
  });

  test('outside a load, and after one that failed, every zeros tensor has its own array again', async () => {
    await assert.rejects(tfl.sharedZerosLoad(async () => Promise.reject(new Error('the load failed'))), /the load failed/);
    const [a, b] = [zerosOf([5]), zerosOf([5])];
    try {
      assert.notEqual(storedValues(a).buffer, storedValues(b).buffer);
    } finally {
      tf.dispose([a, b]);
    }
  });

  test('overlapping loads: the initializer is itself again only when the last one ends, whichever ends first', async () => {
    let endFirst!: () => void;
    const first = tfl.sharedZerosLoad(() => new Promise<void>((resolve) => (endFirst = resolve)));
    let endSecond!: () => void;
    const second = tfl.sharedZerosLoad(() => new Promise<void>((resolve) => (endSecond = resolve)));
    endFirst();
    await first;
    const [during, alsoDuring] = [zerosOf([3]), zerosOf([3])];
    endSecond();
    await second;
    const [after, alsoAfter] = [zerosOf([3]), zerosOf([3])];
    try {
      assert.equal(storedValues(during).buffer, storedValues(alsoDuring).buffer, 'shared while the second load runs');
      assert.notEqual(storedValues(after).buffer, storedValues(alsoAfter).buffer, 'fresh arrays once both ended');
    } finally {
      tf.dispose([during, alsoDuring, after, alsoAfter]);
    }
  });

  test('a model loaded so holds its files\' weights, none of them the shared zeros', async () => {
    const model = await assertLoadsLikeTfjs(shapesFolder);
    const shared = await tfl.sharedZerosLoad(async () => zerosOf([1]));
    try {
      for (const weight of model.weights) assert.notEqual(storedValues(weight.read()).buffer, storedValues(shared).buffer, weight.originalName);
    } finally {
      shared.dispose();
    }
  });
});

describe('reading the weight files', () => {
  test('all groups are read at once, and the first problem in manifest order is the one reported', async () => {
    const folder = join(workDir, 'two-problems');
    const weights = (name: string): Spec[] => [{ name, dtype: 'float32', shape: [4] }];
    const json = {
      format: 'layers-model',
      modelTopology: { class_name: 'Sequential', config: { name: 'empty', layers: [] } },
      weightsManifest: [
        { paths: ['fine.bin'], weights: weights('a') },
        { paths: ['short.bin'], weights: weights('b') },
        { paths: ['missing.bin'], weights: weights('c') },
      ],
    };
    await cp(join(repoRoot, 'models', 'shapes'), folder, { recursive: true });
    await writeFile(join(folder, 'model.json'), JSON.stringify(json));
    await writeFile(join(folder, 'fine.bin'), new Uint8Array(16));
    await writeFile(join(folder, 'short.bin'), new Uint8Array(15));
    await assert.rejects(readLocalModel(folder), (error: Error & { file?: string }) => error.file?.endsWith('short.bin') === true && /is short: 15 bytes/.test(error.message));
    await writeFile(join(folder, 'short.bin'), new Uint8Array(16));
    await assert.rejects(readLocalModel(folder), (error: Error & { file?: string }) => error.file?.endsWith('missing.bin') === true && /weight file missing/.test(error.message));
  });
});

describe('reading a model ahead of its load', () => {
  test('the next readLocalModel of the path takes the files read ahead, once', async () => {
    const folder = join(workDir, 'ahead');
    await cp(join(repoRoot, 'models', 'shapes'), folder, { recursive: true });
    const expected = await readLocalModel(folder);
    await readModelAhead(folder);
    // Gone from the disk: only the files read ahead can give the model now.
    await rm(join(folder, 'shapes.weights.bin'));
    const ahead = await readLocalModel(folder);
    assert.equal(ahead.sha256, expected.sha256);
    assert.deepEqual(ahead.artifacts.weightData, expected.artifacts.weightData);
    await assert.rejects(readLocalModel(folder), /weight file missing/);
  });

  test('a read ahead that fails is reported by readLocalModel with the error it gives without', async () => {
    const folder = join(workDir, 'ahead-broken');
    await cp(join(repoRoot, 'models', 'shapes'), folder, { recursive: true });
    await writeFile(join(folder, 'shapes.weights.bin'), new Uint8Array(8));
    const direct = await readLocalModel(folder).then(() => undefined, (error: Error) => error);
    assert.ok(direct !== undefined);
    await readModelAhead(folder);
    await assert.rejects(readLocalModel(folder), { name: direct.name, message: direct.message });
  });

  test('the reader loads without tfjs, so that the command line starts the read before tfjs loads', async () => {
    const io = pathToFileURL(join(repoRoot, 'dist', 'src', 'model', 'io.js')).href;
    const script = `await import(${JSON.stringify(io)}); const { createRequire } = await import('node:module'); process.stdout.write(JSON.stringify(Object.keys(createRequire(import.meta.url).cache)));`;
    const loaded = await new Promise<string[]>((done, fail) =>
      execFile(process.execPath, ['--input-type=module', '-e', script], { timeout: 60_000 }, (error, stdout, stderr) => (error === null ? done(JSON.parse(stdout) as string[]) : fail(new Error(`${error.message}\n${stderr}`)))),
    );
    assert.deepEqual(loaded.filter((path) => path.includes('@tensorflow')), []);
  });

  test('a FIFO given as the model (a .json or an .onnx name) is refused at once, read ahead or not, not read without end', { skip: process.platform === 'win32' ? 'no FIFOs' : false, timeout: 30_000 }, async () => {
    for (const name of ['fifo.json', 'fifo.onnx']) {
      const fifo = join(workDir, name);
      const released = fifoReleasedAfter(fifo);
      await readModelAhead(fifo);
      await readOnnxAhead(fifo);
      await assert.rejects(loadModel(fifo), (error: Error & { file?: string }) => error.file === fifo && /not a regular file: refused/.test(error.message));
      assert.equal(released(), false, 'refused without waiting for a writer');
    }
  });

  test('a path that is not a TF.js model is left to the loader', async () => {
    await readModelAhead(join(workDir, 'nothing-here'));
    await assert.rejects(readLocalModel(join(workDir, 'nothing-here')), /model not found/);
  });
});

describe('the command line', () => {
  const image = join(repoRoot, 'fixtures', 'shapes', 'circle-star.png');
  const camviz = (args: readonly string[]): Promise<CliRun> => runCli(args, { cwd: workDir, env: cliEnv(join(workDir, 'cli-cache')), timeoutMs: 240_000 });

  test('one image with --model <folder> (read ahead, weights viewed or copied) writes the PNG a two-image run (no read-ahead) writes', async () => {
    const split = await splitShapesModel('cli-split');
    const outputs: Buffer[] = [];
    for (const [name, model, inputs] of [
      ['whole', shapesFolder, [image]],
      ['split', split, [image]],
      ['pair', split, [image, join(repoRoot, 'fixtures', 'shapes', 'circle.png')]],
    ] as const) {
      const out = join(workDir, `cli-${name}`);
      const run = await camviz(['gradcam', ...inputs, '--model', model, '--engine', 'tfjs', '--jobs', '1', '--out', out, '--quiet']);
      assert.equal(run.code, 0, run.stderr);
      const record = (await readManifest(out)).records.find((entry) => entry.input.endsWith('circle-star.png'));
      outputs.push(await readFile(join(out, record!.outputs![0]!)));
    }
    assert.deepEqual(outputs[1], outputs[0]);
    assert.deepEqual(outputs[2], outputs[0]);
  });

  test('a model folder with a missing weight file: the same one-line error, read ahead or not', async () => {
    const broken = await splitShapesModel('cli-broken');
    await rm(join(broken, 'part-2.bin'));
    const one = await camviz(['gradcam', image, '--model', broken, '--out', join(workDir, 'cli-broken-1'), '--quiet']);
    const two = await camviz(['gradcam', image, image, '--model', broken, '--out', join(workDir, 'cli-broken-2'), '--quiet']);
    assert.equal(one.code, two.code);
    assert.notEqual(one.code, 0);
    assert.match(one.stderr, /^camviz: weight file missing \(.*part-2\.bin\)$/m);
    assert.equal(one.stderr, two.stderr);
  });
});
