/**
 * The library as a user imports it (the package entry), on the embedded
 * model and its fixtures: the README's examples, checked against the
 * generator's ground truth and against a Grad-CAM computed by hand from
 * what public hooks capture.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import {
  ActivationCamMethod,
  type CamvizModel,
  GradCam,
  GradientCamMethod,
  type GradientEvidence,
  backward,
  camTargets,
  classRequest,
  disposeValues,
  encodePng,
  explain,
  FunctionTarget,
  ProbTarget,
  loadImage,
  loadModel,
  registerForwardHook,
  registerGradientHook,
  inputTensor,
  spatialMean,
  toInputTensor,
  useBackend,
  withHooks,
} from '../src/index.js';
import { repoRoot } from './helpers/assets.js';

interface Truth {
  images: { file: string; width: number; height: number; shapes: { classIndex: number; label: string; box: { x: number; y: number; width: number; height: number } }[] }[];
}

const fixtures = join(repoRoot, 'fixtures', 'shapes');
let model: CamvizModel;
let truth: Truth;

before(async () => {
  await useBackend('wasm');
  model = await loadModel('shapes');
  truth = JSON.parse(await readFile(join(fixtures, 'truth.json'), 'utf8')) as Truth;
});

test('explain() by class name points at that shape on every two-shape fixture, and the picture encodes', async () => {
  const pairs = truth.images.filter((image) => image.shapes.length === 2);
  assert.ok(pairs.length >= 3);
  for (const entry of pairs) {
    const image = await loadImage(join(fixtures, entry.file), { size: model.meta.inputSize });
    const [explanations] = await explain(model, [image], { classes: entry.shapes.map((shape) => shape.label) });
    for (const [i, shape] of entry.shapes.entries()) {
      const { picture, classIndex } = explanations![i]!;
      assert.equal(classIndex, shape.classIndex);
      const { x, y } = picture.peak;
      const { box } = shape;
      assert.ok(x >= box.x && x < box.x + box.width && y >= box.y && y < box.y + box.height, `${entry.file} ${shape.label}: peak (${x}, ${y}) outside ${JSON.stringify(box)}`);
    }
    const png = await encodePng(explanations![0]!.picture.rgb, entry.width, entry.height);
    const decoded = await sharp(png).metadata();
    assert.deepEqual([decoded.width, decoded.height], [entry.width, entry.height]);
  }
});

test('explain() takes a target: a function restating the class logit gives the default map; the probability target gives --score prob\'s', async () => {
  const entry = truth.images.find((image) => image.shapes.length === 2)!;
  const image = await loadImage(join(fixtures, entry.file), { size: model.meta.inputSize });
  const classIndex = entry.shapes[0]!.classIndex;
  const mapOf = async (options: Parameters<typeof explain>[2]): Promise<Float32Array> => (await explain(model, [image], { classes: [classIndex], ...options }))[0]![0]!.map!.data;
  const logit = new FunctionTarget((values, row) => tf.reshape(tf.slice(values.scores, [row, classIndex], [1, 1]), []) as tf.Scalar);
  const byDefault = await mapOf({});
  const byFunction = await mapOf({ target: logit });
  assert.ok(byDefault.some((value) => value > 0), 'a non-blank map');
  assert.ok(Math.max(...byDefault.map((value, i) => Math.abs(value - byFunction[i]!))) <= 1e-5 * Math.max(...byDefault), 'function target vs default');
  const byProb = await mapOf({ target: new ProbTarget() });
  const byScore = await mapOf({ score: 'prob' });
  assert.deepEqual(Array.from(byProb), Array.from(byScore));
  assert.ok(Math.max(...byProb.map((value, i) => Math.abs(value - byDefault[i]!))) > 0, 'the probability target differs from the logit');
});

test('explain() with topK above the class count explains every class once, most probable first', async () => {
  const image = await loadImage(join(fixtures, 'star.png'), { size: model.meta.inputSize });
  const [explanations] = await explain(model, [image], { topK: 9 });
  const classes = explanations!.map((explanation) => explanation.classIndex);
  assert.deepEqual([...classes].sort(), [0, 1, 2, 3, 4]);
  const probabilities = explanations!.map((explanation) => explanation.probability ?? Number.NaN);
  assert.ok(probabilities.every(Number.isFinite), 'a class has its probability');
  assert.deepEqual(probabilities, [...probabilities].sort((a, b) => b - a));
});

test('classRequest: a whole label with commas is one class; other specs split on commas; repeats once', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'camviz-library-labels-'));
  try {
    const labels = join(dir, 'labels.json');
    await writeFile(labels, JSON.stringify(['circle, round', 'square', 'triangle', 'star', 'cross, plus']));
    const labelled = await loadModel('shapes', { labels });
    try {
      assert.deepEqual(classRequest(labelled, ['circle, round', 'cross,square', 'square', 1]), { kind: 'explicit', classes: [0, 4, 1] });
    } finally {
      labelled.dispose();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the README hooks example captures A and dY/dA, and Grad-CAM from them equals explain()', async () => {
  const image = await loadImage(join(fixtures, 'circle-star.png'), { size: model.meta.inputSize });
  const star = 3;
  const layersModel = model.layersModel!;
  const layer = layersModel.getLayer(model.meta.targetLayer!);
  const objective = (values: { scores: tf.Tensor2D }): tf.Scalar => tf.sum(tf.gather(values.scores, star, 1));
  // A first pass caches the folded Conv/BatchNorm weights tfjs' fast path keeps (hooks run on tfjs).
  const warmInput = toInputTensor([image.input], model.meta.inputSize.height, model.meta.inputSize.width, model.meta.preprocess);
  const warm = await backward(layersModel, warmInput, objective, { to: [layer] });
  tf.dispose([warmInput, ...warm.gradients.flat()]);
  disposeValues(warm.values);
  const before = tf.memory().numTensors;
  const x = toInputTensor([image.input], model.meta.inputSize.height, model.meta.inputSize.width, model.meta.preprocess);
  let activation: tf.Tensor | undefined;
  let gradient: tf.Tensor | undefined;
  await withHooks(
    [
      {
        layer,
        forward: (_layer, _inputs, output) => {
          activation = tf.keep((output as tf.Tensor).clone());
        },
        gradient: (grad) => {
          gradient = tf.keep(grad.clone());
        },
      },
    ],
    async () => {
      const result = await backward(layersModel, x, (values) => tf.sum(tf.gather(values.scores, star, 1)), { to: [layer] });
      tf.dispose(result.gradients.flat());
      disposeValues(result.values);
    },
  );
  // Grad-CAM by hand: channel means of the gradient weigh the activation.
  const [, h, w, c] = activation!.shape as [number, number, number, number];
  const a = activation!.dataSync();
  const g = gradient!.dataSync();
  const weights = new Float64Array(c);
  for (let p = 0; p < h * w; p++) for (let k = 0; k < c; k++) weights[k]! += g[p * c + k]! / (h * w);
  const byHand = Array.from({ length: h * w }, (_, p) => {
    let sum = 0;
    for (let k = 0; k < c; k++) sum += weights[k]! * a[p * c + k]!;
    return Math.max(0, sum);
  });
  tf.dispose([x, activation!, gradient!]);
  assert.equal(tf.memory().numTensors, before, 'the example leaves no tensor behind');
  const fromExplain = (await explain(model, [image], { classes: [star] }))[0]?.[0];
  assert.ok(fromExplain?.map !== undefined, 'explain gives the star\'s map');
  const map = Array.from(fromExplain.map.data);
  const scale = Math.max(...byHand);
  assert.ok(scale > 0);
  map.forEach((value, i) => assert.ok(Math.abs(value - byHand[i]!) <= 1e-5 * scale, `cell ${i}: ${value} vs ${byHand[i]}`));
  // The hooks were removed.
  assert.ok(!Object.prototype.hasOwnProperty.call(layer, 'call'));
  const handle = registerForwardHook(layer, () => undefined);
  const gradientHandle = registerGradientHook(layer, () => undefined);
  handle.remove();
  gradientHandle.remove();
  assert.ok(!Object.prototype.hasOwnProperty.call(layer, 'call'));
});

test('a CAM method written as in the README (GradientCamMethod) gives explain()\'s Grad-CAM map', async () => {
  class MyGradCam extends GradientCamMethod {
    readonly name = 'mygradcam';
    protected override channelWeights({ gradients }: GradientEvidence): tf.Tensor2D {
      return spatialMean(gradients);
    }
  }
  const image = await loadImage(join(fixtures, 'circle-star.png'), { size: model.meta.inputSize });
  const star = 3;
  const input = inputTensor(model, [image.input]);
  // explain() runs on the model's engine: so does the method, through the same executor.
  const executor = await model.executor();
  const request = { input, layers: camTargets(model, []), classes: { kind: 'explicit', classes: [star] } } as const;
  await new MyGradCam().compute(executor, request);
  const before = tf.memory().numTensors;
  const mine = (await new MyGradCam().compute(executor, request))[0]?.[0];
  assert.ok(mine !== undefined, 'one map for the one image and class');
  assert.equal(tf.memory().numTensors, before, 'the base disposes what the method made');
  input.dispose();
  const reference = (await explain(model, [image], { classes: [star] }))[0]?.[0]?.map;
  assert.ok(reference !== undefined);
  assert.equal(mine.classIndex, star);
  const scale = Math.max(...reference.data);
  assert.ok(scale > 0);
  mine.map.data.forEach((value, i) => assert.ok(Math.abs(value - reference.data[i]!) <= 1e-6 * scale, `cell ${i}`));
});

test('a subclass of a built-in channel method that overrides weightedActivations or classMap gets its override (the host map is for the base steps only)', async () => {
  class ZeroGradCam extends GradCam {
    protected override weightedActivations(evidence: GradientEvidence): tf.Tensor4D {
      return tf.zerosLike(evidence.activations);
    }
  }
  class NegatedGradCam extends GradCam {
    protected override classMap(evidence: GradientEvidence, eigenSmooth: boolean): tf.Tensor3D {
      return tf.neg(super.classMap(evidence, eigenSmooth));
    }
  }
  const image = await loadImage(join(fixtures, 'circle-star.png'), { size: model.meta.inputSize });
  const input = inputTensor(model, [image.input]);
  const executor = await model.executor();
  const request = { input, layers: camTargets(model, []), classes: { kind: 'explicit', classes: [3] } } as const;
  try {
    const peak = async (method: GradCam): Promise<number> => Math.max(...(await method.compute(executor, request))[0]![0]!.map.data);
    assert.ok((await peak(new GradCam())) > 0, 'Grad-CAM itself: a map that is not all zero');
    assert.equal(await peak(new ZeroGradCam()), 0);
    // ReLU of the negated sum: the map's positive cells become zero; what remains was negative before.
    const negated = (await new NegatedGradCam().compute(executor, request))[0]![0]!.map.data;
    const plain = (await new GradCam().compute(executor, request))[0]![0]!.map.data;
    plain.forEach((value, i) => assert.ok(value === 0 || negated[i] === 0, `cell ${i}: ${value} and ${negated[i]}`));
  } finally {
    input.dispose();
  }
});

test('channel weights a method keeps between calls (tf.keep) are left to it: the base reads them, and frees only what the method made', async () => {
  class UniformCam extends ActivationCamMethod {
    readonly name = 'uniformcam';
    readonly weights: tf.Tensor2D;
    constructor(channels: number) {
      super();
      this.weights = tf.keep(tf.ones([1, channels]));
    }
    protected override channelWeights(): tf.Tensor2D {
      return this.weights;
    }
  }
  const image = await loadImage(join(fixtures, 'circle-star.png'), { size: model.meta.inputSize });
  const input = inputTensor(model, [image.input]);
  const executor = await model.executor();
  const layers = camTargets(model, []);
  const channels = layers[0]!.outputShapes[0]!.at(-1) as number;
  const method = new UniformCam(channels);
  const request = { input, layers, classes: { kind: 'explicit', classes: [3] } } as const;
  try {
    const first = (await method.compute(executor, request))[0]![0]!.map.data;
    const before = tf.memory().numTensors;
    const second = (await method.compute(executor, request))[0]![0]!.map.data;
    assert.equal(tf.memory().numTensors, before);
    assert.equal(method.weights.isDisposed, false);
    assert.deepEqual(Array.from(second), Array.from(first));
  } finally {
    input.dispose();
    method.weights.dispose();
  }
});

test('a CAM method that weighs each element (weightedActivations, as HiResCAM) gives explain()\'s HiResCAM map', async () => {
  class MyHiResCam extends GradientCamMethod {
    readonly name = 'myhirescam';
    protected override weightedActivations({ activations, gradients }: GradientEvidence): tf.Tensor4D {
      return tf.mul(gradients, activations);
    }
  }
  const image = await loadImage(join(fixtures, 'circle-star.png'), { size: model.meta.inputSize });
  const star = 3;
  const input = inputTensor(model, [image.input]);
  const executor = await model.executor();
  const before = tf.memory().numTensors;
  const mine = (await new MyHiResCam().compute(executor, { input, layers: camTargets(model, []), classes: { kind: 'explicit', classes: [star] } }))[0]?.[0];
  assert.equal(tf.memory().numTensors, before, 'the base disposes what the method made');
  input.dispose();
  const reference = (await explain(model, [image], { classes: [star], method: 'hirescam' }))[0]?.[0]?.map;
  assert.ok(mine !== undefined && reference !== undefined);
  const scale = Math.max(...reference.data);
  assert.ok(scale > 0);
  // The same tfjs ops on the same values: the same map.
  assert.deepEqual(Array.from(mine.map.data), Array.from(reference.data));
});
