/**
 * What a loaded ONNX model holds in tfjs: one copy of its weights. Conv
 * weights live as the layer's kernel in tfjs' layout (the ONNX-layout
 * initializer is dropped once that is made), and the executor's fused
 * Conv+activation chains run that kernel rather than a copy (a clone is a
 * copy on the wasm backend). Measured as tfjs' tensor bytes after the model
 * loaded and ran Grad-CAM (kernels were made on first use before), against
 * the bytes of the file's initializers. And ONNX Runtime's trunk of the
 * file keeps no copy of the file: it reads it again for each session.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../src/engine/backend.js';
import { explain } from '../src/explain.js';
import { loadImage } from '../src/image/image.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { ImportedNodeLayer } from '../src/model/graph-import/node-layer.js';
import { classProbabilities } from '../src/model/predict.js';
import { readOnnxFile } from '../src/model/onnx/read.js';
import { onnxTrunkOf } from '../src/model/onnx/trunk.js';
import { asset, repoRoot } from './helpers/assets.js';
import { forEachBackend } from './helpers/backends.js';
import { type TestModel, type TestTensor, imageInputValue, onnxModelBytes } from './helpers/onnx.js';

/** At most this many times the initializers' bytes: one copy, and the few small tensors a run keeps. */
const MAX_RATIO = 1.1;

/** Bytes of the file's initializers as parsed (float32 weights: 4 a value). */
async function initializerBytes(path: string): Promise<number> {
  const model = await readOnnxFile(path);
  let bytes = 0;
  for (const tensor of model.graph.initializers.values()) if (!Array.isArray(tensor.data)) bytes += tensor.data.byteLength;
  return bytes;
}

/**
 * tfjs' tensor bytes the model holds once it has predicted and run Grad-CAM
 * on `image`, and whether disposing it frees every tensor it made.
 */
async function heldBytes(path: string, image: string): Promise<{ held: number; leftAfterDispose: number }> {
  const before = tf.memory();
  const model = await loadModel(path, { engine: 'tfjs' });
  try {
    const loaded = await loadImage(image, { size: model.meta.inputSize });
    await classProbabilities(model, [loaded.input]);
    const [explanations] = await explain(model, [loaded], { method: 'gradcam', topK: 1 });
    assert.ok(explanations![0]!.map!.data.some((value) => value > 0), 'the Grad-CAM map is not empty');
    const held = tf.memory().numBytes - before.numBytes;
    model.dispose();
    return { held, leftAfterDispose: tf.memory().numTensors - before.numTensors };
  } catch (error) {
    model.dispose();
    throw error;
  }
}

/** Seeded values in [-0.5, 0.5). */
function seededValues(count: number, seed: number): number[] {
  let state = seed;
  return Array.from({ length: count }, () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648 - 0.5;
  });
}

function weight(name: string, dims: number[], seed: number): TestTensor {
  return { name, dims, values: seededValues(dims.reduce((a, b) => a * b, 1), seed) };
}

/**
 * A small MobileNet-like net as PyTorch exports it: Conv 3x3 + Relu,
 * depthwise Conv 3x3 + Relu, pointwise Conv + Relu (each a fused chain),
 * global pooling, Flatten and a Linear (Gemm transB = 1).
 */
function smallNet(): TestModel {
  return {
    opset: 13,
    inputs: [imageInputValue(16)],
    outputs: [{ name: 'logits', shape: ['batch', 10] }],
    initializers: [
      weight('conv1.weight', [32, 3, 3, 3], 1),
      weight('conv1.bias', [32], 2),
      weight('dw.weight', [32, 1, 3, 3], 3),
      weight('dw.bias', [32], 4),
      weight('pw.weight', [64, 32, 1, 1], 5),
      weight('pw.bias', [64], 6),
      weight('fc.weight', [10, 64], 7),
      weight('fc.bias', [10], 8),
    ],
    nodes: [
      { name: '/conv1/Conv', opType: 'Conv', inputs: ['input', 'conv1.weight', 'conv1.bias'], outputs: ['c1'], attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }, { name: 'strides', ints: [2, 2] }] },
      { name: '/relu1/Relu', opType: 'Relu', inputs: ['c1'], outputs: ['r1'] },
      { name: '/dw/Conv', opType: 'Conv', inputs: ['r1', 'dw.weight', 'dw.bias'], outputs: ['c2'], attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }, { name: 'group', i: 32 }] },
      { name: '/relu2/Relu', opType: 'Relu', inputs: ['c2'], outputs: ['r2'] },
      { name: '/pw/Conv', opType: 'Conv', inputs: ['r2', 'pw.weight', 'pw.bias'], outputs: ['c3'] },
      { name: '/relu3/Relu', opType: 'Relu', inputs: ['c3'], outputs: ['r3'] },
      { name: '/pool/GlobalAveragePool', opType: 'GlobalAveragePool', inputs: ['r3'], outputs: ['pooled'] },
      { name: '/flatten/Flatten', opType: 'Flatten', inputs: ['pooled'], outputs: ['flat'] },
      { name: '/fc/Gemm', opType: 'Gemm', inputs: ['flat', 'fc.weight', 'fc.bias'], outputs: ['logits'], attributes: [{ name: 'transB', i: 1 }] },
    ],
  };
}

let dir: string;
let smallNetPath: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'camviz-onnx-memory-'));
  smallNetPath = join(dir, 'small.onnx');
  await writeFile(smallNetPath, onnxModelBytes(smallNet()));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const onnxDir = asset('onnx');
