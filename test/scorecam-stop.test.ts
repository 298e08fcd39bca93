/**
 * A folder run's first signal during Score-CAM, in this thread (the
 * executor of a `--jobs 1` run): the stop is raised from inside the
 * model's forward pass after a given number of passes, so that what
 * follows is counted, not timed. Checked here:
 * - the batches in flight (three, as the runner keeps them) take turns at
 *   their model work: one image in model work at a time with
 *   `--batch-size 1`;
 * - after the stop, the image under way makes no more masked passes (no
 *   chunk starts) and no other image's model work starts: none of them is
 *   recorded (not done; no error) and no map of theirs is on disk.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { InProcessExecutor } from '../src/batch/pool.js';
import { camTaskOptions } from '../src/tasks/defaults.js';
import type { InputImage } from '../src/tasks/types.js';
import { repoRoot } from './helpers/assets.js';
import { IN_FLIGHT, countingPasses, inFlightImages, pngsIn, processAll } from './helpers/counting-passes.js';

const shapesJson = join(repoRoot, 'models', 'shapes', 'model.json');
const skipWithoutShapes: string | false = existsSync(shapesJson) ? false : 'the embedded shapes model (models/shapes) is absent';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-scorecam-stop-test-'));
after(() => rm(workDir, { recursive: true, force: true }));

describe('Score-CAM in this thread, three batches of one image in flight', { skip: skipWithoutShapes }, () => {
  let images: InputImage[] = [];

  before(async () => {
    images = await inFlightImages(join(workDir, 'in'));
  });

  async function start(out: string): Promise<InProcessExecutor> {
    return InProcessExecutor.start(camTaskOptions(out, { model: { model: 'shapes', backend: 'wasm', engine: 'tfjs' }, method: 'scorecam', batchSize: 1 }));
  }

  let passesOfWholeRun = 0;

  test('their model work runs one image at a time; every image is done', async () => {
    const out = join(workDir, 'whole');
    const executor = await start(out);
    try {
      const counter = countingPasses(executor.context.model);
      const outcomes = await processAll(executor, images);
      assert.deepEqual(
        outcomes.flatMap((outcome) => outcome.records.map((record) => [record.relative, record.status])),
        images.map((image) => [image.relative, 'ok']),
      );
      assert.equal(executor.context.modelWork?.mostAtOnce, 1, 'one batch in model work at a time');
      passesOfWholeRun = counter.passes();
      assert.ok(passesOfWholeRun >= IN_FLIGHT * 3, `an image's activations pass and at least two chunks (${passesOfWholeRun} passes in all)`);
      assert.equal((await pngsIn(out)).length, IN_FLIGHT);
    } finally {
      await executor.close();
    }
  });

  test('a stop after the first chunk of the first image: no more passes, no image done, no map written, no failure', async () => {
    const out = join(workDir, 'stopped');
    const executor = await start(out);
    try {
      // The activations' pass, then the first chunk of masked inputs; the stop comes as that chunk ends.
      const stopAt = 2;
      const counter = countingPasses(executor.context.model, (passes) => {
        if (passes === stopAt) executor.cancel();
      });
      const outcomes = await processAll(executor, images);
      assert.equal(counter.passes(), stopAt, 'no chunk started after the stop, and no other image\'s model work');
      assert.ok(counter.passes() < passesOfWholeRun);
      assert.deepEqual(
        outcomes.flatMap((outcome) => outcome.records),
        [],
        'no record: the images are not done (the manifest says interrupted), none failed',
      );
      assert.deepEqual(await pngsIn(out), []);
      assert.equal(executor.context.modelWork?.mostAtOnce, 1);
    } finally {
      await executor.close();
    }
  });
});
