/**
 * Loading models from disk through camviz's own IO handler: small models
 * are built here with tfjs-layers (or written by hand, for a graph model),
 * saved as model.json plus weight files, then damaged in the ways users'
 * files get damaged.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

import { useBackend } from '../src/engine/backend.js';
import { readLocalModel } from '../src/model/io.js';
import { loadModel } from '../src/model/load.js';
import { disposeValues } from '../src/executor/network.js';
import { classProbabilities } from '../src/model/predict.js';
import { expectCamvizError } from './helpers/errors.js';
import { assertAllClose } from './helpers/numeric.js';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-model-loading-'));
after(() => rm(workDir, { recursive: true, force: true }));

before(async () => {
  await useBackend('cpu');
});

const SIDE = 6;

interface SavedModel {
  topology: object;
  weightSpecs: tf.io.WeightsManifestEntry[];
  weightBytes: Buffer;
}

/** A tiny convolutional classifier with fixed, non-trivial weights. */
function buildTinyModel(): tfl.LayersModel {
  const input = tfl.input({ shape: [SIDE, SIDE, 3] });
  const conv = tfl.layers.conv2d({ filters: 4, kernelSize: 3, activation: 'relu', name: 'conv' }).apply(input) as tfl.SymbolicTensor;
  const flat = tfl.layers.flatten({ name: 'flat' }).apply(conv) as tfl.SymbolicTensor;
  const output = tfl.layers.dense({ units: 3, activation: 'softmax', name: 'probs' }).apply(flat) as tfl.SymbolicTensor;
  const model = tfl.model({ inputs: input, outputs: output });
  // Deterministic weights that give a clearly non-uniform output.
  model.setWeights(
    model.getWeights().map((weight, w) => {
      const values = Array.from({ length: weight.size }, (_, i) => Math.sin(1.7 * i + w) * 0.5);
      return tf.tensor(values, weight.shape);
    }),
  );
  return model;
}

async function saveArtifacts(model: tfl.LayersModel): Promise<SavedModel> {
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  const data = saved!.weightData!;
  const parts = Array.isArray(data) ? data : [data];
  return {
    topology: saved!.modelTopology as object,
    weightSpecs: saved!.weightSpecs!,
    weightBytes: Buffer.concat(parts.map((part) => Buffer.from(part))),
  };
}

const inMemory = buildTinyModel();
const saved = await saveArtifacts(inMemory);
after(() => inMemory.dispose());

let folderCount = 0;
async function freshFolder(): Promise<string> {
  const folder = join(workDir, `m${folderCount++}`);
  await mkdir(folder, { recursive: true });
  return folder;
}

function modelJson(paths: string[], extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    format: 'layers-model',
    generatedBy: 'camviz tests',
    modelTopology: saved.topology,
    weightsManifest: [{ paths, weights: saved.weightSpecs }],
    ...extra,
  });
}

/** Writes model.json and a single weight file; returns the folder. */
async function writeGoodModel(): Promise<string> {
  const folder = await freshFolder();
  await writeFile(join(folder, 'model.json'), modelJson(['weights.bin']));
  await writeFile(join(folder, 'weights.bin'), saved.weightBytes);
  return folder;
}

/** A deterministic SIDE x SIDE RGB image. */
function testPixels(seed: number): Uint8Array {
  return Uint8Array.from({ length: SIDE * SIDE * 3 }, (_, i) => (i * 37 + seed * 101) % 256);
}

/** What the in-memory model says for the pixels with the default 'unit' preprocessing (x / 255). */
function inMemoryProbabilities(pixels: Uint8Array): Float32Array {
  return tf.tidy(() => {
    const x = tf.tensor4d(Array.from(pixels, (value) => value / 255), [1, SIDE, SIDE, 3]);
    return (inMemory.predict(x) as tf.Tensor).dataSync() as Float32Array;
  });
}

