/**
 * The cold start's floor without tfjs (issue 12): one process that does
 * only what a one-image Grad-CAM on ONNX Runtime must do when the head is
 * in closed form (global average pooling, then a linear classifier), and
 * nothing of what camviz's command line does beside it today (tfjs-core,
 * -layers and the wasm backend loaded, the ONNX graph parsed and built as
 * a layers model, the CAM arithmetic in tfjs ops). It is a measurement,
 * not a product path: `npm run bench -- --only cold` runs it interleaved
 * with the command line, after checking that its map and picture are the
 * command line's (scripts/cold-floor.ts), and prints its time as the
 * floor of the design past the line (README, Performance).
 *
 * What it still does, as the command line does: the code cache for its
 * bundle and sharp's, sharp's decoding and resize, ONNX Runtime's session
 * from the saved optimised graph the command line's first run saved,
 * whose outputs are the target layer's activations and the class scores
 * (the command line's first session, as its note in the ONNX cache names
 * it), the map drawn and blended by camviz's renderer, the PNG and a
 * manifest written by temporary name and rename.
 *
 * Usage (bundled by scripts/cold-floor.ts): node cold-floor.cjs <plan.json> <image> <out folder>
 */
import { readFileSync } from 'node:fs';
import { join, parse } from 'node:path';
import { fileURLToPath } from 'node:url';
import { enableCodeCache } from '../src/engine/code-cache.js';
import { type OrtSession, type OrtTensor, loadOnnxRuntime, withSession } from '../src/engine/onnxruntime.js';
import { loadImage } from '../src/image/image.js';
import { renderExplanation } from '../src/render/explanation.js';
import { encodePhotoPng } from '../src/render/png.js';
import { writeFileAtomic } from '../src/util/atomic-file.js';
import { SHARP_BUNDLE_PATH } from '../src/util/sharp-choice.js';

/** What scripts/cold-floor.ts found out about the model before the timed runs. */
export interface ColdFloorPlan {
  /** The command line's first session: its key names the saved optimised graph in `optimizedFolder`. */
  readonly sessionKey: string;
  readonly optimizedFolder: string;
  readonly inputName: string;
  /** The target layer's activations (NCHW), then the class scores. */
  readonly activationName: string;
  readonly scoresName: string;
  readonly threads: number;
  readonly inputSize: { readonly height: number; readonly width: number };
  /** The classifier's kernel, [classes, channels] float32, little-endian. */
  readonly kernelFile: string;
  readonly classes: number;
  readonly channels: number;
}

/** A file's bytes as float32 values, copied out (a small file's Buffer is a view into a shared pool). */
export function float32Values(bytes: Uint8Array): Float32Array {
  return new Float32Array(Uint8Array.from(bytes).buffer);
}

/** `tf` preprocessing (x / 127.5 - 1) of RGB HWC pixels into an NCHW batch of one. */
function nchwInput(rgb: Uint8Array, height: number, width: number): Float32Array {
  const plane = height * width;
  const input = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    input[i] = rgb[3 * i]! / 127.5 - 1;
    input[plane + i] = rgb[3 * i + 1]! / 127.5 - 1;
    input[2 * plane + i] = rgb[3 * i + 2]! / 127.5 - 1;
  }
  return input;
}

function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/**
 * Grad-CAM through a pooled linear head: dScore_c/dA_k is W[c, k] / (h·w)
 * everywhere, so the channel weights are that constant and the map is
 * ReLU(Σ_k W[c, k] / (h·w) · A_k).
 */
function gradCamMap(activations: Float32Array, kernel: Float32Array, plan: ColdFloorPlan, classIndex: number, plane: number): Float32Array {
  const map = new Float32Array(plane);
  for (let k = 0; k < plan.channels; k++) {
    const weight = kernel[classIndex * plan.channels + k]! / plane;
    const channel = k * plane;
    for (let i = 0; i < plane; i++) map[i] = map[i]! + weight * activations[channel + i]!;
  }
  for (let i = 0; i < plane; i++) if (!(map[i]! > 0)) map[i] = 0;
  return map;
}

async function run(planPath: string, imagePath: string, outDir: string): Promise<void> {
  enableCodeCache([fileURLToPath(import.meta.url), SHARP_BUNDLE_PATH]);
  const plan = JSON.parse(readFileSync(planPath, 'utf8')) as ColdFloorPlan;
  // Decoding runs on libuv's threads while this thread makes the session.
  const decoding = loadImage(imagePath, { size: plan.inputSize });
  const status = loadOnnxRuntime();
  if (!status.available) throw new Error(status.reason);
  const ort = status.module;
  const noModel = (): Uint8Array => {
    throw new Error('the saved optimised graph did not load: run the command line once first');
  };
  const kernel = float32Values(readFileSync(plan.kernelFile));
  await withSession(ort, plan.sessionKey, noModel, plan.threads, async (session: OrtSession) => {
    const image = await decoding;
    const { height, width } = plan.inputSize;
    const feed = new ort.Tensor('float32', nchwInput(image.input, height, width), [1, 3, height, width]);
    const results: Record<string, OrtTensor> = await session.run({ [plan.inputName]: feed }, [plan.activationName, plan.scoresName]);
    const activations = results[plan.activationName]!;
    const [, channels, h, w] = activations.dims as [number, number, number, number];
    if (channels !== plan.channels) throw new Error(`the activations have ${channels} channels, the classifier ${plan.channels}`);
    const classIndex = argmax(results[plan.scoresName]!.data as Float32Array);
    const map = gradCamMap(activations.data as Float32Array, kernel, plan, classIndex, h * w);
    const picture = renderExplanation({ width: w, height: h, data: map }, undefined, image, { blendIntoOriginal: true });
    const name = `${parse(imagePath).name}.gradcam.${classIndex}.png`;
    await writeFileAtomic(join(outDir, name), await encodePhotoPng(picture.rgb, picture.width, picture.height));
    const record = { input: imagePath, class: classIndex, peak: picture.peak, png: name };
    await writeFileAtomic(join(outDir, 'manifest.json'), `${JSON.stringify({ records: [record] }, null, 2)}\n`);
    await writeFileAtomic(join(outDir, `${name}.map.f32`), new Uint8Array(map.buffer));
    // As the command line's session made ahead (executor/ort-session-ahead.ts): no memory pattern.
  }, plan.optimizedFolder, { memoryPattern: false });
}

/** The process: `cold-floor.cjs <plan.json> <image> <out folder>`. */
function runFromCommandLine(): void {
  const [planPath, imagePath, outDir] = process.argv.slice(2);
  if (planPath === undefined || imagePath === undefined || outDir === undefined) {
    process.stderr.write('usage: cold-floor.cjs <plan.json> <image> <out folder>\n');
    process.exitCode = 2;
    return;
  }
  run(planPath, imagePath, outDir).then(
    // As the command line ends (src/cli/run.ts): without Node's own teardown after the 'exit' listeners.
    () => process.once('exit', () => process.exit()),
    (error: unknown) => {
      process.stderr.write(`cold-floor: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}

// Imported (scripts/cold-floor.ts), the module only lends its types and helpers.
if (process.argv[1] === fileURLToPath(import.meta.url)) runFromCommandLine();
