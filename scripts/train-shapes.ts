/**
 * Trains camviz's embedded "shapes" model on scenes from shapes-data.ts and
 * writes models/shapes/ (model.json, shapes.weights.bin, camviz.json,
 * training.json) and fixtures/shapes/ (PNGs + truth.json).
 *
 *   npm run train:shapes [-- --steps 2000 --batch 32 --seed 1 --backend wasm]
 *   npm run train:shapes -- --resume --seed 2 --steps 1000   (train the saved model further)
 *   npm run train:shapes -- --fixtures-only
 *
 * Training data is drawn fresh every step from seed `--seed`; evaluation uses
 * other seeds (EVAL_SEEDS), so every reported figure is on unseen scenes.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import '@tensorflow/tfjs-backend-cpu';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { useBackend } from '../src/engine/backend.js';
import {
  BACKGROUND_KINDS,
  SHAPE_CLASSES,
  generateBatch,
  generateScene,
  mulberry32,
  writeUnitPixels,
  type PixelBox,
  type Scene,
  type SceneOptions,
} from './shapes-data.js';

export const INPUT_SIZE = 64;
export const TARGET_LAYER = 'conv4_relu';
export const SCORE_LAYER = 'logits';
/** Filters of conv1..conv4; each block but the last halves the resolution (64 -> 8). */
const BLOCK_FILTERS = [16, 32, 64, 64] as const;
/** Seeds for evaluation scenes, far from any training seed. */
export const EVAL_SEEDS = { single: 9001, two: 9002, pointing: 9003 } as const;
export const FIXTURE_SEED = 4242;

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const MODEL_DIR = path.join(REPO_ROOT, 'models', 'shapes');
const FIXTURE_DIR = path.join(REPO_ROOT, 'fixtures', 'shapes');
const WEIGHTS_FILE = 'shapes.weights.bin';

// ---------------------------------------------------------------- model

/**
 * conv(3x3) -> batch norm -> ReLU -> maxpool blocks, then GAP -> Dense(5) -> softmax. GAP
 * + a single dense layer keeps the original CAM method applicable, and the
 * ReLU of the last block (8x8) is the Grad-CAM target.
 */
export function buildShapesModel(seed: number): tfl.LayersModel {
  const input = tfl.input({ shape: [INPUT_SIZE, INPUT_SIZE, 3], name: 'image' });
  let x = input;
  BLOCK_FILTERS.forEach((filters, i) => {
    const name = `conv${i + 1}`;
    x = tfl.layers
      .conv2d({
        name, filters, kernelSize: 3, padding: 'same', useBias: false,
        kernelInitializer: tfl.initializers.heNormal({ seed: seed * 100 + i }),
      })
      .apply(x) as tfl.SymbolicTensor;
    x = tfl.layers.batchNormalization({ name: `${name}_bn` }).apply(x) as tfl.SymbolicTensor;
    x = tfl.layers.activation({ name: `${name}_relu`, activation: 'relu' }).apply(x) as tfl.SymbolicTensor;
    if (i < BLOCK_FILTERS.length - 1) {
      x = tfl.layers.maxPooling2d({ name: `${name}_pool`, poolSize: 2 }).apply(x) as tfl.SymbolicTensor;
    }
  });
  x = tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers
    .dense({ name: SCORE_LAYER, units: SHAPE_CLASSES.length, kernelInitializer: tfl.initializers.glorotUniform({ seed: seed * 100 + 99 }) })
    .apply(x) as tfl.SymbolicTensor;
  const probs = tfl.layers.activation({ name: 'probs', activation: 'softmax' }).apply(x) as tfl.SymbolicTensor;
  const model = tfl.model({ name: 'shapes', inputs: input, outputs: probs });
  zeroMeanFilters(model.getLayer('conv1'));
  return model;
}

/**
 * Makes each 3x3 filter sum to zero over space, so that at the start the
 * first layer sees edges and texture, not the flat colour of background and
 * shape (both random). Without it training sat at chance for hundreds of steps.
 */
function zeroMeanFilters(layer: tfl.layers.Layer): void {
  const [kernel, ...rest] = layer.getWeights();
  if (kernel === undefined) return;
  const centred = tf.tidy(() => tf.sub(kernel, tf.mean(kernel, [0, 1], true)));
  layer.setWeights([centred, ...rest]);
  centred.dispose();
}

