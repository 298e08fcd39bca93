/**
 * The floor camviz's ONNX Runtime engine stands on, for `npm run bench`:
 * onnxruntime-node alone, no camviz code, a forward pass of an ONNX model
 * (graph optimisation level `all`, one intra-op thread, spinning off: a
 * spinning thread ruins medians on a loaded machine). Prints one JSON line:
 * {"forward", "forward_min", "create"} in ms.
 *
 *   node dist/scripts/bench-ort-floor.js <model.onnx> <224x224 image> <runs> [preprocess tf|torch]
 */
import { createRequire } from 'node:module';
import sharp from 'sharp';
import { median } from './bench-stats.js';

/** The part of onnxruntime-node's API used here (it is an optional dependency: no compile-time import). */
interface OrtTensor {
  readonly dims: readonly number[];
}
interface OrtSession {
  readonly inputNames: readonly string[];
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}
interface OrtModule {
  InferenceSession: { create(path: string, options: Record<string, unknown>): Promise<OrtSession> };
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => OrtTensor;
}

const IMAGENET_MEAN = [0.485, 0.456, 0.406];
const IMAGENET_STD = [0.229, 0.224, 0.225];

/** NCHW float32 input from an RGB image, in the model's preprocessing. */
async function nchwInput(image: string, preprocess: string): Promise<{ data: Float32Array; height: number; width: number }> {
  const { data, info } = await sharp(image).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const { height, width } = info;
  const input = new Float32Array(3 * height * width);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < height * width; i++) {
      const pixel = data[i * 3 + c]!;
      input[c * height * width + i] = preprocess === 'torch' ? (pixel / 255 - IMAGENET_MEAN[c]!) / IMAGENET_STD[c]! : pixel / 127.5 - 1;
    }
  }
  return { data: input, height, width };
}

async function main(): Promise<void> {
  const [modelPath, imagePath, runsText, preprocess = 'tf'] = process.argv.slice(2);
  const runs = Number(runsText ?? '30');
  const ort = createRequire(import.meta.url)('onnxruntime-node') as OrtModule;
  const created = performance.now();
  const session = await ort.InferenceSession.create(modelPath!, {
    graphOptimizationLevel: 'all',
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    extra: { 'session.intra_op.allow_spinning': '0' },
  });
  const create = performance.now() - created;
  const { data, height, width } = await nchwInput(imagePath!, preprocess);
  const feeds = { [session.inputNames[0]!]: new ort.Tensor('float32', data, [1, 3, height, width]) };
  for (let i = 0; i < 5; i++) await session.run(feeds);
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    await session.run(feeds);
    samples.push(performance.now() - started);
  }
  await session.release();
  console.log(JSON.stringify({ forward: median(samples), forward_min: Math.min(...samples), create }));
}

await main();
