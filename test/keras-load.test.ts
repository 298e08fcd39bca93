/**
 * How Keras weights reach tfjs (issue 14's load-time target): the weights
 * entry of a `.keras` is read into a buffer of its own, checksummed as it
 * is read, and the large weights are handed to tfjs where they lie in it,
 * the bytes between them skipped; the paths around that (a deflated entry,
 * a file holding more besides its weights, datasets that overlap in a lying
 * file, chunked datasets) copy, and every path gives each weight the values
 * jsfive itself reads from the file. Chunked datasets are read with bounds
 * (hostile ones refused); a file's identity is an .h5's sha256, a .keras's
 * contents'; a zip64 extra field in a local header is harmless. The real
 * files of ../shared/assets/keras, some rewritten here.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { deflateSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { loadModel } from '../src/model/load.js';
import { Hdf5File } from '../src/model/keras/hdf5.js';
import { readKerasModel } from '../src/model/keras/load.js';
import { ZipArchive } from '../src/model/keras/zip.js';
import { asset } from './helpers/assets.js';
import { type Hdf5Float32, type Hdf5Group, group, writeHdf5 } from './helpers/hdf5-writer.js';
import { type ZipSpec, zipOf } from './helpers/zip.js';
import { withChunkedDataset } from './helpers/hdf5-chunked.js';
import { expectCamvizError } from './helpers/errors.js';
import { findPython } from './helpers/python.js';

const kerasDir = asset('keras');
const cifar = join(kerasDir, 'cifar10_k3.10.keras');
const mnist = join(kerasDir, 'mnist_cnn_k3.5.h5');
const python = findPython('zipfile');
const skip: string | false = existsSync(cifar) && existsSync(mnist) ? false : `Keras assets not found at ${kerasDir}`;

/** jsfive read directly (its own value decoding), as the reference for what each weight must hold. */
interface JsfiveNode {
  keys?: string[];
  attrs: Record<string, unknown>;
  shape?: number[];
  value?: ArrayLike<number>;
  get(name: string): JsfiveNode;
  _dataobjects?: { find_msg_type(type: number): { get(key: string): unknown }[] };
}
const jsfive = createRequire(import.meta.url)('jsfive') as { File: new (buffer: ArrayBuffer, name: string) => JsfiveNode };

function jsfiveFile(bytes: Buffer): JsfiveNode {
  return new jsfive.File(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer, 'reference.h5');
}

/** Every `layers/<name>/vars/<i>` of a Keras 3 weights file, as jsfive reads it. */
function kerasV3Reference(h5: Buffer): Map<string, Float32Array[]> {
  const root = jsfiveFile(h5);
  const layers = root.get('layers');
  const weights = new Map<string, Float32Array[]>();
  for (const name of layers.keys!) {
    const vars = layers.get(name).get('vars');
    const count = vars.keys!.length;
    weights.set(name, Array.from({ length: count }, (_, i) => Float32Array.from(vars.get(String(i)).value!)));
  }
  return weights;
}

/** The weights of `reference` written again (./helpers/hdf5-writer.ts), shaped as in the real cifar10 file, after the groups `first`. */
function rewritten(reference: Map<string, Float32Array[]>, first: Record<string, Hdf5Group> = {}): Buffer {
  const real = jsfiveFile(cifarWeightsEntry()).get('layers');
  const layers: Record<string, Hdf5Group> = {};
  for (const [name, values] of reference) {
    const vars: Record<string, Hdf5Float32> = {};
    values.forEach((data, i) => {
      vars[String(i)] = { shape: real.get(name).get('vars').get(String(i)).shape!, data };
    });
    layers[name] = group({ vars: group(vars) });
  }
  return writeHdf5(group({ ...first, layers: group(layers), vars: group() }));
}

const cifarArchive = (): ZipArchive => ZipArchive.open(readFileSync(cifar), cifar);
const cifarWeightsEntry = (): Buffer => Buffer.from(cifarArchive().read('model.weights.h5', 1 << 30));