// ---------------------------------------------------------------- training

interface TrainOptions {
  steps: number;
  batch: number;
  seed: number;
  learningRate: number;
  twoShapeProbability: number;
  /** Called every 500 steps, to keep a usable model if a long run is cut short. */
  checkpoint?: () => Promise<unknown>;
}

/** Cosine decay to 5% of the initial rate after a short warm-up. */
function learningRateAt(step: number, options: TrainOptions): number {
  const warmup = Math.min(100, options.steps / 10);
  if (step < warmup) return options.learningRate * ((step + 1) / warmup);
  const progress = (step - warmup) / Math.max(1, options.steps - warmup);
  return options.learningRate * (0.05 + 0.95 * 0.5 * (1 + Math.cos(Math.PI * progress)));
}

function batchTensors(pixels: Float32Array, targets: Float32Array, count: number): { xs: tf.Tensor4D; ys: tf.Tensor2D } {
  return {
    xs: tf.tensor4d(pixels, [count, INPUT_SIZE, INPUT_SIZE, 3]),
    ys: tf.tensor2d(targets, [count, SHAPE_CLASSES.length]),
  };
}

async function train(model: tfl.LayersModel, options: TrainOptions): Promise<{ seconds: number; finalLoss: number }> {
  const optimizer = tf.train.adam(options.learningRate);
  model.compile({ optimizer, loss: 'categoricalCrossentropy' });
  const rng = mulberry32(options.seed);
  const started = Date.now();
  let lossSum = 0;
  let lossCount = 0;
  let finalLoss = NaN;
  for (let step = 0; step < options.steps; step++) {
    // Adam reads its rate on every update; tfjs keeps the field protected.
    (optimizer as unknown as { learningRate: number }).learningRate = learningRateAt(step, options);
    const batch = generateBatch(rng, options.batch, { size: INPUT_SIZE, twoShapeProbability: options.twoShapeProbability });
    const { xs, ys } = batchTensors(batch.pixels, batch.targets, options.batch);
    const loss = (await model.trainOnBatch(xs, ys)) as number;
    tf.dispose([xs, ys]);
    lossSum += loss;
    lossCount++;
    if (options.checkpoint !== undefined && (step + 1) % 500 === 0 && step + 1 < options.steps) await options.checkpoint();
    if ((step + 1) % 50 === 0 || step + 1 === options.steps) {
      finalLoss = lossSum / lossCount;
      const elapsed = (Date.now() - started) / 1000;
      console.log(`step ${step + 1}/${options.steps}  loss ${finalLoss.toFixed(4)}  lr ${learningRateAt(step, options).toExponential(2)}  ${elapsed.toFixed(0)} s`);
      lossSum = 0;
      lossCount = 0;
    }
  }
  return { seconds: (Date.now() - started) / 1000, finalLoss };
}

// ---------------------------------------------------------------- evaluation

/** Class indices sorted by score, best first. */
function ranking(scores: ArrayLike<number>): number[] {
  return Array.from(scores, (_, i) => i).sort((a, b) => scores[b]! - scores[a]! || a - b);
}

/** Single-shape scene: top-1 is its class. Two shapes: the top-2 set is the two classes. */
export function isCorrect(scene: Scene, scores: ArrayLike<number>): boolean {
  const wanted = scene.shapes.map((s) => s.classIndex);
  const top = ranking(scores).slice(0, wanted.length);
  return wanted.every((c) => top.includes(c));
}

async function accuracy(model: tfl.LayersModel, seed: number, count: number, twoShapes: boolean): Promise<number> {
  const rng = mulberry32(seed);
  const options: SceneOptions = { size: INPUT_SIZE, twoShapeProbability: twoShapes ? 1 : 0 };
  let correct = 0;
  for (let done = 0; done < count; done += 100) {
    const n = Math.min(100, count - done);
    const batch = generateBatch(rng, n, options);
    const xs = tf.tensor4d(batch.pixels, [n, INPUT_SIZE, INPUT_SIZE, 3]);
    const probs = model.predict(xs) as tf.Tensor2D;
    const rows = (await probs.array()) as number[][];
    tf.dispose([xs, probs]);
    batch.scenes.forEach((scene, i) => {
      if (isCorrect(scene, rows[i]!)) correct++;
    });
  }
  return correct / count;
}

