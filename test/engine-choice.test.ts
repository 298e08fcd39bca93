/**
 * Choosing the engine per model and request (issue 12): `--engine` /
 * LoadOptions.engine over CAMVIZ_ENGINE, ONNX Runtime for ONNX models under
 * auto, TF.js models too (through camviz's ONNX writer), and the fallbacks: ONNX Runtime absent
 * (CAMVIZ_ORT_MODULE names a module that does not exist), and a model ONNX
 * Runtime refuses (a Relu with an attribute Relu does not have: ONNX
 * Runtime's checker rejects it, camviz's importer ignores it).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../src/engine/backend.js';
import { hostValues } from '../src/engine/tf.js';
import { ENGINE_CHOICES, parseEngineChoice, requestedEngine } from '../src/engine/engine-choices.js';
import { loadOnnxRuntime } from '../src/engine/onnxruntime.js';
import { Network, disposeValues } from '../src/executor/network.js';
import { loadModel } from '../src/model/load.js';
import { inputTensor } from '../src/model/predict.js';
import { UsageError } from '../src/util/errors.js';
import { expectCamvizError } from './helpers/errors.js';
import { maxAbsDifference } from './helpers/numeric.js';
import { tinyClassifier } from './helpers/engine-models.js';
import { saveLayersModel } from './helpers/layers-model-file.js';
import { UNWRITABLE_CLASS_NAME, unwritableLayer } from './helpers/unwritable-layer.js';
import * as tfl from '@tensorflow/tfjs-layers';
import { withEnv } from './helpers/env.js';

const ortStatus = loadOnnxRuntime();
const skipWithoutOrt: string | false = ortStatus.available ? false : `onnxruntime-node does not load here: ${ortStatus.reason}`;

/** A deterministic 16x16 RGB image batch of two, as the model's input tensor. */
function inputOf(model: Awaited<ReturnType<typeof loadModel>>): tf.Tensor4D {
  const image = (seed: number): Uint8Array => Uint8Array.from({ length: 16 * 16 * 3 }, (_, i) => (i * 37 + seed * 101) % 256);
  return inputTensor(model, [image(1), image(2)]);
}

/** Runs `fn` with ONNX Runtime loaded from `specifier` (CAMVIZ_ORT_MODULE), then restores the variable. */
const withOrtModule = (specifier: string, fn: () => Promise<void>): Promise<void> => withEnv('CAMVIZ_ORT_MODULE', specifier, fn);

let workDir: string;
let goodModel: string;
let refusedModel: string;
const savedEngine = process.env['CAMVIZ_ENGINE'];

before(async () => {
  await useBackend('cpu');
  delete process.env['CAMVIZ_ENGINE'];
  workDir = await mkdtemp(join(tmpdir(), 'camviz-engine-'));
  goodModel = join(workDir, 'tiny.onnx');
  refusedModel = join(workDir, 'refused.onnx');
  await writeFile(goodModel, tinyClassifier());
  await writeFile(refusedModel, tinyClassifier(true));
});

after(async () => {
  if (savedEngine !== undefined) process.env['CAMVIZ_ENGINE'] = savedEngine;
  await rm(workDir, { recursive: true, force: true });
});

describe('the requested engine', () => {
  test('the flag wins over CAMVIZ_ENGINE, which wins over the default (auto)', () => {
    assert.equal(requestedEngine(undefined, {}), 'auto');
    assert.equal(requestedEngine(undefined, { CAMVIZ_ENGINE: 'tfjs' }), 'tfjs');
    assert.equal(requestedEngine('onnxruntime', { CAMVIZ_ENGINE: 'tfjs' }), 'onnxruntime');
    assert.equal(requestedEngine(undefined, { CAMVIZ_ENGINE: 'ONNXRuntime' }), 'onnxruntime');
    for (const choice of ENGINE_CHOICES) assert.equal(parseEngineChoice(choice), choice);
  });

  test('an unknown engine is a usage error naming where it came from and the choices', () => {
    assert.throws(
      () => requestedEngine(undefined, { CAMVIZ_ENGINE: 'bogus' }),
      (error: unknown) => error instanceof UsageError && /CAMVIZ_ENGINE 'bogus'/.test(error.message) && /auto, tfjs, onnxruntime/.test(error.message),
    );
    assert.throws(() => requestedEngine('gpu', {}), UsageError);
  });

  test('loadModel reads CAMVIZ_ENGINE when LoadOptions.engine is absent', async () => {
    process.env['CAMVIZ_ENGINE'] = 'tfjs';
    try {
      const model = await loadModel(goodModel);
      try {
        assert.equal((await model.engine()).kind, 'tfjs');
        assert.equal((await model.engine()).requested, 'tfjs');
      } finally {
        model.dispose();
      }
      process.env['CAMVIZ_ENGINE'] = 'nonsense';
      await assert.rejects(loadModel(goodModel), UsageError);
    } finally {
      delete process.env['CAMVIZ_ENGINE'];
    }
  });
});

