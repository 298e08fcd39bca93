/**
 * An ONNX file's sha256 recorded by the file's identity
 * (src/model/file-fingerprints.ts, read by src/model/onnx/read.ts): a
 * second load hashes nothing; a file rewritten in place with its size and
 * mtime kept, a copy, and a file changed after its read ahead are hashed,
 * and give the sha256 of the bytes parsed. The rewritten model runs on
 * ONNX Runtime as its new weights (skipped without ORT).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdtemp, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../src/engine/backend.js';
import { loadOnnxRuntime } from '../src/engine/onnxruntime.js';
import { FILE_FINGERPRINTS_NAME, computedFingerprintCount, unchangedIdentity } from '../src/model/file-fingerprints.js';
import { CamvizError } from '../src/util/errors.js';
import { loadModel } from '../src/model/load.js';
import { readOnnxAhead } from '../src/model/onnx/file.js';
import { readOnnxWithSha256 } from '../src/model/onnx/read.js';
import { assertScoresAsOnTfjs, recordedFingerprints, setWholeSecond, untilSettled, useCacheRoot } from './helpers/fingerprints.js';
import { type TestModel, onnxModelBytes } from './helpers/onnx.js';
import { SIZE, tinyModel } from './helpers/tiny-onnx.js';

const ort = loadOnnxRuntime();

/** The tiny model with its classifier's bias moved by `shift`: the same size in bytes, other bytes. */
function shiftedModel(shift: number): TestModel {
  const model = tinyModel();
  return { ...model, initializers: model.initializers!.map((tensor) => (tensor.name === 'fc.bias' ? { ...tensor, values: tensor.values!.map((value) => value + shift) } : tensor)) };
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

let root: string;
let cache: string;
let original: Uint8Array;
let other: Uint8Array;
let path: string;
/** A settled file whose recorded fingerprint a test forges. */
let forgedPath: string;
let restoreCacheRoot: () => void;

/** Reads `file` as the loader does: the sha256 it gives, and how many hashes that took. */
async function read(file: string): Promise<{ sha256: string; hashed: number }> {
  const before = computedFingerprintCount();
  const { sha256: result } = await readOnnxWithSha256(file);
  return { sha256: result, hashed: computedFingerprintCount() - before };
}

describe('ONNX file fingerprints by identity', () => {
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'camviz-onnx-fingerprint-'));
    cache = join(root, 'cache');
    restoreCacheRoot = useCacheRoot(cache);
    original = onnxModelBytes(shiftedModel(0));
    other = onnxModelBytes(shiftedModel(1));
    assert.equal(other.length, original.length);
    assert.notEqual(sha256(other), sha256(original));
    path = join(root, 'model.onnx');
    await writeFile(path, original);
    forgedPath = join(root, 'forged.onnx');
    await writeFile(forgedPath, original);
    await setWholeSecond([path, forgedPath]);
    await untilSettled();
  });

  after(async () => {
    restoreCacheRoot();
    await rm(root, { recursive: true, force: true });
  });

  test('a second read takes the recorded sha256 without hashing', async () => {
    assert.deepEqual(await read(path), { sha256: sha256(original), hashed: 1 });
    assert.deepEqual((await recordedFingerprints(cache))[path]?.fingerprint, sha256(original));
    assert.deepEqual(await read(path), { sha256: sha256(original), hashed: 0 });
    // Read ahead, as the command line does: the same.
    await readOnnxAhead(path);
    assert.deepEqual(await read(path), { sha256: sha256(original), hashed: 0 });
  });

  test('a file keeps the identity its stats before the read give only while it is neither written, replaced nor removed', async () => {
    const file = join(root, 'identity.bin');
    await writeFile(file, 'abc');
    const before = await stat(file, { bigint: true });
    assert.deepEqual(await unchangedIdentity(file, before), { path: file, dev: String(before.dev), ino: String(before.ino), size: '3', mtimeNs: String(before.mtimeNs), ctimeNs: String(before.ctimeNs) });
    // Written in place, its size and mtime set back: the ctime tells.
    await writeFile(file, 'abd');
    await utimes(file, before.atime, before.mtime);
    assert.equal(await unchangedIdentity(file, before), undefined);
    const rewritten = await stat(file, { bigint: true });
    await writeFile(`${file}.new`, 'abd');
    await rename(`${file}.new`, file);
    assert.equal(await unchangedIdentity(file, rewritten), undefined, 'replaced: another inode');
    const replaced = await stat(file, { bigint: true });
    await rm(file);
    assert.equal(await unchangedIdentity(file, replaced), undefined, 'removed');
  });

  test('a file changed less than 40 s ago is hashed on every read, and not recorded', async () => {
    const fresh = join(root, 'fresh.onnx');
    await writeFile(fresh, original);
    assert.deepEqual(await read(fresh), { sha256: sha256(original), hashed: 1 });
    assert.deepEqual(await read(fresh), { sha256: sha256(original), hashed: 1 });
    assert.equal((await recordedFingerprints(cache))[fresh], undefined);
  });

  test('a copy is hashed again (a new inode), and gives the same sha256', async () => {
    const copy = join(root, 'copy.onnx');
    await copyFile(path, copy);
    await setWholeSecond([copy]);
    assert.deepEqual(await read(copy), { sha256: sha256(original), hashed: 1 });
  });

  test('a file changed after its read ahead is hashed: the sha256 of the bytes read', async () => {
    assert.equal((await read(path)).hashed, 0);
    await readOnnxAhead(path);
    await writeFile(path, other);
    await setWholeSecond([path]);
    // The bytes read ahead are the original's, their stats the recorded identity: the identity after the read differs.
    assert.deepEqual(await read(path), { sha256: sha256(original), hashed: 1 });
    await writeFile(path, original);
    await setWholeSecond([path]);
  });

  test('a wrong fingerprint recorded for an unchanged file fails its ONNX Runtime session once, naming the file once, and is forgotten: the next load hashes and runs', { skip: ort.available ? false : 'onnxruntime-node does not load' }, async () => {
    assert.equal((await read(forgedPath)).hashed, 1);
    const indexPath = join(cache, 'onnx', FILE_FINGERPRINTS_NAME);
    const index = JSON.parse(await readFile(indexPath, 'utf8')) as { entries: Record<string, { fingerprint: string }> };
    index.entries[forgedPath]!.fingerprint = '0'.repeat(64);
    await writeFile(indexPath, JSON.stringify(index));
    assert.deepEqual(await read(forgedPath), { sha256: '0'.repeat(64), hashed: 0 }, 'the forged record is taken by the load');
    await useBackend('cpu');
    const forged = await loadModel(forgedPath, { engine: 'onnxruntime', preprocess: 'none' });
    const input = tf.zeros([1, SIZE, SIZE, 3]);
    try {
      await assert.rejects(
        async () => {
          const values = await (await forged.executor()).forward(input);
          tf.dispose([values.scores, ...values.layers.values()]);
        },
        (error: unknown) => {
          assert.ok(error instanceof CamvizError);
          assert.match(error.describe(), /changed since it was loaded/);
          assert.equal(error.describe().split(forgedPath).length - 1, 1, `the file named once: ${error.describe()}`);
          return true;
        },
      );
    } finally {
      input.dispose();
      forged.dispose();
    }
    // Forgotten in the background of the failed session.
    for (let i = 0; i < 100 && (await recordedFingerprints(cache))[forgedPath] !== undefined; i++) await sleep(20);
    assert.equal((await recordedFingerprints(cache))[forgedPath], undefined, 'the record is forgotten');
    assert.deepEqual(await read(forgedPath), { sha256: sha256(original), hashed: 1 });
    const onOrt = await loadModel(forgedPath, { engine: 'onnxruntime', preprocess: 'none' });
    const onTfjs = await loadModel(forgedPath, { engine: 'tfjs', preprocess: 'none' });
    await assertScoresAsOnTfjs(onOrt, onTfjs, SIZE);
  });

  test('a file rewritten in place, its size and mtime kept, is hashed again and runs as its new weights', async () => {
    await read(path);
    if (ort.available) {
      // A session of the original on ONNX Runtime, saved in the cache under its sha256.
      await useBackend('cpu');
      const first = await loadModel(path, { engine: 'onnxruntime', preprocess: 'none' });
      const input = tf.zeros([1, SIZE, SIZE, 3]);
      const values = await (await first.executor()).forward(input);
      tf.dispose([input, values.scores, ...values.layers.values()]);
      first.dispose();
    }
    const was = await stat(path, { bigint: true });
    await writeFile(path, other);
    await setWholeSecond([path]);
    const now = await stat(path, { bigint: true });
    assert.deepEqual([now.dev, now.ino, now.size, now.mtimeNs], [was.dev, was.ino, was.size, was.mtimeNs], 'same device, inode, size and mtime');
    assert.notEqual(now.ctimeNs, was.ctimeNs, 'the kernel set a new ctime');
    assert.deepEqual(await read(path), { sha256: sha256(other), hashed: 1 });
    if (!ort.available) return;
    // ONNX Runtime's session is keyed by the sha256: the new weights' scores, not the session saved for the old ones.
    const otherPath = join(root, 'other.onnx');
    await writeFile(otherPath, other);
    const onOrt = await loadModel(path, { engine: 'onnxruntime', preprocess: 'none' });
    const onTfjs = await loadModel(otherPath, { engine: 'tfjs', preprocess: 'none' });
    await assertScoresAsOnTfjs(onOrt, onTfjs, SIZE);
  });
});