/**
 * Grad-CAM at `TARGET_LAYER`: channel weights are the spatial mean of
 * d logit_c / d A, the map is ReLU(sum_k w_k A_k). Returns the peak cell.
 */
function gradCamPeaks(model: tfl.LayersModel, image: tf.Tensor4D, classes: readonly number[]): Array<{ row: number; col: number; rows: number; cols: number }> {
  const target = model.getLayer(TARGET_LAYER);
  const features = tfl.model({ inputs: model.inputs, outputs: target.output as tfl.SymbolicTensor });
  const head = (activation: tf.Tensor): tf.Tensor =>
    model.getLayer(SCORE_LAYER).apply(model.getLayer('gap').apply(activation)) as tf.Tensor;
  return tf.tidy(() => {
    const activation = features.predict(image) as tf.Tensor4D;
    const [, rows, cols] = activation.shape;
    return classes.map((classIndex) => {
      const gradient = tf.grad((a: tf.Tensor) => tf.sum(tf.slice(head(a), [0, classIndex], [1, 1])))(activation);
      const weights = tf.mean(gradient, [1, 2], true);
      const map = tf.relu(tf.sum(tf.mul(activation, weights), 3));
      const peak = tf.argMax(tf.reshape(map, [-1])).dataSync()[0]!;
      return { row: Math.floor(peak / cols), col: peak % cols, rows, cols };
    });
  });
}

function pointInBox(x: number, y: number, box: PixelBox): boolean {
  return x >= box.x && x <= box.x + box.width && y >= box.y && y <= box.y + box.height;
}

/** Pointing game: the centre of the peak Grad-CAM cell falls inside the class's box. */
async function pointingGame(model: tfl.LayersModel, seed: number, count: number, twoShapes: boolean): Promise<number> {
  const rng = mulberry32(seed);
  let hits = 0;
  let trials = 0;
  for (let i = 0; i < count; i++) {
    const scene = generateScene(rng, { size: INPUT_SIZE, twoShapeProbability: twoShapes ? 1 : 0 });
    const pixels = new Float32Array(scene.rgb.length);
    writeUnitPixels(scene.rgb, pixels);
    const image = tf.tensor4d(pixels, [1, INPUT_SIZE, INPUT_SIZE, 3]);
    const peaks = gradCamPeaks(model, image, scene.shapes.map((s) => s.classIndex));
    image.dispose();
    peaks.forEach((peak, k) => {
      const x = ((peak.col + 0.5) * scene.width) / peak.cols;
      const y = ((peak.row + 0.5) * scene.height) / peak.rows;
      if (pointInBox(x, y, scene.shapes[k]!.box)) hits++;
      trials++;
    });
  }
  return hits / trials;
}

// ---------------------------------------------------------------- saving

/** The model saved in models/shapes/, to train further with `--resume`. */
async function loadSavedModel(): Promise<tfl.LayersModel> {
  const modelJson = JSON.parse(await readFile(path.join(MODEL_DIR, 'model.json'), 'utf8')) as tf.io.ModelJSON;
  const entry = modelJson.weightsManifest[0];
  if (entry === undefined) throw new Error('model.json lists no weights');
  const weights = await readFile(path.join(MODEL_DIR, WEIGHTS_FILE));
  const weightData = weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength);
  return tfl.loadLayersModel(tf.io.fromMemory({ modelTopology: modelJson.modelTopology, weightSpecs: entry.weights, weightData }));
}

