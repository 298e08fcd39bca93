/**
 * TF.js graph models through camviz's executor: a tiny graph (conv + relu +
 * spatial mean + matmul + softmax) whose Grad-CAM is computed here by hand,
 * with plain and fused (`_FusedConv2D`) ops, on cpu and wasm; hooks firing
 * on graph nodes; name scopes as layer names; and the graphs camviz refuses.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../src/engine/backend.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { type LoadedImage, loadImage } from '../src/image/image.js';
import { explain } from '../src/explain.js';
import { classProbabilities, inputTensor } from '../src/model/predict.js';
import { resolveLayer } from '../src/executor/layers.js';
import { camTargets } from '../src/cam/request.js';
import { registerForwardHook, registerGradientHook } from '../src/hooks/index.js';
import { CamvizError } from '../src/util/errors.js';
import { listFiles, noise } from './helpers/files.js';
import { cliEnv, runCli } from './helpers/cli.js';
import { type GraphNodeSpec, type GraphWeight, attr, convAttrs, placeholder, writeGraphModel } from './helpers/graph-model.js';

const SIZE = 4;
const CHANNELS = 2;
const CLASSES = 3;
const kernel = [0.5, -0.3, 0.2, 0.8, -0.4, 0.6]; // [1, 1, 3, 2]: kernel[c * 2 + k]
const bias = [0.05, -0.1];
const dense = [0.7, -0.2, 0.4, -0.5, 0.9, 0.3]; // [2, 3]: dense[k * 3 + j]

const weights: GraphWeight[] = [
  { name: 'net/conv/kernel', shape: [1, 1, 3, CHANNELS], dtype: 'float32', data: kernel },
  { name: 'net/conv/bias', shape: [CHANNELS], dtype: 'float32', data: bias },
  { name: 'net/pool/axes', shape: [2], dtype: 'int32', data: [1, 2] },
  { name: 'net/logits/weights', shape: [CHANNELS, CLASSES], dtype: 'float32', data: dense },
];

/** image -> conv 1x1 (+bias, relu) -> mean over H, W (Mean, or AvgPool over the whole map + Squeeze) -> matmul -> softmax -> identity, plain or with `_FusedConv2D`. */
function tinyGraph(fused: boolean, pool: 'Mean' | 'AvgPool' = 'Mean'): GraphNodeSpec[] {
  const conv: GraphNodeSpec[] = fused
    ? [
        {
          name: 'net/conv/Relu',
          op: '_FusedConv2D',
          input: ['image', 'net/conv/kernel', 'net/conv/bias'],
          attr: { ...convAttrs('SAME'), fused_ops: attr.strings(['BiasAdd', 'Relu']), num_args: attr.int(1), epsilon: attr.number(0) },
        },
      ]
    : [
        { name: 'net/conv/Conv2D', op: 'Conv2D', input: ['image', 'net/conv/kernel'], attr: convAttrs('SAME') },
        { name: 'net/conv/BiasAdd', op: 'BiasAdd', input: ['net/conv/Conv2D', 'net/conv/bias'], attr: { T: attr.float, data_format: attr.string('NHWC') } },
        { name: 'net/conv/Relu', op: 'Relu', input: ['net/conv/BiasAdd'], attr: { T: attr.float } },
      ];
  return [
    placeholder('image', [-1, SIZE, SIZE, 3]),
    ...conv,
    ...(pool === 'Mean'
      ? [{ name: 'net/pool>Mean', op: 'Mean', input: ['net/conv/Relu', 'net/pool/axes'], attr: { T: attr.float, keep_dims: attr.bool(false) } }]
      : [
          { name: 'net/pool/AvgPool', op: 'AvgPool', input: ['net/conv/Relu'], attr: { T: attr.float, ksize: attr.ints([1, SIZE, SIZE, 1]), strides: attr.ints([1, 1, 1, 1]), padding: attr.string('VALID'), data_format: attr.string('NHWC') } },
          { name: 'net/pool>Mean', op: 'Squeeze', input: ['net/pool/AvgPool'], attr: { T: attr.float, squeeze_dims: attr.ints([1, 2]) } },
        ]),
    { name: 'net/logits/MatMul', op: 'MatMul', input: ['net/pool>Mean', 'net/logits/weights'], attr: { T: attr.float, transpose_a: attr.bool(false), transpose_b: attr.bool(false) } },
    { name: 'net/probs', op: 'Softmax', input: ['net/logits/MatMul'], attr: { T: attr.float } },
    { name: 'output', op: 'Identity', input: ['net/probs'], attr: { T: attr.float } },
  ];
}

