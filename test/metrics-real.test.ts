/**
 * The metrics' ordering on a real model (issue 13): MobileNet v1 0.75 on
 * both.png, Grad-CAM of class 243 (bull mastiff). A faithful map's
 * deletion curve falls faster, and its insertion curve rises faster, than
 * those of a random map measured the same way.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { explainBatch } from '../src/cam/explain.js';
import { camTargets, classRequest } from '../src/cam/request.js';
import { useBackend } from '../src/engine/backend.js';
import { loadImage } from '../src/image/image.js';
import type { MetricsRecord } from '../src/metrics/names.js';
import { measureExplanations } from '../src/metrics/runner.js';
import { loadModel } from '../src/model/load.js';
import { inputTensor } from '../src/model/predict.js';
import { imagePath, mobilenetDir, skipWithoutSharedAssets } from './helpers/assets.js';

let metrics: MetricsRecord;

before(async () => {
  if (skipWithoutSharedAssets !== false) return;
  await useBackend('wasm');
  const model = await loadModel(mobilenetDir);
  const image = await loadImage(imagePath('both.png'), { size: model.meta.inputSize });
  const input = inputTensor(model, [image.input]);
  try {
    const executor = await model.executor();
    const computed = await explainBatch(executor, { method: 'gradcam', input, layers: camTargets(model, []), classes: classRequest(model, [243], 1) });
    metrics = (await measureExplanations(executor, { input, explanations: computed.explanations, seeds: [1] }, { names: ['deletion', 'insertion'], steps: 20 }))[0]![0]!;
  } finally {
    input.dispose();
  }
});

test('MobileNet v1, both.png, Grad-CAM of class 243: deletion AUC below the random map\'s', { skip: skipWithoutSharedAssets }, () => {
  assert.ok(metrics.deletionAuc! < metrics.random.deletionAuc!, `deletion ${metrics.deletionAuc} vs random ${metrics.random.deletionAuc}`);
});

test('MobileNet v1, both.png, Grad-CAM of class 243: insertion AUC above the random map\'s', { skip: skipWithoutSharedAssets }, () => {
  assert.ok(metrics.insertionAuc! > metrics.random.insertionAuc!, `insertion ${metrics.insertionAuc} vs random ${metrics.random.insertionAuc}`);
  for (const value of [metrics.deletionAuc!, metrics.insertionAuc!, metrics.random.deletionAuc!, metrics.random.insertionAuc!]) {
    assert.ok(value >= 0 && value <= 1, `an AUC of probabilities lies in [0, 1]: ${value}`);
  }
});