async function saveModel(model: tfl.LayersModel): Promise<number> {
  await mkdir(MODEL_DIR, { recursive: true });
  let weightBytes = 0;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const weights = new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData));
      weightBytes = weights.byteLength;
      const modelJson = {
        format: 'layers-model',
        generatedBy: artifacts.generatedBy,
        convertedBy: null,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: [WEIGHTS_FILE], weights: artifacts.weightSpecs }],
      };
      await writeFile(path.join(MODEL_DIR, 'model.json'), JSON.stringify(modelJson));
      await writeFile(path.join(MODEL_DIR, WEIGHTS_FILE), weights);
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    }),
  );
  const description =
    'Small CNN that tells circle, square, triangle, star and cross apart on textured backgrounds; ' +
    'trained by scripts/train-shapes.ts on synthetic scenes from scripts/shapes-data.ts. ' +
    'Built in so that camviz works offline and Grad-CAM can be checked against known shape positions.';
  const camviz = {
    name: 'shapes',
    description,
    preprocess: 'unit',
    inputSize: [INPUT_SIZE, INPUT_SIZE],
    labels: [...SHAPE_CLASSES],
    scoreLayer: SCORE_LAYER,
    targetLayer: TARGET_LAYER,
  };
  await writeFile(path.join(MODEL_DIR, 'camviz.json'), `${JSON.stringify(camviz, null, 2)}\n`);
  return weightBytes;
}

// ---------------------------------------------------------------- fixtures

interface FixtureSpec {
  file: string;
  classes: number[];
  width: number;
  height: number;
  background: (typeof BACKGROUND_KINDS)[number];
}

/** One single per class (some non-square) and three pairs, larger than the model input. */
export const FIXTURE_SPECS: readonly FixtureSpec[] = [
  { file: 'circle.png', classes: [0], width: 160, height: 160, background: 'noise' },
  { file: 'square.png', classes: [1], width: 160, height: 160, background: 'stripes' },
  { file: 'triangle.png', classes: [2], width: 160, height: 160, background: 'gradient' },
  { file: 'star.png', classes: [3], width: 200, height: 150, background: 'checkers' },
  { file: 'cross.png', classes: [4], width: 200, height: 150, background: 'noise' },
  { file: 'circle-star.png', classes: [0, 3], width: 160, height: 160, background: 'checkers' },
  { file: 'square-cross.png', classes: [1, 4], width: 200, height: 150, background: 'gradient' },
  { file: 'triangle-circle.png', classes: [2, 0], width: 160, height: 160, background: 'stripes' },
];

function fixtureScene(index: number): Scene {
  const spec = FIXTURE_SPECS[index]!;
  const options: SceneOptions = { width: spec.width, height: spec.height, classes: spec.classes, background: spec.background };
  return generateScene(mulberry32(FIXTURE_SEED + index), options);
}

async function writeFixtures(): Promise<Scene[]> {
  await mkdir(FIXTURE_DIR, { recursive: true });
  const scenes = FIXTURE_SPECS.map((_, i) => fixtureScene(i));
  const images = [];
  for (const [i, scene] of scenes.entries()) {
    const spec = FIXTURE_SPECS[i]!;
    await sharp(Buffer.from(scene.rgb), { raw: { width: scene.width, height: scene.height, channels: 3 } })
      .png()
      .toFile(path.join(FIXTURE_DIR, spec.file));
    images.push({
      file: spec.file,
      width: scene.width,
      height: scene.height,
      seed: FIXTURE_SEED + i,
      options: { width: spec.width, height: spec.height, classes: spec.classes, background: spec.background },
      shapes: scene.shapes.map(({ classIndex, label, box }) => ({ classIndex, label, box })),
    });
  }
  const truth = {
    generator: {
      script: 'scripts/shapes-data.ts',
      call: 'generateScene(mulberry32(seed), options)',
      seed: FIXTURE_SEED,
      note: 'image i uses seed + i; boxes are tight pixel boxes (x, y = top-left pixel) of every pixel the shape covers',
    },
    images,
  };
  await writeFile(path.join(FIXTURE_DIR, 'truth.json'), `${JSON.stringify(truth, null, 2)}\n`);
  return scenes;
}

