/**
 * One process's per-image timings, for `npm run bench`, which runs it once
 * per engine, backend and thread count (a process holds one tfjs backend).
 * It runs the commands' own per-image pipeline (the task the CLI runs:
 * decode, forward, head backward, render, encode) on single-image batches
 * and prints one JSON line: per method, the median of each stage in ms and
 * `compute` = forward + backward (what the PyTorch reference times).
 *
 *   node dist/scripts/bench-latency.js '<LatencyRequest as JSON>'
 *
 * The backend and wasm threads come from CAMVIZ_BACKEND and
 * CAMVIZ_WASM_THREADS; the engine from the request (passed to loadModel).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { releaseBackend, requestedBackend, useBackend } from '../src/engine/backend.js';
import { loadModel } from '../src/model/load.js';
import { camTaskOptions, predictTaskOptions } from '../src/tasks/defaults.js';
import { createTask } from '../src/tasks/index.js';
import type { ModelSpec, Timings } from '../src/tasks/types.js';
import { type Engine, engineLoadOptions } from './bench-engines.js';
import { median } from './bench-stats.js';

export interface LatencyRequest {
  model: string;
  preprocess?: string;
  image: string;
  /** `predict`, or a CAM method name, with its timed runs (after `warmup` untimed ones). */
  methods: { method: string; runs: number; warmup: number }[];
  classes: string[];
  /** Absent in a build without the engine option. */
  engine?: Engine;
}

export const STAGES = ['decode', 'forward', 'backward', 'render', 'encode', 'total'] as const;
/** Medians of the timed runs per stage, and `computeRuns`: each timed run's compute, in order. */
export type StageTimings = Record<(typeof STAGES)[number] | 'compute' | 'computeMin', number> & { computeRuns: number[] };

export interface LatencyResult {
  backend: string;
  threads: number;
  engine?: Engine;
  methods: Record<string, StageTimings>;
}

function summarise(samples: readonly Timings[]): StageTimings {
  const stage = (key: (typeof STAGES)[number]): number => median(samples.map((sample) => sample[key] ?? 0));
  const compute = samples.map((sample) => (sample.forward ?? 0) + (sample.backward ?? 0));
  return { ...(Object.fromEntries(STAGES.map((key) => [key, stage(key)])) as Record<(typeof STAGES)[number], number>), compute: median(compute), computeMin: Math.min(...compute), computeRuns: compute };
}

async function main(): Promise<void> {
  const request = JSON.parse(process.argv[2] ?? '{}') as LatencyRequest;
  const backend = await useBackend(requestedBackend());
  const spec: ModelSpec = { model: request.model, ...(request.preprocess === undefined ? {} : { preprocess: request.preprocess }) };
  const model = await loadModel(request.model, engineLoadOptions(spec, request.engine));
  const context = { model, backend };
  const outDir = await mkdtemp(join(tmpdir(), 'camviz-bench-latency-'));
  // The task's model spec carries the engine too, as the CLI's does.
  const taskModel = { ...spec, ...(request.engine === undefined ? {} : { engine: request.engine }) };
  const methods: Record<string, StageTimings> = {};
  try {
    for (const { method, runs, warmup } of request.methods) {
      const perImage = { model: taskModel, batchSize: 1 };
      const options = method === 'predict' ? predictTaskOptions(outDir, perImage) : camTaskOptions(outDir, { ...perImage, method, classes: request.classes });
      const task = createTask(context, options);
      const samples: Timings[] = [];
      for (let i = 0; i < warmup + runs; i++) {
        const { records } = await task.process([{ path: request.image, relative: `bench-${i % 2}.png` }]);
        const record = records[0]!;
        if (record.status !== 'ok') throw new Error(`${method} failed on ${request.image}: ${record.error}`);
        if (i >= warmup) samples.push(record.timings);
      }
      methods[method] = summarise(samples);
    }
  } finally {
    await rm(outDir, { recursive: true, force: true });
    model.dispose();
  }
  const result: LatencyResult = { backend: backend.kind, threads: backend.threads ?? 1, ...(request.engine === undefined ? {} : { engine: request.engine }), methods };
  console.log(JSON.stringify(result));
  await releaseBackend();
}

await main();
