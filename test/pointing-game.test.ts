/**
 * The pointing game (issue: the Grad-CAM peak falls inside the target
 * shape's box in >= 95% of fresh scenes; on two-shape scenes each class
 * points at its own shape). The scenes are generated here, with boxes known
 * from the generator, not from the model.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { useBackend } from '../src/engine/backend.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { DEFAULT_POINTING, pointingGame, pointingScenes } from '../scripts/pointing-game.js';

let model: CamvizModel;
let scenes: Awaited<ReturnType<typeof pointingScenes>>;

before(async () => {
  await useBackend('wasm');
  model = await loadModel('shapes');
  scenes = await pointingScenes(model, { ...DEFAULT_POINTING, scenes: 100 });
});

test('Grad-CAM points at the shape in >= 95% of single-shape scenes and at each class\'s own shape in two-shape scenes', async () => {
  const result = await pointingGame(model, 'gradcam', scenes);
  assert.equal(result.single.total, 100);
  assert.equal(result.two.total, 200);
  assert.ok(result.single.hits >= 95, `single: ${result.single.hits}/100`);
  assert.ok(result.two.hits >= 190, `two shapes: ${result.two.hits}/200`);
});

test('CAM (classifier weights, no gradients) points as well as Grad-CAM on this GAP + dense head', async () => {
  const result = await pointingGame(model, 'cam', scenes);
  assert.ok(result.single.hits >= 95, `single: ${result.single.hits}/100`);
  assert.ok(result.two.hits >= 190, `two shapes: ${result.two.hits}/200`);
});

test('Eigen-CAM does not depend on the class: on two-shape scenes it cannot point at both shapes', async () => {
  const result = await pointingGame(model, 'eigencam', scenes);
  // Each scene's two classes get the same map, so at most one of them hits.
  assert.ok(result.two.hits <= result.two.total / 2, `two shapes: ${result.two.hits}/${result.two.total}`);
});
