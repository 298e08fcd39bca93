/**
 * ONNX models that keep weights in external data files, on ONNX Runtime
 * (src/model/onnx/read.ts, trunk.ts; engine/onnxruntime.ts's
 * `externalDataFolder`). ORT gets the model's bytes, not its path, so it is
 * told the model's folder to find those files; camviz checks that they are
 * still the files it read, and keys the session (and the optimised graph
 * it saves, which holds the weights) by a fingerprint of what it read:
 * - the tiny Conv/Relu/GAP/Gemm model with its two weight matrices in a
 *   file beside it runs on ORT (no fallback) with the scores computed by
 *   hand, and the same values as the model with its weights inline;
 * - new weights in the external file (the .onnx unchanged) give a new key
 *   and the new scores, never the saved graph of the old ones;
 * - an external file written or swapped for a link after the load is
 *   refused where ORT would read it again.
 * Skips with a reason when onnxruntime-node does not load.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, mkdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../src/engine/backend.js';
import type { CamvizError } from '../src/util/errors.js';
import { loadOnnxRuntime, releaseOrtSessions } from '../src/engine/onnxruntime.js';
import { disposeValues } from '../src/executor/network.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { onnxTrunkOf } from '../src/model/onnx/trunk.js';
import { withEnv } from './helpers/env.js';
import { maxAbsDifference } from './helpers/numeric.js';
import { onnxModelBytes } from './helpers/onnx.js';
import { SIZE, convWeights, fcWeights, randoms, tinyByHand, tinyModel } from './helpers/tiny-onnx.js';

const ort = loadOnnxRuntime();
const skipOrt: string | false = ort.available ? false : `onnxruntime-node does not load: ${ort.reason}`;

const DATA_FILE = 'weights.bin';
const CONV_BYTES = convWeights.length * 4;

/** The tiny model with conv.weight and fc.weight at their offsets in DATA_FILE (biases inline). */
function externalModelBytes(): Uint8Array {
  const model = tinyModel();
  const initializers = model.initializers!.map((tensor) => {
    if (tensor.name === 'conv.weight') return { name: tensor.name, dims: tensor.dims, external: { location: DATA_FILE, offset: '0', length: String(CONV_BYTES) } };
    if (tensor.name === 'fc.weight') return { name: tensor.name, dims: tensor.dims, external: { location: DATA_FILE, offset: String(CONV_BYTES), length: String(fcWeights.length * 4) } };
    return tensor;
  });
  return onnxModelBytes({ ...model, initializers });
}

/** The external file: conv.weight then fc.weight, float32 little-endian, each weight times `scale`. */
function externalDataBytes(scale = 1): Buffer {
  const values = Float32Array.from([...convWeights, ...fcWeights], (value) => value * scale);
  const bytes = Buffer.alloc(values.length * 4);
  values.forEach((value, i) => bytes.writeFloatLE(value, i * 4));
  return bytes;
}

let workDir: string;
let input: tf.Tensor4D;
before(async () => {
  await useBackend('wasm');
  workDir = await mkdtemp(join(tmpdir(), 'camviz-ort-external-'));
  input = tf.tensor4d(randoms(2 * SIZE * SIZE * 3, 21), [2, SIZE, SIZE, 3]);
});
after(async () => {
  input.dispose();
  releaseOrtSessions();
  await rm(workDir, { recursive: true, force: true });
});

/** A folder holding the model with external data (and the file), or with its weights inline. */
async function modelFolder(name: string, external: boolean): Promise<string> {
  const folder = join(workDir, name);
  await mkdir(folder, { recursive: true });
  await writeFile(join(folder, 'model.onnx'), external ? externalModelBytes() : onnxModelBytes(tinyModel()));
  if (external) await writeFile(join(folder, DATA_FILE), externalDataBytes());
  return folder;
}

/** The model's scores on ONNX Runtime (asserting that it runs there), as a new run would: no session cached. */
async function ortScores(model: CamvizModel): Promise<Float32Array> {
  releaseOrtSessions();
  const report = await model.engine();
  assert.equal(report.kind, 'onnxruntime', `runs on ONNX Runtime (${report.reason ?? ''})`);
  const values = await (await model.executor()).forward(input);
  const scores = values.scores.dataSync() as Float32Array;
  disposeValues(values);
  return scores;
}