describe('a good layers model', () => {
  test('loads from its folder and from its model.json, and predicts what the in-memory model does', async () => {
    const folder = await writeGoodModel();
    for (const spec of [folder, join(folder, 'model.json')]) {
      const model = await loadModel(spec);
      try {
        assert.equal(model.meta.format, 'layers');
        assert.equal(model.meta.modelJsonPath, join(folder, 'model.json'));
        assert.deepEqual(model.meta.inputSize, { width: SIDE, height: SIDE });
        assert.equal(model.meta.preprocess, 'unit');
        const images = [testPixels(1), testPixels(2)];
        const probabilities = await classProbabilities(model, images);
        assert.equal(probabilities.length, 2);
        images.forEach((pixels, i) => assertAllClose(probabilities[i]!, inMemoryProbabilities(pixels), 1e-6));
        // The two images must be told apart, or the comparison proves little.
        assert.ok(Math.abs(probabilities[0]![0]! - probabilities[1]![0]!) > 1e-3);
        // The softmax is fused into the Dense layer: the scores are its pre-activation, x W + b.
        assert.equal(model.network().score.scoreLayer, 'probs');
        assert.equal(model.network().score.activation, 'softmax');
        const input = tf.tensor4d(Array.from(images[0]!, (value) => value / 255), [1, SIDE, SIDE, 3]);
        const values = await model.network().forward(input);
        try {
          const logits = tf.tidy(() => {
            const features = tfl.model({ inputs: inMemory.inputs, outputs: inMemory.getLayer('flat').output as tfl.SymbolicTensor }).predict(input) as tf.Tensor2D;
            const [kernel, bias] = inMemory.getLayer('probs').getWeights();
            return tf.add(tf.matMul(features, kernel as tf.Tensor2D), bias!).dataSync();
          });
          assertAllClose(values.scores.dataSync(), logits, 1e-5);
          assertAllClose(values.probabilities.dataSync(), probabilities[0]!, 1e-6);
        } finally {
          disposeValues(values);
          input.dispose();
        }
      } finally {
        model.dispose();
      }
    }
  });

  test('weights split over several files, one in a subfolder, are read in manifest order', async () => {
    const folder = await freshFolder();
    const cut = Math.floor(saved.weightBytes.length / 2) + 2; // not on a weight boundary
    await mkdir(join(folder, 'shards'));
    await writeFile(join(folder, 'model.json'), modelJson(['part1.bin', 'shards/part2.bin']));
    await writeFile(join(folder, 'part1.bin'), saved.weightBytes.subarray(0, cut));
    await writeFile(join(folder, 'shards', 'part2.bin'), saved.weightBytes.subarray(cut));
    const model = await loadModel(folder);
    try {
      const pixels = testPixels(3);
      assertAllClose((await classProbabilities(model, [pixels]))[0]!, inMemoryProbabilities(pixels), 1e-6);
    } finally {
      model.dispose();
    }
  });
});

describe('a malformed model.json', () => {
  const cases: [string, string, RegExp][] = [
    ['not JSON', '{"modelTopology": ', /not valid JSON/],
    ['a JSON array', '[1, 2]', /not a JSON object/],
    ['JSON without modelTopology', JSON.stringify({ weightsManifest: [] }), /no modelTopology/],
    ['a weightsManifest that is an object', JSON.stringify({ modelTopology: {}, weightsManifest: { paths: ['w.bin'] } }), /malformed weightsManifest/],
    ['a weightsManifest whose paths is a string', JSON.stringify({ modelTopology: {}, weightsManifest: [{ paths: 'w.bin', weights: [] }] }), /malformed weightsManifest/],
    [
      'a weight entry without a shape',
      JSON.stringify({ modelTopology: {}, weightsManifest: [{ paths: ['w.bin'], weights: [{ name: 'k', dtype: 'float32' }] }] }),
      /malformed weightsManifest/,
    ],
  ];
  for (const [what, text, message] of cases) {
    test(`${what} is a CamvizError naming model.json`, async () => {
      const folder = await freshFolder();
      const modelJsonPath = join(folder, 'model.json');
      await writeFile(modelJsonPath, text);
      const error = await expectCamvizError(() => loadModel(folder));
      assert.match(error.message, message);
      assert.equal(error.file, modelJsonPath);
      assert.equal(error.exitCode, 1);
    });
  }

  test('a topology tfjs-layers cannot build is a CamvizError naming model.json', async () => {
    const folder = await freshFolder();
    await writeFile(join(folder, 'model.json'), JSON.stringify({ modelTopology: { class_name: 'NoSuchModel', config: {} }, weightsManifest: [] }));
    const error = await expectCamvizError(() => loadModel(folder));
    assert.match(error.message, /not a loadable TF\.js layers model/);
    assert.equal(error.file, join(folder, 'model.json'));
  });

  test('a folder without model.json is named', async () => {
    const folder = await freshFolder();
    const error = await expectCamvizError(() => loadModel(folder));
    assert.match(error.message, /neither model\.json \(TF\.js\) nor model\.onnx/);
    assert.equal(error.file, folder);
  });
});