/** The activations [H*W][k] and Grad-CAM map of class `c`, by plain loops over the model's input tensor. */
function byHand(input: Float32Array, c: number): { activations: number[][]; logits: number[]; map: number[] } {
  const cells = SIZE * SIZE;
  const activations = Array.from({ length: cells }, (_, cell) =>
    Array.from({ length: CHANNELS }, (_, k) => {
      let sum = bias[k]!;
      for (let ch = 0; ch < 3; ch++) sum += input[cell * 3 + ch]! * kernel[ch * CHANNELS + k]!;
      return Math.max(0, sum);
    }),
  );
  const pooled = Array.from({ length: CHANNELS }, (_, k) => activations.reduce((sum, cell) => sum + cell[k]!, 0) / cells);
  const logits = Array.from({ length: CLASSES }, (_, j) => pooled.reduce((sum, value, k) => sum + value * dense[k * CLASSES + j]!, 0));
  // d logit_c / d A[cell, k] = W[k, c] / cells at every cell: Grad-CAM's channel weights.
  const alpha = Array.from({ length: CHANNELS }, (_, k) => dense[k * CLASSES + c]! / cells);
  const map = activations.map((cell) => Math.max(0, cell.reduce((sum, value, k) => sum + alpha[k]! * value, 0)));
  return { activations, logits, map };
}

let folder: string;
let imageFile: string;

before(async () => {
  folder = await mkdtemp(join(tmpdir(), 'camviz-tfgraph-'));
  imageFile = join(folder, 'noise.png');
  await writeFile(imageFile, await sharp(noise(SIZE, SIZE, 7), { raw: { width: SIZE, height: SIZE, channels: 3 } }).png().toBuffer());
});
after(async () => {
  await rm(folder, { recursive: true, force: true });
});

async function tinyModel(fused: boolean, pool: 'Mean' | 'AvgPool' = 'Mean'): Promise<string> {
  const dir = await mkdtemp(join(folder, fused ? 'fused-' : 'plain-'));
  return writeGraphModel(dir, tinyGraph(fused, pool), weights);
}

const VARIANTS = [
  { backend: 'cpu', fused: false, pool: 'Mean' },
  { backend: 'cpu', fused: true, pool: 'Mean' },
  { backend: 'cpu', fused: false, pool: 'AvgPool' },
  { backend: 'wasm', fused: false, pool: 'Mean' },
  { backend: 'wasm', fused: true, pool: 'AvgPool' },
] as const;

