/**
 * camviz's ONNX writer: TF.js layers models written as ONNX and run in ONNX
 * Runtime (onnxruntime-node), against tfjs' own execution of the same model
 * (`model.predict` of a model whose outputs are the compared layers): the
 * scores and intermediate values (fetched through `withOutputs`, read back
 * in camviz's layout through `valueOf`) agree within 1e-4 of the largest
 * value. Tiny models built here cover TF "same" padding on odd and even
 * sizes with stride 2, BatchNorm folding, depthwise and separable
 * convolutions, pooling, merges, Flatten/Reshape through NHWC order, the
 * activations, transposed and 1-D convolutions, LayerNormalization, Dense
 * on 3-D and 4-D values, Dot and TF graph ops seen as Keras layers (for
 * these, also the Grad-CAM, Grad-CAM++ and Score-CAM maps through the ONNX
 * Runtime executor against the tfjs Network); the shared Keras models and
 * MobileNet as a TF.js graph model too. Convolutions folded with their BatchNorm are compared through their
 * unfolded copies. The written model takes camviz's NHWC input as it is
 * (one Transpose to NCHW first, in the graph), also through the ONNX Runtime
 * executor and Score-CAM's masks. The written files pass `onnx.checker`
 * (python3-onnx) and the cache is read back, and rewritten when damaged or
 * written by an earlier writer.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type * as Ort from 'onnxruntime-node';
import { useBackend } from '../src/engine/backend.js';
import { LayerGraph, preActivationKey } from '../src/executor/graph.js';
import type { OnnxTrunk } from '../src/executor/onnx-trunk.js';
import { createOrtExecutor } from '../src/executor/ort.js';
import type { Executor } from '../src/executor/executor.js';
import { ScoreCam } from '../src/cam/scorecam.js';
import { explainBatch } from '../src/cam/explain.js';
import { Network, disposeValues } from '../src/executor/network.js';
import { parseOnnxModel } from '../src/model/onnx/parse.js';
import { interpretGraph, laid, toLayout } from '../src/model/onnx/interpret.js';
import { loadImage } from '../src/image/image.js';
import { loadModel } from '../src/model/load.js';
import { inputTensor } from '../src/model/predict.js';
import { OnnxWriteError, UnsupportedLayerError, onnxTrunkOfLayersModel, onnxTrunkOfModel, writeOnnxModel } from '../src/model/onnx-writer/index.js';
import { asset, imagePath, mobilenetDir, skipWithoutSharedAssets } from './helpers/assets.js';
import { randomizeWeights } from './helpers/layers.js';
import { type GraphNodeSpec, type GraphWeight, attr, convAttrs, layersAsGraph, placeholder, writeGraphModel } from './helpers/graph-model.js';
import { findPython } from './helpers/python.js';
import { maxAbsDifference } from './helpers/numeric.js';
import { UNWRITABLE_CLASS_NAME, unwritableLayer } from './helpers/unwritable-layer.js';

type Sym = tfl.SymbolicTensor;

const require = createRequire(import.meta.url);
let ort: typeof Ort | undefined;
let ortSkip: string | false = false;
try {
  ort = require('onnxruntime-node') as typeof Ort;
} catch (error) {
  ortSkip = `onnxruntime-node cannot be loaded (${(error as Error).message.split('\n')[0]})`;
}

const python = findPython('onnx');
const checkerSkip: string | false = python === null ? 'no python3 with the onnx package (python3-onnx)' : false;

const TOLERANCE = 1e-4;

let workDir: string;
before(async () => {
  await useBackend('wasm');
  workDir = await mkdtemp(join(tmpdir(), 'camviz-onnx-writer-'));
});
after(async () => {
  await rm(workDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------- helpers

/**
 * Runs ONNX bytes on camviz's NHWC input, fed as it is: the written model's
 * input takes it, and transposes it inside the graph. Returns the fetched outputs.
 */
