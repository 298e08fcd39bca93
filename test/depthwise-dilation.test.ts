/**
 * Dilated DepthwiseConv2D layers of the models camviz loads, on cpu and
 * wasm. tfjs-layers 4.22's DepthwiseConv2D ignores its dilation rate (its
 * call passes none; its static output shape leaves it out), while camviz's
 * fused Conv/BatchNorm/ReLU6 chains pass it on, so a forward pass that
 * fused a chain and one that did not (a hook, a fetch inside the chain, the
 * tape of guided backprop or an input gradient) disagreed, and Grad-CAM and
 * guided backprop reported different scores for the same class. Here every
 * path, and the model's own predict, is checked against the convolution
 * written out in float64 loops (helpers/correlation.ts): the static output
 * shape ('valid' padding), the layer's output fused, unfused and hooked,
 * the input gradient and Grad-CAM before the layer, the scores of three
 * CAM methods; a .keras file and SeparableConv2D too. tfjs-layers' own
 * dilated DepthwiseConv2D (a model built in memory), which it computes
 * undilated, is refused by camviz's executor.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { Network, disposeValues } from '../src/executor/network.js';
import { loadOnnxRuntime } from '../src/engine/onnxruntime.js';
import { type CamvizModel, explain, forward, imageFromRgb, inputTensor, loadModel, registerForwardHook } from '../src/index.js';
import type { GraphNode } from '../src/executor/graph.js';
import { forEachBackend } from './helpers/backends.js';
import { assertAllClose, exactRandomValues } from './helpers/numeric.js';
import { saveLayersModel } from './helpers/layers-model-file.js';
import { kerasFileOf } from './helpers/keras-file.js';
import { type Correlation, correlate, correlationAdjoint, geometryOf } from './helpers/correlation.js';

// ---------------------------------------------------------------- the models

/** input [8, 8, 3] -> feat (1x1 conv, 4 channels) -> dw (dilated) [-> bn -> ReLU(6)] -> global mean -> logits (2, no bias). */
interface DepthwiseCase {
  readonly name: string;
  readonly kernel: [number, number];
  readonly dilations: [number, number];
  readonly multiplier: number;
  readonly padding: 'same' | 'valid';
  readonly useBias: boolean;
  readonly activation: 'linear' | 'relu' | 'relu6';
  /** Followed by BatchNormalization and ReLU(maxValue 6): a chain camviz fuses. */
  readonly chain: boolean;
}

const CASES: readonly DepthwiseCase[] = [
  { name: "rate 2, multiplier 1, 'same', bias", kernel: [3, 3], dilations: [2, 2], multiplier: 1, padding: 'same', useBias: true, activation: 'linear', chain: false },
  { name: "rate 2, multiplier 2, 'valid', no bias, ReLU", kernel: [3, 3], dilations: [2, 2], multiplier: 2, padding: 'valid', useBias: false, activation: 'relu', chain: false },
  { name: "rate [2, 3], multiplier 2, 'same', bias, ReLU6", kernel: [3, 2], dilations: [2, 3], multiplier: 2, padding: 'same', useBias: true, activation: 'relu6', chain: false },
  { name: "rate 2, multiplier 1, 'same', then BatchNorm and ReLU(6) (fused)", kernel: [3, 3], dilations: [2, 2], multiplier: 1, padding: 'same', useBias: false, activation: 'linear', chain: true },
  { name: "rate 2, multiplier 2, 'valid', bias, then BatchNorm and ReLU(6) (fused)", kernel: [3, 3], dilations: [2, 2], multiplier: 2, padding: 'valid', useBias: true, activation: 'linear', chain: true },
];

const SIZE = 8;
const FEATURES = 4;
const UNITS = 2;
const EPSILON = 1e-3;

/** The weights of a case's model, as numbers. */
interface Weights {
  featKernel: number[];
  featBias: number[];
  dwKernel: number[];
  dwBias: number[];
  gamma: number[];
  beta: number[];
  mean: number[];
  variance: number[];
  logits: number[];
}