describe('weight files', () => {
  test('a missing weight file is an error whose file is that weight file', async () => {
    const folder = await freshFolder();
    await writeFile(join(folder, 'model.json'), modelJson(['weights.bin']));
    const error = await expectCamvizError(() => loadModel(folder));
    assert.equal(error.file, join(folder, 'weights.bin'));
    assert.match(error.message, /missing/);
  });

  test('a short weight file is named, with both byte counts', async () => {
    const folder = await writeGoodModel();
    const full = saved.weightBytes.length;
    await writeFile(join(folder, 'weights.bin'), saved.weightBytes.subarray(0, full - 3));
    const error = await expectCamvizError(() => loadModel(folder));
    assert.equal(error.file, join(folder, 'weights.bin'));
    assert.match(error.message, /short/);
    assert.ok(error.message.includes(String(full - 3)), error.message);
    assert.ok(error.message.includes(String(full)), error.message);
  });

  test('a weight file longer than its manifest says is refused', async () => {
    const folder = await writeGoodModel();
    const full = saved.weightBytes.length;
    await writeFile(join(folder, 'weights.bin'), Buffer.concat([saved.weightBytes, Buffer.alloc(8)]));
    const error = await expectCamvizError(() => loadModel(folder));
    assert.equal(error.file, join(folder, 'weights.bin'));
    assert.ok(error.message.includes(String(full + 8)) && error.message.includes(String(full)), error.message);
  });

  test('string weights declared over too few bytes are refused at once, not decoded element by element', async () => {
    const folder = await freshFolder();
    // 10 million strings need at least 40 MB (a 4-byte length each); the file holds the real weights alone.
    const manifest = [{ paths: ['weights.bin'], weights: [...saved.weightSpecs, { name: 'strings', shape: [10_000_000], dtype: 'string' }] }];
    await writeFile(join(folder, 'model.json'), JSON.stringify({ format: 'layers-model', modelTopology: saved.topology, weightsManifest: manifest }));
    await writeFile(join(folder, 'weights.bin'), saved.weightBytes);
    const error = await expectCamvizError(() => loadModel(folder));
    assert.match(error.message, new RegExp(`^weight file is short: ${saved.weightBytes.length} bytes, the weights listed for it need at least ${saved.weightBytes.length + 40_000_000}$`));
    assert.equal(error.file, join(folder, 'weights.bin'));
  });

  test('a short group split over two files names the files', async () => {
    const folder = await freshFolder();
    await writeFile(join(folder, 'model.json'), modelJson(['a.bin', 'b.bin']));
    await writeFile(join(folder, 'a.bin'), saved.weightBytes.subarray(0, 40));
    await writeFile(join(folder, 'b.bin'), saved.weightBytes.subarray(40, saved.weightBytes.length - 4));
    const error = await expectCamvizError(() => loadModel(folder));
    assert.match(error.message, /a\.bin, b\.bin is short/);
    assert.equal(error.file, join(folder, 'b.bin'));
  });

  // The file outside holds valid weights: had the path been followed, the
  // model would have loaded. A refusal therefore shows it was not read.
  const escapes: [string, (outside: string) => string][] = [
    ['../outside.bin', () => '../outside.bin'],
    ['a path that climbs out through a subfolder', () => 'shards/../../outside.bin'],
    ['an absolute path', (outside) => outside],
  ];
  for (const [what, pathFor] of escapes) {
    test(`a weightsManifest path like ${what} is refused`, async () => {
      const parent = await freshFolder();
      const folder = join(parent, 'model');
      await mkdir(folder);
      const outside = join(parent, 'outside.bin');
      await writeFile(outside, saved.weightBytes);
      const weightPath = pathFor(outside);
      await writeFile(join(folder, 'model.json'), modelJson([weightPath]));
      const error = await expectCamvizError(() => readLocalModel(folder));
      assert.match(error.message, /leaves the model folder: refused/);
      assert.ok(error.message.includes(weightPath));
      assert.equal(error.file, join(folder, 'model.json'));
      // Same folder, same bytes, a path inside: it loads, so only the path was refused.
      await writeFile(join(folder, 'inside.bin'), saved.weightBytes);
      await writeFile(join(folder, 'model.json'), modelJson(['inside.bin']));
      (await loadModel(folder)).dispose();
    });
  }

  test('a manifest file not called model.json is the file a refusal names', async () => {
    const folder = await freshFolder();
    const manifestPath = join(folder, 'classifier.json');
    await writeFile(manifestPath, modelJson(['weights.bin']));
    await writeFile(join(folder, 'weights.bin'), saved.weightBytes);
    (await loadModel(manifestPath)).dispose();
    await writeFile(manifestPath, modelJson(['../weights.bin']));
    const error = await expectCamvizError(() => loadModel(manifestPath));
    assert.match(error.message, /leaves the model folder/);
    assert.equal(error.file, manifestPath);
  });
});

