/**
 * Parity of ONNX models with PyTorch (../shared/assets/onnx, see its
 * README): top classes and logits, the raw Grad-CAM, Grad-CAM++, LayerCAM
 * and Eigen-CAM maps at the default layer (Score-CAM for SqueezeNet), and a
 * feature map, against the references computed in PyTorch; and the
 * MobileNet v1 export against the TF.js layers model of the same weights.
 *
 * On wasm every model and both images; on cpu (the pure-JS backend is slow)
 * SqueezeNet (the smallest model: Grad-CAM, LayerCAM, fmap, both images)
 * and MobileNet v1 (real weights: Grad-CAM and its fmap on both_224).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { type BackendKind, useBackend } from '../src/engine/backend.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { type LoadedImage, loadImage } from '../src/image/image.js';
import { explain } from '../src/explain.js';
import { inputTensor } from '../src/model/predict.js';
import { camTargets } from '../src/cam/request.js';
import { resolveLayer } from '../src/executor/layers.js';
import { registerForwardHook, registerForwardPreHook, registerFullBackwardHook, registerGradientHook } from '../src/hooks/index.js';
import { asset, mobilenetDir, skipWithoutSharedAssets } from './helpers/assets.js';
import { cliEnv, runCli } from './helpers/cli.js';
import { maxAbsDifference } from './helpers/numeric.js';
import { readNpy } from './helpers/npy.js';
import { readManifest } from './helpers/files.js';

const onnxDir = asset('onnx');
const referenceDir = join(onnxDir, 'reference');
const skip: string | false = existsSync(join(referenceDir, 'index.json')) ? false : `the shared ONNX assets are absent (${onnxDir})`;

interface IndexEntry {
  file: string;
  kind: 'cam' | 'fmap';
  model: string;
  image: string;
  layer: string;
  class: number | null;
  method: string;
  shape?: number[];
}
interface ReferenceIndex {
  entries: IndexEntry[];
  top1: Record<string, Record<string, number>>;
}
interface CamReference {
  class: number;
  method: string;
  layer: string;
  score: number;
  logits_top5: { class: number; logit: number }[];
  cam_raw: number[][];
  cam_max: number;
}

const index: ReferenceIndex = skip ? { entries: [], top1: {} } : (JSON.parse(readFileSync(join(referenceDir, 'index.json'), 'utf8')) as ReferenceIndex);
const readReference = (file: string): CamReference => JSON.parse(readFileSync(join(referenceDir, file), 'utf8')) as CamReference;

const MODELS = ['mobilenet_v1_0.75_224', 'resnet18', 'mobilenet_v2', 'efficientnet_b0', 'squeezenet1_1'] as const;
const IMAGES = ['both_224', 'dog_cat_224'] as const;
const MAP_METHODS = ['gradcam', 'gradcampp', 'layercam', 'eigencam'] as const;
/** The sidecar of mobilenet_v1 says x = pixel / 127.5 - 1: camviz's 'tf'; the others are torchvision's (camviz's ONNX default). */
const PREPROCESS: Record<string, string | undefined> = { 'mobilenet_v1_0.75_224': 'tf' };

const onnxPath = (model: string): string => join(onnxDir, `${model}.onnx`);
const imageFile = (image: string): string => join(onnxDir, 'images', `${image}.png`);

/** On tfjs: these suites check the importer on the tfjs backends (test/ort-executor.test.ts checks ONNX Runtime against the same references). */
async function openModel(name: string): Promise<CamvizModel> {
  const preprocess = PREPROCESS[name];
  return loadModel(onnxPath(name), { engine: 'tfjs', ...(preprocess === undefined ? {} : { preprocess }) });
}

/** The logits of one image, [classes]. */
async function logitsOf(model: CamvizModel, image: LoadedImage): Promise<Float32Array> {
  const input = inputTensor(model, [image.input]);
  const values = await model.network().forward(input);
  const scores = values.scores.dataSync() as Float32Array;
  tf.dispose([input, values.output, values.scores, values.probabilities, ...values.layers.values()]);
  return scores;
}

function topClasses(scores: Float32Array, count: number): number[] {
  return [...scores.keys()].sort((a, b) => scores[b]! - scores[a]!).slice(0, count);
}

