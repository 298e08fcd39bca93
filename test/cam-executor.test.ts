/**
 * The CAM methods depend on the small Executor interface, not on the
 * Network class: an executor that is not a Network (here a plain object
 * that delegates to one and records the calls) gives the same
 * explanations, through forward/backward only.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  type CamvizModel,
  type Executor,
  camTargets,
  classRequest,
  explainBatch,
  inputTensor,
  loadImage,
  loadModel,
  useBackend,
} from '../src/index.js';
import { Network } from '../src/executor/network.js';
import { repoRoot } from './helpers/assets.js';

let model: CamvizModel;

before(async () => {
  await useBackend('cpu');
  model = await loadModel('shapes');
});

/** An Executor that is not a Network: it forwards every call to `network` and logs which. */
function delegating(network: Executor, calls: string[]): Executor {
  return {
    graph: network.graph,
    score: network.score,
    get lastBackwardTimings() {
      return network.lastBackwardTimings;
    },
    forward: async (inputs, options) => {
      calls.push('forward');
      return await network.forward(inputs, options);
    },
    backward: async (inputs, objectives, options) => {
      calls.push('backward');
      return await network.backward(inputs, objectives, options);
    },
  };
}

test('every method explains the same through an Executor that is not a Network', async () => {
  const image = await loadImage(join(repoRoot, 'fixtures', 'shapes', 'circle-star.png'), { size: model.meta.inputSize });
  const input = inputTensor(model, [image.input]);
  try {
    const network = model.network();
    const layers = camTargets(model, []);
    const classes = classRequest(model, ['circle', 'star']);
    for (const method of ['gradcam', 'hirescam', 'cam', 'scorecam', 'eigencam', 'guidedbackprop', 'guidedgradcam']) {
      const calls: string[] = [];
      const executor = delegating(network, calls);
      assert.ok(!(executor instanceof Network));
      const through = (await explainBatch(executor, { method, input, layers, classes })).explanations;
      const direct = (await explainBatch(network, { method, input, layers, classes })).explanations;
      assert.ok(calls.length > 0, `${method}: ran through the executor`);
      assert.deepEqual(
        through.map((perImage) => perImage.map(({ classIndex, map, gradient }) => ({ classIndex, map: map?.data, gradient: gradient?.data }))),
        direct.map((perImage) => perImage.map(({ classIndex, map, gradient }) => ({ classIndex, map: map?.data, gradient: gradient?.data }))),
        method,
      );
    }
  } finally {
    input.dispose();
  }
});