/** Runs `body` with CAMVIZ_CACHE set to a fresh folder (the writer caches what it writes there), restored and removed after. */
async function withOwnCache(prefix: string, body: () => Promise<void>): Promise<void> {
  const folder = await mkdtemp(join(tmpdir(), prefix));
  try {
    await withEnv('CAMVIZ_CACHE', folder, body);
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

describe('tfjs models', () => {
  test('auto and onnxruntime run a TF.js layers model on ONNX Runtime through the ONNX writer, with the Network\'s scores', { skip: skipWithoutOrt }, async () => {
    await withOwnCache('camviz-engine-tfjs-', async () => {
      for (const engine of ['auto', 'onnxruntime'] as const) {
        const model = await loadModel('shapes', { engine });
        try {
          const executor = await model.executor();
          assert.ok(!(executor instanceof Network), `${engine}: not the Network`);
          assert.deepEqual(await model.engine(), { kind: 'onnxruntime', requested: engine, version: ortStatus.available ? ortStatus.version : '', threads: 1 });
          const { width, height } = model.meta.inputSize;
          const input = inputTensor(model, [Uint8Array.from({ length: width * height * 3 }, (_, i) => (i * 37) % 256)]);
          const [ort, reference] = [await executor.forward(input), await model.network().forward(input)];
          assert.ok(maxAbsDifference(ort.scores.dataSync(), reference.scores.dataSync()) <= 1e-4, `${engine}: scores differ from the Network's`);
          disposeValues(ort);
          disposeValues(reference);
          input.dispose();
        } finally {
          model.dispose();
        }
      }
    });
  });

  test('an image input goes to ONNX Runtime as the values it was made from (no read back), with the same scores as a plain tensor of them', { skip: skipWithoutOrt }, async () => {
    await withOwnCache('camviz-engine-host-', async () => {
      const model = await loadModel('shapes', { engine: 'onnxruntime' });
      try {
        const executor = await model.executor();
        const { width, height } = model.meta.inputSize;
        const input = inputTensor(model, [Uint8Array.from({ length: width * height * 3 }, (_, i) => (i * 29) % 256)]);
        const plain = tf.tensor4d(input.dataSync(), input.shape);
        assert.equal(hostValues(input)?.length, input.size, 'an image input keeps its values at hand');
        assert.equal(hostValues(plain), undefined);
        input.dataSync = () => {
          throw new Error('the input was read back');
        };
        const [fromHost, fromPlain] = [await executor.forward(input), await executor.forward(plain)];
        assert.deepEqual(Array.from(fromHost.scores.dataSync()), Array.from(fromPlain.scores.dataSync()));
        disposeValues(fromHost);
        disposeValues(fromPlain);
        tf.dispose([input, plain]);
      } finally {
        model.dispose();
      }
    });
  });

  test('the model\'s dispose ends its ONNX Runtime executor (its host workers), once', { skip: skipWithoutOrt }, async () => {
    await withOwnCache('camviz-engine-dispose-', async () => {
      const model = await loadModel('shapes', { engine: 'onnxruntime' });
      const executor = await model.executor();
      assert.ok(executor.dispose !== undefined, 'the ONNX Runtime executor ends what it starts');
      const ended: number[] = [];
      const ownDispose = executor.dispose.bind(executor);
      executor.dispose = async () => {
        ended.push(1);
        await ownDispose();
      };
      model.dispose();
      model.dispose();
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(ended.length, 1);
    });
  });

  test('a TF.js model with a layer the ONNX writer cannot express: tfjs under auto (a per-model fallback, saying why); an error naming the model under onnxruntime', { skip: skipWithoutOrt }, async () => {
    const folder = await mkdtemp(join(tmpdir(), 'camviz-engine-unwritable-'));
    try {
      const input = tfl.input({ shape: [8, 8, 3] });
      const up = unwritableLayer('up').apply(input) as tfl.SymbolicTensor;
      const pooled = tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(up) as tfl.SymbolicTensor;
      const scores = tfl.layers.dense({ units: 2, activation: 'softmax', name: 'scores' }).apply(pooled) as tfl.SymbolicTensor;
      const built = tfl.model({ inputs: input, outputs: scores });
      await saveLayersModel(built, folder);
      built.dispose();
      const auto = await loadModel(folder, { engine: 'auto', preprocess: 'unit' });
      try {
        assert.ok((await auto.executor()) instanceof Network);
        const engine = await auto.engine();
        assert.equal(engine.kind, 'tfjs');
        assert.equal(engine.fallback, 'rejected');
        assert.ok(engine.reason?.includes(`up (${UNWRITABLE_CLASS_NAME})`), engine.reason);
      } finally {
        auto.dispose();
      }
      const strict = await loadModel(folder, { engine: 'onnxruntime', preprocess: 'unit' });
      try {
        const error = await expectCamvizError(() => strict.executor());
        assert.match(error.describe(), new RegExp(`--engine onnxruntime: .*${UNWRITABLE_CLASS_NAME}.*\\(.*model\\.json\\)$`));
      } finally {
        strict.dispose();
      }
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });

  test('tfjs: the executor is the model\'s Network, whatever the model', async () => {
    const model = await loadModel(goodModel, { engine: 'tfjs' });
    try {
      assert.equal(await model.executor(), model.network());
      assert.deepEqual(await model.engine(), { kind: 'tfjs', requested: 'tfjs' });
    } finally {
      model.dispose();
    }
  });
});

describe('ONNX models on ONNX Runtime', { skip: skipWithoutOrt }, () => {
  test('auto and onnxruntime run an ONNX model on ONNX Runtime, chosen once, with the Network\'s scores', async () => {
    for (const engine of ['auto', 'onnxruntime'] as const) {
      const model = await loadModel(goodModel, { engine, ortThreads: 1 });
      const input = inputOf(model);
      try {
        const executor = await model.executor();
        assert.ok(!(executor instanceof Network), `${engine}: not the tfjs Network`);
        assert.equal(await model.executor(), executor, 'the executor is cached on the model');
        const report = await model.engine();
        assert.equal(report.kind, 'onnxruntime');
        assert.equal(report.requested, engine);
        assert.equal(report.version, ortStatus.available ? ortStatus.version : undefined);
        assert.equal(report.threads, 1);
        const ort = await executor.forward(input);
        const tfjs = await model.network().forward(input);
        try {
          assert.deepEqual(ort.scores.shape, tfjs.scores.shape);
          const difference = maxAbsDifference(ort.scores.dataSync(), tfjs.scores.dataSync());
          assert.ok(difference < 1e-4, `${engine}: scores differ by ${difference}`);
        } finally {
          disposeValues(ort);
          disposeValues(tfjs);
        }
      } finally {
        input.dispose();
        model.dispose();
      }
    }
  });

  test('a model ONNX Runtime refuses: tfjs under auto, saying why and naming the file; an error (exit 1) under onnxruntime', async () => {
    const model = await loadModel(refusedModel, { engine: 'auto' });
    try {
      assert.ok((await model.executor()) instanceof Network);
      const report = await model.engine();
      assert.equal(report.kind, 'tfjs');
      assert.equal(report.fallback, 'rejected');
      assert.match(report.reason ?? '', /ONNX Runtime refuses the model: .*not_a_relu_attribute.*refused\.onnx\)$/);
      assert.ok(!(report.reason ?? '').includes('\n'));
    } finally {
      model.dispose();
    }
    const strict = await loadModel(refusedModel, { engine: 'onnxruntime' });
    try {
      const error = await expectCamvizError(() => strict.executor());
      assert.ok(!(error instanceof UsageError), 'a model refused is a failure (exit 1), not a usage error');
      assert.equal(error.exitCode, 1);
      assert.equal(error.file, refusedModel);
      assert.match(error.describe(), /^--engine onnxruntime: ONNX Runtime refuses the model: .*not_a_relu_attribute/);
    } finally {
      strict.dispose();
    }
  });
});

describe('ONNX Runtime absent (CAMVIZ_ORT_MODULE=/nonexistent) or broken', () => {
  test('a broken install (its module throws on load) falls back like a missing one, with its reason', async () => {
    const broken = join(workDir, 'broken-onnxruntime.cjs');
    await writeFile(broken, 'throw new Error("the native binding is broken");\n');
    await withOrtModule(broken, async () => {
      const model = await loadModel(goodModel, { engine: 'auto' });
      try {
        assert.ok((await model.executor()) instanceof Network);
        const report = await model.engine();
        assert.equal(report.fallback, 'unavailable');
        assert.match(report.reason ?? '', /does not load: the native binding is broken/);
      } finally {
        model.dispose();
      }
    });
  });

  test('auto falls back to tfjs and says why; onnxruntime is a usage error naming the install option', async () => {
    await withOrtModule('/nonexistent/onnxruntime-node', async () => {
      const model = await loadModel(goodModel, { engine: 'auto' });
      try {
        assert.ok((await model.executor()) instanceof Network);
        const report = await model.engine();
        assert.equal(report.kind, 'tfjs');
        assert.equal(report.fallback, 'unavailable');
        assert.match(report.reason ?? '', /ONNX Runtime is unavailable: \/nonexistent\/onnxruntime-node is not installed/);
      } finally {
        model.dispose();
      }
      const strict = await loadModel(goodModel, { engine: 'onnxruntime' });
      try {
        const error = await expectCamvizError(() => strict.executor());
        assert.ok(error instanceof UsageError);
        assert.equal(error.exitCode, 2);
        assert.match(error.message, /npm install onnxruntime-node/);
        assert.match(error.message, /ONNXRUNTIME_NODE_INSTALL=skip/);
      } finally {
        strict.dispose();
      }
    });
  });
});