/** The raw map's largest difference from the reference, relative to the reference map's maximum. */
function mapDifference(map: { width: number; height: number; data: Float32Array }, reference: CamReference): number {
  const expected = reference.cam_raw.flat();
  assert.equal(map.height, reference.cam_raw.length);
  assert.equal(map.width, reference.cam_raw[0]!.length);
  // The one all-zero reference map (efficientnet_b0, both_224, class 281) is compared against the largest other map's scale.
  return maxAbsDifference(map.data, expected) / Math.max(reference.cam_max, 1e-3);
}

function modelParity(backend: BackendKind, models: readonly string[], methods: readonly string[], images: readonly string[] = IMAGES): void {
  for (const name of models) {
    describe(`${name} on ${backend}`, { skip }, () => {
      let model: CamvizModel;
      const loaded = new Map<string, LoadedImage>();
      before(async () => {
        await useBackend(backend);
        model = await openModel(name);
        for (const image of IMAGES) loaded.set(image, await loadImage(imageFile(image), { size: model.meta.inputSize }));
      });
      after(() => model?.dispose());

      test('the default layer is the reference default layer', () => {
        const entry = index.entries.find((candidate) => candidate.model === name && candidate.kind === 'cam')!;
        assert.equal(model.meta.targetLayer, entry.layer);
        assert.equal(model.meta.format, 'onnx');
      });

      for (const image of images) {
        test(`${image}: top-1 and the top-5 logits as PyTorch computes them`, async () => {
          const scores = await logitsOf(model, loaded.get(image)!);
          const top1 = index.top1[name]![image]!;
          assert.equal(topClasses(scores, 1)[0], top1);
          const reference = readReference(index.entries.find((entry) => entry.model === name && entry.image === image && entry.class === top1 && entry.method === 'gradcam')!.file);
          const scale = Math.max(1, ...reference.logits_top5.map((entry) => Math.abs(entry.logit)));
          assert.deepEqual(topClasses(scores, 5), reference.logits_top5.map((entry) => entry.class));
          for (const { class: index, logit } of reference.logits_top5) {
            assert.ok(Math.abs(scores[index]! - logit) <= 1e-4 * scale, `class ${index}: logit ${scores[index]} vs ${logit}`);
          }
        });

        for (const method of methods) {
          const entries = index.entries.filter((entry) => entry.model === name && entry.image === image && entry.method === method);
          if (entries.length === 0) continue;
          test(`${image}: ${method} raw maps of classes ${entries.map((entry) => entry.class).join(', ')} within 1e-4 of the map's maximum`, async () => {
            const references = entries.map((entry) => readReference(entry.file));
            const [explanations] = await explain(model, [loaded.get(image)!], { method, classes: references.map((reference) => reference.class) });
            references.forEach((reference, i) => {
              const explanation = explanations![i]!;
              assert.equal(explanation.classIndex, reference.class);
              const difference = mapDifference(explanation.map!, reference);
              assert.ok(difference <= 1e-4, `class ${reference.class}: ${difference.toExponential(2)} of the maximum`);
            });
          });
        }
      }

      const fmap = index.entries.find((entry) => entry.model === name && entry.kind === 'fmap');
      if (fmap !== undefined) {
        test(`feature map of ${fmap.layer} on ${fmap.image} ([1, H, W, C]) within 1e-4`, async () => {
          const reference = readNpy(join(referenceDir, fmap.file));
          const [node] = camTargets(model, [fmap.layer]);
          const input = inputTensor(model, [loaded.get(fmap.image)!.input]);
          const values = await model.network().forward(input, { layers: [node!] });
          const activation = values.layers.get(node!.path)!;
          assert.deepEqual(activation.shape, reference.shape);
          const difference = maxAbsDifference(activation.dataSync(), reference.data);
          tf.dispose([input, values.output, values.scores, values.probabilities, ...values.layers.values()]);
          assert.ok(difference <= 1e-4, `max abs difference ${difference}`);
        });
      }
    });
  }
}

modelParity('wasm', MODELS, [...MAP_METHODS, 'scorecam']);
modelParity('cpu', ['squeezenet1_1'], ['gradcam', 'layercam']);
modelParity('cpu', ['mobilenet_v1_0.75_224'], ['gradcam'], ['both_224']);

