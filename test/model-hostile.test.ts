/**
 * Model folders made to hurt: a topology that implies far more weights than
 * the manifest declares (tfjs-layers would allocate them all while
 * building), and weight files that are symbolic links out of the model
 * folder. Runs on the cpu backend, where a missing check costs megabytes
 * (the layers here are 1x1), not the gigabytes of the real attack on wasm.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

import { useBackend } from '../src/engine/backend.js';
import { MODEL_JSON_LIMIT, readLocalModel } from '../src/model/io.js';
import { loadModel } from '../src/model/load.js';
import { MAX_LAYERS } from '../src/model/topology-check.js';
import { expectCamvizError } from './helpers/errors.js';
import { fifoReleasedAfter, skipWithoutFifos } from './helpers/files.js';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-model-hostile-'));
after(() => rm(workDir, { recursive: true, force: true }));

before(async () => {
  await useBackend('cpu');
});

interface Saved {
  topology: Record<string, unknown>;
  weightSpecs: tf.io.WeightsManifestEntry[];
  weightBytes: Buffer;
}

/** conv (1x1, 4 filters) -> global average pooling -> dense (2, softmax), saved as artifacts. */
async function savedTinyModel(): Promise<Saved> {
  const input = tfl.input({ shape: [4, 4, 3] });
  const conv = tfl.layers.conv2d({ filters: 4, kernelSize: 1, name: 'conv' }).apply(input) as tfl.SymbolicTensor;
  const pooled = tfl.layers.globalAveragePooling2d({ name: 'pool' }).apply(conv) as tfl.SymbolicTensor;
  const output = tfl.layers.dense({ units: 2, activation: 'softmax', name: 'probs' }).apply(pooled) as tfl.SymbolicTensor;
  const model = tfl.model({ inputs: input, outputs: output });
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  model.dispose();
  const data = saved!.weightData!;
  const parts = Array.isArray(data) ? data : [data];
  return {
    topology: saved!.modelTopology as Record<string, unknown>,
    weightSpecs: saved!.weightSpecs!,
    weightBytes: Buffer.concat(parts.map((part) => Buffer.from(part))),
  };
}

const saved = await savedTinyModel();

let folderCount = 0;
async function freshFolder(): Promise<string> {
  const folder = join(workDir, `m${folderCount++}`);
  await mkdir(folder, { recursive: true });
  return folder;
}

/** The saved topology with one layer's config changed. */
function topologyWith(layerName: string, change: Record<string, unknown>): Record<string, unknown> {
  const copy = JSON.parse(JSON.stringify(saved.topology)) as { config: { layers: { name: string; config: Record<string, unknown> }[] } };
  const layer = copy.config.layers.find((candidate) => candidate.name === layerName);
  assert.ok(layer !== undefined, `the saved topology has a layer ${layerName}`);
  Object.assign(layer.config, change);
  return copy as unknown as Record<string, unknown>;
}

async function writeModel(folder: string, topology: Record<string, unknown>, withWeights: boolean): Promise<string> {
  const weightsManifest = withWeights ? [{ paths: ['weights.bin'], weights: saved.weightSpecs }] : [];
  const modelJsonPath = join(folder, 'model.json');
  await writeFile(modelJsonPath, JSON.stringify({ format: 'layers-model', modelTopology: topology, weightsManifest }));
  if (withWeights) await writeFile(join(folder, 'weights.bin'), saved.weightBytes);
  return modelJsonPath;
}

