/**
 * The HDF5 structure reader (src/model/keras/hdf5-structure.ts), which
 * finds Keras weights where jsfive did: on every shared Keras file
 * (superblock 0, version-1 object headers, symbol-table groups) and on the
 * test writer's files (superblock 2, version-2 headers, compact links) it
 * finds the groups and datasets jsfive finds, each with the same shape,
 * element type and Data Layout message. What it does not read (here a
 * float type with bit 6 set, VAX order) jsfive reads from there on, with
 * the same values. Hand-broken files (group indexes and header
 * continuations that loop, members and headers past the end of the file,
 * names that do not end, messages that overrun their header) are refused
 * with one line naming the file.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

import { Hdf5File } from '../src/model/keras/hdf5.js';
import { type Hdf5GroupInfo, Hdf5Structure, Hdf5Unsupported } from '../src/model/keras/hdf5-structure.js';
import { ZipArchive } from '../src/model/keras/zip.js';
import { CamvizError } from '../src/util/errors.js';
import { asset } from './helpers/assets.js';
import { group, writeHdf5 } from './helpers/hdf5-writer.js';

const kerasDir = asset('keras');
const cifar = join(kerasDir, 'cifar10_k3.10.keras');
const mnist = join(kerasDir, 'mnist_cnn_k3.5.h5');
const cats = join(kerasDir, 'cats_vs_dogs_k2.10.h5');
const skip: string | false = [cifar, mnist, cats].every((path) => existsSync(path)) ? false : `Keras assets not found at ${kerasDir}`;

interface JsfiveNode {
  keys?: string[];
  shape?: number[];
  dtype?: unknown;
  value?: ArrayLike<number>;
  get(name: string): JsfiveNode;
  _dataobjects?: { find_msg_type(type: number): { get(key: string): unknown }[] };
}
const jsfive = createRequire(import.meta.url)('jsfive') as { File: new (buffer: ArrayBuffer, name: string) => JsfiveNode; Dataset: abstract new (...args: never[]) => JsfiveNode };

/** Not a type guard: jsfive's groups and datasets share one interface here. */
const isJsfiveDataset = (node: JsfiveNode): boolean => node instanceof jsfive.Dataset;
const jsfiveFile = (bytes: Buffer): JsfiveNode => new jsfive.File(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer, 'reference.h5');
const cifarWeights = (): Buffer => Buffer.from(ZipArchive.open(readFileSync(cifar), cifar).read('model.weights.h5', 1 << 30));

/** A small file of the test writer: nested groups, datasets of several ranks. */
function writerFile(): Buffer {
  const data = (shape: number[]): { shape: number[]; data: Float32Array } => ({ shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => i / 7) });
  return writeHdf5(group({ layers: group({ conv: group({ vars: group({ 0: data([3, 3, 2, 4]), 1: data([4]) }) }), dense: group({ vars: group({ 0: data([8, 2]) }) }) }), vars: group() }));
}

/** Every group and dataset under the root, as the structure reader sees it and as jsfive does: paths, members (as sets), shapes, types, layout messages. */
function describeBoth(bytes: Buffer): { own: string[]; reference: string[] } {
  const structure = Hdf5Structure.open(bytes, 'file.h5');
  const own: string[] = [];
  const walkOwn = (address: number, path: string): void => {
    const node = structure.object(address);
    if (node.kind === 'dataset') {
      own.push(`${path}: [${node.shape.join(',')}] ${node.dtype} layout@${node.layoutAt}`);
      return;
    }
    const names = [...node.links.keys()].sort();
    own.push(`${path}/ {${names.join(',')}}`);
    for (const name of names) walkOwn(node.links.get(name)!, `${path}/${name}`);
  };
  walkOwn(structure.rootAddress, '');
  const reference: string[] = [];
  const walkReference = (node: JsfiveNode, path: string): void => {
    if (isJsfiveDataset(node)) {
      const layout = node._dataobjects!.find_msg_type(8)[0]!.get('offset_to_message');
      reference.push(`${path}: [${node.shape!.join(',')}] ${String(node.dtype)} layout@${String(layout)}`);
      return;
    }
    const names = [...node.keys!].sort();
    reference.push(`${path}/ {${names.join(',')}}`);
    for (const name of names) walkReference(node.get(name), `${path}/${name}`);
  };
  walkReference(jsfiveFile(bytes), '');
  return { own, reference };
}

