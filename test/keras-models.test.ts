/**
 * The Keras files of ../shared/assets/keras (real models from public
 * repositories: Keras 2.10 HDF5 named .keras upstream, Keras 3.5 legacy
 * .h5, Keras 3.10 .keras zip) against the references of an independent
 * PyTorch re-implementation reading the same HDF5 weights
 * (../shared/tools/torch_ref/keras_torch.py; see the assets' README):
 * class scores (pre-softmax), Grad-CAM and Grad-CAM++ raw maps at the last
 * conv layer for the top-1 and top-2 classes, the first conv's feature map.
 * Everything within 1e-4 of the largest absolute reference value, on cpu
 * and wasm; the command line once end to end.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { camTargets } from '../src/cam/request.js';
import { explain } from '../src/explain.js';
import { disposeValues } from '../src/executor/network.js';
import { loadImage } from '../src/image/image.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { inputTensor } from '../src/model/predict.js';
import { ZipArchive } from '../src/model/keras/zip.js';
import { toInputTensor } from '../src/model/predict.js';
import { decodeNpy } from '../src/render/npy.js';
import { asset, mobilenetDir, skipWithoutSharedAssets } from './helpers/assets.js';
import { forEachBackend } from './helpers/backends.js';
import { runCli } from './helpers/cli.js';
import { maxAbsDifference } from './helpers/numeric.js';
import { zipOf } from './helpers/zip.js';
import { kerasFileOf } from './helpers/keras-file.js';

const kerasDir = asset('keras');
const referenceDir = join(kerasDir, 'reference');
const skip: string | false = existsSync(join(referenceDir, 'cifar10_k3.10__index.json')) ? false : `Keras assets not found at ${kerasDir}`;

const MODELS = [
  { name: 'mnist_cnn_k3.5', file: 'mnist_cnn_k3.5.h5', images: ['digit3_28', 'digit7_28'] },
  { name: 'cats_vs_dogs_k2.10', file: 'cats_vs_dogs_k2.10.h5', images: ['dog_cat_150', 'both_150'] },
  { name: 'cifar10_k3.10', file: 'cifar10_k3.10.keras', images: ['dog_cat_32', 'both_32'] },
] as const;

const RELATIVE_TOLERANCE = 1e-4;

interface ModelIndex {
  cam_layer: string;
  fmap_layer: string;
}

interface CamReference {
  method: 'gradcam' | 'gradcampp';
  layer: string;
  class: number;
  cam_raw: number[][];
  score: number;
}

const readJson = <T>(name: string): T => JSON.parse(readFileSync(join(referenceDir, name), 'utf8')) as T;

function camReferences(model: string, image: string): CamReference[] {
  const pattern = new RegExp(`^${model.replace(/\./g, '\\.')}__${image}__.+__c\\d+__(gradcam|gradcampp)\\.json$`);
  return readdirSync(referenceDir)
    .filter((name) => pattern.test(name))
    .map((name) => readJson<CamReference>(name));
}

/** |actual - expected| within 1e-4 of the largest |expected|. */
function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let scale = 1e-12;
  for (let i = 0; i < expected.length; i += 1) scale = Math.max(scale, Math.abs(expected[i]!));
  const difference = maxAbsDifference(actual, expected);
  assert.ok(difference <= RELATIVE_TOLERANCE * scale, `${what}: max difference ${difference} over ${RELATIVE_TOLERANCE} x ${scale}`);
}