describe('a topology that implies more weights than the manifest declares', () => {
  test('the unchanged model loads (the check passes real models)', async () => {
    const folder = await freshFolder();
    await writeModel(folder, saved.topology, true);
    (await loadModel(folder)).dispose();
  });

  test('a convolution of 1,000,000 filters and no weights at all is refused before building, naming model.json', async () => {
    const folder = await freshFolder();
    const modelJsonPath = await writeModel(folder, topologyWith('conv', { filters: 1_000_000 }), false);
    const error = await expectCamvizError(() => loadModel(folder));
    assert.equal(error.file, modelJsonPath);
    assert.match(error.message, /layer 'conv' \(Conv2D\) needs a kernel of \[1, 1, 3, 1000000\] that the weightsManifest does not list: refused/);
  });

  test('a convolution of 1,000,000 filters whose manifest declares 4 is refused, with both shapes', async () => {
    const folder = await freshFolder();
    const modelJsonPath = await writeModel(folder, topologyWith('conv', { filters: 1_000_000 }), true);
    const error = await expectCamvizError(() => loadModel(folder));
    assert.equal(error.file, modelJsonPath);
    assert.match(error.message, /needs a kernel of \[1, 1, 3, 1000000\] but the weightsManifest declares \[1, 1, 3, 4\]: refused/);
  });

  test('a dense layer of 1,000,000 units is refused, and so is a kernel size of 1000', async () => {
    for (const [layer, change, message] of [
      ['probs', { units: 1_000_000 }, /layer 'probs' \(Dense\) needs a kernel of \[4, 1000000\]/],
      ['conv', { kernel_size: [1000, 1000] }, /layer 'conv' \(Conv2D\) needs a kernel of \[1000, 1000, 3, 4\]/],
    ] as const) {
      const folder = await freshFolder();
      await writeModel(folder, topologyWith(layer, change), true);
      const error = await expectCamvizError(() => loadModel(folder));
      assert.match(error.message, message);
    }
  });

  test('an input declaring 1,000,000 channels is refused: the convolution it feeds would need a kernel the manifest does not declare', async () => {
    const folder = await freshFolder();
    const topology = JSON.parse(JSON.stringify(saved.topology)) as { config: { layers: { class_name: string; config: { batch_input_shape: number[] } }[] } };
    const input = topology.config.layers.find((layer) => layer.class_name === 'InputLayer');
    assert.ok(input !== undefined);
    input.config.batch_input_shape = [null as unknown as number, 4, 4, 1_000_000];
    const modelJsonPath = await writeModel(folder, topology as unknown as Record<string, unknown>, true);
    const error = await expectCamvizError(() => loadModel(folder));
    assert.equal(error.file, modelJsonPath);
    assert.match(error.message, /layer 'conv' \(Conv2D\) needs a kernel of \[1, 1, 1000000, 4\] but the weightsManifest declares \[1, 1, 3, 4\]: refused/);
  });

  test('models nested 20,000 deep are refused in one line, not with a stack overflow', async () => {
    const folder = await freshFolder();
    const depth = 20_000;
    const innermost = '{"class_name":"Sequential","config":{"name":"s0","layers":[{"class_name":"Dense","config":{"name":"d","units":2,"batch_input_shape":[null,3]}}]}}';
    const opening = Array.from({ length: depth }, (_, i) => `{"class_name":"Sequential","config":{"name":"s${i + 1}","layers":[`).join('');
    await writeFile(join(folder, 'model.json'), `{"modelTopology":{"model_config":${opening}${innermost}${']}}'.repeat(depth)}},"weightsManifest":[]}`);
    const error = await expectCamvizError(() => loadModel(folder));
    assert.equal(error.file, join(folder, 'model.json'));
    assert.match(error.message, /nests its models too deeply: refused|declares more than 10,000 layers: refused/);
  });

  test('a chain of 20,000 layers is refused by its count before tfjs builds it (which overflows its stack from about 5,000)', async () => {
    const folder = await freshFolder();
    await writeFile(join(folder, 'model.json'), chainModelJson(20_000));
    // The count's message, not tfjs' stack overflow: refused before any layer was built.
    const error = await expectCamvizError(() => loadModel(folder));
    assert.equal(error.file, join(folder, 'model.json'));
    assert.equal(error.message, `model.json declares more than ${MAX_LAYERS.toLocaleString('en')} layers: refused`);
  });

  test('a chain of 1,000 layers, under the limit, builds', async () => {
    const folder = await freshFolder();
    await writeFile(join(folder, 'model.json'), chainModelJson(1_000));
    const model = await loadModel(folder, { size: '4' });
    model.dispose();
  });

  test('a filters value that is no size is refused naming model.json', async () => {
    const folder = await freshFolder();
    const modelJsonPath = await writeModel(folder, topologyWith('conv', { filters: '1e6' }), true);
    const error = await expectCamvizError(() => loadModel(folder));
    assert.equal(error.file, modelJsonPath);
    assert.match(error.message, /layer 'conv' \(Conv2D\) has no valid filters \("1e6"\): refused/);
  });
});

/** A functional model.json of `length` ReLU activations in a chain after a 4x4x3 input, without weights. */
function chainModelJson(length: number): string {
  const layers: unknown[] = [{ class_name: 'InputLayer', name: 'in', config: { name: 'in', batch_input_shape: [null, 4, 4, 3] }, inbound_nodes: [] }];
  for (let i = 0; i < length; i++) layers.push({ class_name: 'Activation', name: `a${i}`, config: { name: `a${i}`, activation: 'relu' }, inbound_nodes: [[[i === 0 ? 'in' : `a${i - 1}`, 0, 0, {}]]] });
  const config = { name: 'chain', layers, input_layers: [['in', 0, 0]], output_layers: [[`a${length - 1}`, 0, 0]] };
  return JSON.stringify({ format: 'layers-model', modelTopology: { model_config: { class_name: 'Model', config } }, weightsManifest: [] });
}