/** Every float dataset under `path`, read through Hdf5File: path to shape and values. */
function readAll(h5: Hdf5File, path: string, into = new Map<string, { shape: number[]; values: Float32Array }>()): Map<string, { shape: number[]; values: Float32Array }> {
  for (const name of h5.members(path)) {
    const child = `${path}/${name}`;
    const dataset = h5.dataset(child);
    if (dataset === undefined) readAll(h5, child, into);
    else into.set(child, { shape: dataset.shape, values: dataset.read() });
  }
  return into;
}

/** The same, read by jsfive alone. */
function readAllReference(bytes: Buffer, path: string): Map<string, { shape: number[]; values: Float32Array }> {
  const into = new Map<string, { shape: number[]; values: Float32Array }>();
  const walk = (node: JsfiveNode, at: string): void => {
    if (isJsfiveDataset(node)) {
      into.set(at, { shape: node.shape!, values: Float32Array.from(node.value!) });
      return;
    }
    for (const name of node.keys!) walk(node.get(name), `${at}/${name}`);
  };
  walk(path.split('/').filter((part) => part !== '').reduce((node, part) => node.get(part), jsfiveFile(bytes)), path);
  return into;
}

/** Offsets of every occurrence of a 4-byte signature. */
function signatures(bytes: Buffer, signature: string): number[] {
  const found: number[] = [];
  for (let at = bytes.indexOf(signature, 0, 'latin1'); at >= 0; at = bytes.indexOf(signature, at + 1, 'latin1')) found.push(at);
  assert.ok(found.length > 0, `the file holds ${signature}`);
  return found;
}

/** Opening and walking `bytes` (groups under `path`, every dataset read) must fail with one line naming the file that matches `says`. */
function expectRefused(bytes: Buffer, path: string, says: RegExp): void {
  let caught: unknown;
  try {
    readAll(Hdf5File.open(bytes, 'broken.h5'), path);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof CamvizError, `expected a CamvizError, got ${String(caught)}`);
  assert.equal(caught.file, 'broken.h5');
  assert.ok(!caught.describe().includes('\n'), caught.describe());
  assert.match(caught.message, says);
}