function weightsOf(c: DepthwiseCase): Weights {
  const channels = FEATURES * c.multiplier;
  return {
    featKernel: exactRandomValues(3 * FEATURES, 1),
    featBias: exactRandomValues(FEATURES, 2),
    dwKernel: exactRandomValues(c.kernel[0] * c.kernel[1] * channels, 3),
    dwBias: c.useBias ? exactRandomValues(channels, 4) : new Array<number>(channels).fill(0),
    gamma: exactRandomValues(channels, 5),
    beta: exactRandomValues(channels, 6),
    mean: exactRandomValues(channels, 7),
    variance: exactRandomValues(channels, 8).map((value) => 0.25 + Math.abs(value)),
    logits: exactRandomValues(channels * UNITS, 9),
  };
}

function correlationOf(c: DepthwiseCase): Correlation {
  return { input: [1, SIZE, SIZE, FEATURES], filter: [c.kernel[0], c.kernel[1], FEATURES, c.multiplier], dilations: c.dilations, padding: c.padding, depthwise: true };
}

/** The case's model in tfjs-layers (its own DepthwiseConv2D, which computes undilated), with `weights`. */
function buildModel(c: DepthwiseCase, weights: Weights): tfl.LayersModel {
  const input = tfl.input({ shape: [SIZE, SIZE, 3] });
  const feat = tfl.layers.conv2d({ filters: FEATURES, kernelSize: 1, name: 'feat' });
  const dw = tfl.layers.depthwiseConv2d({ kernelSize: c.kernel, dilationRate: c.dilations, depthMultiplier: c.multiplier, padding: c.padding, useBias: c.useBias, activation: c.activation, name: 'dw' });
  let output = dw.apply(feat.apply(input)) as tfl.SymbolicTensor;
  const bn = tfl.layers.batchNormalization({ epsilon: EPSILON, name: 'bn' });
  if (c.chain) output = tfl.layers.reLU({ maxValue: 6, name: 'relu6' }).apply(bn.apply(output)) as tfl.SymbolicTensor;
  const logits = tfl.layers.dense({ units: UNITS, useBias: false, name: 'logits' });
  const model = tfl.model({ inputs: input, outputs: logits.apply(tfl.layers.globalAveragePooling2d({}).apply(output)) as tfl.SymbolicTensor });
  const channels = FEATURES * c.multiplier;
  feat.setWeights([tf.tensor4d(weights.featKernel, [1, 1, 3, FEATURES]), tf.tensor1d(weights.featBias)]);
  const dwKernel = tf.tensor4d(weights.dwKernel, [c.kernel[0], c.kernel[1], FEATURES, c.multiplier]);
  dw.setWeights(c.useBias ? [dwKernel, tf.tensor1d(weights.dwBias)] : [dwKernel]);
  if (c.chain) bn.setWeights([weights.gamma, weights.beta, weights.mean, weights.variance].map((values) => tf.tensor1d(values)));
  logits.setWeights([tf.tensor2d(weights.logits, [channels, UNITS])]);
  return model;
}

// ---------------------------------------------------------------- the reference, written out

const relu = (v: number): number => Math.max(0, v);
const relu6 = (v: number): number => Math.min(6, Math.max(0, v));
const ACTIVATIONS = { linear: (v: number) => v, relu, relu6 };
/** The activations' derivatives as TensorFlow takes them (Relu6Grad: 0 < x < 6). */
const SLOPES = { linear: () => 1, relu: (v: number) => (v > 0 ? 1 : 0), relu6: (v: number) => (v > 0 && v < 6 ? 1 : 0) };