describe('models the check must let through', () => {
  test('a functional layer carrying a batch_input_shape of its own is fed by its inbound layer, as tfjs builds it', async () => {
    const folder = await freshFolder();
    await writeModel(folder, topologyWith('conv', { batch_input_shape: [null, 4, 4, 99] }), true);
    (await loadModel(folder)).dispose();
  });

  test('a nested Sequential, concatenation, separable, depthwise and transposed convolutions, normalisations and PReLU load and predict as in memory', async () => {
    const input = tfl.input({ shape: [5, 5, 3] });
    const inner = tfl.sequential({
      name: 'inner',
      layers: [
        tfl.layers.conv2d({ inputShape: [5, 5, 3], filters: 2, kernelSize: 3, padding: 'same', name: 'inner_conv' }),
        tfl.layers.separableConv2d({ filters: 3, kernelSize: 3, padding: 'same', name: 'inner_separable' }),
        tfl.layers.depthwiseConv2d({ kernelSize: 1, depthMultiplier: 2, name: 'inner_depthwise' }),
        tfl.layers.batchNormalization({ scale: false, name: 'inner_bn' }),
      ],
    });
    const apply = (layer: tfl.layers.Layer, x: tfl.SymbolicTensor | tfl.SymbolicTensor[]): tfl.SymbolicTensor => layer.apply(x) as tfl.SymbolicTensor;
    const convolved = apply(tfl.layers.conv2d({ filters: 2, kernelSize: 1, name: 'plain' }), input);
    const transposed = apply(tfl.layers.conv2dTranspose({ filters: 2, kernelSize: 1, name: 'transposed' }), input);
    // 2 + 2 channels: the kernel of 'mix' is [1, 1, 4, 6].
    const joined = apply(tfl.layers.concatenate({ name: 'joined' }), [convolved, transposed]);
    const activated = apply(tfl.layers.prelu({ name: 'prelu' }), apply(tfl.layers.layerNormalization({ name: 'ln' }), joined));
    const mixed = apply(tfl.layers.conv2d({ filters: 6, kernelSize: 1, name: 'mix' }), activated);
    const added = apply(tfl.layers.add({ name: 'sum' }), [mixed, apply(inner, input)]);
    const pooled = apply(tfl.layers.globalAveragePooling2d({ name: 'pool' }), added);
    const output = tfl.layers.dense({ units: 3, activation: 'softmax', name: 'probs' }).apply(pooled) as tfl.SymbolicTensor;
    const model = tfl.model({ inputs: input, outputs: output });
    model.setWeights(model.getWeights().map((weight, w) => tf.tidy(() => tf.reshape(tf.sin(tf.add(tf.range(0, weight.size), w)), weight.shape))));
    let artifacts: tf.io.ModelArtifacts | undefined;
    await model.save(
      tf.io.withSaveHandler(async (saving) => {
        artifacts = saving;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    const folder = await freshFolder();
    const data = artifacts!.weightData!;
    await writeFile(join(folder, 'weights.bin'), Buffer.concat((Array.isArray(data) ? data : [data]).map((part) => Buffer.from(part))));
    await writeFile(join(folder, 'model.json'), JSON.stringify({ modelTopology: artifacts!.modelTopology, weightsManifest: [{ paths: ['weights.bin'], weights: artifacts!.weightSpecs }] }));
    const loaded = await loadModel(folder);
    try {
      const x = tf.tidy(() => tf.reshape(tf.sin(tf.range(0, 75)), [1, 5, 5, 3]));
      const expected = tf.tidy(() => (model.predict(x) as tf.Tensor).dataSync());
      const actual = tf.tidy(() => (loaded.layersModel!.predict(x) as tf.Tensor).dataSync());
      x.dispose();
      assert.deepEqual(Array.from(actual), Array.from(expected));
    } finally {
      loaded.dispose();
      model.dispose();
    }
  });
});

describe('weight files that are symbolic links', () => {
  /** A model folder inside `parent` whose weights.bin is a link to `target`. */
  async function linkedModel(target: (parent: string, folder: string) => Promise<string>): Promise<string> {
    const parent = await freshFolder();
    const folder = join(parent, 'model');
    await mkdir(folder);
    await writeModel(folder, saved.topology, true);
    await rm(join(folder, 'weights.bin'));
    await symlink(await target(parent, folder), join(folder, 'weights.bin'));
    return folder;
  }

  test('a link to a file outside the model folder is refused even though it holds valid weights', async () => {
    const folder = await linkedModel(async (parent) => {
      const outside = join(parent, 'outside.bin');
      await writeFile(outside, saved.weightBytes);
      return outside;
    });
    const error = await expectCamvizError(() => loadModel(folder));
    assert.equal(error.file, join(folder, 'weights.bin'));
    assert.match(error.message, /weight file links outside the model folder \(to .*outside\.bin\): refused/);
  });

  test('a link to /etc/passwd is refused before it is read', async () => {
    const folder = await linkedModel(async () => '/etc/passwd');
    const error = await expectCamvizError(() => loadModel(folder));
    assert.equal(error.file, join(folder, 'weights.bin'));
    assert.match(error.message, /links outside the model folder \(to \/etc\/passwd\)/);
  });

  test('a link to a file inside the model folder is followed, and so is a linked model folder', async () => {
    const folder = await linkedModel(async (_parent, folder) => {
      await mkdir(join(folder, 'blobs'));
      await writeFile(join(folder, 'blobs', 'abc123'), saved.weightBytes);
      return join('blobs', 'abc123');
    });
    (await loadModel(folder)).dispose();
    const linkedFolder = join(await freshFolder(), 'linked');
    await symlink(folder, linkedFolder);
    (await loadModel(linkedFolder)).dispose();
  });
});

describe('weight files that are no weights', () => {
  test('a weight file that is a FIFO is refused at once, not waited on for a writer', { skip: skipWithoutFifos, timeout: 30_000 }, async () => {
    const folder = await freshFolder();
    await writeModel(folder, saved.topology, true);
    await rm(join(folder, 'weights.bin'));
    const released = fifoReleasedAfter(join(folder, 'weights.bin'));
    const error = await expectCamvizError(() => loadModel(folder));
    assert.equal(error.file, join(folder, 'weights.bin'));
    assert.equal(error.message, 'weight file is not a regular file: refused');
    assert.equal(released(), false, 'refused without waiting for a writer');
  });

  test('a weight file that is a folder is refused', async () => {
    const folder = await freshFolder();
    await writeModel(folder, saved.topology, true);
    await rm(join(folder, 'weights.bin'));
    await mkdir(join(folder, 'weights.bin'));
    const error = await expectCamvizError(() => loadModel(folder));
    assert.equal(error.message, 'weight file is not a regular file: refused');
  });

  test('a weight file far longer than its group needs is refused by its size, before it is read', async () => {
    const folder = await freshFolder();
    await writeModel(folder, saved.topology, true);
    // 1 GiB in a sparse file, under the 2 GiB any read refuses: read, it would take a GiB of memory; refused by its size, nothing.
    await truncate(join(folder, 'weights.bin'), 2 ** 30);
    const before = process.memoryUsage().rss;
    const error = await expectCamvizError(() => loadModel(folder));
    assert.equal(error.file, join(folder, 'weights.bin'));
    assert.equal(error.message, `weight file is longer than its manifest says: ${2 ** 30} bytes, the weights listed for its group need ${saved.weightBytes.length}`);
    assert.ok(process.memoryUsage().rss - before < 256 * 2 ** 20, 'nothing of the file was read');
  });

  test('a weight file a few bytes longer than its group needs is still refused, naming both sizes', async () => {
    const folder = await freshFolder();
    await writeModel(folder, saved.topology, true);
    await writeFile(join(folder, 'weights.bin'), Buffer.concat([saved.weightBytes, Buffer.alloc(4)]));
    const error = await expectCamvizError(() => loadModel(folder));
    assert.match(error.message, /weight file is longer than its manifest says/);
  });
});

test('a weight file over 2 GiB in a group of unknown size (a string weight) is refused by its size, not read: Node aborts on a longer read', async () => {
  const folder = await freshFolder();
  const weightsManifest = [{ paths: ['w.bin'], weights: [{ name: 'w', shape: [1], dtype: 'string' }] }];
  await writeFile(join(folder, 'model.json'), JSON.stringify({ format: 'graph-model', modelTopology: { node: [] }, weightsManifest }));
  await writeFile(join(folder, 'w.bin'), '');
  await truncate(join(folder, 'w.bin'), 3 * 2 ** 30);
  const error = await expectCamvizError(() => readLocalModel(folder));
  assert.equal(error.file, join(folder, 'w.bin'));
  assert.equal(error.message, `weight file is ${3 * 2 ** 30} bytes, more than the ${2 ** 31 - 1} camviz reads: refused`);
});

test('a model.json over the 64 MiB limit is refused by its size, before it is read', async () => {
  const folder = await freshFolder();
  await writeModel(folder, saved.topology, true);
  // Sparse: read, its 65 MiB would be parsed whole.
  await truncate(join(folder, 'model.json'), MODEL_JSON_LIMIT + 1);
  const before = process.memoryUsage().rss;
  const error = await expectCamvizError(() => readLocalModel(folder));
  assert.equal(error.file, join(folder, 'model.json'));
  assert.equal(error.message, 'model.json is over the 64 MiB camviz reads: refused');
  assert.ok(process.memoryUsage().rss - before < 32 * 2 ** 20, 'nothing of the file was read');
});
