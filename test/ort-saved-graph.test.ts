/**
 * The optimised graph ONNX Runtime saves for later processes
 * (src/engine/onnxruntime.ts, `withSession` with a folder): saved once in
 * ORT format, loaded from it without the model, with outputs bit-identical
 * to the session made from the model; anything else under its name
 * (a byte changed, truncated, another model's, unsealed, ONNX format) is
 * made again, a large file without a seal without being read; a graph ORT fails to
 * save still gets its session; and the bytes ORT reads the weights from in
 * place live as long as the session.
 * Skips with a reason when onnxruntime-node does not load.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { type OrtModule, type OrtSession, SAVED_GRAPH_SUFFIX, loadOnnxRuntime, releaseOrtSessions, withSession } from '../src/engine/onnxruntime.js';
import { SEAL_BYTES } from '../src/engine/saved-graph-seal.js';
import { asset } from './helpers/assets.js';
import { tinyClassifier } from './helpers/engine-models.js';
import { mulberry32 } from './helpers/numeric.js';

const status = loadOnnxRuntime();
const skipOrt: string | false = status.available ? false : `onnxruntime-node does not load: ${status.reason}`;
const mobilenetOnnx = asset('onnx', 'mobilenet_v1_0.75_224.onnx');
const skipMobilenet: string | false = skipOrt || (existsSync(mobilenetOnnx) ? false : `the shared ONNX MobileNet is absent (${mobilenetOnnx})`);

/** The magic of ORT's flatbuffer format, after the 4-byte root offset. */
const ORT_FORMAT_MAGIC = 'ORTM';

let workDir: string;
before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'camviz-ort-saved-'));
});
after(async () => {
  releaseOrtSessions();
  await rm(workDir, { recursive: true, force: true });
});

interface Subject {
  readonly key: string;
  readonly model: Uint8Array;
  /** The input's shape: batch 1, then the model's own. */
  readonly dims: readonly number[];
}

function ortModule(): OrtModule {
  if (!status.available) throw new Error('onnxruntime-node does not load');
  return status.module;
}

/** Seeded values in [-1, 1) for the input of `subject`. */
function inputOf(subject: Subject): Float32Array {
  const next = mulberry32(11);
  return Float32Array.from({ length: subject.dims.reduce((a, b) => a * b, 1) }, () => next() * 2 - 1);
}

/** Every output of one run of `session` on the subject's input, copied out. */
async function outputsOf(session: OrtSession, subject: Subject): Promise<Record<string, number[]>> {
  const ort = ortModule();
  const input = new ort.Tensor('float32', inputOf(subject), subject.dims);
  const results = await session.run({ [session.inputNames[0]!]: input }, session.outputNames);
  const copied: Record<string, number[]> = {};
  for (const [name, tensor] of Object.entries(results)) {
    copied[name] = Array.from(tensor.data as Float32Array);
    tensor.dispose();
  }
  input.dispose();
  return copied;
}

/**
 * As a new process would: no session cached, the session of `subject` with
 * its saved graph in `folder`, and whether it needed the model (false: it
 * loaded the saved graph).
 */
async function freshSession<T>(subject: Subject, folder: string, use: (session: OrtSession) => Promise<T>): Promise<{ result: T; usedModel: boolean }> {
  releaseOrtSessions();
  let usedModel = false;
  const model = (): Uint8Array => {
    usedModel = true;
    return subject.model;
  };
  const result = await withSession(ortModule(), subject.key, model, 1, use, folder);
  return { result, usedModel };
}

/** The one file in `folder`, checked to be a saved graph in ORT format (no temporary left beside it). */
async function savedGraph(folder: string): Promise<string> {
  const files = await readdir(folder);
  assert.equal(files.length, 1, `one file, no temporary left: ${files.join(', ')}`);
  assert.match(files[0]!, /^[A-Za-z0-9-]+\.[0-9a-f]{32}\.ort$/, 'named <model stem>.<hash>.ort');
  assert.ok(files[0]!.endsWith(SAVED_GRAPH_SUFFIX));
  const path = join(folder, files[0]!);
  assert.equal((await readFile(path)).subarray(4, 8).toString('latin1'), ORT_FORMAT_MAGIC, 'saved in ORT format');
  return path;
}

const tiny: Subject = { key: 'tiny-classifier', model: tinyClassifier(), dims: [1, 3, 16, 16] };

/** MobileNet v1 0.75 (the shared ONNX file), under its own cache key `key`. */
function mobilenet(key: string): Subject {
  return { key, model: new Uint8Array(readFileSync(mobilenetOnnx)), dims: [1, 3, 224, 224] };
}

