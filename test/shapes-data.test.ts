import assert from 'node:assert/strict';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import '@tensorflow/tfjs-backend-cpu';
import sharp from 'sharp';
import {
  MIN_BOX_GAP,
  MIN_CONTRAST,
  SHAPE_CLASSES,
  generateBatch,
  generateScene,
  mulberry32,
  type PixelBox,
  type Scene,
  type SceneOptions,
} from '../scripts/shapes-data.js';
import { repoRoot } from './helpers/assets.js';

const modelDir = join(repoRoot, 'models', 'shapes');
const fixtureDir = join(repoRoot, 'fixtures', 'shapes');

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function boxesIntersect(a: PixelBox, b: PixelBox): boolean {
  return a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
}

function inBox(x: number, y: number, box: PixelBox): boolean {
  return x >= box.x && x < box.x + box.width && y >= box.y && y < box.y + box.height;
}

/** Bounding box of the pixels that differ from `color`, among those `keep` accepts. */
function boxOfPixelsNot(scene: Scene, color: readonly number[], keep: (x: number, y: number) => boolean): PixelBox | undefined {
  let [minX, minY, maxX, maxY] = [Infinity, Infinity, -Infinity, -Infinity];
  for (let y = 0; y < scene.height; y++) {
    for (let x = 0; x < scene.width; x++) {
      const i = (y * scene.width + x) * 3;
      const differs = scene.rgb[i] !== color[0] || scene.rgb[i + 1] !== color[1] || scene.rgb[i + 2] !== color[2];
      if (!differs || !keep(x, y)) continue;
      [minX, minY, maxX, maxY] = [Math.min(minX, x), Math.min(minY, y), Math.max(maxX, x), Math.max(maxY, y)];
    }
  }
  return minX === Infinity ? undefined : { x: minX, y: minY, width: maxX - minX + 1, height: maxY - minY + 1 };
}

test('mulberry32 gives numbers in [0, 1) that depend on the seed only', () => {
  const a = mulberry32(123);
  const b = mulberry32(123);
  const c = mulberry32(124);
  const fromA = Array.from({ length: 1000 }, () => a());
  assert.deepEqual(Array.from({ length: 1000 }, () => b()), fromA);
  assert.notDeepEqual(Array.from({ length: 1000 }, () => c()), fromA);
  assert.ok(fromA.every((v) => v >= 0 && v < 1));
  // Roughly uniform: each tenth of [0, 1) gets about a tenth of the draws.
  const bins = new Array<number>(10).fill(0);
  for (const v of fromA) bins[Math.floor(v * 10)]!++;
  assert.ok(bins.every((n) => n > 60 && n < 140), `bins ${bins.join(',')}`);
});

test('same seed gives the same scene bytes, another seed other bytes', () => {
  for (const options of [{ size: 64 }, { width: 200, height: 150, twoShapeProbability: 1 }] as SceneOptions[]) {
    const first = generateScene(mulberry32(7), options);
    const again = generateScene(mulberry32(7), options);
    const other = generateScene(mulberry32(8), options);
    assert.equal(first.rgb.length, first.width * first.height * 3);
    assert.ok(sameBytes(first.rgb, again.rgb));
    assert.deepEqual(first.shapes, again.shapes);
    assert.ok(!sameBytes(first.rgb, other.rgb));
  }
});

test('boxes are tight around the pixels each shape changes (plain background)', () => {
  const rng = mulberry32(2024);
  for (let n = 0; n < 60; n++) {
    const options: SceneOptions = n % 2 === 0 ? { size: 64, background: 'plain', twoShapeProbability: 0.5 } : { width: 120, height: 90, background: 'plain', twoShapeProbability: 0.5 };
    const scene = generateScene(rng, options);
    const background = scene.background.colors[0];
    // Every changed pixel is inside some box...
    const outside = boxOfPixelsNot(scene, background, (x, y) => !scene.shapes.some((s) => inBox(x, y, s.box)));
    assert.equal(outside, undefined, `scene ${n}: pixels changed outside every box`);
    for (const shape of scene.shapes) {
      // ...and the changed pixels inside a box reach all four of its edges.
      assert.deepEqual(boxOfPixelsNot(scene, background, (x, y) => inBox(x, y, shape.box)), shape.box, `scene ${n} ${shape.label}`);
      // A fully covered interior pixel has exactly the shape's colour.
      const [cx, cy] = [Math.floor(shape.center.x), Math.floor(shape.center.y)];
      if (shape.label !== 'star' && shape.label !== 'cross') {
        const i = (cy * scene.width + cx) * 3;
        assert.deepEqual([...scene.rgb.subarray(i, i + 3)], [...shape.color]);
      }
      assert.ok(Math.hypot(shape.color[0] - background[0], shape.color[1] - background[1], shape.color[2] - background[2]) >= MIN_CONTRAST);
    }
  }
});