/** Every value of the case's model for input `x` [1, 8, 8, 3], in float64. */
interface Reference {
  feat: Float64Array;
  /** The dw layer's convolution plus bias, before its activation. */
  pre: Float64Array;
  /** The dw layer's output. */
  dw: Float64Array;
  /** The BatchNorm's output (before the ReLU(6)); the dw output without a chain. */
  normalised: Float64Array;
  /** The last layer before the pooling: the ReLU(6) of a chain, else dw. */
  last: Float64Array;
  logits: Float64Array;
}

function reference(c: DepthwiseCase, w: Weights, x: ArrayLike<number>): Reference {
  const positions = SIZE * SIZE;
  const feat = Float64Array.from({ length: positions * FEATURES }, (_, i) => {
    const [p, f] = [Math.floor(i / FEATURES), i % FEATURES];
    return w.featBias[f]! + [0, 1, 2].reduce((sum, ch) => sum + x[p * 3 + ch]! * w.featKernel[ch * FEATURES + f]!, 0);
  });
  const { outChannels } = geometryOf(correlationOf(c));
  const pre = correlate(correlationOf(c), feat, w.dwKernel).map((v, i) => v + w.dwBias[i % outChannels]!);
  const dw = pre.map(ACTIVATIONS[c.activation]);
  const scale = (ch: number): number => w.gamma[ch]! / Math.sqrt(w.variance[ch]! + EPSILON);
  const normalised = c.chain ? dw.map((v, i) => (v - w.mean[i % outChannels]!) * scale(i % outChannels) + w.beta[i % outChannels]!) : dw;
  const last = c.chain ? normalised.map(relu6) : dw;
  const cells = last.length / outChannels;
  const logits = Float64Array.from({ length: UNITS }, (_, k) => last.reduce((sum, v, i) => sum + (v * w.logits[(i % outChannels) * UNITS + k]!) / cells, 0));
  return { feat, pre, dw, normalised, last, logits };
}

/** d(logit k)/d(feat) and d(logit k)/d(input), back through the written-out layers. */
function referenceGradients(c: DepthwiseCase, w: Weights, values: Reference, k: number): { feat: Float64Array; input: Float64Array } {
  const { outChannels } = geometryOf(correlationOf(c));
  const cells = values.last.length / outChannels;
  const scale = (ch: number): number => (c.chain ? w.gamma[ch]! / Math.sqrt(w.variance[ch]! + EPSILON) : 1);
  const dPre = values.last.map((_, i) => {
    const ch = i % outChannels;
    const throughChain = c.chain ? SLOPES.relu6(values.normalised[i]!) * scale(ch) : 1;
    return (w.logits[ch * UNITS + k]! / cells) * throughChain * SLOPES[c.activation](values.pre[i]!);
  });
  const feat = correlationAdjoint(correlationOf(c), dPre, w.dwKernel);
  const input = Float64Array.from({ length: SIZE * SIZE * 3 }, (_, i) => {
    const [p, ch] = [Math.floor(i / 3), i % 3];
    let sum = 0;
    for (let f = 0; f < FEATURES; f++) sum += feat[p * FEATURES + f]! * w.featKernel[ch * FEATURES + f]!;
    return sum;
  });
  return { feat, input };
}

/** Grad-CAM at feat: relu(Σ_f mean(dScore/dFeat_f) · Feat_f). */
function referenceGradCam(values: Reference, dFeat: Float64Array): Float64Array {
  const positions = SIZE * SIZE;
  const alphas = Array.from({ length: FEATURES }, (_, f) => dFeat.filter((_, i) => i % FEATURES === f).reduce((a, b) => a + b, 0) / positions);
  return Float64Array.from({ length: positions }, (_, p) => relu(alphas.reduce((sum, alpha, f) => sum + alpha * values.feat[p * FEATURES + f]!, 0)));
}

// ---------------------------------------------------------------- camviz's paths

const RGB = Uint8Array.from({ length: SIZE * SIZE * 3 }, (_, i) => (i * 37 + 11) % 256);