describe('Keras files as saved, against the PyTorch reference', { skip }, () => {
  forEachBackend((backend) => {
    for (const entry of MODELS) {
      describe(entry.file, () => {
        let model: CamvizModel;
        const index = skip ? undefined : readJson<ModelIndex>(`${entry.name}__index.json`);
        before(async () => {
          model = await loadModel(join(kerasDir, entry.file));
        });
        after(() => model?.dispose());

        test('metadata from the config: input size, x/255 preprocessing by default, named after the file', () => {
          assert.equal(model.meta.name, entry.file.replace(/\.(h5|keras)$/, ''));
          const side = Number(/_(\d+)$/.exec(entry.images[0])![1]);
          assert.deepEqual(model.meta.inputSize, { width: side, height: side });
          assert.equal(model.meta.preprocess, 'unit');
        });

        for (const image of entry.images) {
          test(`${image}: scores, fmap, Grad-CAM and Grad-CAM++ (${backend})`, async () => {
            const loaded = await loadImage(join(kerasDir, 'images', `${image}.png`), { size: model.meta.inputSize });
            const input = inputTensor(model, [loaded.input]);
            try {
              const [fmapNode] = camTargets(model, [index!.fmap_layer]);
              const values = await model.network().forward(input, { layers: [fmapNode!] });
              try {
                const scores = readJson<{ scores: number[] }>(`${entry.name}__${image}__scores.json`).scores;
                assertClose(values.scores.dataSync(), scores, 'scores');
                const npy = decodeNpy(readFileSync(join(referenceDir, `${entry.name}__${image}__${index!.fmap_layer}__fmap.npy`)));
                assert.deepEqual(values.layers.get(fmapNode!.path)!.shape, npy.shape);
                assertClose(values.layers.get(fmapNode!.path)!.dataSync(), npy.data, 'feature map');
              } finally {
                disposeValues(values);
              }
            } finally {
              input.dispose();
            }
            const references = camReferences(entry.name, image);
            assert.equal(references.length, 4, 'two classes, two methods');
            for (const reference of references) {
              const [explanation] = (await explain(model, [loaded], { method: reference.method, layers: [reference.layer], classes: [reference.class] }))[0]!;
              const what = `${reference.method} class ${reference.class}`;
              assert.ok(Math.abs(explanation!.score - reference.score) <= RELATIVE_TOLERANCE * Math.max(1, Math.abs(reference.score)), `${what}: score`);
              assert.deepEqual([explanation!.map!.height, explanation!.map!.width], [reference.cam_raw.length, reference.cam_raw[0]!.length]);
              const expected = reference.cam_raw.flat();
              // An all-zero reference map (Grad-CAM of class 3 on digit 7) must stay all zero.
              if (expected.every((value) => value === 0)) assert.ok(explanation!.map!.data.every((value) => Math.abs(value) < 1e-6), `${what}: all zero`);
              else assertClose(explanation!.map!.data, expected, what);
            }
          });
        }
      });
    }
  });

  test('camviz gradcam <png> --model file.keras --raw: the map of the library, exit 0', async () => {
    const out = await mkdtemp(join(tmpdir(), 'camviz-keras-'));
    try {
      const reference = readJson<CamReference>('cifar10_k3.10__both_32__conv2d_2__c6__gradcam.json');
      const png = join(kerasDir, 'images', 'both_32.png');
      const run = await runCli(['gradcam', png, '--model', join(kerasDir, 'cifar10_k3.10.keras'), '--layer', 'conv2d_2', '--class', '6', '--raw', '-o', out], { cwd: out, timeoutMs: 120_000 });
      assert.equal(run.code, 0, run.stderr);
      const npy = decodeNpy(readFileSync(join(out, 'both_32.gradcam.6.npy')));
      assert.deepEqual(npy.shape, [4, 4]);
      assertClose(npy.data, reference.cam_raw.flat(), 'CLI raw map');
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});

describe('single-channel input', () => {
  test("toInputTensor(..., 1): PIL convert('L') grey levels (Pillow's rgb2l: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16), then the preprocessing", () => {
    // Red, green, blue, and a pixel where rounding (130) and truncating R*299/1000 + ... (129.77 -> 129) differ.
    const pixels = new Uint8Array([255, 0, 0, 0, 255, 0, 0, 0, 255, 12, 200, 77]);
    const grey = [76, 150, 29, 130];
    for (const [name, expected] of [['unit', grey.map((l) => l / 255)], ['tf', grey.map((l) => l / 127.5 - 1)], ['none', grey]] as const) {
      const input = toInputTensor([pixels], 2, 2, name, 1);
      try {
        assert.deepEqual(input.shape, [1, 2, 2, 1]);
        assertClose(input.dataSync(), expected, name);
      } finally {
        input.dispose();
      }
    }
  });

  test('the MNIST model takes a colour photo: one grey channel in, the picture still in colour', { skip }, async () => {
    const model = await loadModel(join(kerasDir, 'mnist_cnn_k3.5.h5'));
    try {
      const loaded = await loadImage(join(kerasDir, 'images', 'both_150.png'), { size: model.meta.inputSize });
      const input = inputTensor(model, [loaded.input]);
      input.dispose();
      assert.deepEqual(input.shape, [1, 28, 28, 1]);
      // With the heat weighted 0 the overlay is the picture it is drawn on: the colour original, not the grey input.
      const [explanation] = (await explain(model, [loaded], { alpha: 0 }))[0]!;
      assert.deepEqual([explanation!.map!.height, explanation!.map!.width], [3, 3]);
      const { rgb } = loaded.original;
      assert.ok(rgb.some((value, i) => i % 3 === 0 && value !== rgb[i + 1]), 'the photo has colour');
      assert.ok(maxAbsDifference(explanation!.picture.rgb, rgb) <= 1, 'drawn on the colour original');
    } finally {
      model.dispose();
    }
  });
});

describe('a Rescaling layer in the model', { skip }, () => {
  test('the default preprocessing becomes none, and the scores are those of x/255 outside the model', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'camviz-keras-rescaling-'));
    try {
      const path = join(folder, 'rescaled.keras');
      await writeFile(path, cifarWithRescaling());
      const model = await loadModel(path);
      try {
        assert.equal(model.meta.preprocess, 'none');
        const loaded = await loadImage(join(kerasDir, 'images', 'both_32.png'), { size: model.meta.inputSize });
        const input = inputTensor(model, [loaded.input]);
        try {
          const values = await model.network().forward(input);
          try {
            assertClose(values.scores.dataSync(), readJson<{ scores: number[] }>('cifar10_k3.10__both_32__scores.json').scores, 'scores');
          } finally {
            disposeValues(values);
          }
        } finally {
          input.dispose();
        }
      } finally {
        model.dispose();
      }
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });
});

/** The real cifar10 archive with a Keras 3 Rescaling(1/255) layer written in after its input. */
function cifarWithRescaling(): Buffer {
  const file = join(kerasDir, 'cifar10_k3.10.keras');
  const archive = ZipArchive.open(readFileSync(file), file);
  const config = JSON.parse(archive.read('config.json', 1 << 20).toString('utf8')) as { config: { layers: unknown[] } };
  const dtype = { module: 'keras', class_name: 'DTypePolicy', config: { name: 'float32' }, registered_name: null };
  config.config.layers.splice(1, 0, { module: 'keras.layers', class_name: 'Rescaling', config: { name: 'rescaling', trainable: true, dtype, scale: 1 / 255, offset: 0 }, registered_name: null });
  return zipOf([
    { name: 'metadata.json', data: archive.read('metadata.json', 1 << 20) },
    { name: 'config.json', data: Buffer.from(JSON.stringify(config)) },
    { name: 'model.weights.h5', data: archive.read('model.weights.h5', 1 << 30) },
  ]);
}

describe('MobileNet v1 (TF.js layers) written as a Keras 3 .keras', { skip: skipWithoutSharedAssets }, () => {
  test('loads with every weight where tfjs put it (depthwise, batch normalisation), and computes what the TF.js model computes', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'camviz-keras-mobilenet-'));
    const tfjsModel = await loadModel(mobilenetDir);
    let kerasModel: CamvizModel | undefined;
    try {
      const path = join(folder, 'mobilenet.keras');
      await writeFile(path, kerasFileOf(tfjsModel, mobilenetDir));
      // The zoo knows MobileNet's preprocessing; a Keras file's comes from the user.
      kerasModel = await loadModel(path, { preprocess: tfjsModel.meta.preprocess });
      const loaded = await loadImage(join(kerasDir, 'images', 'both_150.png'), { size: tfjsModel.meta.inputSize });
      for (const model of [tfjsModel, kerasModel]) assert.deepEqual(model.meta.inputSize, { width: 224, height: 224 });
      const scores = await Promise.all([tfjsModel, kerasModel].map(async (model) => {
        const input = inputTensor(model, [loaded.input]);
        try {
          const values = await model.network().forward(input);
          try {
            return values.scores.dataSync().slice();
          } finally {
            disposeValues(values);
          }
        } finally {
          input.dispose();
        }
      }));
      assert.equal(maxAbsDifference(scores[0]!, scores[1]!), 0, 'the same network and weights compute the same scores');
    } finally {
      kerasModel?.dispose();
      tfjsModel.dispose();
      await rm(folder, { recursive: true, force: true });
    }
  });
});