test('shapes lie inside the image at the requested size, two shapes never overlap', () => {
  const rng = mulberry32(99);
  let pairs = 0;
  for (let n = 0; n < 200; n++) {
    const scene = generateScene(rng, { size: 64, twoShapeProbability: 0.5 });
    for (const { box, classIndex, label } of scene.shapes) {
      assert.equal(SHAPE_CLASSES[classIndex], label);
      assert.ok(box.x >= 0 && box.y >= 0 && box.x + box.width <= 64 && box.y + box.height <= 64);
      // The nominal size is 20-45% of the side; a rotated or pointed outline changes its box by at most ~35%.
      const side = Math.max(box.width, box.height);
      assert.ok(side >= 0.2 * 64 * 0.7 && side <= 0.45 * 64 * 1.35, `${label} box ${side}px`);
    }
    if (scene.shapes.length === 2) {
      pairs++;
      const [a, b] = scene.shapes as [Scene['shapes'][0], Scene['shapes'][0]];
      assert.notEqual(a.classIndex, b.classIndex);
      const grown = { x: a.box.x - MIN_BOX_GAP, y: a.box.y - MIN_BOX_GAP, width: a.box.width + 2 * MIN_BOX_GAP, height: a.box.height + 2 * MIN_BOX_GAP };
      assert.ok(!boxesIntersect(grown, b.box), `boxes ${JSON.stringify(a.box)} and ${JSON.stringify(b.box)} touch`);
    }
  }
  assert.ok(pairs > 70 && pairs < 130, `${pairs} two-shape scenes of 200`);
});

test('all classes and backgrounds occur; forced classes are honoured', () => {
  const rng = mulberry32(5);
  const classes = new Set<string>();
  const backgrounds = new Set<string>();
  for (let n = 0; n < 100; n++) {
    const scene = generateScene(rng, { size: 64 });
    scene.shapes.forEach((s) => classes.add(s.label));
    backgrounds.add(scene.background.kind);
  }
  assert.deepEqual([...classes].sort(), [...SHAPE_CLASSES].sort());
  assert.deepEqual([...backgrounds].sort(), ['checkers', 'gradient', 'noise', 'stripes']);
  const forced = generateScene(mulberry32(1), { size: 96, classes: [4, 1] });
  assert.deepEqual(forced.shapes.map((s) => s.label), ['cross', 'square']);
  assert.throws(() => generateScene(mulberry32(1), { classes: [2, 2] }), RangeError);
  assert.throws(() => generateScene(mulberry32(1), { classes: [5] }), RangeError);
});

test('generateBatch packs unit pixels and soft targets', () => {
  const batch = generateBatch(mulberry32(3), 6, { size: 32, twoShapeProbability: 0.5 });
  assert.equal(batch.pixels.length, 6 * 32 * 32 * 3);
  batch.scenes.forEach((scene, i) => {
    const offset = i * 32 * 32 * 3;
    for (const j of [0, 1, 1000, 3071]) assert.equal(batch.pixels[offset + j], Math.fround(scene.rgb[j]! / 255));
    const row = [...batch.targets.subarray(i * 5, i * 5 + 5)];
    const expected = [0, 0, 0, 0, 0];
    for (const s of scene.shapes) expected[s.classIndex] = scene.shapes.length === 1 ? 1 : 0.5;
    assert.deepEqual(row, expected);
  });
});

// ---------------------------------------------------------------- committed model

interface CamvizJson {
  name: string;
  preprocess: string;
  inputSize: [number, number];
  labels: string[];
  scoreLayer: string;
  targetLayer: string;
}