function load(folder: string): Promise<CamvizModel> {
  return loadModel(folder, { preprocess: 'none', engine: 'onnxruntime' });
}

describe('ONNX external data on ONNX Runtime', { skip: skipOrt }, () => {
  test('runs there, with the scores computed by hand and those of the same weights inline', async () => {
    const cache = await mkdtemp(join(workDir, 'cache-'));
    await withEnv('CAMVIZ_CACHE', cache, async () => {
      const external = await load(await modelFolder('external', true));
      const inline = await load(await modelFolder('inline', false));
      try {
        const hand = tinyByHand(input.dataSync() as Float32Array, 2).scores;
        const fromExternal = await ortScores(external);
        assert.ok(maxAbsDifference(fromExternal, hand) < 1e-5, `scores against the hand values: ${maxAbsDifference(fromExternal, hand)}`);
        assert.deepEqual(Array.from(fromExternal), Array.from(await ortScores(inline)));
        // Again, from the optimised graph the first session saved.
        assert.deepEqual(Array.from(await ortScores(external)), Array.from(fromExternal));
      } finally {
        external.dispose();
        inline.dispose();
      }
    });
  });

  test('new weights in the external file (the .onnx unchanged) run with the new weights, not the saved graph of the old', async () => {
    const cache = await mkdtemp(join(workDir, 'cache-'));
    await withEnv('CAMVIZ_CACHE', cache, async () => {
      const folder = await modelFolder('changing', true);
      const first = await load(folder);
      const before = await ortScores(first).finally(() => first.dispose());
      // Same size, and the old times put back: only the change time (and the bytes) tell.
      await writeFile(join(folder, DATA_FILE), externalDataBytes(2));
      const old = new Date(Date.now() - 3_600_000);
      await utimes(join(folder, DATA_FILE), old, old);
      const second = await load(folder);
      try {
        const after = await ortScores(second);
        assert.ok(maxAbsDifference(after, before) > 1e-3, 'the scores changed with the weights');
        // The second path: tfjs' Network of the weights this load read.
        const network = await second.network().forward(input);
        const expected = network.scores.dataSync() as Float32Array;
        disposeValues(network);
        assert.ok(maxAbsDifference(after, expected) < 1e-4, `ORT's scores are the new weights' (${maxAbsDifference(after, expected)})`);
      } finally {
        second.dispose();
      }
    });
  });

  test('an external file written, or swapped for a link, after the load is refused where ONNX Runtime would read it', async () => {
    for (const change of ['written', 'linked'] as const) {
      const folder = await modelFolder(`swapped-${change}`, true);
      const model = await loadModel(folder, { preprocess: 'none', engine: 'tfjs' });
      try {
        const onnx = model.onnx!;
        assert.ok(onnx.externalData !== undefined, 'the load tells of the external data');
        const trunk = await onnxTrunkOf(model.meta.modelJsonPath, model.meta.sha256, model.network().graph, model.meta.inputSize, onnx.externalData);
        assert.equal(trunk.externalDataFolder, folder);
        assert.ok(trunk.cacheKey.startsWith(onnx.externalData.fingerprint), 'the session key is the fingerprint of the weights read');
        assert.notEqual(onnx.externalData.fingerprint, model.meta.sha256);
        trunk.withOutputs(['logits']);
        const path = join(folder, DATA_FILE);
        if (change === 'written') {
          await writeFile(path, externalDataBytes(3));
        } else {
          const elsewhere = join(workDir, `elsewhere-${change}.bin`);
          await copyFile(path, elsewhere);
          await rm(path);
          await symlink(elsewhere, path);
        }
        assert.throws(() => trunk.withOutputs(['logits']), (error: Error) => {
          assert.equal(error.message, "the ONNX file's external data changed since it was loaded");
          assert.equal((error as CamvizError).file, path);
          return true;
        });
      } finally {
        model.dispose();
      }
    }
  });
});
