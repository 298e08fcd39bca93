/**
 * One process's Grad-CAM latency on MobileNet v1 0.75 (for `npm run bench`,
 * which runs it once per backend and thread count, since a process holds
 * one backend): prints {"forward", "gradcam", "threads"} in ms, medians.
 *
 *   node dist/scripts/bench-latency.js <model folder> <image> [runs]
 */
import { explainBatch } from '../src/cam/explain.js';
import { camTargets, classRequest } from '../src/cam/request.js';
import { releaseBackend, requestedBackend, useBackend } from '../src/engine/backend.js';
import { loadImage } from '../src/image/image.js';
import { loadModel } from '../src/model/load.js';
import { disposeValues } from '../src/executor/network.js';
import { inputTensor } from '../src/model/predict.js';

const [modelPath, imagePath, runsText] = process.argv.slice(2);
const runs = Number(runsText ?? '30');

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function measure(fn: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 5; i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    await fn();
    samples.push(performance.now() - started);
  }
  return median(samples);
}

const backend = await useBackend(requestedBackend());
const model = await loadModel(modelPath);
const image = await loadImage(imagePath!, { size: model.meta.inputSize });
const input = inputTensor(model, [image.input]);
const network = model.network();
const layers = camTargets(model, []);
const classes = classRequest(model, ['281']);
const forward = await measure(async () => disposeValues(await network.forward(input)));
const gradcam = await measure(() => explainBatch(network, { method: 'gradcam', input, layers, classes }));
input.dispose();
model.dispose();
console.log(JSON.stringify({ backend: backend.kind, threads: backend.threads ?? 1, forward, gradcam }));
await releaseBackend();