async function loadShapesModel(): Promise<tfl.LayersModel> {
  const modelJson = JSON.parse(await readFile(join(modelDir, 'model.json'), 'utf8')) as tf.io.ModelJSON;
  const manifest = modelJson.weightsManifest;
  assert.equal(manifest.length, 1);
  assert.deepEqual(manifest[0]!.paths, ['shapes.weights.bin']);
  const weights = await readFile(join(modelDir, 'shapes.weights.bin'));
  const weightData = weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength);
  return tfl.loadLayersModel(tf.io.fromMemory({ modelTopology: modelJson.modelTopology, weightSpecs: manifest[0]!.weights, weightData }));
}

test('models/shapes holds model.json, one weights file and a consistent camviz.json', async () => {
  const files = (await readdir(modelDir)).sort();
  assert.ok(files.includes('model.json') && files.includes('shapes.weights.bin') && files.includes('camviz.json'));
  assert.ok(!files.some((f) => f.startsWith('group')), 'no default shard names');
  const camviz = JSON.parse(await readFile(join(modelDir, 'camviz.json'), 'utf8')) as CamvizJson;
  assert.equal(camviz.name, 'shapes');
  assert.equal(camviz.preprocess, 'unit');
  assert.deepEqual(camviz.labels, [...SHAPE_CLASSES]);

  await tf.setBackend('cpu');
  const model = await loadShapesModel();
  assert.deepEqual(model.inputs[0]!.shape, [null, camviz.inputSize[0], camviz.inputSize[1], 3]);
  const target = model.getLayer(camviz.targetLayer);
  const score = model.getLayer(camviz.scoreLayer);
  assert.equal(score.getClassName(), 'Dense');
  assert.deepEqual(score.outputShape, [null, SHAPE_CLASSES.length]);
  const [, rows, cols] = target.outputShape as number[];
  assert.ok(rows! >= 8 && cols! >= 8, `target map ${rows}x${cols}`);
  assert.equal(model.outputs[0]!.shape[1], SHAPE_CLASSES.length);
  // float32 weights: the file holds exactly 4 bytes a parameter.
  const { size } = await stat(join(modelDir, 'shapes.weights.bin'));
  assert.equal(size, model.countParams() * 4);
  assert.ok(size < 1024 * 1024);
  model.dispose();
});

test('the committed model classifies fresh single-shape scenes (cpu backend)', async () => {
  await tf.setBackend('cpu');
  const model = await loadShapesModel();
  const [height, width] = (model.inputs[0]!.shape as number[]).slice(1, 3) as [number, number];
  assert.equal(height, width);
  const rng = mulberry32(31337);
  const count = 200;
  let correct = 0;
  for (let done = 0; done < count; done += 50) {
    const batch = generateBatch(rng, 50, { size: width, twoShapeProbability: 0 });
    const probs = tf.tidy(() => model.predict(tf.tensor4d(batch.pixels, [50, height, width, 3])) as tf.Tensor2D);
    const rows = (await probs.array()) as number[][];
    probs.dispose();
    rows.forEach((row, i) => {
      assert.ok(Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-4);
      const best = row.indexOf(Math.max(...row));
      if (best === batch.scenes[i]!.shapes[0]!.classIndex) correct++;
    });
  }
  model.dispose();
  assert.ok(correct / count >= 0.95, `accuracy ${correct}/${count}`);
});

// ---------------------------------------------------------------- fixtures

interface Truth {
  generator: { seed: number };
  images: Array<{
    file: string;
    width: number;
    height: number;
    seed: number;
    options: SceneOptions;
    shapes: Array<{ classIndex: number; label: string; box: PixelBox }>;
  }>;
}

test('fixtures decode to exactly what the generator makes from truth.json', async () => {
  const truth = JSON.parse(await readFile(join(fixtureDir, 'truth.json'), 'utf8')) as Truth;
  assert.ok(truth.images.length >= 8);
  assert.ok(truth.images.some((image) => image.shapes.length === 2));
  for (const image of truth.images) {
    const { data, info } = await sharp(join(fixtureDir, image.file)).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height, info.channels], [image.width, image.height, 3]);
    const scene = generateScene(mulberry32(image.seed), image.options);
    assert.ok(sameBytes(new Uint8Array(data), scene.rgb), `${image.file} differs from its regenerated scene`);
    assert.deepEqual(image.shapes, scene.shapes.map(({ classIndex, label, box }) => ({ classIndex, label, box })));
  }
});