for (const { backend, fused, pool } of VARIANTS) {
  describe(`a tiny graph model (${fused ? '_FusedConv2D' : 'Conv2D + BiasAdd + Relu'}, ${pool}) on ${backend}`, () => {
    let model: CamvizModel;
    let image: LoadedImage;
    let input: Float32Array;
    before(async () => {
      await useBackend(backend);
      model = await loadModel(await tinyModel(fused, pool));
      image = await loadImage(imageFile, { size: model.meta.inputSize });
      const tensor = inputTensor(model, [image.input]);
      input = tensor.dataSync() as Float32Array;
      tensor.dispose();
    });
    after(() => model?.dispose());

    test('is a layers model of its nodes; the scores are the Softmax input', () => {
      assert.equal(model.meta.format, 'graph');
      assert.ok(model.layersModel !== undefined);
      const network = model.network();
      assert.equal(network.score.scoreLayer, 'net/logits/MatMul');
      assert.equal(network.score.activation, 'softmax');
      // '>' is a TF name character that tfjs-layers refuses: the layer is renamed, the TF name an alias.
      assert.equal(network.graph.findNodes('net/pool>Mean')[0]!.path, 'net/pool_Mean');
    });

    test('predicts a batch of two as the hand computation, leaving no tensor behind', async () => {
      const flipped = Uint8Array.from(image.input, (value) => 255 - value);
      // The first run folds the fused conv chain's weights, which the executor keeps with the model.
      await classProbabilities(model, [image.input]);
      const before = tf.memory().numTensors;
      const batch = await classProbabilities(model, [image.input, flipped]);
      const flippedTensor = inputTensor(model, [flipped]);
      const inputs = [input, flippedTensor.dataSync() as Float32Array];
      flippedTensor.dispose();
      assert.equal(tf.memory().numTensors, before);
      inputs.forEach((pixels, b) => {
        const { logits } = byHand(pixels, 0);
        const top = Math.max(...logits);
        const total = logits.reduce((sum, logit) => sum + Math.exp(logit - top), 0);
        logits.forEach((logit, j) => assert.ok(Math.abs(batch[b]![j]! - Math.exp(logit - top) / total) < 1e-6, `image ${b} class ${j}`));
      });
    });

    test('Grad-CAM at the default layer (the Relu before the spatial Mean) equals the hand computation, for each class', async () => {
      const [target] = camTargets(model, []);
      assert.equal(target!.path, 'net/conv/Relu');
      const before = tf.memory().numTensors;
      const [explanations] = await explain(model, [image], { method: 'gradcam', classes: [0, 1, 2] });
      assert.equal(tf.memory().numTensors, before);
      explanations!.forEach((explanation, c) => {
        const expected = byHand(input, c).map;
        assert.equal(explanation.classIndex, c);
        assert.deepEqual([explanation.map!.height, explanation.map!.width], [SIZE, SIZE]);
        expected.forEach((value, i) => assert.ok(Math.abs(explanation.map!.data[i]! - value) < 1e-6, `class ${c} cell ${i}: ${explanation.map!.data[i]} vs ${value}`));
        assert.ok(Math.max(...expected) > 0, 'a map that is not all zero');
      });
    });

    test('CAM (no gradients: the MatMul is the classifier after the spatial Mean) equals the hand computation', async () => {
      const [explanations] = await explain(model, [image], { method: 'cam', classes: [0, 2] });
      explanations!.forEach((explanation) => {
        // CAM weighs channels by W[k, c]; Grad-CAM by W[k, c] / (H * W).
        const expected = byHand(input, explanation.classIndex).map.map((value) => value * SIZE * SIZE);
        expected.forEach((value, i) => assert.ok(Math.abs(explanation.map!.data[i]! - value) < 1e-5, `class ${explanation.classIndex} cell ${i}: ${explanation.map!.data[i]} vs ${value}`));
      });
    });

    // Class 1's classifier weights are -0.2 and 0.9: the gate drops channel 0's gradient.
    test('guided backprop gates the ReLU (standalone or fused into the conv) as computed by hand', async () => {
      const gradient = (await explain(model, [image], { method: 'guidedbackprop', classes: [1] }))[0]![0]!.gradient!.data;
      for (let cell = 0; cell < SIZE * SIZE; cell++) {
        for (let ch = 0; ch < 3; ch++) {
          let expected = 0;
          for (let k = 0; k < CHANNELS; k++) {
            let pre = bias[k]!;
            for (let c = 0; c < 3; c++) pre += input[cell * 3 + c]! * kernel[c * CHANNELS + k]!;
            // The hook keeps the positive gradient, the ReLU's backward the positive input.
            if (pre > 0) expected += kernel[ch * CHANNELS + k]! * Math.max(0, dense[k * CLASSES + 1]! / (SIZE * SIZE));
          }
          assert.ok(Math.abs(gradient[cell * 3 + ch]! - expected) < 1e-6, `cell ${cell} channel ${ch}: ${gradient[cell * 3 + ch]} vs ${expected}`);
        }
      }
    });

    test('forward and gradient hooks fire on a graph node with its value and gradient', async () => {
      const node = resolveLayer(model.network(), 'net/conv', () => true, 'a layer');
      assert.equal(node.path, 'net/conv/Relu');
      const seen: number[][] = [];
      const gradients: number[][] = [];
      const forward = registerForwardHook(node.layer, (_layer, _inputs, output) => void seen.push(Array.from((output as tf.Tensor).dataSync())));
      const gradient = registerGradientHook(node.layer, (grad) => void gradients.push(Array.from(grad.dataSync())));
      try {
        await explain(model, [image], { method: 'gradcam', classes: [1] });
      } finally {
        forward.remove();
        gradient.remove();
      }
      const { activations } = byHand(input, 1);
      assert.ok(seen.length >= 1 && gradients.length >= 1);
      activations.flat().forEach((value, i) => assert.ok(Math.abs(seen[0]![i]! - value) < 1e-6));
      // d logit_1 / d A = W[k, 1] / 16 at every cell.
      gradients[0]!.forEach((value, i) => assert.ok(Math.abs(value - dense[(i % CHANNELS) * CLASSES + 1]! / (SIZE * SIZE)) < 1e-7, `gradient ${i}`));
    });
  });
}