describe('a hand-written graph model (Reshape, MatMul, Add, Softmax)', () => {
  const INPUT = [2, 2, 3] as const;
  const FEATURES = 12;
  const CLASSES = 3;
  const weights = Array.from({ length: FEATURES * CLASSES }, (_, i) => Math.cos(0.9 * i) * 0.8);
  const biases = [0.1, -0.2, 0.3];

  const floatAttr = { type: 'DT_FLOAT' };
  const constNode = (name: string, dtype: 'DT_FLOAT' | 'DT_INT32', dims: number[]): object => ({
    name,
    op: 'Const',
    attr: {
      dtype: { type: dtype },
      value: { tensor: { dtype, tensorShape: { dim: dims.map((size) => ({ size: String(size) })) } } },
    },
  });

  async function writeGraphModel(withSoftmax: boolean): Promise<string> {
    const folder = await freshFolder();
    const nodes = [
      {
        name: 'x',
        op: 'Placeholder',
        attr: { dtype: floatAttr, shape: { shape: { dim: [-1, ...INPUT].map((size) => ({ size: String(size) })) } } },
      },
      constNode('flat_shape', 'DT_INT32', [2]),
      constNode('w', 'DT_FLOAT', [FEATURES, CLASSES]),
      constNode('b', 'DT_FLOAT', [CLASSES]),
      { name: 'flat', op: 'Reshape', input: ['x', 'flat_shape'], attr: { T: floatAttr, Tshape: { type: 'DT_INT32' } } },
      { name: 'logits', op: 'MatMul', input: ['flat', 'w'], attr: { T: floatAttr, transpose_a: { b: false }, transpose_b: { b: false } } },
      { name: 'biased', op: 'Add', input: ['logits', 'b'], attr: { T: floatAttr } },
      ...(withSoftmax ? [{ name: 'probs', op: 'Softmax', input: ['biased'], attr: { T: floatAttr } }] : []),
    ];
    const json = {
      format: 'graph-model',
      generatedBy: 'camviz tests',
      convertedBy: null,
      modelTopology: { node: nodes, library: {}, versions: { producer: 1 } },
      weightsManifest: [
        {
          paths: ['graph.bin'],
          weights: [
            { name: 'flat_shape', shape: [2], dtype: 'int32' },
            { name: 'w', shape: [FEATURES, CLASSES], dtype: 'float32' },
            { name: 'b', shape: [CLASSES], dtype: 'float32' },
          ],
        },
      ],
    };
    const bytes = Buffer.concat([
      Buffer.from(new Int32Array([-1, FEATURES]).buffer),
      Buffer.from(new Float32Array(weights).buffer),
      Buffer.from(new Float32Array(biases).buffer),
    ]);
    await writeFile(join(folder, 'model.json'), JSON.stringify(json));
    await writeFile(join(folder, 'graph.bin'), bytes);
    return folder;
  }

  /** softmax(x W + b) with x = pixels / 255, by plain loops. */
  function naiveProbabilities(pixels: Uint8Array): number[] {
    const logits = biases.map((bias, j) => {
      let sum = bias;
      for (let i = 0; i < FEATURES; i++) sum += (pixels[i]! / 255) * weights[i * CLASSES + j]!;
      return sum;
    });
    const top = Math.max(...logits);
    const exps = logits.map((logit) => Math.exp(logit - top));
    const total = exps.reduce((a, b) => a + b, 0);
    return exps.map((e) => e / total);
  }

  for (const withSoftmax of [true, false]) {
    test(`loads and predicts like a naive computation (${withSoftmax ? 'softmax output' : 'logits output, softmax applied by camviz'})`, async () => {
      const folder = await writeGraphModel(withSoftmax);
      const model = await loadModel(folder);
      try {
        assert.equal(model.meta.format, 'graph');
        // Built as a layers model of its nodes (see test/tfgraph.test.ts), so the executor runs it.
        assert.ok(model.graphModel !== undefined && model.layersModel !== undefined);
        assert.deepEqual(model.meta.inputSize, { width: 2, height: 2 });
        const images = [Uint8Array.from([0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 250, 255]), Uint8Array.from({ length: 12 }, (_, i) => 255 - i * 20)];
        const probabilities = await classProbabilities(model, images);
        images.forEach((pixels, i) => assertAllClose(probabilities[i]!, naiveProbabilities(pixels), 1e-5));
        assert.equal(model.network().score.scoreLayer, 'biased');
        assert.equal(model.network().score.activation, withSoftmax ? 'softmax' : 'none');
      } finally {
        model.dispose();
      }
    });
  }

  test('a graph model with a short weight file names it', async () => {
    const folder = await writeGraphModel(true);
    await writeFile(join(folder, 'graph.bin'), Buffer.alloc(10));
    const error = await expectCamvizError(() => loadModel(folder));
    assert.equal(error.file, join(folder, 'graph.bin'));
    assert.ok(existsSync(join(folder, 'model.json')));
  });
});