describe('MobileNet v1: the ONNX export and the TF.js layers model of the same weights on wasm', { skip: skip || skipWithoutSharedAssets }, () => {
  let onnx: CamvizModel;
  let layers: CamvizModel;
  before(async () => {
    await useBackend('wasm');
    onnx = await openModel('mobilenet_v1_0.75_224');
    layers = await loadModel(mobilenetDir, { engine: 'tfjs' });
  });
  after(() => {
    onnx?.dispose();
    layers?.dispose();
  });

  for (const name of IMAGES) {
    test(`${name}: the same logits, top-5 and Grad-CAM / LayerCAM maps at conv_pw_13_relu (1e-4)`, async () => {
      const image = await loadImage(imageFile(name), { size: onnx.meta.inputSize });
      const onnxScores = await logitsOf(onnx, image);
      const layersScores = await logitsOf(layers, image);
      const scale = Math.max(...layersScores.map(Math.abs));
      assert.ok(maxAbsDifference(onnxScores, layersScores) <= 1e-4 * scale, `logits differ by ${maxAbsDifference(onnxScores, layersScores)}`);
      assert.deepEqual(topClasses(onnxScores, 5), topClasses(layersScores, 5));
      assert.equal(layers.meta.targetLayer, onnx.meta.targetLayer);
      for (const method of ['gradcam', 'layercam']) {
        const classes = [topClasses(layersScores, 1)[0]!, 281];
        const [fromOnnx] = await explain(onnx, [image], { method, classes });
        const [fromLayers] = await explain(layers, [image], { method, classes });
        fromLayers!.forEach((expected, i) => {
          const actual = fromOnnx![i]!.map!;
          const peak = Math.max(...expected.map!.data);
          assert.ok(maxAbsDifference(actual.data, expected.map!.data) <= 1e-4 * peak, `${method} class ${expected.classIndex}`);
        });
      }
    });
  }
});