describe('the HDF5 structure reader', { skip }, () => {
  test('finds the groups and datasets jsfive finds, with the same shapes, types and layout messages: every shared Keras file and a test-writer file', () => {
    const files: [string, Buffer][] = [
      ['cifar10 model.weights.h5', cifarWeights()],
      ['mnist .h5', readFileSync(mnist)],
      ['cats_vs_dogs .h5', readFileSync(cats)],
      ['test writer', writerFile()],
    ];
    for (const [name, bytes] of files) {
      const { own, reference } = describeBoth(bytes);
      assert.ok(own.some((line) => line.includes('<f4')), `${name}: has float32 datasets`);
      assert.deepEqual(own, reference, name);
    }
  });

  test('reads the same values as jsfive through Hdf5File (contiguous float32 in place, the rest copied)', () => {
    for (const [bytes, path] of [[cifarWeights(), 'layers'], [readFileSync(mnist), 'model_weights'], [writerFile(), 'layers']] as const) {
      assert.deepEqual(readAll(Hdf5File.open(bytes, 'file.h5'), path), readAllReference(bytes, path));
    }
  });

  test('what it does not read (a float type with bit 6 set, VAX order) is read by jsfive from there on, with the same values', () => {
    const bytes = cifarWeights();
    // Every float32 Datatype message of a version-1 header: type 3, then class 1 / version 1 (0x11), bit field 0, size 4.
    let changed = 0;
    for (let at = 0; at + 16 <= bytes.length; at += 1) {
      if (bytes.readUInt16LE(at) === 3 && bytes[at + 8] === 0x11 && bytes.readUInt32LE(at + 12) === 4 && (bytes[at + 9]! & 0x41) === 0) {
        bytes[at + 9] = bytes[at + 9]! | 0x40;
        changed += 1;
      }
    }
    assert.ok(changed > 0, 'the float datatypes are where the format puts them');
    const structure = Hdf5Structure.open(bytes, 'vax.h5');
    const member = (address: number, name: string): number => {
      const node = structure.object(address);
      assert.equal(node.kind, 'group');
      return (node as Hdf5GroupInfo).links.get(name)!;
    };
    const dense = (name: string): number => ['layers', name, 'vars', '0'].reduce(member, structure.rootAddress);
    assert.throws(() => structure.object(dense('dense_1')), Hdf5Unsupported);
    assert.deepEqual(readAll(Hdf5File.open(bytes, 'vax.h5'), 'layers'), readAllReference(cifarWeights(), 'layers'));
  });

  test('refused: a group index that loops', () => {
    const bytes = cifarWeights();
    // Every group B-tree node made an inner node whose first child is itself.
    for (const node of signatures(bytes, 'TREE')) {
      if (bytes[node + 4] !== 0) continue;
      bytes[node + 5] = 1;
      bytes.writeBigUInt64LE(BigInt(node), node + 24 + 8);
    }
    expectRefused(bytes, 'layers', /not a readable HDF5 file \(truncated or corrupt\?\): a group index that loops/);
  });

  test('refused: an object header whose continuation leads back to itself', () => {
    const bytes = cifarWeights();
    const root = Number(bytes.readBigUInt64LE(64));
    assert.equal(bytes[root], 1, 'a version-1 object header');
    assert.ok(bytes.readUInt16LE(root + 18) >= 16, 'its first message has room for a continuation');
    bytes.writeUInt16LE(0x10, root + 16);
    bytes.writeBigUInt64LE(BigInt(root + 16), root + 24);
    bytes.writeBigUInt64LE(BigInt(bytes.readUInt32LE(root + 8)), root + 32);
    expectRefused(bytes, 'layers', /object header at \d+ continues twice/);
  });

  test('refused: a member whose object header lies past the end of the file', () => {
    const bytes = cifarWeights();
    for (const node of signatures(bytes, 'SNOD')) bytes.writeBigUInt64LE(2n ** 40n, node + 8 + 8);
    expectRefused(bytes, 'layers', /past the end of the file/);
  });

  test("refused: member names outside their group's heap, or with no end in it", () => {
    const outside = cifarWeights();
    for (const heap of signatures(outside, 'HEAP')) outside.writeBigUInt64LE(4n, heap + 8);
    expectRefused(outside, 'layers', /a member name outside its group's heap/);
    const endless = cifarWeights();
    for (const heap of signatures(endless, 'HEAP')) {
      const data = Number(endless.readBigUInt64LE(heap + 24));
      endless.fill('a', data, data + Number(endless.readBigUInt64LE(heap + 8)));
    }
    expectRefused(endless, 'layers', /a member name with no end in its group's heap/);
  });

  test('refused: a header message that overruns its header, and a version-2 header longer than the file', () => {
    const bytes = cifarWeights();
    const root = Number(bytes.readBigUInt64LE(64));
    bytes.writeUInt16LE(0xfff8, root + 18);
    expectRefused(bytes, 'layers', /an object header message at \d+ overruns its header/);
    const written = writerFile();
    const writtenRoot = Number(written.readBigUInt64LE(36));
    assert.equal(written.toString('latin1', writtenRoot, writtenRoot + 4), 'OHDR');
    written.writeUInt32LE(0x7fffffff, writtenRoot + 6);
    expectRefused(written, 'layers', /past the end of the file/);
  });

  test('refused: a link to something that is no object header (the superblock)', () => {
    const bytes = writerFile();
    // Every hard link's address (the last 8 bytes of each Link message the writer writes) set to 0.
    let changed = 0;
    for (const header of signatures(bytes, 'OHDR')) {
      const end = header + 10 + bytes.readUInt32LE(header + 6);
      for (let at = header + 10; at + 4 <= end; at += 4 + bytes.readUInt16LE(at + 1)) {
        if (bytes[at] !== 6) continue;
        bytes.writeBigUInt64LE(0n, at + 4 + bytes.readUInt16LE(at + 1) - 8);
        changed += 1;
      }
    }
    assert.ok(changed > 0);
    expectRefused(bytes, 'layers', /no object header at 0/);
  });

  test('refused: a dataset of a storage class neither reader knows (jsfive gives no values; a TypeError before)', () => {
    const bytes = writerFile();
    // Every Data Layout message (type 8, version 3, class 1: contiguous) given class 213.
    let changed = 0;
    for (let at = 0; at + 6 <= bytes.length; at += 1) {
      if (bytes[at] === 8 && bytes.readUInt16LE(at + 1) >= 18 && bytes[at + 4] === 3 && bytes[at + 5] === 1) {
        bytes[at + 5] = 213;
        changed += 1;
      }
    }
    assert.ok(changed > 0, 'the layout messages are where the writer puts them');
    expectRefused(bytes, 'layers', /HDF5 dataset '.+' holds no values, its shape says \d+/);
  });
});