/** The real cifar10 archive with its weights entry replaced (and deflated, when asked). */
function cifarWithWeights(h5: Buffer, deflate = false): Buffer {
  const archive = cifarArchive();
  const entries: ZipSpec[] = [
    { name: 'metadata.json', data: archive.read('metadata.json', 1 << 20) },
    { name: 'config.json', data: archive.read('config.json', 1 << 20) },
    { name: 'model.weights.h5', data: h5, deflate },
  ];
  return zipOf(entries);
}

describe('Keras weights handed to tfjs in place, and every fallback', { skip }, () => {
  let folder = '';
  before(async () => {
    folder = await mkdtemp(join(tmpdir(), 'camviz-keras-load-'));
  });
  after(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  /** Loads `bytes` as a Keras file and checks every layer's weights against `expected` (by layer name). */
  async function expectWeights(name: string, bytes: Buffer, expected: Map<string, Float32Array[]>): Promise<void> {
    const path = join(folder, name);
    await writeFile(path, bytes);
    const model = await loadModel(path);
    try {
      let checked = 0;
      for (const [layer, values] of expected) {
        const weights = model.layersModel!.getLayer(layer).getWeights();
        assert.equal(weights.length, values.length, `${layer}: number of weights`);
        weights.forEach((weight, i) => {
          assert.deepEqual(weight.dataSync(), values[i], `${layer} weight ${i}`);
          checked += 1;
        });
      }
      assert.ok(checked > 0, 'some weights were compared');
    } finally {
      model.dispose();
    }
  }

  test('a .keras as Keras writes it (weights stored): tfjs gets the weights entry itself, the large weights in place, and the values jsfive reads', async () => {
    const read = (await readKerasModel(cifar))!;
    const data = read.artifacts.weightData as ArrayBuffer[];
    const h5 = cifarWeightsEntry();
    // The entry's own bytes (optimizer state included), not a buffer of the weights alone.
    const entry = data.find((buffer) => buffer.byteLength === h5.length);
    assert.ok(entry !== undefined && Buffer.from(entry).equals(h5), 'one buffer holds the entry, byte for byte');
    const weightBytes = read.modelJson.weightsManifest[0]!.weights.reduce((sum, spec) => sum + 4 * spec.shape.reduce((product, dim) => product * dim, 1), 0);
    const copied = data.filter((buffer) => buffer !== entry).reduce((sum, buffer) => sum + buffer.byteLength, 0);
    assert.ok(copied < weightBytes / 10, `only small weights copied: ${copied} of ${weightBytes} bytes`);
    const specs = read.artifacts.weightSpecs!;
    assert.ok(specs.some((spec) => spec.group === 'optimizer'), 'the bytes between weights are declared as skipped');
    assert.deepEqual(
      specs.filter((spec) => spec.group !== 'optimizer').map((spec) => spec.name).sort(),
      read.modelJson.weightsManifest[0]!.weights.map((spec) => spec.name).sort(),
      'every weight once, nothing else outside the skipped group',
    );
    await expectWeights('stored.keras', readFileSync(cifar), kerasV3Reference(h5));
  });

  test('the same weights entry deflated (read whole, inflated): the same values', async () => {
    const h5 = cifarWeightsEntry();
    await expectWeights('deflated.keras', cifarWithWeights(h5, true), kerasV3Reference(h5));
  });

  test('a legacy .h5 (read whole, in place): the values jsfive reads through weight_names', async () => {
    const bytes = readFileSync(mnist);
    const read = (await readKerasModel(mnist))!;
    assert.ok((read.artifacts.weightData as ArrayBuffer[]).some((buffer) => buffer.byteLength === bytes.length), 'the file itself is handed on');
    const root = jsfiveFile(bytes);
    const weights = root.get('model_weights');
    const expected = new Map<string, Float32Array[]>();
    for (const layer of weights.attrs['layer_names'] as string[]) {
      const names = (weights.get(layer).attrs['weight_names'] ?? []) as string[];
      if (names.length > 0) expected.set(layer, names.map((name) => Float32Array.from(weights.get(layer).get(name).value!)));
    }
    await expectWeights('legacy.h5', bytes, expected);
  });

  test('a weights file holding more besides its weights than the weights, before them: the weights are packed, and right', async () => {
    const reference = kerasV3Reference(cifarWeightsEntry());
    const weightBytes = [...reference.values()].flat().reduce((sum, values) => sum + values.byteLength, 0);
    // Written first, so that it lies before every weight: twice the weights, as Adam's two moments would be.
    const optimizerState = { shape: [weightBytes / 2], data: new Float32Array(weightBytes / 2).fill(0.5) };
    const h5 = rewritten(reference, { optimizer: group({ vars: group({ '0': optimizerState }) }) });
    const path = join(folder, 'optimizer-first.keras');
    await writeFile(path, cifarWithWeights(h5));
    const read = (await readKerasModel(path))!;
    const data = read.artifacts.weightData as ArrayBuffer[];
    assert.deepEqual(data.map((buffer) => buffer.byteLength), [weightBytes], 'one packed buffer of the weights alone');
    assert.ok(!read.artifacts.weightSpecs!.some((spec) => spec.group === 'optimizer'));
    await expectWeights('optimizer-first.keras', cifarWithWeights(h5), reference);
  });

  test('a lying file whose two datasets share their bytes: one is read in place, the other copied, each holds the bytes it points to', async () => {
    const h5 = cifarWeightsEntry();
    const root = jsfiveFile(h5);
    // The data layout message of conv2d_1's kernel (3x3x32x64 values) made to point at conv2d_2's (3x3x64x64): it holds the first half of those.
    const layoutAt = (layer: string): number => root.get('layers').get(layer).get('vars').get('0')._dataobjects!.find_msg_type(8)[0]!.get('offset_to_message') as number;
    const from = layoutAt('conv2d_1');
    const to = layoutAt('conv2d_2');
    assert.equal(h5[from + 1], 1, 'contiguous layout (class 1)');
    const lying = Buffer.from(h5);
    h5.copy(lying, from + 2, to + 2, to + 10);
    const expected = kerasV3Reference(h5);
    expected.get('conv2d_1')![0] = expected.get('conv2d_2')![0]!.slice(0, 3 * 3 * 32 * 64);
    const path = join(folder, 'shared-bytes.keras');
    await writeFile(path, cifarWithWeights(lying));
    const read = (await readKerasModel(path))!;
    const data = read.artifacts.weightData as ArrayBuffer[];
    assert.ok(data.some((buffer) => buffer.byteLength === lying.length), 'the file itself is handed on');
    assert.ok(data[0]!.byteLength >= 3 * 3 * 64 * 64 * 4, 'the weight whose bytes were taken is among those copied');
    await expectWeights('shared-bytes.keras', cifarWithWeights(lying), expected);
  });

  test('chunked datasets, deflated or not (h5py with chunks= / compression=): read chunk by chunk, packed, right', async () => {
    const reference = kerasV3Reference(cifarWeightsEntry());
    let h5 = rewritten(reference);
    const headerOf = (bytes: Buffer, layer: string, index: number): number => (jsfiveFile(bytes).get('layers').get(layer).get('vars').get(String(index)) as unknown as { _dataobjects: { offset: number } })._dataobjects.offset;
    // conv2d_2's kernel deflated in 4 chunks, two of them cut by the edge; conv2d_1's bias in 4 plain chunks; dense's kernel shuffled and deflated.
    h5 = withChunkedDataset(h5, headerOf(h5, 'conv2d_2', 0), '0', { shape: [3, 3, 64, 64], data: reference.get('conv2d_2')![0]!, chunk: [2, 3, 32, 64], deflate: true });
    h5 = withChunkedDataset(h5, headerOf(h5, 'conv2d_1', 1), '1', { shape: [64], data: reference.get('conv2d_1')![1]!, chunk: [16], deflate: false });
    h5 = withChunkedDataset(h5, headerOf(h5, 'dense', 0), '0', { shape: [1024, 64], data: reference.get('dense')![0]!, chunk: [300, 64], deflate: true, shuffle: true });
    const file = Hdf5File.open(h5, 'chunked.h5');
    for (const dataset of ['layers/conv2d_2/vars/0', 'layers/conv2d_1/vars/1', 'layers/dense/vars/0']) assert.equal(file.dataset(dataset)!.float32At(), undefined, `${dataset} is not read in place`);
    const kernel = jsfiveFile(h5).get('layers').get('conv2d_2').get('vars').get('0') as unknown as { _dataobjects: { chunks: number[]; filter_pipeline: { get(key: string): unknown }[] } };
    assert.deepEqual([...kernel._dataobjects.chunks], [2, 3, 32, 64], 'jsfive sees the chunks');
    assert.equal(kernel._dataobjects.filter_pipeline[0]!.get('filter_id'), 1, 'and the deflate filter');
    assert.deepEqual(Float32Array.from((kernel as unknown as { value: ArrayLike<number> }).value), reference.get('conv2d_2')![0], 'and reads the values written (the file is sound)');
    const dense = jsfiveFile(h5).get('layers').get('dense').get('vars').get('0') as unknown as { value: ArrayLike<number> };
    assert.deepEqual(Float32Array.from(dense.value), reference.get('dense')![0], 'jsfive unshuffles the dense kernel to the values written');
    const path = join(folder, 'chunked.keras');
    await writeFile(path, cifarWithWeights(h5));
    const read = (await readKerasModel(path))!;
    const copied = (read.artifacts.weightData as ArrayBuffer[]).filter((buffer) => buffer.byteLength !== h5.length).reduce((sum, buffer) => sum + buffer.byteLength, 0);
    assert.ok(copied >= 3 * 3 * 64 * 64 * 4, 'the chunked kernel is among the weights copied');
    await expectWeights('chunked.keras', cifarWithWeights(h5), reference);
  });

  /** The rewritten cifar10 weights with conv2d_1's bias ([64]) chunked as `options` say. */
  function withChunkedBias(options: { chunk: number[]; deflate: boolean; storedAs?: (stored: Buffer) => Buffer }, declared: number[] = [64]): Buffer {
    const reference = kerasV3Reference(cifarWeightsEntry());
    const h5 = rewritten(reference);
    const header = (jsfiveFile(h5).get('layers').get('conv2d_1').get('vars').get('1') as unknown as { _dataobjects: { offset: number } })._dataobjects.offset;
    const count = declared.reduce((product, dim) => product * dim, 1);
    return withChunkedDataset(h5, header, '1', { shape: declared, data: new Float32Array(count), ...options });
  }

  const hostileChunks = [
    // jsfive walked all 16 M elements of the declared chunk (seconds; 4x the size, a minute and gigabytes) for a 64-value dataset.
    { name: 'a chunk declared far larger than its dataset', h5: () => withChunkedBias({ chunk: [16 * 2 ** 20], deflate: true }, [16 * 2 ** 20]), says: /declares chunks of \[16777216\] for its shape \[64\]/ },
    // jsfive (pako) inflated the whole stream, whatever the chunk's size.
    { name: 'a chunk inflating to 64 MiB (a bomb)', h5: () => withChunkedBias({ chunk: [64], deflate: true, storedAs: () => deflateSync(Buffer.alloc(64 * 2 ** 20)) }), says: /has a chunk that inflates beyond its 256 bytes \(a bomb\?\): refused/ },
    { name: 'a chunk indexed twice', h5: () => withChunkedBias({ chunk: [32], deflate: false }, [64]), says: /indexes the chunk at \[0\] twice/, twice: true },
  ];
  for (const hostile of hostileChunks) {
    test(`refused with one line: ${hostile.name}`, async () => {
      let h5 = hostile.h5();
      if (hostile.twice === true) {
        // The B-tree's second key (chunk offset 32) rewritten to 0.
        const tree = h5.lastIndexOf('TREE');
        h5 = Buffer.from(h5);
        h5.writeBigUInt64LE(0n, tree + 24 + (8 + 8 * 2) + 8 + 8);
      }
      const path = join(folder, 'hostile-chunks.keras');
      await writeFile(path, cifarWithWeights(h5));
      const error = await expectCamvizError(() => loadModel(path));
      assert.match(error.message, hostile.says);
      assert.equal(error.file, `${path}:model.weights.h5`);
    });
  }

  test('the identity of an HDF5 Keras file is the sha256 of all its bytes, hashed as they are read in pieces', async () => {
    for (const path of [mnist, join(kerasDir, 'cats_vs_dogs_k2.10.h5')]) {
      const read = (await readKerasModel(path))!;
      assert.equal(read.sha256, createHash('sha256').update(readFileSync(path)).digest('hex'), path);
    }
  });

  test("the identity of a .keras is its contents' (names, sizes, CRC-32s checked as read): zipped again, stored or deflated, the same; a weight or the metadata changed, another", async () => {
    const identityOf = async (name: string, bytes: Buffer): Promise<string> => {
      const path = join(folder, name);
      await writeFile(path, bytes);
      return (await readKerasModel(path))!.sha256;
    };
    const real = (await readKerasModel(cifar))!.sha256;
    assert.match(real, /^[0-9a-f]{64}$/);
    // Not a hash of the file's bytes: the rezipped archives below differ from the real one in timestamps.
    assert.notEqual(real, createHash('sha256').update(readFileSync(cifar)).digest('hex'));
    assert.equal(await identityOf('identity-stored.keras', cifarWithWeights(cifarWeightsEntry())), real);
    assert.equal(await identityOf('identity-deflated.keras', cifarWithWeights(cifarWeightsEntry(), true)), real);
    const h5 = cifarWeightsEntry();
    const at = Hdf5File.open(h5, 'cifar weights').dataset('layers/dense_1/vars/0')!.float32At()!;
    h5.writeFloatLE(h5.readFloatLE(at) + 1, at);
    const otherWeight = await identityOf('identity-weight.keras', cifarWithWeights(h5));
    const archive = cifarArchive();
    const otherMetadata = await identityOf(
      'identity-metadata.keras',
      zipOf([
        { name: 'metadata.json', data: Buffer.from('{"keras_version": "3.10.1"}') },
        { name: 'config.json', data: archive.read('config.json', 1 << 20) },
        { name: 'model.weights.h5', data: archive.read('model.weights.h5', 1 << 30) },
      ]),
    );
    assert.equal(new Set([real, otherWeight, otherMetadata]).size, 3);
  });

  test('a stored weights entry with one byte changed past its first MiB fails its checksum, computed as it is read', async () => {
    const bytes = Buffer.from(readFileSync(cifar));
    const h5 = cifarWeightsEntry();
    const at = bytes.indexOf(h5.subarray(0, 64)) + 1024 * 1024 + 5;
    bytes[at] = bytes[at]! ^ 0xff;
    const path = join(folder, 'flipped.keras');
    await writeFile(path, bytes);
    const error = await expectCamvizError(() => loadModel(path));
    assert.match(error.message, /zip entry model\.weights\.h5 fails its checksum \(corrupt archive\)/);
  });

  // Keras writes its entries with Python's zipfile: zip64 only for entries near 2 GiB, beyond camviz's limits. Entries streamed with force_zip64 carry a zip64 extra field in their local header only.
  test('a .keras whose entries carry zip64 extra fields in their local headers (Python zipfile, force_zip64) loads, weights in place', { skip: python === null ? 'no python3' : false }, async () => {
    const path = join(folder, 'zip64-local.keras');
    const script = [
      'import sys, zipfile',
      'src = zipfile.ZipFile(sys.argv[1])',
      "with zipfile.ZipFile(sys.argv[2], 'w') as out:",
      "    for name in ['metadata.json', 'config.json', 'model.weights.h5']:",
      "        with out.open(name, 'w', force_zip64=True) as f: f.write(src.read(name))",
    ].join('\n');
    const run = spawnSync(python!, ['-c', script, cifar, path], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const bytes = readFileSync(path);
    assert.equal(bytes.readUInt16LE(28), 20, 'the first local header carries a 20-byte (zip64) extra field');
    const read = (await readKerasModel(path))!;
    assert.ok((read.artifacts.weightData as ArrayBuffer[]).some((buffer) => Buffer.from(buffer).equals(cifarWeightsEntry())), 'the weights entry read into a buffer of its own');
    await expectWeights('zip64-local.keras', bytes, kerasV3Reference(cifarWeightsEntry()));
  });
});
