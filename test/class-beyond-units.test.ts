/**
 * A class beyond the target's units, given to the library unchecked: a
 * UsageError naming the class and the units, for every method, before any
 * pass (gradient methods failed with a plain Error on the class's
 * objective; Score-CAM refused it only after its hundreds of masked
 * passes; Eigen-CAM, which no class changes, after its pass). Checked for
 * explainBatch (explicit and per-image requests, aug-smooth too) and for
 * explain (classes by index, and a one-unit target function); a class
 * within the units is explained, so that the check refuses only what it
 * should. The command line's `--class` is checked in bad-inputs.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import * as tf from '../src/engine/tf.js';
import { explainBatch } from '../src/cam/explain.js';
import type { ClassRequest } from '../src/cam/classes.js';
import { camTargets } from '../src/cam/request.js';
import { explain } from '../src/explain.js';
import { disposeValues } from '../src/executor/network.js';
import { type LoadedImage, imageFromRgb } from '../src/image/image.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { inputTensor } from '../src/model/predict.js';
import { UsageError } from '../src/util/errors.js';
import { repoRoot } from './helpers/assets.js';
import { countingPasses } from './helpers/counting-passes.js';
import { noise } from './helpers/files.js';

const shapesJson = join(repoRoot, 'models', 'shapes', 'model.json');
const skipWithoutShapes: string | false = existsSync(shapesJson) ? false : 'the embedded shapes model (models/shapes) is absent';

const METHODS = ['gradcam', 'gradcam++', 'scorecam', 'eigencam'] as const;

describe('a class beyond the target\'s units', { skip: skipWithoutShapes }, () => {
  let model: CamvizModel;
  let image: LoadedImage;
  /** The model's classes, as one forward pass gives them (not as the graph says them: that is what the check reads). */
  let units = 0;

  before(async () => {
    model = await loadModel('shapes');
    image = await imageFromRgb(noise(96, 80, 7), 96, 80, { size: model.meta.inputSize });
    const input = inputTensor(model, [image.input]);
    const values = await (await model.executor()).forward(input);
    units = values.probabilities.shape[1];
    disposeValues(values);
    input.dispose();
  });

  after(() => model?.dispose());

  /** Asserts that `call` rejects with a UsageError saying `said`, having run no pass of the model and left no tensor. */
  async function refusedBeforeAnyPass(what: string, said: string, call: () => Promise<unknown>): Promise<void> {
    const counter = countingPasses(model);
    const tensors = tf.memory().numTensors;
    await assert.rejects(call(), (error: unknown) => {
      assert.ok(error instanceof UsageError, `${what}: ${String(error)}`);
      assert.equal(error.message, said, what);
      return true;
    });
    assert.equal(counter.passes(), 0, `${what}: refused before any pass`);
    assert.equal(tf.memory().numTensors, tensors, `${what}: tensors left`);
  }

  test('explainBatch: explicit and per-image requests, with and without aug-smooth, for every method', async () => {
    const input = inputTensor(model, [image.input]);
    const layers = camTargets(model, []);
    const beyond = (classIndex: number): string => `class ${classIndex} is out of range: the target has ${units} units (0-${units - 1})`;
    try {
      for (const method of METHODS) {
        const requests: [ClassRequest, number][] = [
          [{ kind: 'explicit', classes: [units] }, units],
          [{ kind: 'explicit', classes: [0, 5000] }, 5000],
          [{ kind: 'perImage', classes: [[units + 1]] }, units + 1],
        ];
        for (const [classes, refused] of requests) {
          for (const augSmooth of [false, true]) {
            const what = `${method} ${JSON.stringify(classes)}${augSmooth ? ' aug-smooth' : ''}`;
            await refusedBeforeAnyPass(what, beyond(refused), async () => explainBatch(await model.executor(), { method, input, layers, classes, augSmooth }));
          }
        }
        // Within the units: explained.
        const counter = countingPasses(model);
        const { explanations } = await explainBatch(await model.executor(), { method, input, layers, classes: { kind: 'explicit', classes: [units - 1] } });
        assert.equal(explanations[0]?.[0]?.classIndex, units - 1, method);
        assert.ok(counter.passes() > 0, method);
      }
    } finally {
      input.dispose();
    }
  });

  test('explain: a class beyond the model\'s, and beyond a one-unit target function\'s, for every method', async () => {
    for (const method of METHODS) {
      await refusedBeforeAnyPass(`${method} class 5000`, `class 5000 is out of range: the model has ${units} classes (0-${units - 1})`, () => explain(model, [image], { method, classes: [5000] }));
      // A class the model has, but not the target: a function gives one Y an image.
      const target = (values: { scores: tf.Tensor2D }, row: number): tf.Scalar => tf.tidy(() => tf.sum(tf.slice(values.scores, [row, 0], [1, -1])));
      await refusedBeforeAnyPass(`${method} function target, class 1`, 'class 1 is out of range: the target has 1 unit (0-0)', () => explain(model, [image], { method, classes: [1], target }));
      const explained = await explain(model, [image], { method, classes: [0], target });
      assert.equal(explained[0]?.[0]?.classIndex, 0, `${method}: the function's one unit is explained`);
    }
  });
});