async function runOnnx(bytes: Uint8Array, trunk: OnnxTrunk, x: tf.Tensor4D, fetches: readonly string[]): Promise<Map<string, tf.Tensor>> {
  const session = await ort!.InferenceSession.create(bytes, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  try {
    assert.deepEqual(trunk.input, { name: 'input', layout: 'same' }, 'the written model takes NHWC data as it is');
    const feed = new ort!.Tensor('float32', x.dataSync() as Float32Array, x.shape);
    const results = await session.run({ [trunk.input.name]: feed }, [...fetches]);
    return new Map(fetches.map((name) => [name, tf.tensor(results[name]!.data as Float32Array, results[name]!.dims as number[])]));
  } finally {
    await session.release();
  }
}

/** A value fetched from ONNX Runtime in camviz's layout. */
function inCamvizLayout(value: tf.Tensor, layout: 'same' | 'nchw'): tf.Tensor {
  return layout === 'nchw' ? tf.transpose(value, [0, 2, 3, 1]) : value.clone();
}

/** max |actual - expected| / max |expected|, same shapes. */
function relativeError(actual: tf.Tensor, expected: tf.Tensor, what: string): number {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shapes differ`);
  const a = actual.dataSync();
  const e = expected.dataSync();
  let difference = 0;
  let scale = 0;
  for (let i = 0; i < e.length; i++) {
    assert.ok(Number.isFinite(a[i]) && Number.isFinite(e[i]), `${what}[${i}]: ${a[i]} and ${e[i]} must be finite`);
    difference = Math.max(difference, Math.abs(a[i]! - e[i]!));
    scale = Math.max(scale, Math.abs(e[i]!));
  }
  assert.ok(scale > 0, `${what}: the reference is all zeros, the comparison would prove nothing`);
  return difference / scale;
}

/** The key of a layer's (first) output in the executor graph of `model`. */
function keyOfLayer(graph: LayerGraph, name: string): string {
  const nodes = graph.findNodes(name);
  assert.equal(nodes.length, 1, `layer ${name} has one node`);
  return nodes[0]!.outputs[0]!;
}

/** The outputs of `layers` computed by tfjs (`predict` of a model over the same layers), keyed by layer name. */
function tfjsValues(model: tfl.LayersModel, layers: readonly string[], x: tf.Tensor): Map<string, tf.Tensor> {
  const probe = tfl.model({ inputs: model.inputs, outputs: layers.map((name) => model.getLayer(name).output as Sym) });
  const outputs = probe.predict(x) as tf.Tensor | tf.Tensor[];
  const list = Array.isArray(outputs) ? outputs : [outputs];
  return new Map(layers.map((name, i) => [name, list[i]!]));
}

/**
 * Runs the written model in ONNX Runtime with the outputs of `layers` (and
 * the `pre` keys given) added, and compares each with tfjs' value.
 */
async function compareWithTfjs(
  model: tfl.LayersModel,
  trunk: OnnxTrunk,
  layers: readonly string[],
  x: tf.Tensor4D,
  preActivations: ReadonlyMap<string, tf.Tensor> = new Map(),
): Promise<void> {
  const graph = LayerGraph.fromModel(model);
  const compared = [
    ...layers.map((name) => ({ what: name, key: keyOfLayer(graph, name) })),
    ...[...preActivations.keys()].map((name) => ({ what: `${name}:pre`, key: preActivationKey(keyOfLayer(graph, name)) })),
  ];
  const values = compared.map(({ what, key }) => {
    const value = trunk.valueOf(key);
    assert.ok(value !== undefined, `${what} has an ONNX value`);
    return value;
  });
  const names = [...new Set(values.map((value) => value.name))];
  const fetched = await runOnnx(trunk.withOutputs(names), trunk, x, names);
  const expected = tfjsValues(model, layers, x);
  try {
    compared.forEach(({ what }, i) => {
      const got = inCamvizLayout(fetched.get(values[i]!.name)!, values[i]!.layout);
      const reference = expected.get(what) ?? preActivations.get(what.slice(0, -':pre'.length))!;
      const error = relativeError(got, reference, what);
      got.dispose();
      assert.ok(error <= TOLERANCE, `${what}: relative error ${error.toExponential(2)} > ${TOLERANCE}`);
    });
  } finally {
    tf.dispose([...fetched.values(), ...expected.values()]);
  }
}

let seed = 100;
/** Random weights (the shared helper), each model with seeds of its own. */
function randomize(model: tfl.LayersModel): void {
  seed = randomizeWeights(model, seed);
}

/**
 * Seeds from `first` on: a test that compares CAM maps draws its weights and
 * input from seeds of its own, so that a test added before it does not
 * change them (a map of random weights may be all zeros, which proves nothing).
 */
function seedsFrom(first: number): void {
  seed = first;
}

function randomInput(batch: number, height: number, width: number, channels = 3): tf.Tensor4D {
  return tf.randomUniform([batch, height, width, channels], -1, 1, 'float32', seed++) as tf.Tensor4D;
}

/** Names of the model's layers that compute something (not the input layer). */
function computedLayers(model: tfl.LayersModel): string[] {
  return model.layers.filter((layer) => layer.getClassName() !== 'InputLayer').map((layer) => layer.name);
}

/** onnx.checker.check_model with full_check (shape inference too) on the bytes: throws with its message. */
async function checkWithOnnx(bytes: Uint8Array, name: string): Promise<void> {
  const path = join(workDir, `${name}.onnx`);
  await writeFile(path, bytes);
  const script = 'import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True); print("ok")';
  const run = spawnSync(python!, ['-c', script, path], { encoding: 'utf8' });
  assert.equal(run.status, 0, `onnx.checker refused ${name}: ${run.stderr.trim().split('\n').at(-1)}`);
}

/** The CAM methods whose maps the written model must give as tfjs does: gradients on the tape above ORT's values, and ORT's masked passes. */
const CAM_METHODS = ['gradcam', 'gradcampp', 'scorecam'] as const;

/**
 * Grad-CAM, Grad-CAM++ and Score-CAM at each of `layers`, through the ONNX
 * Runtime executor of the written model, equal the same methods on the tfjs
 * Network of `model`, within TOLERANCE of the largest value of their maps.
 */
async function assertCamsAsOnTfjs(model: tfl.LayersModel, trunk: OnnxTrunk, layers: readonly string[], x: tf.Tensor4D, classes: readonly number[]): Promise<void> {
  const network = Network.of(model);
  const executor = await createOrtExecutor(network, trunk);
  try {
    for (const name of layers) {
      for (const method of CAM_METHODS) {
        const request = { method, input: x, layers: network.graph.findNodes(name), classes: { kind: 'explicit' as const, classes: [...classes] } };
        const [onOrt, onTfjs] = [await explainBatch(executor, request), await explainBatch(network, request)];
        const what = `${method} at ${name}`;
        assert.deepEqual(onOrt.explanations.map((perImage) => perImage.map((explained) => explained.classIndex)), onTfjs.explanations.map((perImage) => perImage.map((explained) => explained.classIndex)), what);
        // All maps at once: a map may be all zeros (every weighted channel negative), never all of them.
        const flat = (batch: typeof onOrt): tf.Tensor => tf.tensor(batch.explanations.flatMap((perImage) => perImage.flatMap((explained) => Array.from(explained.map!.data))));
        const [actual, reference] = [flat(onOrt), flat(onTfjs)];
        const error = relativeError(actual, reference, what);
        tf.dispose([actual, reference]);
        assert.ok(error <= TOLERANCE, `${what}: relative error ${error.toExponential(2)} > ${TOLERANCE}`);
      }
    }
  } finally {
    await executor.dispose();
  }
}

/** The model `build` makes for `height` x `width`, written: every value, and the CAM maps at `camLayers` for `classes`, as tfjs computes them. */
async function assertWrittenAsTfjs(build: (height: number, width: number) => tfl.LayersModel, height: number, width: number, camLayers: readonly string[], classes: readonly number[]): Promise<void> {
  const model = build(height, width);
  const trunk = await onnxTrunkOfLayersModel(model, { height, width }, { cache: false });
  const x = randomInput(2, height, width);
  try {
    await compareWithTfjs(model, trunk, computedLayers(model), x);
    await assertCamsAsOnTfjs(model, trunk, camLayers, x, classes);
  } finally {
    x.dispose();
  }
}

// ---------------------------------------------------------------- tiny models

/**
 * conv (same, stride 2, no bias) -> BatchNorm -> relu6, depthwise (same,
 * stride 2, multiplier 2) -> BatchNorm -> ReLU, Flatten (spatial > 1x1:
 * NHWC order matters), Dense with softmax.
 */
function stridedModel(height: number, width: number): tfl.LayersModel {
  const input = tfl.input({ shape: [height, width, 3] });
  const L = (layer: tfl.layers.Layer, x: Sym): Sym => layer.apply(x) as Sym;
  let x = L(tfl.layers.conv2d({ filters: 4, kernelSize: 3, strides: 2, padding: 'same', useBias: false, name: 'conv' }), input);
  x = L(tfl.layers.batchNormalization({ name: 'conv_bn' }), x);
  x = L(tfl.layers.activation({ activation: 'relu6', name: 'conv_relu' }), x);
  x = L(tfl.layers.depthwiseConv2d({ kernelSize: 3, strides: 2, depthMultiplier: 2, padding: 'same', name: 'dw' }), x);
  x = L(tfl.layers.batchNormalization({ name: 'dw_bn' }), x);
  x = L(tfl.layers.reLU({ name: 'dw_relu' }), x);
  x = L(tfl.layers.flatten({ name: 'flatten' }), x);
  x = L(tfl.layers.dense({ units: 5, activation: 'softmax', name: 'probs' }), x);
  const model = tfl.model({ inputs: input, outputs: x });
  randomize(model);
  return model;
}

/** The Dense layer's pre-softmax output, computed from the flatten output by hand. */
function denseLogits(model: tfl.LayersModel, x: tf.Tensor): tf.Tensor {
  const flat = tfjsValues(model, ['flatten'], x).get('flatten')!;
  const [kernel, bias] = model.getLayer('probs').getWeights();
  const logits = tf.add(tf.matMul(flat as tf.Tensor2D, kernel as tf.Tensor2D), bias!);
  flat.dispose();
  return logits;
}

/**
 * Branches and merges: a conv with a built-in relu; a separable conv
 * (stride 2, BatchNorm folded, swish) and max / average pooling (same, stride 2) merged by a
 * three-way Add and a Concatenate; a standalone BatchNorm; LeakyReLU;
 * ZeroPadding2D into a valid dilated conv; UpSampling2D and Cropping2D;
 * global pools; Multiply and Maximum on 2-D values; Reshape to a
 * 4-D value of 1x1 and of 2x2 spatial size; a second output.
 */
function branchyModel(height: number, width: number): tfl.LayersModel {
  const input = tfl.input({ shape: [height, width, 3] });
  const L = (layer: tfl.layers.Layer, x: Sym | Sym[]): Sym => layer.apply(x) as Sym;
  const stem = L(tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'stem' }), input);
  const sepConv = L(tfl.layers.separableConv2d({ filters: 6, kernelSize: 3, strides: 2, padding: 'same', name: 'sep' }), stem);
  const sep = L(tfl.layers.activation({ activation: 'swish', name: 'sep_swish' }), L(tfl.layers.batchNormalization({ name: 'sep_bn' }), sepConv));
  const max = L(tfl.layers.conv2d({ filters: 6, kernelSize: 1, name: 'max_proj' }), L(tfl.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same', name: 'max' }), stem));
  const avg = L(tfl.layers.conv2d({ filters: 6, kernelSize: 1, name: 'avg_proj' }), L(tfl.layers.averagePooling2d({ poolSize: 3, strides: 2, padding: 'same', name: 'avg' }), stem));
  const sum = L(tfl.layers.add({ name: 'sum' }), [sep, max, avg]);
  const cat = L(tfl.layers.concatenate({ name: 'cat' }), [sep, max]);
  const bn = L(tfl.layers.batchNormalization({ name: 'cat_bn' }), cat);
  const leaky = L(tfl.layers.leakyReLU({ alpha: 0.1, name: 'leaky' }), bn);
  const padded = L(tfl.layers.zeroPadding2d({ padding: [[1, 0], [0, 2]], name: 'pad' }), leaky);
  const dilated = L(tfl.layers.conv2d({ filters: 6, kernelSize: 2, dilationRate: 2, padding: 'valid', name: 'dilated' }), padded);
  const up = L(tfl.layers.upSampling2d({ size: [2, 2], name: 'up' }), sum);
  const crop = L(tfl.layers.cropping2D({ cropping: [[1, 0], [0, 1]], name: 'crop' }), up);
  const validPool = L(tfl.layers.maxPooling2d({ poolSize: 2, strides: 2, padding: 'valid', name: 'valid_pool' }), crop);
  const gap = L(tfl.layers.globalAveragePooling2d({ name: 'gap' }), validPool);
  const gmp = L(tfl.layers.globalMaxPooling2d({ name: 'gmp' }), dilated);
  const product = L(tfl.layers.multiply({ name: 'product' }), [gap, gmp]);
  const largest = L(tfl.layers.maximum({ name: 'largest' }), [product, gmp, gap]);
  const square = L(tfl.layers.reshape({ targetShape: [1, 1, 6], name: 'as_1x1' }), largest);
  const pointwise = L(tfl.layers.conv2d({ filters: 8, kernelSize: 1, activation: 'softmax', name: 'pointwise' }), square);
  const grid = L(tfl.layers.reshape({ targetShape: [2, 2, 2], name: 'as_2x2' }), L(tfl.layers.flatten({ name: 'flat_1x1' }), pointwise));
  const gridConv = L(tfl.layers.conv2d({ filters: 3, kernelSize: 2, padding: 'same', name: 'grid_conv' }), grid);
  const out = L(tfl.layers.dense({ units: 4, name: 'logits' }), L(tfl.layers.flatten({ name: 'flat_grid' }), gridConv));
  const model = tfl.model({ inputs: input, outputs: [out, gmp] });
  randomize(model);
  return model;
}

/**
 * Every activation tfjs has, each as a layer, after a dilated "same" conv
 * and a Rescaling; PReLU (own and shared slopes), ThresholdedReLU, Permute.
 */
function activationsModel(height: number, width: number): tfl.LayersModel {
  const input = tfl.input({ shape: [height, width, 3] });
  let x = tfl.layers.rescaling({ scale: 0.5, offset: -0.25, name: 'rescale' }).apply(input) as Sym;
  x = tfl.layers.conv2d({ filters: 5, kernelSize: 3, dilationRate: 2, padding: 'same', activation: 'elu', name: 'conv' }).apply(x) as Sym;
  const kinds = ['selu', 'sigmoid', 'hardSigmoid', 'softplus', 'softsign', 'tanh', 'swish', 'mish', 'gelu', 'gelu_new', 'relu6', 'relu', 'linear', 'softmax'] as const;
  for (const kind of kinds) x = tfl.layers.activation({ activation: kind, name: `act_${kind}` }).apply(x) as Sym;
  x = tfl.layers.elu({ name: 'elu_layer' }).apply(x) as Sym;
  x = tfl.layers.softmax({ axis: -1, name: 'softmax_layer' }).apply(x) as Sym;
  x = tfl.layers.reLU({ maxValue: 0.15, name: 'capped' }).apply(x) as Sym;
  x = tfl.layers.prelu({ name: 'prelu' }).apply(tfl.layers.rescaling({ scale: 2, offset: -0.1, name: 'centre' }).apply(x) as Sym) as Sym;
  x = tfl.layers.prelu({ sharedAxes: [1, 2], name: 'prelu_shared' }).apply(x) as Sym;
  x = tfl.layers.thresholdedReLU({ theta: 0.05, name: 'thresholded' }).apply(x) as Sym;
  x = tfl.layers.permute({ dims: [2, 1, 3], name: 'swap_hw' }).apply(x) as Sym;
  x = tfl.layers.permute({ dims: [3, 1, 2], name: 'channels_first' }).apply(x) as Sym;
  x = tfl.layers.conv2d({ filters: 3, kernelSize: 3, padding: 'same', name: 'after_permute' }).apply(x) as Sym;
  x = tfl.layers.dropout({ rate: 0.5, name: 'dropout' }).apply(x) as Sym;
  x = tfl.layers.average({ name: 'mean' }).apply([x, tfl.layers.activation({ activation: 'tanh', name: 'side' }).apply(x) as Sym]) as Sym;
  x = tfl.layers.minimum({ name: 'min' }).apply([x, tfl.layers.activation({ activation: 'sigmoid', name: 'side2' }).apply(x) as Sym]) as Sym;
  const model = tfl.model({ inputs: input, outputs: x });
  randomize(model);
  return model;
}

/**
 * A decoder: a strided encoder, then Conv2DTranspose "same" (odd and even
 * kernels: TF's asymmetric crop), "valid" (a kernel smaller than its stride:
 * rows no kernel reaches) without a bias, and a bilinear UpSampling2D; each
 * branch pooled into the logits.
 */
function decoderModel(height: number, width: number): tfl.LayersModel {
  const input = tfl.input({ shape: [height, width, 3] });
  const L = (layer: tfl.layers.Layer, x: Sym | Sym[]): Sym => layer.apply(x) as Sym;
  const encoded = L(tfl.layers.conv2d({ filters: 4, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', name: 'enc' }), input);
  const branches = [
    L(tfl.layers.conv2dTranspose({ filters: 4, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', name: 'up_odd' }), encoded),
    L(tfl.layers.conv2dTranspose({ filters: 3, kernelSize: 4, strides: 2, padding: 'same', name: 'up_even' }), encoded),
    L(tfl.layers.conv2dTranspose({ filters: 3, kernelSize: [3, 1], strides: [2, 3], padding: 'valid', useBias: false, name: 'up_valid' }), encoded),
    L(tfl.layers.conv2d({ filters: 3, kernelSize: 3, padding: 'same', name: 'after_bilinear' }), L(tfl.layers.upSampling2d({ size: [2, 3], interpolation: 'bilinear', name: 'up_bilinear' }), encoded)),
  ];
  const pooled = branches.map((branch, i) => L(tfl.layers.globalAveragePooling2d({ name: `gap_${i}` }), branch));
  const logits = L(tfl.layers.dense({ units: 5, name: 'logits' }), L(tfl.layers.concatenate({ name: 'pooled' }), pooled));
  const model = tfl.model({ inputs: input, outputs: logits });
  randomize(model);
  return model;
}

/**
 * ConvNeXt's block: a patchify stem (rectified here, for the CAM maps at
 * it), LayerNormalization over the channels, a 7x7 depthwise conv,
 * LayerNormalization, Dense layers on the 4-D value (pointwise, gelu
 * between), a residual Add; LayerNormalization over [H, W, C], and over
 * the features of the pooled value.
 */
function convNextModel(height: number, width: number): tfl.LayersModel {
  const input = tfl.input({ shape: [height, width, 3] });
  const L = (layer: tfl.layers.Layer, x: Sym | Sym[]): Sym => layer.apply(x) as Sym;
  const stem = L(tfl.layers.layerNormalization({ epsilon: 1e-6, name: 'stem_ln' }), L(tfl.layers.conv2d({ filters: 8, kernelSize: 2, strides: 2, activation: 'relu', name: 'stem' }), input));
  let x = L(tfl.layers.depthwiseConv2d({ kernelSize: 7, padding: 'same', name: 'dw' }), stem);
  x = L(tfl.layers.layerNormalization({ epsilon: 1e-6, name: 'ln' }), x);
  x = L(tfl.layers.activation({ activation: 'gelu', name: 'gelu' }), L(tfl.layers.dense({ units: 16, name: 'pw1' }), x));
  x = L(tfl.layers.dense({ units: 8, name: 'pw2' }), x);
  x = L(tfl.layers.add({ name: 'res' }), [stem, x]);
  x = L(tfl.layers.layerNormalization({ axis: [1, 2, 3], name: 'ln_hwc' }), x);
  x = L(tfl.layers.conv2d({ filters: 6, kernelSize: 3, padding: 'same', activation: 'relu', name: 'last_conv' }), x);
  x = L(tfl.layers.layerNormalization({ name: 'head_ln' }), L(tfl.layers.globalAveragePooling2d({ name: 'gap' }), x));
  const model = tfl.model({ inputs: input, outputs: L(tfl.layers.dense({ units: 5, activation: 'softmax', name: 'probs' }), x) });
  randomize(model);
  return model;
}

/**
 * A conv trunk read as a sequence of positions (Reshape to [H*W, C]): Dense
 * on the rank-3 value, GlobalAveragePooling1D and GlobalMaxPooling1D, Dot
 * of two rank-3 values (axes [2, 2] and [1, 1]: both transposes) and of
 * two rank-2 values, plain and normalized.
 */
function sequenceModel(height: number, width: number): tfl.LayersModel {
  const input = tfl.input({ shape: [height, width, 3] });
  const L = (layer: tfl.layers.Layer, x: Sym | Sym[]): Sym => layer.apply(x) as Sym;
  const conv = L(tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'conv' }), input);
  const tokens = L(tfl.layers.reshape({ targetShape: [height * width, 4], name: 'tokens' }), conv);
  const projected = L(tfl.layers.dense({ units: 6, activation: 'tanh', name: 'projected' }), tokens);
  const keys = L(tfl.layers.dense({ units: 6, useBias: false, name: 'keys' }), tokens);
  const affinity = L(tfl.layers.dot({ axes: [2, 2], name: 'affinity' }), [projected, keys]);
  const gram = L(tfl.layers.dot({ axes: 1, name: 'gram' }), [projected, keys]);
  const mean = L(tfl.layers.globalAveragePooling1d({ name: 'mean_tokens' }), projected);
  const max = L(tfl.layers.globalMaxPooling1d({ name: 'max_tokens' }), affinity);
  const gramMean = L(tfl.layers.globalAveragePooling1d({ name: 'gram_mean' }), gram);
  const similarity = L(tfl.layers.dot({ axes: -1, name: 'similarity' }), [mean, gramMean]);
  const cosine = L(tfl.layers.dot({ axes: 1, normalize: true, name: 'cosine' }), [mean, gramMean]);
  const features = L(tfl.layers.concatenate({ name: 'features' }), [mean, max, similarity, cosine]);
  const model = tfl.model({ inputs: input, outputs: L(tfl.layers.dense({ units: 4, name: 'logits' }), features) });
  randomize(model);
  return model;
}

/**
 * A conv trunk read as a sequence (Reshape to [H*W, C]), then Conv1D
 * ("same" with stride 2, "valid" dilated with a relu, no bias),
 * MaxPooling1D ("same", odd length) and AveragePooling1D ("valid",
 * stride 1), and the pooled steps into the logits.
 */
function conv1dModel(height: number, width: number): tfl.LayersModel {
  const input = tfl.input({ shape: [height, width, 3] });
  const L = (layer: tfl.layers.Layer, x: Sym): Sym => layer.apply(x) as Sym;
  let x = L(tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'conv' }), input);
  x = L(tfl.layers.reshape({ targetShape: [height * width, 4], name: 'steps' }), x);
  x = L(tfl.layers.conv1d({ filters: 6, kernelSize: 3, strides: 2, padding: 'same', name: 'conv1d_same' }), x);
  x = L(tfl.layers.conv1d({ filters: 5, kernelSize: 3, dilationRate: 2, activation: 'relu', useBias: false, name: 'conv1d_dilated' }), x);
  x = L(tfl.layers.maxPooling1d({ poolSize: 3, strides: 2, padding: 'same', name: 'max_steps' }), x);
  x = L(tfl.layers.averagePooling1d({ poolSize: 2, strides: 1, padding: 'valid', name: 'avg_steps' }), x);
  x = L(tfl.layers.globalAveragePooling1d({ name: 'pooled' }), x);
  const model = tfl.model({ inputs: input, outputs: L(tfl.layers.dense({ units: 4, name: 'logits' }), x) });
  randomize(model);
  return model;
}

/**
 * CenterCrop as tfjs-layers computes it: crops that sample rows and columns
 * as its cropAndResize does (odd ratios; a width one larger than the
 * target, where tfjs offsets by 1), each convolved and pooled.
 */
function centerCropModel(height: number, width: number): tfl.LayersModel {
  const input = tfl.input({ shape: [height, width, 3] });
  const L = (layer: tfl.layers.Layer, x: Sym | Sym[]): Sym => layer.apply(x) as Sym;
  const stem = L(tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'stem' }), input);
  const crops = [[height - 5, width - 5], [height - 3, width - 1], [height - 2, width - 3]].map(([h, w], i) => L(tfl.layers.centerCrop({ height: h!, width: w!, name: `crop_${i}` }), stem));
  const pooled = crops.map((crop, i) => L(tfl.layers.globalAveragePooling2d({ name: `gap_${i}` }), L(tfl.layers.conv2d({ filters: 3, kernelSize: 3, padding: 'same', name: `after_crop_${i}` }), crop)));
  const model = tfl.model({ inputs: input, outputs: L(tfl.layers.dense({ units: 4, name: 'logits' }), L(tfl.layers.concatenate({ name: 'pooled' }), pooled)) });
  randomize(model);
  return model;
}

// ---------------------------------------------------------------- tests

describe('the ONNX writer against tfjs', { skip: ortSkip }, () => {
  test('MobileNet v1: scores and intermediate values, batch of 2', { skip: skipWithoutSharedAssets }, async () => {
    const model = await loadModel(mobilenetDir);
    try {
      const trunk = await onnxTrunkOfModel(model, { cache: false });
      assert.deepEqual(trunk.inputSize, { height: 224, width: 224 });
      const layersModel = model.layersModel!;
      const layers = [
        'conv1', 'conv1_relu', 'conv_dw_1_relu', 'conv_pw_1_relu', 'conv_dw_2_relu', 'conv_dw_6', 'conv_dw_6_bn', 'conv_pw_6_relu', 'conv_pw_13', 'conv_pw_13_relu',
        'global_average_pooling2d_1', 'reshape_1', 'dropout', 'conv_preds', 'act_softmax', 'reshape_2',
      ];
      // Convolutions folded with their BatchNorm (conv1, conv_dw_6, conv_pw_13) are written unfolded on request.
      await compareWithTfjs(layersModel, trunk, layers, randomInput(2, 224, 224));
    } finally {
      model.dispose();
    }
  });

  test('MobileNet v1 on photos: the same top class and probabilities as tfjs', { skip: skipWithoutSharedAssets }, async () => {
    const model = await loadModel(mobilenetDir);
    try {
      const trunk = await onnxTrunkOfModel(model, { cache: false });
      const images = await Promise.all(['creative_commons_elephant.jpg', 'dog_cat.jpg'].map((name) => loadImage(imagePath(name), { size: model.meta.inputSize })));
      const x = inputTensor(model, images.map((image) => image.input));
      const output = trunk.valueOf(LayerGraph.fromModel(model.layersModel!).outputKeys[0]!)!;
      const fetched = await runOnnx(trunk.withOutputs([]), trunk, x, [output.name]);
      const onnx = fetched.get(output.name)!;
      const tfjs = model.layersModel!.predict(x) as tf.Tensor2D;
      const top = (probabilities: tf.Tensor, row: number): number => tf.tidy(() => tf.argMax(tf.slice(probabilities, [row, 0], [1, -1]), 1).dataSync()[0]!);
      try {
        // Top-5 ranks of near-equal probabilities may swap on another CPU's kernels: the top class, and every probability within tolerance.
        for (let row = 0; row < images.length; row++) assert.equal(top(onnx, row), top(tfjs, row), `${images[row]!.path}: top class`);
        assert.ok(relativeError(onnx, tfjs, 'probabilities') <= TOLERANCE);
      } finally {
        tf.dispose([x, onnx, tfjs]);
      }
    } finally {
      model.dispose();
    }
  });

  test('MobileNet v1 as a TF.js graph model (TF nodes as layers)', { skip: skipWithoutSharedAssets }, async () => {
    const layers = await loadModel(mobilenetDir);
    const { nodes, weights } = layersAsGraph(layers.layersModel!);
    layers.dispose();
    const folder = join(workDir, 'graph-mobilenet');
    await mkdir(folder);
    const model = await loadModel(await writeGraphModel(folder, nodes, weights));
    try {
      const trunk = await onnxTrunkOfModel(model, { cache: false });
      const compared = [
        'MobilenetV1/conv1/BatchNorm/FusedBatchNormV3', 'MobilenetV1/conv1/Relu6', 'MobilenetV1/conv_dw_2/Relu6', 'MobilenetV1/conv_pw_13/Relu6',
        'MobilenetV1/global_average_pooling2d_1/Mean', 'MobilenetV1/reshape_1/Reshape', 'MobilenetV1/conv_preds/BiasAdd', 'MobilenetV1/act_softmax/Softmax',
        'MobilenetV1/Predictions',
      ];
      await compareWithTfjs(model.layersModel!, trunk, compared, randomInput(2, 224, 224));
    } finally {
      model.dispose();
    }
  });

  test('TF graph ops without a Keras view: MaxPool, AvgPool ("same", stride 2, odd size), AddV2, Mul, Sigmoid', async () => {
    const size = 9;
    const pool = (name: string, op: string): { name: string; op: string; input: string[]; attr: Record<string, unknown> } => ({
      name,
      op,
      input: ['net/relu'],
      attr: { T: attr.float, ksize: attr.ints([1, 3, 3, 1]), strides: attr.ints([1, 2, 2, 1]), padding: attr.string('SAME'), data_format: attr.string('NHWC') },
    });
    const nodes = [
      placeholder('image', [-1, size, size, 3]),
      { name: 'net/conv/Conv2D', op: 'Conv2D', input: ['image', 'net/conv/kernel'], attr: convAttrs('SAME') },
      { name: 'net/conv/BiasAdd', op: 'BiasAdd', input: ['net/conv/Conv2D', 'net/conv/bias'], attr: { T: attr.float, data_format: attr.string('NHWC') } },
      { name: 'net/relu', op: 'Relu', input: ['net/conv/BiasAdd'], attr: { T: attr.float } },
      pool('net/max', 'MaxPool'),
      pool('net/avg', 'AvgPool'),
      { name: 'net/sum', op: 'AddV2', input: ['net/max', 'net/avg'], attr: { T: attr.float } },
      { name: 'net/gate', op: 'Sigmoid', input: ['net/sum'], attr: { T: attr.float } },
      { name: 'net/gated', op: 'Mul', input: ['net/sum', 'net/gate'], attr: { T: attr.float } },
      { name: 'output', op: 'Identity', input: ['net/gated'], attr: { T: attr.float } },
    ];
    const kernel = tf.randomNormal([3, 3, 3, 4], 0, 0.5, 'float32', seed++);
    const bias = tf.randomNormal([4], 0, 0.5, 'float32', seed++);
    const folder = join(workDir, 'graph-ops');
    await mkdir(folder);
    const weights = [
      { name: 'net/conv/kernel', shape: [3, 3, 3, 4], dtype: 'float32' as const, data: kernel.dataSync() },
      { name: 'net/conv/bias', shape: [4], dtype: 'float32' as const, data: bias.dataSync() },
    ];
    const model = await loadModel(await writeGraphModel(folder, nodes, weights), { size: `${size}` });
    try {
      const trunk = await onnxTrunkOfModel(model, { cache: false });
      await compareWithTfjs(model.layersModel!, trunk, computedLayers(model.layersModel!), randomInput(2, size, size));
    } finally {
      model.dispose();
    }
  });

  test('TF graph ops as Keras layers: the converter\'s FusedDepthwiseConv2dNative (bias, Relu6), Pad of H and W (Pad, PadV2 with zeros), ConcatV2: values and CAM maps before and after', async () => {
    seedsFrom(10_000);
    const size = 9;
    const nhwc = { T: attr.float, data_format: attr.string('NHWC') };
    const nodes = [
      placeholder('image', [-1, size, size, 3]),
      { name: 'net/conv/Relu', op: '_FusedConv2D', input: ['image', 'net/conv/kernel', 'net/conv/bias'], attr: { ...convAttrs('SAME'), fused_ops: attr.strings(['BiasAdd', 'Relu']), num_args: attr.int(1) } },
      { name: 'net/dw/Relu6', op: 'FusedDepthwiseConv2dNative', input: ['net/conv/Relu', 'net/dw/kernel', 'net/dw/bias'], attr: { ...convAttrs('SAME', 2), fused_ops: attr.strings(['BiasAdd', 'Relu6']), num_args: attr.int(1) } },
      { name: 'net/pad', op: 'Pad', input: ['net/dw/Relu6', 'net/pad/paddings'], attr: { T: attr.float } },
      { name: 'net/conv2/Conv2D', op: 'Conv2D', input: ['net/pad', 'net/conv2/kernel'], attr: convAttrs('VALID') },
      { name: 'net/conv2/BiasAdd', op: 'BiasAdd', input: ['net/conv2/Conv2D', 'net/conv2/bias'], attr: nhwc },
      { name: 'net/pad2', op: 'PadV2', input: ['net/dw/Relu6', 'net/pad2/paddings', 'net/pad2/zero'], attr: { T: attr.float } },
      { name: 'net/conv3/Conv2D', op: 'Conv2D', input: ['net/pad2', 'net/conv3/kernel'], attr: convAttrs('VALID') },
      { name: 'net/cat', op: 'ConcatV2', input: ['net/dw/Relu6', 'net/conv2/BiasAdd', 'net/conv3/Conv2D', 'net/cat/axis'], attr: { T: attr.float, N: attr.int(3) } },
      { name: 'net/pool', op: 'Mean', input: ['net/cat', 'net/pool/axes'], attr: { T: attr.float, keep_dims: attr.bool(false) } },
      { name: 'net/logits/MatMul', op: 'MatMul', input: ['net/pool', 'net/logits/weights'], attr: { T: attr.float } },
      { name: 'net/logits/BiasAdd', op: 'BiasAdd', input: ['net/logits/MatMul', 'net/logits/bias'], attr: nhwc },
      { name: 'output', op: 'Identity', input: ['net/logits/BiasAdd'], attr: { T: attr.float } },
    ];
    const random = (name: string, shape: number[]): GraphWeight => ({ name, shape, dtype: 'float32', data: tf.tidy(() => tf.randomNormal(shape, 0, 0.5, 'float32', seed++).dataSync()) });
    const ints = (name: string, shape: number[], data: number[]): GraphWeight => ({ name, shape, dtype: 'int32', data });
    const weights = [
      random('net/conv/kernel', [3, 3, 3, 4]),
      random('net/conv/bias', [4]),
      random('net/dw/kernel', [3, 3, 4, 1]),
      random('net/dw/bias', [4]),
      ints('net/pad/paddings', [4, 2], [0, 0, 1, 1, 1, 1, 0, 0]),
      random('net/conv2/kernel', [3, 3, 4, 3]),
      random('net/conv2/bias', [3]),
      ints('net/pad2/paddings', [4, 2], [0, 0, 2, 0, 0, 2, 0, 0]),
      { name: 'net/pad2/zero', shape: [], dtype: 'float32' as const, data: [0] },
      random('net/conv3/kernel', [3, 3, 4, 2]),
      ints('net/cat/axis', [], [-1]),
      ints('net/pool/axes', [2], [1, 2]),
      random('net/logits/weights', [9, 4]),
      random('net/logits/bias', [4]),
    ];
    const folder = join(workDir, 'graph-views');
    await mkdir(folder);
    const model = await loadModel(await writeGraphModel(folder, nodes, weights), { size: `${size}` });
    try {
      const layersModel = model.layersModel!;
      const classes = Object.fromEntries(layersModel.layers.map((layer) => [layer.name, layer.getClassName()]));
      assert.deepEqual([classes['net/dw/Relu6'], classes['net/pad'], classes['net/pad2'], classes['net/cat']], ['DepthwiseConv2D', 'ZeroPadding2D', 'ZeroPadding2D', 'Concatenate']);
      const trunk = await onnxTrunkOfModel(model, { cache: false });
      const x = randomInput(2, size, size);
      await compareWithTfjs(layersModel, trunk, computedLayers(layersModel), x);
      await assertCamsAsOnTfjs(layersModel, trunk, ['net/conv/Relu', 'net/dw/Relu6', 'net/conv2/BiasAdd', 'net/cat'], x, [0, 1, 2, 3]);
      x.dispose();
    } finally {
      model.dispose();
    }
  });

  test('TF graph ops without a Keras view: LeakyRelu, Tanh, Elu, Selu, Softplus, Sub, RealDiv, Maximum, Minimum, ResizeBilinear and ResizeNearestNeighbor (asymmetric, half pixels, aligned corners): values and CAM maps before and after', async () => {
    seedsFrom(11_000);
    const size = 7;
    const nhwc = { T: attr.float, data_format: attr.string('NHWC') };
    const unary = (name: string, op: string, input: string, extra: Record<string, unknown> = {}): GraphNodeSpec => ({ name, op, input: [input], attr: { T: attr.float, ...extra } });
    const binary = (name: string, op: string, inputs: [string, string]): GraphNodeSpec => ({ name, op, input: inputs, attr: { T: attr.float } });
    const resize = (name: string, op: string, input: string, sizeKey: string, align: boolean, half: boolean): GraphNodeSpec => ({
      name,
      op,
      input: [input, sizeKey],
      attr: { T: attr.float, align_corners: attr.bool(align), half_pixel_centers: attr.bool(half) },
    });
    const nodes: GraphNodeSpec[] = [
      placeholder('image', [-1, size, size, 3]),
      { name: 'net/conv/Conv2D', op: 'Conv2D', input: ['image', 'net/conv/kernel'], attr: convAttrs('SAME') },
      { name: 'net/conv/BiasAdd', op: 'BiasAdd', input: ['net/conv/Conv2D', 'net/conv/bias'], attr: nhwc },
      unary('net/leaky', 'LeakyRelu', 'net/conv/BiasAdd', { alpha: attr.number(0.1) }),
      unary('net/tanh', 'Tanh', 'net/leaky'),
      unary('net/elu', 'Elu', 'net/leaky'),
      unary('net/selu', 'Selu', 'net/leaky'),
      unary('net/softplus', 'Softplus', 'net/leaky'),
      binary('net/sub', 'Sub', ['net/tanh', 'net/elu']),
      binary('net/ratio', 'RealDiv', ['net/sub', 'net/softplus']),
      binary('net/max', 'Maximum', ['net/ratio', 'net/selu']),
      binary('net/min', 'Minimum', ['net/max', 'net/leaky']),
      resize('net/up_bilinear', 'ResizeBilinear', 'net/min', 'net/size_up', false, false),
      resize('net/up_half', 'ResizeBilinear', 'net/min', 'net/size_odd', false, true),
      resize('net/up_aligned', 'ResizeBilinear', 'net/min', 'net/size_odd', true, false),
      resize('net/nn', 'ResizeNearestNeighbor', 'net/min', 'net/size_odd', false, false),
      resize('net/nn_half', 'ResizeNearestNeighbor', 'net/min', 'net/size_odd', false, true),
      resize('net/nn_aligned', 'ResizeNearestNeighbor', 'net/min', 'net/size_down', true, false),
      ...['up_bilinear', 'up_half', 'up_aligned', 'nn', 'nn_half', 'nn_aligned'].map((branch): GraphNodeSpec => ({ name: `net/${branch}/Mean`, op: 'Mean', input: [`net/${branch}`, 'net/pool/axes'], attr: { T: attr.float, keep_dims: attr.bool(false) } })),
      { name: 'net/pooled', op: 'ConcatV2', input: [...['up_bilinear', 'up_half', 'up_aligned', 'nn', 'nn_half', 'nn_aligned'].map((branch) => `net/${branch}/Mean`), 'net/pooled/axis'], attr: { T: attr.float, N: attr.int(6) } },
      { name: 'net/logits/MatMul', op: 'MatMul', input: ['net/pooled', 'net/logits/weights'], attr: { T: attr.float } },
      { name: 'output', op: 'Identity', input: ['net/logits/MatMul'], attr: { T: attr.float } },
    ];
    const random = (name: string, shape: number[]): GraphWeight => ({ name, shape, dtype: 'float32', data: tf.tidy(() => tf.randomNormal(shape, 0, 0.5, 'float32', seed++).dataSync()) });
    const ints = (name: string, shape: number[], data: number[]): GraphWeight => ({ name, shape, dtype: 'int32', data });
    const weights = [
      random('net/conv/kernel', [3, 3, 3, 4]),
      random('net/conv/bias', [4]),
      ints('net/size_up', [2], [14, 21]),
      ints('net/size_odd', [2], [10, 12]),
      ints('net/size_down', [2], [4, 5]),
      ints('net/pool/axes', [2], [1, 2]),
      ints('net/pooled/axis', [], [1]),
      random('net/logits/weights', [24, 3]),
    ];
    const folder = join(workDir, 'graph-elementwise');
    await mkdir(folder);
    const model = await loadModel(await writeGraphModel(folder, nodes, weights), { size: `${size}` });
    try {
      const layersModel = model.layersModel!;
      const trunk = await onnxTrunkOfModel(model, { cache: false });
      const x = randomInput(2, size, size);
      await compareWithTfjs(layersModel, trunk, computedLayers(layersModel), x);
      await assertCamsAsOnTfjs(layersModel, trunk, ['net/conv/BiasAdd', 'net/min', 'net/up_half', 'net/nn_half', 'net/nn_aligned'], x, [0, 1, 2]);
      x.dispose();
    } finally {
      model.dispose();
    }
  });

  test('a ConcatV2 that joins a constant, a value computed from constants alone, or one value twice is refused: the written Concat would leave it out', async () => {
    const weights: GraphWeight[] = [{ name: 'net/ones', shape: [1, 4, 4, 1], dtype: 'float32', data: new Array<number>(16).fill(1) }, { name: 'net/cat/axis', shape: [], dtype: 'int32', data: [3] }];
    const cases = [
      { operands: ['image', 'net/relu', 'net/ones'], refusal: /does not support layer net\/cat \(ConcatV2\)$/ },
      { operands: ['image', 'net/relu', 'net/ones_copy'], refusal: /\(Concatenate: its inputs make 6 of its 7 along the axis \(a constant or repeated operand is not supported\)\)$/ },
      { operands: ['image', 'net/relu', 'image'], refusal: /\(Concatenate: its inputs make 6 of its 9 along the axis/ },
    ];
    for (const [i, { operands, refusal }] of cases.entries()) {
      const nodes = [
        placeholder('image', [-1, 4, 4, 3]),
        { name: 'net/relu', op: 'Relu', input: ['image'], attr: { T: attr.float } },
        { name: 'net/ones_copy', op: 'Identity', input: ['net/ones'], attr: { T: attr.float } },
        { name: 'net/cat', op: 'ConcatV2', input: [...operands, 'net/cat/axis'], attr: { T: attr.float, N: attr.int(3) } },
        { name: 'output', op: 'Identity', input: ['net/cat'], attr: { T: attr.float } },
      ];
      const folder = join(workDir, `graph-concat-${i}`);
      await mkdir(folder);
      const model = await loadModel(await writeGraphModel(folder, nodes, weights), { size: '4' });
      try {
        await assert.rejects(onnxTrunkOfModel(model, { cache: false }), { message: refusal }, operands.join(', '));
      } finally {
        model.dispose();
      }
    }
  });

  for (const file of ['cats_vs_dogs_k2.10.h5', 'cifar10_k3.10.keras', 'mnist_cnn_k3.5.h5']) {
    test(`the shared Keras model ${file}: every layer (Flatten of a 4-D value, Dense, pooling)`, { skip: existsSync(asset('keras', file)) ? false : `${asset('keras', file)} is absent` }, async () => {
      const model = await loadModel(asset('keras', file));
      try {
        const trunk = await onnxTrunkOfModel(model, { cache: false });
        const layersModel = model.layersModel!;
        const { height, width } = model.meta.inputSize;
        const channels = layersModel.inputs[0]!.shape[3] as number;
        await compareWithTfjs(layersModel, trunk, computedLayers(layersModel), randomInput(2, height, width, channels));
      } finally {
        model.dispose();
      }
    });
  }

  test('the embedded shapes model: every layer', async () => {
    const model = await loadModel('shapes');
    try {
      const trunk = await onnxTrunkOfModel(model, { cache: false });
      const layersModel = model.layersModel!;
      const { height, width } = model.meta.inputSize;
      await compareWithTfjs(layersModel, trunk, computedLayers(layersModel), randomInput(2, height, width));
    } finally {
      model.dispose();
    }
  });

  for (const [height, width] of [[7, 7], [8, 8], [9, 6]] as const) {
    test(`"same" padding, stride 2, BatchNorm folded into conv and depthwise, Flatten, Dense softmax: ${height}x${width}`, async () => {
      const model = stridedModel(height, width);
      const trunk = await onnxTrunkOfLayersModel(model, { height, width }, { cache: false });
      const x = randomInput(3, height, width);
      const logits = denseLogits(model, x);
      await compareWithTfjs(model, trunk, computedLayers(model), x, new Map([['probs', logits]]));
      logits.dispose();
    });
  }

  for (const [height, width] of [[11, 11], [12, 10]] as const) {
    test(`branches and merges, pooling, padding, resizing, reshapes: ${height}x${width}`, async () => {
      const model = branchyModel(height, width);
      const trunk = await onnxTrunkOfLayersModel(model, { height, width }, { cache: false });
      await compareWithTfjs(model, trunk, computedLayers(model), randomInput(2, height, width));
    });
  }

  test('every activation, dilated "same" conv, Rescaling, Dropout, Average, Minimum, PReLU, Permute', async () => {
    const model = activationsModel(9, 10);
    const trunk = await onnxTrunkOfLayersModel(model, { height: 9, width: 10 }, { cache: false });
    await compareWithTfjs(model, trunk, computedLayers(model), randomInput(2, 9, 10));
  });

  test('Conv2DTranspose ("same" with odd and even kernels, "valid" with a kernel smaller than its stride, no bias) and bilinear UpSampling2D: values and CAM maps before and after', async () => {
    seedsFrom(12_000);
    await assertWrittenAsTfjs(decoderModel, 9, 8, ['enc', 'up_odd', 'up_even', 'up_valid', 'after_bilinear'], [0, 1, 2, 3, 4]);
  });

  test('ConvNeXt\'s block: LayerNormalization (channels, [H, W, C], features), Dense on a 4-D value: values and CAM maps before and after', async () => {
    seedsFrom(13_000);
    // At rectified values (the stem's relu, gelu, the last conv's relu): a signed value's maps (a LayerNormalization's, normalized to mean 0 at each position) can be all zeros.
    await assertWrittenAsTfjs(convNextModel, 12, 10, ['stem', 'gelu', 'last_conv'], [0, 1, 2, 3, 4]);
  });

  test('tfjs-layers\' own Conv2DTranspose with a dilation rate (built in memory), which it computes undilated, is written as tfjs computes it', async () => {
    // camviz's loader gives Keras' dilated layers a class that dilates (test/conv-transpose-dilation.test.ts).
    const input = tfl.input({ shape: [8, 8, 3] });
    const model = tfl.model({ inputs: input, outputs: tfl.layers.conv2dTranspose({ filters: 2, kernelSize: 3, dilationRate: 2, padding: 'valid', name: 'dilated' }).apply(input) as Sym });
    randomize(model);
    const trunk = await onnxTrunkOfLayersModel(model, { height: 8, width: 8 }, { cache: false });
    await compareWithTfjs(model, trunk, computedLayers(model), randomInput(2, 8, 8));
  });

  test('LayerNormalization without gamma, without beta, over [H, C] listed backwards: values', async () => {
    // Values only: tfjs' own gradient fails through a LayerNormalization without gamma or beta (its batchNorm records the missing one).
    const input = tfl.input({ shape: [6, 5, 3] });
    let x = tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'conv' }).apply(input) as Sym;
    x = tfl.layers.layerNormalization({ scale: false, name: 'no_gamma' }).apply(x) as Sym;
    x = tfl.layers.layerNormalization({ center: false, axis: [1, 2, 3], name: 'no_beta' }).apply(x) as Sym;
    x = tfl.layers.layerNormalization({ axis: [3, 1], name: 'channels_rows' }).apply(x) as Sym;
    const model = tfl.model({ inputs: input, outputs: x });
    randomize(model);
    const trunk = await onnxTrunkOfLayersModel(model, { height: 6, width: 5 }, { cache: false });
    await compareWithTfjs(model, trunk, computedLayers(model), randomInput(2, 6, 5));
  });

  test('positions as a sequence: Dense on a rank-3 value, GlobalAveragePooling1D, GlobalMaxPooling1D, Dot (rank 3 and 2, normalized): values and CAM maps before', async () => {
    seedsFrom(14_000);
    await assertWrittenAsTfjs(sequenceModel, 5, 6, ['conv'], [0, 1, 2, 3]);
  });

  test('Conv1D ("same" strided, "valid" dilated), MaxPooling1D, AveragePooling1D after a reshape: values and CAM maps before', async () => {
    seedsFrom(15_000);
    await assertWrittenAsTfjs(conv1dModel, 5, 7, ['conv'], [0, 1, 2, 3]);
  });

  test('CenterCrop (crops sampled as tfjs\' cropAndResize does): values and CAM maps after', async () => {
    seedsFrom(16_000);
    // Not before: tfjs has no gradient for CropAndResize, so no engine computes a gradient CAM below a CenterCrop.
    await assertWrittenAsTfjs(centerCropModel, 9, 8, ['after_crop_0', 'after_crop_1', 'after_crop_2'], [0, 1, 2, 3]);
  });

  test('a model of any input size is written per size, with "same" pads for each', async () => {
    const input = tfl.input({ shape: [null, null, 3] });
    let x = tfl.layers.conv2d({ filters: 4, kernelSize: 3, strides: 2, padding: 'same', name: 'conv' }).apply(input) as Sym;
    x = tfl.layers.maxPooling2d({ poolSize: 2, strides: 2, padding: 'same', name: 'pool' }).apply(x) as Sym;
    x = tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(x) as Sym;
    const model = tfl.model({ inputs: input, outputs: tfl.layers.dense({ units: 3, name: 'logits' }).apply(x) as Sym });
    randomize(model);
    const keys = new Set<string>();
    for (const [height, width] of [[7, 9], [10, 6]] as const) {
      const trunk = await onnxTrunkOfLayersModel(model, { height, width }, { cache: false });
      assert.deepEqual(trunk.inputSize, { height, width });
      keys.add(trunk.cacheKey);
      await compareWithTfjs(model, trunk, computedLayers(model), randomInput(2, height, width));
    }
    assert.equal(keys.size, 2, 'one cache key per size');
  });

  test('a nested model and a layer called twice: every value, against the executor and predict', async () => {
    const innerInput = tfl.input({ shape: [6, 6, 3] });
    let y = tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'conv' }).apply(innerInput) as Sym;
    y = tfl.layers.batchNormalization({ name: 'bn' }).apply(y) as Sym;
    y = tfl.layers.reLU({ name: 'relu' }).apply(y) as Sym;
    const backbone = tfl.model({ inputs: innerInput, outputs: y, name: 'backbone' });
    const input = tfl.input({ shape: [6, 6, 3] });
    const features = backbone.apply(input) as Sym;
    const shared = tfl.layers.conv2d({ filters: 4, kernelSize: 1, name: 'shared' });
    const once = shared.apply(features) as Sym;
    const twice = shared.apply(once) as Sym;
    const sum = tfl.layers.add({ name: 'sum' }).apply([once, twice]) as Sym;
    const out = tfl.layers.dense({ units: 3, name: 'logits' }).apply(tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(sum) as Sym) as Sym;
    const model = tfl.model({ inputs: input, outputs: out });
    randomize(backbone);
    randomize(model);
    const trunk = await onnxTrunkOfLayersModel(model, { height: 6, width: 6 }, { cache: false });
    const graph = LayerGraph.fromModel(model);
    assert.deepEqual(graph.nodes.map((node) => [node.path, node.outputs.map((key) => trunk.valueOf(key)?.name)]), [
      ['backbone/conv', ['backbone/conv']],
      ['backbone/bn', ['backbone/bn']],
      ['backbone/relu', ['backbone/relu']],
      ['shared', ['shared']],
      ['shared', ['shared_2']],
      ['sum', ['sum']],
      ['gap', ['gap']],
      ['logits', ['logits']],
    ]);
    const keys = graph.nodes.flatMap((node) => node.outputs).filter((key) => trunk.valueOf(key) !== undefined);
    const x = randomInput(2, 6, 6);
    const names = keys.map((key) => trunk.valueOf(key)!.name);
    const fetched = await runOnnx(trunk.withOutputs(names), trunk, x, names);
    const reference = graph.run(new Map([[graph.inputKeys[0]!, x]]), keys, { fuse: false });
    const predicted = model.predict(x) as tf.Tensor;
    try {
      keys.forEach((key, i) => {
        const got = inCamvizLayout(fetched.get(names[i]!)!, trunk.valueOf(key)!.layout);
        const error = relativeError(got, reference.get(key)!, names[i]!);
        got.dispose();
        assert.ok(error <= TOLERANCE, `${names[i]}: relative error ${error.toExponential(2)}`);
      });
      assert.ok(relativeError(fetched.get('logits')!, predicted, 'logits') <= TOLERANCE, 'logits equal predict');
    } finally {
      tf.dispose([...fetched.values(), ...reference.values(), predicted]);
    }
  });

  test('withOutputs adds only new values, and refuses an unknown name', async () => {
    const model = stridedModel(8, 8);
    const trunk = await onnxTrunkOfLayersModel(model, { height: 8, width: 8 }, { cache: false });
    const output = trunk.valueOf(LayerGraph.fromModel(model).outputKeys[0]!)!;
    const base = trunk.withOutputs([]);
    assert.equal(trunk.withOutputs([output.name]), base, 'a graph output is not added again');
    const session = await ort!.InferenceSession.create(trunk.withOutputs(['dw_relu', 'dw_relu', 'conv_relu']));
    assert.deepEqual([...session.outputNames], [output.name, 'dw_relu', 'conv_relu']);
    await session.release();
    assert.throws(() => trunk.withOutputs(['no such value']), /no value named 'no such value'/);
  });
});

describe('the written model takes camviz\'s NHWC input', { skip: ortSkip }, () => {
  test('its graph input is [batch, H, W, C], read by one Transpose [0, 3, 1, 2] alone, which is the input\'s value in camviz\'s graph', async () => {
    const [height, width] = [9, 6];
    const model = stridedModel(height, width);
    const trunk = await onnxTrunkOfLayersModel(model, { height, width }, { cache: false });
    const { graph } = parseOnnxModel(trunk.withOutputs([]), 'strided.onnx');
    assert.deepEqual(graph.inputs.map((input) => [input.name, input.shape]), [['input', ['batch', height, width, 3]]]);
    const first = graph.nodes[0]!;
    assert.equal(first.opType, 'Transpose');
    assert.deepEqual(first.inputs, ['input']);
    assert.deepEqual(first.attributes['perm'], { kind: 'ints', value: [0, 3, 1, 2] });
    assert.deepEqual(graph.nodes.filter((node) => node.inputs.includes('input')), [first], 'the rest of the graph reads the NCHW value');
    const inputKey = LayerGraph.fromModel(model).inputKeys[0]!;
    assert.deepEqual(trunk.valueOf(inputKey), { name: first.outputs[0], layout: 'nchw' });
    // That value, fetched, is the input itself in camviz's layout.
    const x = randomInput(2, height, width);
    const fetched = await runOnnx(trunk.withOutputs([first.outputs[0]!]), trunk, x, [first.outputs[0]!]);
    const back = inCamvizLayout(fetched.get(first.outputs[0]!)!, 'nchw');
    assert.deepEqual(Array.from(back.dataSync()), Array.from(x.dataSync()));
    tf.dispose([x, back, ...fetched.values()]);
  });

  test('through the ONNX Runtime executor: NHWC data fed as it is (forward, forwardHost), equal to tfjs; Score-CAM builds NHWC masks and equals Score-CAM on tfjs', async () => {
    const model = await loadModel('shapes');
    try {
      const network = model.network();
      const executor = await createOrtExecutor(network, await onnxTrunkOfModel(model, { cache: false }));
      const { height, width } = model.meta.inputSize;
      const target = network.graph.findNodes('conv4_relu');
      assert.equal(executor.hostInputLayout(height, width, target), 'same', 'Score-CAM builds its masks in NHWC order');
      const x = randomInput(2, height, width);
      const fromTensor = await executor.forward(x, { layers: target });
      const fromHost = await executor.forwardHost(x.dataSync() as Float32Array, 'same', [2, height, width, 3], { layers: target });
      const tfjs = tfjsValues(model.layersModel!, ['conv4_relu', 'probs'], x);
      try {
        assert.ok(relativeError(fromTensor.probabilities, tfjs.get('probs')!, 'probabilities') <= TOLERANCE);
        assert.ok(relativeError(fromTensor.layers.get(target[0]!.path)!, tfjs.get('conv4_relu')!, 'conv4_relu') <= TOLERANCE);
        assert.deepEqual(Array.from(fromHost.scores.dataSync()), Array.from(fromTensor.scores.dataSync()), 'forwardHost feeds the same data');
      } finally {
        disposeValues(fromTensor);
        disposeValues(fromHost);
        tf.dispose([...tfjs.values()]);
      }
      const maps = async (on: Executor): Promise<tf.Tensor> => {
        const results = await new ScoreCam().compute(on, { input: x, layers: target, classes: { kind: 'explicit', classes: [1, 3] } });
        return tf.tensor(results.flatMap((perImage) => perImage.flatMap((result) => Array.from(result.map.data))));
      };
      const [fromHostMasks, fromTfjs] = [await maps(executor), await maps(network)];
      try {
        assert.ok(relativeError(fromHostMasks, fromTfjs, 'Score-CAM maps') <= TOLERANCE);
      } finally {
        tf.dispose([x, fromHostMasks, fromTfjs]);
      }
    } finally {
      model.dispose();
    }
  });
});

test("the Resize the writer gives UpSampling2D (nearest and bilinear) runs through camviz's own ONNX importer as tfjs computes the layer", () => {
  const input = tfl.input({ shape: [5, 7, 3] });
  const nearest = tfl.layers.upSampling2d({ size: [2, 3], name: 'nearest' }).apply(input) as Sym;
  const bilinear = tfl.layers.upSampling2d({ size: [3, 2], interpolation: 'bilinear', name: 'bilinear' }).apply(input) as Sym;
  const model = tfl.model({ inputs: input, outputs: [nearest, bilinear] });
  const parsed = parseOnnxModel(writeOnnxModel(model, { height: 5, width: 7 }).bytes, 'upsampling.onnx');
  const { graph } = parsed;
  assert.ok(graph.nodes.some((node) => node.opType === 'Resize'));
  const x = randomInput(2, 5, 7);
  const expected = model.predict(x) as tf.Tensor[];
  const outputs = interpretGraph(parsed, new Map([['input', laid(x)]]), graph.outputs.map((output) => output.name));
  graph.outputs.forEach((output, i) => {
    const actual = tf.tidy(() => tf.transpose(toLayout(outputs.get(output.name)!, 'onnx'), [0, 2, 3, 1]));
    assert.deepEqual(actual.shape, expected[i]!.shape);
    assert.ok(maxAbsDifference(actual.dataSync(), expected[i]!.dataSync()) <= 1e-5, output.name);
    actual.dispose();
  });
  tf.dispose([x, ...expected, ...[...outputs.values()].map((value) => value.tensor)]);
  model.dispose();
});

describe('written models pass onnx.checker', { skip: checkerSkip }, () => {
  test('MobileNet v1 with extra outputs', { skip: skipWithoutSharedAssets }, async () => {
    const model = await loadModel(mobilenetDir);
    try {
      const trunk = await onnxTrunkOfModel(model, { cache: false });
      await checkWithOnnx(trunk.withOutputs(['conv_pw_13_relu', 'conv_preds', 'conv_pw_13', 'conv1']), 'mobilenet');
    } finally {
      model.dispose();
    }
  });

  test('the tiny models', async () => {
    await checkWithOnnx((await onnxTrunkOfLayersModel(stridedModel(7, 7), { height: 7, width: 7 }, { cache: false })).withOutputs(['conv_relu', 'conv', 'dw']), 'strided');
    await checkWithOnnx((await onnxTrunkOfLayersModel(branchyModel(11, 11), { height: 11, width: 11 }, { cache: false })).withOutputs(['sum', 'as_2x2', 'sep']), 'branchy');
    await checkWithOnnx((await onnxTrunkOfLayersModel(activationsModel(9, 10), { height: 9, width: 10 }, { cache: false })).withOutputs([]), 'activations');
    for (const [name, build] of [['decoder', decoderModel], ['convnext', convNextModel], ['sequence', sequenceModel], ['conv1d', conv1dModel], ['center-crop', centerCropModel]] as const) {
      await checkWithOnnx((await onnxTrunkOfLayersModel(build(7, 8), { height: 7, width: 8 }, { cache: false })).withOutputs([]), name);
    }
  });
});

describe('what the writer refuses', () => {
  test('an unsupported layer is named, before anything is cached', async () => {
    const input = tfl.input({ shape: [8, 8, 3] });
    const custom = unwritableLayer('custom').apply(input) as Sym;
    const model = tfl.model({ inputs: input, outputs: custom });
    const cache = join(workDir, 'refused-cache');
    await assert.rejects(onnxTrunkOfLayersModel(model, { height: 8, width: 8 }, { cache }), (error: unknown) => {
      assert.ok(error instanceof UnsupportedLayerError);
      assert.equal(error.layerPath, 'custom');
      assert.equal(error.className, UNWRITABLE_CLASS_NAME);
      assert.equal(error.message, `the ONNX writer does not support layer custom (${UNWRITABLE_CLASS_NAME})`);
      return true;
    });
    assert.equal(existsSync(cache), false);
  });

  test('through a loaded model, the error names its file', async () => {
    const folder = join(workDir, 'unsupported-model');
    await mkdir(folder);
    const input = tfl.input({ shape: [8, 8, 3] });
    const model = tfl.model({ inputs: input, outputs: unwritableLayer('custom').apply(input) as Sym });
    await model.save(
      tf.io.withSaveHandler(async (artifacts) => {
        const weightsManifest = [{ paths: ['weights.bin'], weights: artifacts.weightSpecs }];
        await writeFile(join(folder, 'model.json'), JSON.stringify({ format: 'layers-model', modelTopology: artifacts.modelTopology, weightsManifest }));
        await writeFile(join(folder, 'weights.bin'), new Uint8Array(artifacts.weightData as ArrayBuffer));
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    const loaded = await loadModel(folder);
    try {
      await assert.rejects(onnxTrunkOfModel(loaded, { cache: false }), (error: unknown) => {
        assert.ok(error instanceof UnsupportedLayerError);
        assert.equal(error.file, loaded.meta.modelJsonPath);
        assert.equal(error.describe(), `the ONNX writer does not support layer custom (${UNWRITABLE_CLASS_NAME}) (${loaded.meta.modelJsonPath})`);
        return true;
      });
    } finally {
      loaded.dispose();
    }
  });


  test('a size other than a fixed model input', async () => {
    await assert.rejects(onnxTrunkOfLayersModel(stridedModel(8, 8), { height: 9, width: 8 }, { cache: false }), (error: unknown) => {
      assert.ok(error instanceof OnnxWriteError, 'the engine falls back on OnnxWriteError');
      assert.match(error.message, /the model's input is 8x8 \(HxW\), not 9x8/);
      return true;
    });
  });
});

describe('the cache of written models', { skip: ortSkip }, () => {
  const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

  test('the second call reads the file; a damaged entry is written again (when its bytes are read; a cut-off one at once)', async () => {
    const cache = join(workDir, 'cache');
    const model = stridedModel(7, 7);
    const size = { height: 7, width: 7 };
    const tensorsBefore = tf.memory().numTensors;
    const first = await onnxTrunkOfLayersModel(model, size, { cache });
    assert.equal(first.origin, 'written');
    assert.equal(tf.memory().numTensors, tensorsBefore, 'writing leaves no tensor behind');
    const onnxPath = join(cache, `${first.cacheKey}.onnx`);
    assert.deepEqual((await readdir(cache)).sort(), [`${first.cacheKey}.json`, `${first.cacheKey}.onnx`]);
    assert.ok(Buffer.from(first.withOutputs([])).equals(await readFile(onnxPath)), 'the cached file is the written model');

    const second = await onnxTrunkOfLayersModel(model, size, { cache });
    assert.equal(second.origin, 'cache');
    assert.ok(Buffer.from(second.withOutputs(['dw_relu'])).equals(first.withOutputs(['dw_relu'])), 'the same model from the cache');

    const sound = await readFile(onnxPath);
    const damaged = Buffer.from(sound);
    damaged[damaged.length >> 1]! ^= 0x40;
    await writeFile(onnxPath, damaged);
    const messages: string[] = [];
    // The bytes are read, and checked, only when they are needed.
    const third = await onnxTrunkOfLayersModel(model, size, { cache, log: (message) => messages.push(message) });
    assert.equal(third.origin, 'cache');
    assert.equal(messages.length, 0);
    assert.ok(Buffer.from(third.withOutputs([])).equals(sound), 'the damaged bytes are never used: the model is written again');
    assert.match(messages.join('\n'), /damaged \(its sha256 does not match its record\)/);
    assert.ok(!existsSync(join(cache, `${first.cacheKey}.json`)), 'the record of the damaged entry is removed');
    assert.equal((await onnxTrunkOfLayersModel(model, size, { cache })).origin, 'written');
    assert.equal(sha256(await readFile(onnxPath)), sha256(first.withOutputs([])), 'the entry is whole again');
    assert.equal((await onnxTrunkOfLayersModel(model, size, { cache })).origin, 'cache');

    // A cut-off file is found at once, by its size.
    await writeFile(onnxPath, sound.subarray(0, sound.length - 100));
    const cut = await onnxTrunkOfLayersModel(model, size, { cache, log: (message) => messages.push(message) });
    assert.equal(cut.origin, 'written');
    assert.match(messages.at(-1)!, /damaged \(\d+ bytes, not the \d+ of its record\)/);
    assert.equal(sha256(await readFile(onnxPath)), sha256(first.withOutputs([])), 'the entry is whole again');

    // A record of an earlier version (no size) has its bytes checked at once, then gains the size.
    const oldRecordPath = join(cache, `${first.cacheKey}.json`);
    const { size: _size, ...oldRecord } = JSON.parse(await readFile(oldRecordPath, 'utf8')) as { size?: number };
    await writeFile(oldRecordPath, JSON.stringify(oldRecord));
    await writeFile(onnxPath, damaged);
    const checkedAtOnce = await onnxTrunkOfLayersModel(model, size, { cache, log: (message) => messages.push(message) });
    assert.equal(checkedAtOnce.origin, 'written');
    assert.match(messages.at(-1)!, /damaged \(its sha256 does not match its record\)/);
    await writeFile(oldRecordPath, JSON.stringify(oldRecord));
    assert.equal((await onnxTrunkOfLayersModel(model, size, { cache })).origin, 'cache');
    assert.equal((JSON.parse(await readFile(oldRecordPath, 'utf8')) as { size?: number }).size, sound.length);

    const recordPath = join(cache, `${first.cacheKey}.json`);
    const record = JSON.parse(await readFile(recordPath, 'utf8')) as { table: { nodes: { outputs: unknown[] }[] } };
    record.table.nodes[2]!.outputs = [{ name: 7 }];
    await writeFile(recordPath, JSON.stringify(record));
    const edited = await onnxTrunkOfLayersModel(model, size, { cache, log: (message) => messages.push(message) });
    assert.equal(edited.origin, 'written');
    assert.match(messages.at(-1)!, /its record is not of this writer/);

    await writeFile(recordPath, '{"writerVersion": 2, "sha2');
    const fourth = await onnxTrunkOfLayersModel(model, size, { cache, log: (message) => messages.push(message) });
    assert.equal(fourth.origin, 'written');
    assert.match(messages.at(-1)!, /its record is not JSON/);
    assert.equal((await onnxTrunkOfLayersModel(model, size, { cache })).origin, 'cache');
  });

  test('a record or model replaced by a link to an endless device is not read: the entry is written again', { skip: existsSync('/dev/zero') ? false : 'no /dev/zero here', timeout: 60_000 }, async () => {
    const cache = join(workDir, 'cache-device');
    const model = stridedModel(7, 7);
    const size = { height: 7, width: 7 };
    const first = await onnxTrunkOfLayersModel(model, size, { cache });
    const sound = Buffer.from(first.withOutputs([]));
    const recordPath = join(cache, `${first.cacheKey}.json`);
    const onnxPath = join(cache, `${first.cacheKey}.onnx`);
    const { size: _size, ...recordWithoutSize } = JSON.parse(await readFile(recordPath, 'utf8')) as { size?: number };
    const messages: string[] = [];
    for (const [replaced, setUp] of [
      ['the record', async () => {
        await rm(recordPath);
        await symlink('/dev/zero', recordPath);
      }],
      // A record without the size (an earlier writer's) reads the model's bytes at once.
      ['the model, its record without a size', async () => {
        await writeFile(recordPath, JSON.stringify(recordWithoutSize));
        await rm(onnxPath);
        await symlink('/dev/zero', onnxPath);
      }],
    ] as const) {
      await setUp();
      const again = await onnxTrunkOfLayersModel(model, size, { cache, log: (message) => messages.push(message) });
      assert.equal(again.origin, 'written', replaced);
      assert.ok(Buffer.from(again.withOutputs([])).equals(sound), `${replaced}: the same model`);
      assert.ok(Buffer.from(await readFile(onnxPath)).equals(sound), `${replaced}: the entry is whole again`);
      assert.equal((await onnxTrunkOfLayersModel(model, size, { cache })).origin, 'cache', `${replaced}: then read from the cache`);
    }
    assert.match(messages.join('\n'), /damaged \(unreadable: EINVAL\)/);
  });

  test('an entry of the writer before the NHWC input (version 2, no input in its record) is written again, never fed NHWC data', async () => {
    const cache = join(workDir, 'cache-version-2');
    const model = stridedModel(8, 8);
    const size = { height: 8, width: 8 };
    const current = await onnxTrunkOfLayersModel(model, size, { cache });
    const recordPath = join(cache, `${current.cacheKey}.json`);
    type CachedRecord = { writerVersion: number; table: { input?: unknown } };
    const readRecord = async (): Promise<CachedRecord> => JSON.parse(await readFile(recordPath, 'utf8')) as CachedRecord;
    const record = await readRecord();
    assert.equal(record.writerVersion, 3);
    assert.deepEqual(record.table.input, { fed: { name: 'input', layout: 'same' }, read: { name: 'input/nchw', layout: 'nchw' } });
    const { input: _input, ...tableOfVersion2 } = record.table;
    const messages: string[] = [];
    const log = (message: string): void => {
      messages.push(message);
    };
    // The record as version 2 wrote it; then one that claims this version but does not say the input's layout (never assumed).
    for (const old of [{ ...record, writerVersion: 2, table: tableOfVersion2 }, { ...record, table: tableOfVersion2 }]) {
      await writeFile(recordPath, JSON.stringify(old));
      const again = await onnxTrunkOfLayersModel(model, size, { cache, log });
      assert.equal(again.origin, 'written');
      assert.match(messages.at(-1)!, /its record is not of this writer/);
      assert.deepEqual(await readRecord(), record, 'the entry is written anew');
    }
    const cached = await onnxTrunkOfLayersModel(model, size, { cache });
    assert.equal(cached.origin, 'cache');
    await compareWithTfjs(model, cached, computedLayers(model), randomInput(2, 8, 8));
  });

  test('the key follows the weights and the size, not the load; a cached entry serves a new load', async () => {
    const cache = join(workDir, 'cache-loads');
    const a = await loadModel('shapes');
    const b = await loadModel('shapes');
    try {
      const trunkA = await onnxTrunkOfModel(a, { cache });
      const trunkB = await onnxTrunkOfModel(b, { cache });
      assert.equal(trunkB.cacheKey, trunkA.cacheKey);
      assert.equal(trunkB.origin, 'cache');
      // The cached value table maps the second load's own tensor keys.
      const { height, width } = b.meta.inputSize;
      const layersB = b.layersModel!;
      const graphB = LayerGraph.fromModel(layersB);
      const present = computedLayers(layersB).filter((name) => trunkB.valueOf(keyOfLayer(graphB, name)) !== undefined);
      await compareWithTfjs(layersB, trunkB, present, randomInput(1, height, width));

      const layer = layersB.layers.find((candidate) => candidate.getClassName() === 'Dense')!;
      const [kernel, bias] = layer.getWeights();
      layer.setWeights([tf.add(kernel!, 1e-3), bias!]);
      const changed = await onnxTrunkOfModel(b, { cache });
      assert.notEqual(changed.cacheKey, trunkA.cacheKey);
      assert.equal(changed.origin, 'written');
    } finally {
      a.dispose();
      b.dispose();
    }
    const model = stridedModel(8, 8);
    const at8 = await onnxTrunkOfLayersModel(model, { height: 8, width: 8 }, { cache: false });
    assert.match(at8.cacheKey, /^[0-9a-f]{64}-8x8$/);
  });

  test('a TF.js graph model\'s key follows its weights (its layers have no weights of their own)', { skip: skipWithoutSharedAssets }, async () => {
    const layers = await loadModel(mobilenetDir);
    const { nodes, weights } = layersAsGraph(layers.layersModel!);
    layers.dispose();
    const keyOf = async (name: string, graphWeights: typeof weights): Promise<string> => {
      const folder = join(workDir, name);
      await mkdir(folder);
      const model = await loadModel(await writeGraphModel(folder, nodes, graphWeights));
      try {
        return (await onnxTrunkOfModel(model, { cache: false })).cacheKey;
      } finally {
        model.dispose();
      }
    };
    const changed = weights.map((weight) => (weight.name.endsWith('conv_preds/biases') ? { ...weight, data: Float32Array.from(weight.data, (value) => value + 1) } : weight));
    assert.ok(changed.some((weight, i) => weight !== weights[i]), 'a weight was changed');
    assert.notEqual(await keyOf('graph-a', weights), await keyOf('graph-b', changed));
  });
});