/** The output of `node` through camviz's executor: fused where it can, unfused, or with a hook on the dw layer. */
async function executorOutput(network: Network, x: tf.Tensor, node: GraphNode, path: 'fused' | 'unfused' | 'hooked'): Promise<Float32Array> {
  const hook = path === 'hooked' ? registerForwardHook(network.graph.findNodes('dw')[0]!.layer, () => undefined, { observeOnly: true }) : undefined;
  try {
    const values = await network.forward(x, { layers: [node], fuse: path !== 'unfused' });
    const output = values.layers.get(node.path)!.dataSync() as Float32Array;
    disposeValues(values);
    return output;
  } finally {
    hook?.remove();
  }
}

/** d(logit k)/d(input) through camviz's executor (the whole model on the tape, as guided backprop runs it). */
async function inputGradient(network: Network, x: tf.Tensor, k: number): Promise<Float32Array> {
  const objective = (values: { scores: tf.Tensor2D }): tf.Scalar => tf.tidy(() => tf.reshape(tf.slice(values.scores, [0, k], [1, 1]), []) as tf.Scalar);
  const result = await network.backward(x, [objective], { sources: 'input', layers: [] });
  const gradient = result.gradients[0]![0]!.dataSync() as Float32Array;
  tf.dispose(result.gradients.flat());
  disposeValues(result.values);
  return gradient;
}

/** model.json's topology as tensorflowjs_converter writes it, under model_config (where helpers/keras-file.ts reads it). */
async function wrapTopology(modelJsonPath: string): Promise<void> {
  const modelJson = JSON.parse(await readFile(modelJsonPath, 'utf8')) as { modelTopology: unknown };
  await writeFile(modelJsonPath, JSON.stringify({ ...modelJson, modelTopology: { model_config: modelJson.modelTopology } }));
}

const CLASS_NAME_OF = (layer: tfl.layers.Layer): string => (layer.constructor as unknown as { className: string }).className;