describe('the saved optimised graph (ORT format)', { skip: skipOrt }, () => {
  for (const [name, subjectOf, skip] of [
    ['a tiny classifier', (): Subject => tiny, false],
    ['MobileNet v1 0.75 (ONNX)', (): Subject => mobilenet('mobilenet'), skipMobilenet],
  ] as const) {
    test(`${name}: saved once, loaded by a later session without the model and not written again; outputs bit-identical`, { skip }, async () => {
      const subject = subjectOf();
      const folder = join(workDir, `once-${subject.key}`);
      const first = await freshSession(subject, folder, (session) => outputsOf(session, subject));
      assert.ok(first.usedModel);
      const path = await savedGraph(folder);
      const written = (await stat(path)).ino; // a write renames a new file over it; a read may touch its mtime
      const later = await freshSession(subject, folder, (session) => outputsOf(session, subject));
      assert.equal(later.usedModel, false, 'loaded from the saved graph');
      assert.equal((await stat(path)).ino, written, 'not written again');
      assert.deepEqual(later.result, first.result);
    });
  }

  test('a damaged, truncated, unsealed, foreign or ONNX-format file under the saved name is made again from the model, with the same outputs', async () => {
    const folder = join(workDir, 'damaged');
    const reference = await freshSession(tiny, folder, (session) => outputsOf(session, tiny));
    const path = await savedGraph(folder);
    const good = await readFile(path);
    const flipped = Buffer.from(good);
    flipped[flipped.length >> 1]! ^= 0x40;
    const overwritten = Buffer.from(good);
    overwritten.fill(0x40, overwritten.length >> 2, (overwritten.length >> 2) + 64);
    // Another model's saved graph under this one's name, seal and all.
    const otherFolder = join(workDir, 'damaged-other');
    await freshSession({ ...tiny, key: 'tiny-classifier-other' }, otherFolder, async () => undefined);
    const other = await readFile(await savedGraph(otherFolder));
    const damages: Record<string, Uint8Array> = {
      garbage: Buffer.from('not an ORT model'),
      empty: new Uint8Array(0),
      truncated: good.subarray(0, good.length >> 1),
      'one byte changed (ORT loads it, and its scores differ)': flipped,
      '64 bytes overwritten': overwritten,
      "another model's saved graph": other,
      'the graph without its seal (saved before seals)': good.subarray(0, good.length - SEAL_BYTES),
      'ONNX format (the format saved before)': tiny.model,
    };
    for (const [damage, bytes] of Object.entries(damages)) {
      await writeFile(path, bytes);
      const remade = await freshSession(tiny, folder, (session) => outputsOf(session, tiny));
      assert.ok(remade.usedModel, `${damage}: made from the model`);
      assert.deepEqual(remade.result, reference.result, `${damage}: outputs`);
      // Replaced by a saved graph (ORT's flatbuffer is not byte-for-byte the same from one save to the next).
      assert.equal((await readFile(await savedGraph(folder))).length > 1000, true, `${damage}: replaced by the saved graph`);
      assert.equal((await freshSession(tiny, folder, async () => undefined)).usedModel, false, `${damage}: the new file loads`);
    }
  });

  test('a large file without a seal under the saved name is passed over unread', async () => {
    const folder = join(workDir, 'large');
    await freshSession(tiny, folder, async () => undefined);
    const path = await savedGraph(folder);
    // 1.5 GiB of holes (under the 2 GiB read limit): read whole, it would take that much memory; refused by its last bytes, none.
    await truncate(path, 1.5 * 2 ** 30);
    const before = process.memoryUsage().rss;
    const remade = await freshSession(tiny, folder, async () => undefined);
    assert.ok(remade.usedModel, 'made from the model');
    assert.ok(process.memoryUsage().rss - before < 512 * 2 ** 20, 'the file was not read');
    assert.ok((await stat(await savedGraph(folder))).size < 2 ** 20, 'replaced by the saved graph');
  });

  test('a graph ONNX Runtime fails to save still gets its session (made again without saving), and nothing is left in the folder', async () => {
    const folder = join(workDir, 'unsaveable');
    const real = ortModule();
    // The real ONNX Runtime, except that saving the optimised graph fails (as it would for a graph its format cannot hold).
    const failsToSave: OrtModule = {
      ...real,
      Tensor: real.Tensor,
      InferenceSession: {
        create: (model, options) => (options.optimizedModelFilePath === undefined ? real.InferenceSession.create(model, options) : Promise.reject(new Error('cannot save the optimised model'))),
      },
    };
    releaseOrtSessions();
    const outputs = await withSession(failsToSave, 'unsaveable', () => tiny.model, 1, (session) => outputsOf(session, tiny), folder);
    releaseOrtSessions();
    const reference = await withSession(real, 'unsaveable-reference', () => tiny.model, 1, (session) => outputsOf(session, tiny));
    assert.deepEqual(outputs, reference);
    assert.deepEqual(await readdir(folder), []);
  });

  test('the bytes ORT reads the weights from in place live as long as the session (a collection, then freed memory reused)', { skip: skipMobilenet }, async () => {
    const subject = mobilenet('mobilenet-lifetime');
    const folder = join(workDir, 'lifetime');
    const reference = await freshSession(subject, folder, (session) => outputsOf(session, subject));
    const collect = exposedGc();
    const later = await freshSession(subject, folder, async (session) => {
      // Nothing in the test holds the saved graph's bytes: collected unless the session keeps them.
      for (let i = 0; i < 3; i++) collect();
      const reused = Array.from({ length: 24 }, () => Buffer.alloc(1 << 20, 0xff));
      const outputs = await outputsOf(session, subject);
      assert.equal(reused.length, 24);
      return outputs;
    });
    assert.equal(later.usedModel, false, 'loaded from the saved graph');
    assert.deepEqual(later.result, reference.result);
  });
});

/** V8's collector, exposed at run time (tests run without --expose-gc). */
function exposedGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}