describe('a graph model whose nodes read the second and third outputs of a Split', () => {
  before(async () => {
    await useBackend('cpu');
  });

  test('runs each output of a multi-output node as a layer output, as computed by hand', async () => {
    const nodes: GraphNodeSpec[] = [
      placeholder('image', [-1, SIZE, SIZE, 3]),
      { name: 'split', op: 'Split', input: ['split/axis', 'image'], attr: { T: attr.float, num_split: attr.int(3) } },
      { name: 'sum', op: 'AddV2', input: ['split', 'split:2'], attr: { T: attr.float } },
      { name: 'product', op: 'Mul', input: ['sum', 'split:1'], attr: { T: attr.float } },
      { name: 'pooled', op: 'Mean', input: ['product', 'net/pool/axes'], attr: { T: attr.float, keep_dims: attr.bool(false) } },
    ];
    const splitWeights: GraphWeight[] = [{ name: 'split/axis', shape: [], dtype: 'int32', data: [3] }, weights[2]!];
    const model = await loadModel(await writeGraphModel(await mkdtemp(join(folder, 'split-')), nodes, splitWeights));
    try {
      const image = await loadImage(imageFile, { size: model.meta.inputSize });
      const tensor = inputTensor(model, [image.input]);
      const pixels = tensor.dataSync() as Float32Array;
      const values = await model.network().forward(tensor);
      const score = values.scores.dataSync()[0]!;
      tf.dispose([tensor, values.output, values.scores, values.probabilities, ...values.layers.values()]);
      let expected = 0;
      for (let cell = 0; cell < SIZE * SIZE; cell++) expected += (pixels[cell * 3]! + pixels[cell * 3 + 2]!) * pixels[cell * 3 + 1]!;
      expected /= SIZE * SIZE;
      assert.ok(Math.abs(score - expected) < 1e-5, `${score} vs ${expected}`);
      assert.deepEqual(model.network().graph.findNodes('split')[0]!.outputs.length, 3);
    } finally {
      model.dispose();
    }
  });
});

describe('a graph model ending in Sigmoid (a multi-label head)', () => {
  test('scores are the Sigmoid input and the probabilities its output, as computed by hand', async () => {
    await useBackend('cpu');
    const nodes = tinyGraph(false).filter((node) => node.name !== 'output').map((node) => (node.name === 'net/probs' ? { ...node, op: 'Sigmoid' } : node));
    const model = await loadModel(await writeGraphModel(await mkdtemp(join(folder, 'sigmoid-')), nodes, weights));
    try {
      const image = await loadImage(imageFile, { size: model.meta.inputSize });
      const tensor = inputTensor(model, [image.input]);
      const pixels = tensor.dataSync() as Float32Array;
      tensor.dispose();
      assert.equal(model.network().score.activation, 'sigmoid');
      assert.equal(model.network().score.scoreLayer, 'net/logits/MatMul');
      const [probabilities] = await classProbabilities(model, [image.input]);
      byHand(pixels, 0).logits.forEach((logit, j) => assert.ok(Math.abs(probabilities![j]! - 1 / (1 + Math.exp(-logit))) < 1e-6, `class ${j}`));
    } finally {
      model.dispose();
    }
  });
});