forEachBackend((backend) => {
  for (const c of CASES) {
    describe(`a loaded model's dilated DepthwiseConv2D, ${c.name}`, () => {
      let folder: string;
      let loaded: CamvizModel;
      let x: tf.Tensor4D;
      let values: Reference;
      const weights = weightsOf(c);

      before(async () => {
        folder = await mkdtemp(join(tmpdir(), `camviz-dw-dilation-${backend}-`));
        const model = buildModel(c, weights);
        await saveLayersModel(model, folder);
        model.dispose();
        loaded = await loadModel(folder);
        const image = await imageFromRgb(RGB, SIZE, SIZE, { size: loaded.meta.inputSize });
        x = inputTensor(loaded, [image.input]);
        values = reference(c, weights, x.dataSync());
      });
      after(async () => {
        x.dispose();
        loaded.dispose();
        await rm(folder, { recursive: true, force: true });
      });

      test('the layer is camviz\'s dilated one, with the static output shape Keras gives it', () => {
        const layer = loaded.layersModel!.getLayer('dw');
        assert.equal(CLASS_NAME_OF(layer), 'CamvizDilatedDepthwiseConv2D');
        assert.equal(layer.getClassName(), 'DepthwiseConv2D');
        const { outHeight, outWidth, outChannels } = geometryOf(correlationOf(c));
        assert.deepEqual(layer.outputShape, [null, outHeight, outWidth, outChannels]);
      });

      test('its output fused, unfused and with a hook on it, and the model\'s predict, are the written-out convolution\'s', async () => {
        const network = loaded.network() as Network;
        const node = network.graph.findNodes(c.chain ? 'relu6' : 'dw')[0]!;
        if (c.chain) assert.ok(network.graph.fusedChains().some((chain) => chain.nodes[0]!.layer.name === 'dw'), 'the chain is fusable');
        for (const path of ['fused', 'unfused', 'hooked'] as const) assertAllClose(await executorOutput(network, x, node, path), values.last, 1e-4, `${path} output`);
        const predicted = tf.tidy(() => (loaded.layersModel!.predict(x) as tf.Tensor).dataSync());
        assertAllClose(predicted, values.logits, 1e-4, 'predict');
      });

      test('the input gradient through it is the written-out adjoint\'s', async () => {
        const network = loaded.network() as Network;
        for (const k of [0, 1]) assertAllClose(await inputGradient(network, x, k), referenceGradients(c, weights, values, k).input, 1e-4, `d(logit ${k})/d(input)`);
      });

      test('Grad-CAM before it is the written-out map, and Grad-CAM, guided backprop and Score-CAM give the class the same score', async () => {
        const image = await imageFromRgb(RGB, SIZE, SIZE, { size: loaded.meta.inputSize });
        const k = 1;
        const [explanation] = (await explain(loaded, [image], { method: 'gradcam', layers: ['feat'], classes: [k] }))[0]!;
        assertAllClose(explanation!.map!.data, referenceGradCam(values, referenceGradients(c, weights, values, k).feat), 1e-4, 'Grad-CAM at feat');
        for (const method of ['gradcam', 'guidedbackprop', 'scorecam']) {
          const [own] = (await explain(loaded, [image], { method, classes: [k] }))[0]!;
          assert.ok(Math.abs(own!.score - values.logits[k]!) < 1e-4, `${method}: score ${own!.score}, written out ${values.logits[k]}`);
        }
      });
    });
  }

  describe('other files and layers', () => {
    let folder: string;
    before(async () => {
      folder = await mkdtemp(join(tmpdir(), `camviz-dw-dilation-other-${backend}-`));
    });
    after(async () => {
      await rm(folder, { recursive: true, force: true });
    });

    test('a .keras file\'s dilated DepthwiseConv2D (\'valid\', BatchNorm, ReLU(6)) is dilated, fused and not', async () => {
      const c = CASES[4]!;
      const weights = weightsOf(c);
      const model = buildModel(c, weights);
      const layersFolder = join(folder, 'keras-source');
      await saveLayersModel(model, layersFolder);
      model.dispose();
      await wrapTopology(join(layersFolder, 'model.json'));
      const source = await loadModel(layersFolder);
      const kerasPath = join(folder, 'model.keras');
      await writeFile(kerasPath, kerasFileOf(source, layersFolder));
      source.dispose();
      const loaded = await loadModel(kerasPath);
      try {
        const x = tf.tensor4d(exactRandomValues(SIZE * SIZE * 3, 20), [1, SIZE, SIZE, 3]);
        const network = loaded.network() as Network;
        const node = network.graph.findNodes('relu6')[0]!;
        const expected = reference(c, weights, x.dataSync()).last;
        for (const path of ['fused', 'unfused'] as const) assertAllClose(await executorOutput(network, x, node, path), expected, 1e-4, `${path} output`);
        x.dispose();
      } finally {
        loaded.dispose();
      }
    });

    test('SeparableConv2D rate 2 \'valid\' (tfjs-layers dilates its depthwise part itself): shape and values', async () => {
      const input = tfl.input({ shape: [SIZE, SIZE, 2] });
      const separable = tfl.layers.separableConv2d({ filters: 3, kernelSize: 3, dilationRate: 2, padding: 'valid', useBias: false, name: 'sep' });
      const model = tfl.model({ inputs: input, outputs: tfl.layers.dense({ units: 2, name: 'logits' }).apply(tfl.layers.globalAveragePooling2d({}).apply(separable.apply(input))) as tfl.SymbolicTensor });
      const depthwise = exactRandomValues(18, 30);
      const pointwise = exactRandomValues(6, 31);
      separable.setWeights([tf.tensor4d(depthwise, [3, 3, 2, 1]), tf.tensor4d(pointwise, [1, 1, 2, 3])]);
      const separableFolder = join(folder, 'separable');
      await saveLayersModel(model, separableFolder);
      model.dispose();
      const loaded = await loadModel(separableFolder);
      try {
        assert.deepEqual(loaded.layersModel!.getLayer('sep').outputShape, [null, 4, 4, 3]);
        const xValues = exactRandomValues(SIZE * SIZE * 2, 32);
        const x = tf.tensor4d(xValues, [1, SIZE, SIZE, 2]);
        const conv: Correlation = { input: [1, SIZE, SIZE, 2], filter: [3, 3, 2, 1], dilations: [2, 2], padding: 'valid', depthwise: true };
        const dw = correlate(conv, xValues, depthwise);
        const expected = Float64Array.from({ length: 16 * 3 }, (_, i) => [0, 1].reduce((sum, ch) => sum + dw[Math.floor(i / 3) * 2 + ch]! * pointwise[ch * 3 + (i % 3)]!, 0));
        const network = loaded.network() as Network;
        for (const path of ['fused', 'unfused'] as const) assertAllClose(await executorOutput(network, x, network.graph.findNodes('sep')[0]!, path), expected, 1e-4, `${path} output`);
        x.dispose();
      } finally {
        loaded.dispose();
      }
    });

    test('an undilated DepthwiseConv2D keeps tfjs-layers\' class', async () => {
      const c: DepthwiseCase = { ...CASES[3]!, dilations: [1, 1] };
      const model = buildModel(c, weightsOf(c));
      const undilatedFolder = join(folder, 'undilated');
      await saveLayersModel(model, undilatedFolder);
      model.dispose();
      const loaded = await loadModel(undilatedFolder);
      assert.equal(CLASS_NAME_OF(loaded.layersModel!.getLayer('dw')), 'DepthwiseConv2D');
      loaded.dispose();
    });

    test('tfjs-layers\' own dilated DepthwiseConv2D (a model built in memory), which it computes undilated, is refused by the executor in one line', async () => {
      const c = CASES[3]!;
      const model = buildModel(c, weightsOf(c));
      assert.equal(tf.serialization.SerializationMap.getMap().classNameMap['DepthwiseConv2D']![0], model.getLayer('dw').constructor, 'tfjs-layers\' class is still registered');
      const x = tf.tensor4d(exactRandomValues(SIZE * SIZE * 3, 40), [1, SIZE, SIZE, 3]);
      const message = "layer 'dw' is tfjs-layers' own DepthwiseConv2D with dilation rate [2, 2], which tfjs-layers 4.22 computes undilated: load the model with camviz's loadModel (dilated, as Keras computes it) or give the layer dilation rate 1";
      try {
        assert.throws(() => Network.of(model), { message });
        await assert.rejects(forward(model, x), { message });
      } finally {
        x.dispose();
        model.dispose();
      }
    });
  });
});

const ort = loadOnnxRuntime();

test('ONNX Runtime (camviz writes the model as ONNX) computes a dilated DepthwiseConv2D (\'valid\', BatchNorm, ReLU(6)) as Keras does', { skip: ort.available ? false : `onnxruntime-node does not load: ${ort.reason}` }, async () => {
  const folder = await mkdtemp(join(tmpdir(), 'camviz-dw-dilation-ort-'));
  const c = CASES[4]!;
  const weights = weightsOf(c);
  const model = buildModel(c, weights);
  await saveLayersModel(model, folder);
  model.dispose();
  const loaded = await loadModel(folder, { engine: 'onnxruntime' });
  const x = tf.tensor4d(exactRandomValues(SIZE * SIZE * 3, 50), [1, SIZE, SIZE, 3]);
  try {
    const executor = await loaded.executor();
    assert.ok(!(executor instanceof Network), 'ONNX Runtime runs the model');
    const values = await executor.forward(x);
    assertAllClose(values.scores.dataSync(), reference(c, weights, x.dataSync()).logits, 1e-4, 'scores');
    disposeValues(values);
  } finally {
    x.dispose();
    loaded.dispose();
    await rm(folder, { recursive: true, force: true });
  }
});
