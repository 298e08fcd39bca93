/**
 * A folder run's first signal during the other long model work of an
 * image, in this thread (the executor of a `--jobs 1` run), as
 * scorecam-stop.test.ts checks Score-CAM's: `--metrics` (a curve is
 * hundreds of perturbed images, METRIC_BATCH a pass) and `--aug-smooth`
 * (six versions of each image, a pass each). The stop is raised from
 * inside the model's pass after a given number of passes, so that what
 * follows is counted, not timed. Checked: after the stop, no pass starts,
 * neither the image's nor another's; no image is recorded (not done, no
 * error) and no map is on disk.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { InProcessExecutor } from '../src/batch/pool.js';
import { camTaskOptions } from '../src/tasks/defaults.js';
import type { CamTaskOptions, InputImage } from '../src/tasks/types.js';
import { repoRoot } from './helpers/assets.js';
import { IN_FLIGHT, countingPasses, inFlightImages, pngsIn, processAll } from './helpers/counting-passes.js';

const shapesJson = join(repoRoot, 'models', 'shapes', 'model.json');
const skipWithoutShapes: string | false = existsSync(shapesJson) ? false : 'the embedded shapes model (models/shapes) is absent';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-long-work-stop-test-'));
after(() => rm(workDir, { recursive: true, force: true }));

interface Case {
  name: string;
  options: Partial<CamTaskOptions>;
  /** The pass the stop comes at: part way through the first image's long work. */
  stopAt: number;
  /** What runs before the stop. */
  before: string;
}

const cases: Case[] = [
  {
    name: '--metrics deletion,insertion',
    // An image: Grad-CAM's backward pass, the reference pass, then 4 passes of the curves' 76 images (map and random, 19 a curve).
    options: { method: 'gradcam', metrics: { names: ['deletion', 'insertion'], steps: 20 } },
    stopAt: 3,
    before: 'the backward pass, the reference pass and the first pass of the curves',
  },
  {
    name: '--aug-smooth',
    // An image: the top class's forward pass, then one backward pass for each of the six versions.
    options: { method: 'gradcam', augSmooth: true },
    stopAt: 2,
    before: 'the top class\'s pass and the first version\'s',
  },
];

describe('long model work in this thread, three batches of one image in flight', { skip: skipWithoutShapes }, () => {
  let images: InputImage[] = [];

  before(async () => {
    images = await inFlightImages(join(workDir, 'in'));
  });

  for (const { name, options, stopAt, before: beforeStop } of cases) {
    const start = (out: string): Promise<InProcessExecutor> =>
      InProcessExecutor.start(camTaskOptions(out, { model: { model: 'shapes', backend: 'wasm', engine: 'tfjs' }, batchSize: 1, ...options }));

    let passesOfWholeRun = 0;

    test(`${name}: every image is done`, async () => {
      const out = join(workDir, `whole-${name}`);
      const executor = await start(out);
      try {
        const counter = countingPasses(executor.context.model);
        const outcomes = await processAll(executor, images);
        assert.deepEqual(
          outcomes.flatMap((outcome) => outcome.records.map((record) => [record.relative, record.status, record.error])),
          images.map((image) => [image.relative, 'ok', undefined]),
        );
        passesOfWholeRun = counter.passes();
        assert.ok(passesOfWholeRun >= IN_FLIGHT * (stopAt + 2), `the stop comes part way through an image's passes (${passesOfWholeRun} passes in all)`);
        assert.equal((await pngsIn(out)).length, IN_FLIGHT);
      } finally {
        await executor.close();
      }
    });

    test(`${name}: a stop after ${beforeStop}: no more passes, no image done, no map written, no failure`, async () => {
      const out = join(workDir, `stopped-${name}`);
      const executor = await start(out);
      try {
        const counter = countingPasses(executor.context.model, (passes) => {
          if (passes === stopAt) executor.cancel();
        });
        const outcomes = await processAll(executor, images);
        assert.equal(counter.passes(), stopAt, 'no pass started after the stop, and no other image\'s model work');
        assert.ok(counter.passes() < passesOfWholeRun);
        assert.deepEqual(outcomes.flatMap((outcome) => outcome.records), [], 'no record: the images are not done (the manifest says interrupted), none failed');
        assert.deepEqual(await pngsIn(out), []);
      } finally {
        await executor.close();
      }
    });
  }
});
