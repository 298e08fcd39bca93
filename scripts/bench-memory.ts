/**
 * Memory over a folder run, for `npm run bench`: one `--jobs 1` Grad-CAM run
 * (in this thread, so that tf.memory() sees the model's tensors) over a
 * folder, with the resident memory and the live tensor count sampled as the
 * images go by. A child process, so that the memory is this run's alone.
 * Prints one JSON line: {"exitCode", "samples": [{"images", "rss", "tensors"}],
 * "after"}: `samples` during the run, `after` once it has released its model.
 *
 *   node dist/scripts/bench-memory.js '<MemoryRequest as JSON>'
 */
import { readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runBatch } from '../src/batch/runner.js';
import { requestedBackend, useBackend } from '../src/engine/backend.js';
import * as tf from '../src/engine/tf.js';
import { camTaskOptions } from '../src/tasks/defaults.js';
import type { Engine } from './bench-engines.js';

export interface MemoryRequest {
  model: string;
  preprocess?: string;
  folder: string;
  /** Absent in a build without the engine option (CAMVIZ_ENGINE is set by the parent as well). */
  engine?: Engine;
}

export interface MemorySample {
  images: number;
  rss: number;
  tensors: number;
}

async function main(): Promise<void> {
  const request = JSON.parse(process.argv[2] ?? '{}') as MemoryRequest;
  // tf.memory() needs a backend: the one the run will use (CAMVIZ_BACKEND), started before the sampler.
  await useBackend(requestedBackend());
  const outDir = await mkdtemp(join(tmpdir(), 'camviz-bench-memory-'));
  const samples: MemorySample[] = [];
  // Model work is synchronous: the timer fires between batches, where a leak would show.
  const sample = (): void => {
    const images = readdirSync(outDir).filter((name) => name.endsWith('.png')).length;
    samples.push({ images, rss: process.memoryUsage().rss, tensors: tf.memory().numTensors });
  };
  const timer = setInterval(sample, 200);
  try {
    const model = { model: request.model, ...(request.preprocess === undefined ? {} : { preprocess: request.preprocess }), ...(request.engine === undefined ? {} : { engine: request.engine }) };
    const result = await runBatch({ task: camTaskOptions(outDir, { model }), inputs: [request.folder], jobs: 1, quiet: true, manifest: true });
    clearInterval(timer);
    const during = samples.splice(0);
    sample();
    console.log(JSON.stringify({ exitCode: result.exitCode, samples: during, after: samples[0] }));
  } finally {
    clearInterval(timer);
    await rm(outDir, { recursive: true, force: true });
  }
}

await main();