describe('the CLI on an ONNX model', { skip }, () => {
  let folder: string;
  before(async () => {
    folder = await mkdtemp(join(tmpdir(), 'camviz-onnx-cli-'));
  });
  after(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  test('camviz gradcam --model resnet18.onnx --layer layer4 --raw writes the PyTorch raw map', async () => {
    const out = join(folder, 'gradcam');
    const run = await runCli(['gradcam', imageFile('both_224'), '--model', onnxPath('resnet18'), '--layer', 'layer4', '--class', '281', '--raw', '--json', '-o', out], {
      cwd: folder,
      env: cliEnv(join(folder, 'cache')),
      timeoutMs: 300_000,
    });
    assert.equal(run.code, 0, run.stderr);
    const [record] = JSON.parse(run.stdout) as { npy: string; class: { index: number } }[];
    assert.equal(record!.class.index, 281);
    const reference = readReference('resnet18__both_224__layer4__c281__gradcam.json');
    const npy = readNpy(record!.npy);
    assert.deepEqual(npy.shape, [7, 7]);
    assert.ok(maxAbsDifference(npy.data, reference.cam_raw.flat()) <= 1e-4 * reference.cam_max);
    // The manifest names the model by the .onnx file's sha256 (the sidecar's).
    const sidecar = JSON.parse(readFileSync(join(onnxDir, 'resnet18.json'), 'utf8')) as { sha256: string };
    const manifest = await readManifest(out);
    assert.equal(manifest.model.sha256, sidecar.sha256);
    assert.equal(manifest.model.name, 'resnet18');
  });

  test('camviz layers --model squeezenet1_1.onnx lists ONNX nodes, modules and NCHW shapes, and marks features as the default target', async () => {
    const run = await runCli(['layers', '--model', onnxPath('squeezenet1_1'), '--json'], { cwd: folder, env: cliEnv(join(folder, 'cache')), timeoutMs: 300_000 });
    assert.equal(run.code, 0, run.stderr);
    const rows = JSON.parse(run.stdout) as { name: string; module?: string; outputShape: (number | null)[]; default: boolean }[];
    const target = rows.find((row) => row.default);
    assert.equal(target?.name, '/features/features.12/Concat');
    assert.equal(target?.module, 'features');
    assert.deepEqual(target?.outputShape, [null, 512, 13, 13]);
  });
});

describe('every other method and the hooks on the ResNet-18 export on wasm', { skip }, () => {
  let model: CamvizModel;
  let image: LoadedImage;
  before(async () => {
    await useBackend('wasm');
    model = await openModel('resnet18');
    image = await loadImage(imageFile('both_224'), { size: model.meta.inputSize });
  });
  after(() => model?.dispose());

  const mapOf = async (method: string, extra: Record<string, boolean> = {}): Promise<Float32Array> => (await explain(model, [image], { method, classes: [281], ...extra }))[0]![0]!.map!.data;

  test('HiResCAM and XGrad-CAM equal Grad-CAM and CAM is 49 times it (global average pooling of 7x7 then one linear layer); guided Grad-CAM keeps the Grad-CAM map', async () => {
    const gradcam = await mapOf('gradcam');
    const peak = Math.max(...gradcam);
    assert.ok(peak > 0);
    assert.ok(maxAbsDifference(await mapOf('hirescam'), gradcam) <= 1e-4 * peak);
    assert.ok(maxAbsDifference(await mapOf('xgradcam'), gradcam) <= 1e-4 * peak);
    assert.ok(maxAbsDifference((await mapOf('cam')).map((value) => value / 49), gradcam) <= 1e-4 * peak);
    assert.ok(maxAbsDifference(await mapOf('guidedgradcam'), gradcam) <= 1e-4 * peak);
  });

  test('guided backpropagation gates the ReLUs (class ReLU) and gives an input gradient; aug-smooth and eigen-smooth give 7x7 maps', async () => {
    assert.equal(model.network().graph.nodes.filter((node) => node.layer.getClassName() === 'ReLU').length, 17);
    const guided = (await explain(model, [image], { method: 'guidedbackprop', classes: [281] }))[0]![0]!;
    const gradient = guided.gradient!.data;
    assert.equal(gradient.length, 224 * 224 * 3);
    assert.ok(gradient.filter((value) => value !== 0).length > gradient.length / 2);
    for (const extra of [{ augSmooth: true }, { eigenSmooth: true }] as Record<string, boolean>[]) {
      const map = await mapOf('gradcam', extra);
      assert.equal(map.length, 49);
      assert.ok(map.every(Number.isFinite) && Math.max(...map) > 0);
    }
  });

  test('forward, pre-forward, gradient and full backward hooks fire on ONNX nodes named by their module paths', async () => {
    const network = model.network();
    const [node] = camTargets(model, ['layer4']);
    const fc = resolveLayer(network, 'fc', () => true, 'a layer');
    const seen: string[] = [];
    const handles = [
      registerForwardPreHook(node!.layer, (_layer, inputs) => void seen.push(`pre ${inputs[0]!.shape.join('x')}`)),
      registerForwardHook(node!.layer, (_layer, _inputs, output) => void seen.push(`forward ${(output as tf.Tensor).shape.join('x')}`)),
      registerGradientHook(node!.layer, (gradient) => void seen.push(`gradient ${gradient.shape.join('x')}`)),
      registerFullBackwardHook(fc.layer, (_layer, gradInputs, gradOutputs) => void seen.push(`backward ${gradInputs[0]?.shape.join('x')} <- ${gradOutputs[0]?.shape.join('x')}`)),
    ];
    const input = inputTensor(model, [image.input]);
    try {
      const result = await network.backward(input, [(values) => tf.sum(tf.slice(values.scores, [0, 281], [1, 1])) as tf.Scalar], { sources: [node!] });
      tf.dispose([result.values.output, result.values.scores, result.values.probabilities, ...result.values.layers.values(), ...result.gradients.flat()]);
    } finally {
      input.dispose();
      for (const handle of handles) handle.remove();
    }
    // The input of layer4's last ReLU is the residual sum, NHWC like every feature map.
    assert.deepEqual(seen.sort(), ['backward 1x512 <- 1x1000', 'forward 1x7x7x512', 'gradient 1x7x7x512', 'pre 1x7x7x512']);
  });
});

describe('CAM on the MobileNet v1 export, whose head is pooling, a Reshape computed from Shape, a Transpose of size-1 axes and a 1x1 Conv', { skip }, () => {
  test('CAM is 49 times Grad-CAM (the Transpose only relabels axes of a pooled vector)', async () => {
    await useBackend('wasm');
    const model = await openModel('mobilenet_v1_0.75_224');
    try {
      const image = await loadImage(imageFile('both_224'), { size: model.meta.inputSize });
      const mapOf = async (method: string): Promise<Float32Array> => (await explain(model, [image], { method, classes: [243] }))[0]![0]!.map!.data;
      const gradcam = await mapOf('gradcam');
      const peak = Math.max(...gradcam);
      assert.ok(peak > 0);
      assert.ok(maxAbsDifference((await mapOf('cam')).map((value) => value / 49), gradcam) <= 1e-4 * peak);
    } finally {
      model.dispose();
    }
  });
});