const mobilenetOnnx = join(onnxDir, 'mobilenet_v1_0.75_224.onnx');
const photo = join(onnxDir, 'images', 'both_224.png');
/** For the small nets: a picture of the repository's own, so that their tests need no shared asset. */
const picture = join(repoRoot, 'fixtures', 'shapes', 'circle-star.png');
const skipMobilenet: string | false = existsSync(mobilenetOnnx) && existsSync(photo) ? false : `the shared ONNX assets are absent (${onnxDir})`;

forEachBackend((backend) => {
  test(`${backend}: a small ONNX net holds its weights once after predict and Grad-CAM`, async () => {
    const weights = await initializerBytes(smallNetPath);
    const { held, leftAfterDispose } = await heldBytes(smallNetPath, picture);
    assert.ok(held <= MAX_RATIO * weights, `the model holds ${held} bytes of tensors for ${weights} bytes of initializers (${(held / weights).toFixed(2)}x)`);
    assert.equal(leftAfterDispose, 0, 'disposing the model frees every tensor it made');
  });
});

/** The small net with every initializer stored as raw_data, as exporters write them: the parse adopts the file's buffer and views it. */
function smallNetRaw(): TestModel {
  const net = smallNet();
  return { ...net, initializers: net.initializers!.map(({ name, dims, values }) => ({ name, dims, raw: new Uint8Array(Float32Array.from(values!).buffer) })) };
}

/** Every tfjs tensor an ONNX layer's plan holds (its constants, a Conv's bias, a Gemm's weights). */
function planTensors(model: CamvizModel): tf.Tensor[] {
  const found = new Set<tf.Tensor>();
  const seen = new Set<object>();
  const walk = (value: unknown, depth: number): void => {
    if (typeof value !== 'object' || value === null || seen.has(value) || depth > 6) return;
    seen.add(value);
    if (value instanceof tf.Tensor) {
      if (!value.isDisposed) found.add(value);
      return;
    }
    for (const field of Object.values(value)) walk(field, depth + 1);
  };
  for (const layer of model.layersModel!.layers) if (layer instanceof ImportedNodeLayer) walk(layer.plan, 0);
  return [...found];
}

test('cpu: a model read from raw_data keeps no view of the file once built: on the cpu backend a tensor holds its array itself, and one view kept would keep the whole file', async () => {
  await useBackend('cpu');
  const path = join(dir, 'small-raw.onnx');
  await writeFile(path, onnxModelBytes(smallNetRaw()));
  const model = await loadModel(path, { engine: 'tfjs' });
  try {
    const loaded = await loadImage(picture, { size: model.meta.inputSize });
    await explain(model, [loaded], { method: 'gradcam', topK: 1 });
    const tensors = planTensors(model);
    assert.ok(tensors.length >= 4, `the plans hold the biases and the Gemm's weights (found ${tensors.length} tensors)`);
    for (const tensor of tensors) {
      // On the cpu backend dataSync() is the backend's own array.
      const values = tensor.dataSync() as Float32Array;
      assert.equal(values.buffer.byteLength, values.byteLength, `a tensor of shape [${tensor.shape.join(', ')}] views a buffer of ${values.buffer.byteLength} bytes`);
    }
  } finally {
    model.dispose();
  }
});

test('wasm: the shared MobileNet v1 ONNX holds its weights once after predict and Grad-CAM', { skip: skipMobilenet }, async () => {
  await useBackend('wasm');
  const weights = await initializerBytes(mobilenetOnnx);
  const { held, leftAfterDispose } = await heldBytes(mobilenetOnnx, photo);
  assert.ok(held <= MAX_RATIO * weights, `the model holds ${held} bytes of tensors for ${weights} bytes of initializers (${(held / weights).toFixed(2)}x)`);
  assert.equal(leftAfterDispose, 0, 'disposing the model frees every tensor it made');
});

test('wasm: a loaded ONNX model\'s Conv weights stay off the wasm heap until tfjs runs it (kernels made on first use), and are freed with it either way', async () => {
  await useBackend('wasm');
  const wasm = tf.engine().findBackend('wasm')!;
  const before = { ids: wasm.numDataIds(), tensors: tf.memory().numTensors };
  const unused = await loadModel(smallNetPath, { engine: 'tfjs' });
  // Only what the planning pass ran on wasm: the Gemm's weights and bias. Its three Convs (weights, biases, kernels) are not there.
  const onHeap = wasm.numDataIds() - before.ids;
  unused.dispose();
  assert.ok(onHeap <= 2, `${onHeap} tensors on the wasm heap after the load`);
  assert.equal(tf.memory().numTensors, before.tensors, 'a model never run frees its weights');
  const { held, leftAfterDispose } = await heldBytes(smallNetPath, picture);
  assert.ok(held <= MAX_RATIO * (await initializerBytes(smallNetPath)), 'after a pass on tfjs, its weights are held once');
  assert.equal(leftAfterDispose, 0);
});

test('the ONNX Runtime trunk of an ONNX file reads the file again for each session instead of keeping its bytes', async () => {
  await useBackend('wasm');
  const path = join(dir, 'trunk.onnx');
  await writeFile(path, onnxModelBytes(smallNet()));
  const model = await loadModel(path, { engine: 'tfjs' });
  try {
    const trunk = await onnxTrunkOf(path, model.meta.sha256, model.network().graph, model.meta.inputSize);
    assert.ok(Buffer.from(trunk.withOutputs([])).equals(await readFile(path)), 'no extra output: the file as it is');
    // The same graph under another name: other bytes, so a kept copy would go unnoticed.
    await writeFile(path, onnxModelBytes({ ...smallNet(), graphName: 'another' }));
    assert.throws(() => trunk.withOutputs(['r1']), /the ONNX file changed since it was loaded/);
    await rm(path);
    assert.throws(() => trunk.withOutputs(['r1']), /cannot read the ONNX file again \(ENOENT\)/);
  } finally {
    model.dispose();
  }
});