describe('labels whose count is not the model\'s class count', () => {
  test('--labels with too few names is a usage error naming the labels file; the right count loads', async () => {
    const folder = await writeGoodModel();
    const short = join(folder, 'two.txt');
    await writeFile(short, 'cat\ndog\n');
    const error = await expectCamvizError(() => loadModel(folder, { labels: short }));
    assert.equal(error.name, 'UsageError');
    assert.equal(error.file, short);
    assert.match(error.message, /the labels name 2 classes but the model has 3/);

    const right = join(folder, 'three.txt');
    await writeFile(right, 'cat\ndog\nbird\n');
    const model = await loadModel(folder, { labels: right });
    try {
      assert.deepEqual(model.meta.labels, ['cat', 'dog', 'bird']);
    } finally {
      model.dispose();
    }
  });

  test('a labels file named in camviz.json: relative to the model folder, or absolute', async () => {
    const folder = await writeGoodModel();
    await writeFile(join(folder, 'names.txt'), 'x\ny\nz\n');
    const elsewhere = join(await freshFolder(), 'names.txt');
    await writeFile(elsewhere, 'p\nq\nr\n');
    for (const [labels, expected] of [['names.txt', ['x', 'y', 'z']], [elsewhere, ['p', 'q', 'r']]] as const) {
      await writeFile(join(folder, 'camviz.json'), JSON.stringify({ labels }));
      const model = await loadModel(folder);
      try {
        assert.deepEqual(model.meta.labels, expected);
      } finally {
        model.dispose();
      }
    }
  });

  test('labels in camviz.json of the wrong count are an error naming model.json', async () => {
    const folder = await writeGoodModel();
    await writeFile(join(folder, 'camviz.json'), JSON.stringify({ labels: ['a', 'b', 'c', 'd'] }));
    const error = await expectCamvizError(() => loadModel(folder));
    assert.equal(error.file, join(folder, 'model.json'));
    assert.match(error.message, /the labels name 4 classes but the model has 3/);
  });
});