/** Scores of the model on each fixture, stretched to the input size as camviz does by default. */
async function fixturePredictions(model: tfl.LayersModel, scenes: Scene[]): Promise<Array<{ file: string; top: string[]; correct: boolean }>> {
  return Promise.all(
    scenes.map(async (scene, i) => {
      const probs = tf.tidy(() => {
        const image = tf.div(tf.tensor3d(scene.rgb, [scene.height, scene.width, 3], 'float32'), 255);
        const resized = tf.image.resizeBilinear(image as tf.Tensor3D, [INPUT_SIZE, INPUT_SIZE], true);
        return model.predict(tf.expandDims(resized, 0)) as tf.Tensor2D;
      });
      const scores = (await probs.data()) as Float32Array;
      probs.dispose();
      return {
        file: FIXTURE_SPECS[i]!.file,
        top: ranking(scores).slice(0, 2).map((c) => `${SHAPE_CLASSES[c]} ${scores[c]!.toFixed(3)}`),
        correct: isCorrect(scene, scores),
      };
    }),
  );
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      steps: { type: 'string', default: '2000' },
      batch: { type: 'string', default: '32' },
      seed: { type: 'string', default: '1' },
      'learning-rate': { type: 'string', default: '0.002' },
      'two-shape-probability': { type: 'string', default: '0.3' },
      backend: { type: 'string', default: 'wasm' },
      'eval-count': { type: 'string', default: '1000' },
      'fixtures-only': { type: 'boolean', default: false },
      /** Start from the saved model instead of fresh weights (use another --seed for new data). */
      resume: { type: 'boolean', default: false },
    },
  });
  const scenes = await writeFixtures();
  console.log(`wrote ${scenes.length} fixtures to ${path.relative(REPO_ROOT, FIXTURE_DIR)}/`);
  if (values['fixtures-only']) return;

  // On wasm, camviz's own gradient kernels (src/model/wasm-kernels.ts) make
  // training possible (wasm lacks Conv2DBackpropFilter) and fast.
  const backend = await useBackend(values.backend === 'cpu' ? 'cpu' : 'wasm');
  console.log(`backend ${backend.tfjsName}`);
  const options: TrainOptions = {
    steps: Number(values.steps),
    batch: Number(values.batch),
    seed: Number(values.seed),
    learningRate: Number(values['learning-rate']),
    twoShapeProbability: Number(values['two-shape-probability']),
  };
  const model = values.resume ? await loadSavedModel() : buildShapesModel(options.seed);
  const previousRun: unknown = values.resume ? await readFile(path.join(MODEL_DIR, 'training.json'), 'utf8').then(JSON.parse, () => null) : null;
  options.checkpoint = () => saveModel(model);
  console.log(`parameters ${model.countParams()}`);
  const { seconds, finalLoss } = await train(model, options);

  const evalCount = Number(values['eval-count']);
  const singleAccuracy = await accuracy(model, EVAL_SEEDS.single, evalCount, false);
  const twoAccuracy = await accuracy(model, EVAL_SEEDS.two, evalCount, true);
  console.log(`accuracy: single ${(singleAccuracy * 100).toFixed(2)}%  two-shape top-2 ${(twoAccuracy * 100).toFixed(2)}%`);
  const pointingCount = Math.min(300, evalCount);
  const pointingSingle = await pointingGame(model, EVAL_SEEDS.pointing, pointingCount, false);
  const pointingTwo = await pointingGame(model, EVAL_SEEDS.pointing + 1, pointingCount, true);
  console.log(`pointing game (Grad-CAM peak in box): single ${(pointingSingle * 100).toFixed(2)}%  two-shape ${(pointingTwo * 100).toFixed(2)}%`);
  const fixtures = await fixturePredictions(model, scenes);
  for (const f of fixtures) console.log(`fixture ${f.file}: ${f.top.join(', ')}${f.correct ? '' : '  WRONG'}`);

  const weightBytes = await saveModel(model);
  const report = {
    resumedFromSavedModel: values.resume,
    parameters: model.countParams(),
    weightBytes,
    backend: backend.tfjsName,
    ...options,
    trainingSeconds: Math.round(seconds),
    finalLoss: Number(finalLoss.toFixed(4)),
    evaluation: {
      seeds: EVAL_SEEDS,
      count: evalCount,
      singleTop1: singleAccuracy,
      twoShapeTop2: twoAccuracy,
      pointingCount,
      pointingSingle,
      pointingTwo,
    },
    fixtures,
    previousRun,
  };
  await writeFile(path.join(MODEL_DIR, 'training.json'), `${JSON.stringify(report, null, 2)}\n`);
  console.log(`saved ${path.relative(REPO_ROOT, MODEL_DIR)}/ (${weightBytes} bytes of weights)`);
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
