/**
 * Class selection happens in one place: a top-k request gives the classes
 * predict's topK gives, whichever path explains them (a map method, the
 * aug-smooth batch, guided backprop), and the maps equal those of the same
 * classes asked for by index.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { type CamvizModel, type LoadedImage, classProbabilities, explain, loadImage, loadModel, topK, useBackend } from '../src/index.js';
import { repoRoot } from './helpers/assets.js';

let model: CamvizModel;
let images: LoadedImage[];

before(async () => {
  await useBackend('cpu');
  model = await loadModel('shapes');
  const fixtures = join(repoRoot, 'fixtures', 'shapes');
  images = await Promise.all(['circle-star.png', 'square-cross.png'].map((name) => loadImage(join(fixtures, name), { size: model.meta.inputSize })));
});

test('--top-k 2 explains predict\'s top two classes of each image, for gradcam, aug-smooth and guided backprop', async () => {
  const expected = (await classProbabilities(model, images.map((image) => image.input))).map((row) => topK(row, 2).map((prediction) => prediction.index));
  // Two images with different top classes, so that a per-image choice is checked.
  assert.notDeepEqual(expected[0], expected[1]);
  for (const options of [{ method: 'gradcam' }, { method: 'gradcam', augSmooth: true }, { method: 'guidedbackprop' }, { method: 'guidedgradcam' }]) {
    const byTopK = await explain(model, images, { ...options, topK: 2 });
    assert.deepEqual(byTopK.map((perImage) => perImage.map((explanation) => explanation.classIndex)), expected, JSON.stringify(options));
    for (const [i, image] of images.entries()) {
      const byIndex = (await explain(model, [image], { ...options, classes: expected[i]! }))[0]!;
      assert.deepEqual(byTopK[i]!.map((explanation) => explanation.map?.data ?? explanation.gradient!.data), byIndex.map((explanation) => explanation.map?.data ?? explanation.gradient!.data), JSON.stringify(options));
    }
  }
});