describe('graph models camviz refuses to explain', () => {
  before(async () => {
    await useBackend('cpu');
  });

  test('an op that needs executeAsync: predict-only, and a CAM is refused in one line naming the op and the file', async () => {
    const nodes = tinyGraph(false).map((node) => (node.name === 'output' ? { ...node, op: 'LoopCond', attr: {} } : node));
    const dir = await writeGraphModel(await mkdtemp(join(folder, 'async-')), nodes, weights);
    const model = await loadModel(dir);
    try {
      assert.equal(model.layersModel, undefined);
      assert.throws(
        () => model.network(),
        (thrown: unknown) => {
          assert.ok(thrown instanceof CamvizError);
          assert.match(thrown.message, /op 'LoopCond' \(node 'output'\) needs executeAsync/);
          assert.equal(thrown.file, join(dir, 'model.json'));
          assert.doesNotMatch(thrown.describe(), /\n/);
          return true;
        },
      );
    } finally {
      model.dispose();
    }
  });

  test('camviz cam on a graph that needs executeAsync: exit 1, one line naming the op and the file, no output', async () => {
    const nodes = tinyGraph(false).map((node) => (node.name === 'output' ? { ...node, op: 'LoopCond', attr: {} } : node));
    const dir = await writeGraphModel(await mkdtemp(join(folder, 'async-cli-')), nodes, weights);
    const out = join(dir, 'out');
    const run = await runCli(['cam', imageFile, '--model', dir, '--out', out], { cwd: dir, env: cliEnv(join(dir, 'cache')), timeoutMs: 60_000 });
    const lines = run.stderr.trim().split('\n');
    assert.equal(run.code, 1, run.stderr);
    assert.equal(lines.length, 1, run.stderr);
    assert.match(lines[0]!, /^camviz: op 'LoopCond' \(node 'output'\) needs executeAsync/);
    assert.ok(lines[0]!.includes(join(dir, 'model.json')), lines[0]);
    assert.deepEqual(await listFiles(out, { missingAsEmpty: true }), []);
  });

  test('camviz cam and fmap on a graph model write their maps', async () => {
    const dir = await tinyModel(true);
    const out = join(dir, 'out');
    const options = { cwd: dir, env: cliEnv(join(dir, 'cache')), timeoutMs: 60_000 };
    const cam = await runCli(['cam', imageFile, '--model', dir, '--method', 'gradcam', '--out', out], options);
    assert.equal(cam.code, 0, cam.stderr);
    const fmap = await runCli(['fmap', imageFile, '--model', dir, '--layer', 'net/conv', '--out', out], options);
    assert.equal(fmap.code, 0, fmap.stderr);
    const files = await listFiles(out);
    assert.ok(files.some((file) => /gradcam.*\.png$/.test(file)), files.join(', '));
    assert.ok(files.some((file) => /net_conv_Relu\.fmap\.png$/.test(file)), files.join(', '));
  });

  test('a graph with no image input is refused at load, naming the input and the file', async () => {
    const nodes: GraphNodeSpec[] = [
      placeholder('features', [-1, 2]),
      { name: 'net/logits/MatMul', op: 'MatMul', input: ['features', 'net/logits/weights'], attr: { T: attr.float, transpose_a: attr.bool(false), transpose_b: attr.bool(false) } },
    ];
    const dir = await writeGraphModel(await mkdtemp(join(folder, 'vector-')), nodes, weights.slice(3));
    await assert.rejects(loadModel(dir), (thrown: unknown) => {
      assert.ok(thrown instanceof CamvizError);
      assert.match(thrown.message, /^the graph's input 'features' has shape \[-1, 2\], not an image tensor/);
      assert.equal(thrown.file, join(dir, 'model.json'));
      return true;
    });
  });
});
