/**
 * Sets up the cold start's floor without tfjs (scripts/cold-floor-run.ts
 * says what it measures) for one ONNX model whose default CAM target has
 * a pooled linear head, and checks that it does the command line's work:
 * its map within 1e-4 of the command line's `--raw` map, its class the
 * same, its PNG within one level per channel of the command line's. A
 * floor that fails the check is reported with why, never timed.
 *
 * The setup (not timed) runs the command line once on ONNX Runtime: that
 * run saves the optimised graph and notes its first session, whose key,
 * input and outputs the floor then uses; the classifier's kernel comes from
 * camviz's own head walk (executor/linear-head.ts) on the model as tfjs
 * builds it.
 */
import { execFile } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { camTargets } from '../src/cam/request.js';
import { loadOnnxRuntime, withSession } from '../src/engine/onnxruntime.js';
import { linearHeadsOf } from '../src/executor/linear-head.js';
import { outputKeyOf } from '../src/executor/network.js';
import { readEntryIndexSync } from '../src/model/entry-index.js';
import { loadModel } from '../src/model/load.js';
import { onnxCacheDir } from '../src/model/onnx-writer/cache-limit.js';
import { FIRST_SESSIONS_NAME, type FirstSessionNote } from '../src/model/session-ahead.js';
import { decodeNpy } from '../src/render/npy.js';
import { bundleModule } from './bundling.js';
import { type ColdFloorPlan, float32Values } from './cold-floor-run.js';

const run = promisify(execFile);
const repoRoot = resolve(new URL('../..', import.meta.url).pathname);

/** Where the floor's bundle goes: a folder of dist/src/, so that the modules' relative URLs (the render kernels, sharp's bundle) resolve. */
export const COLD_FLOOR_BUNDLE = join(repoRoot, 'dist', 'src', 'bench', 'cold-floor.cjs');

/** The largest difference the check allows between the floor's map and the command line's (their arithmetic orders differ). */
const MAP_TOLERANCE = 1e-4;

export interface ColdFloorModel {
  /** An ONNX file. */
  readonly model: string;
  readonly preprocess: string;
  readonly image: string;
}

export type ColdFloorSetup = { readonly ok: true; readonly args: readonly string[] } | { readonly ok: false; readonly why: string };

/** The plan, the bundle and the check; `work` is a folder of the caller's, kept for the timed runs. */
export async function prepareColdFloor(spec: ColdFloorModel, work: string, env: NodeJS.ProcessEnv): Promise<ColdFloorSetup> {
  const reference = join(work, 'reference');
  await run(process.execPath, [join(repoRoot, 'bin', 'camviz.js'), 'gradcam', spec.image, '--model', spec.model, '--preprocess', spec.preprocess, '--engine', 'onnxruntime', '--raw', '--out', reference, '--quiet'], {
    env,
    timeout: 120_000,
  });
  const plan = await planOf(spec, work);
  if (typeof plan === 'string') return { ok: false, why: plan };
  const planPath = join(work, 'plan.json');
  await writeFile(planPath, JSON.stringify(plan));
  await mkdir(dirname(COLD_FLOOR_BUNDLE), { recursive: true });
  await bundleModule(join(repoRoot, 'dist', 'scripts', 'cold-floor-run.js'), COLD_FLOOR_BUNDLE);
  const args = [COLD_FLOOR_BUNDLE, planPath, spec.image];
  const checked = join(work, 'checked');
  await mkdir(checked, { recursive: true });
  await run(process.execPath, [...args, checked], { env, timeout: 120_000 });
  const why = await differences(reference, checked);
  return why === undefined ? { ok: true, args } : { ok: false, why };
}

/** The floor's plan from the command line's note and the model's head, or why there is none. */
async function planOf(spec: ColdFloorModel, work: string): Promise<ColdFloorPlan | string> {
  const optimizedFolder = onnxCacheDir();
  const note = readEntryIndexSync<FirstSessionNote>(join(optimizedFolder, FIRST_SESSIONS_NAME), (value) => value as FirstSessionNote)[realpathSync(spec.model)];
  if (note === undefined) return 'the command line noted no first session for the model';
  const model = await loadModel(spec.model, { preprocess: spec.preprocess, engine: 'tfjs' });
  try {
    const network = model.network();
    const [target] = camTargets(model, []);
    const head = target === undefined ? undefined : linearHeadsOf(network.graph, outputKeyOf(target), network.score);
    if (head?.kernel === undefined || head.gate !== undefined) return 'the default target has no pooled linear head without a gate';
    const { height, width } = model.meta.inputSize;
    const names = await outputsByRank(note, optimizedFolder, { height, width });
    if (typeof names === 'string') return names;
    const kernel = new Float32Array(head.classes * head.channels);
    for (let c = 0; c < head.classes; c++) for (let k = 0; k < head.channels; k++) kernel[c * head.channels + k] = head.kernel[k * head.channelStride + c * head.classStride]!;
    const kernelFile = join(work, 'kernel.f32');
    await writeFile(kernelFile, new Uint8Array(kernel.buffer));
    return {
      sessionKey: note.sessionKey,
      optimizedFolder,
      inputName: note.inputName,
      ...names,
      threads: note.threads,
      inputSize: { height, width },
      kernelFile,
      classes: head.classes,
      channels: head.channels,
    };
  } finally {
    model.dispose();
  }
}

/** Which of the noted session's two outputs is the activations (4-D) and which the scores (2-D), from one pass of zeros. */
async function outputsByRank(note: FirstSessionNote, folder: string, size: { height: number; width: number }): Promise<Pick<ColdFloorPlan, 'activationName' | 'scoresName'> | string> {
  if (note.outputNames.length !== 2) return `the first session has ${note.outputNames.length} outputs, not the activations and the scores`;
  const status = loadOnnxRuntime();
  if (!status.available) return status.reason;
  const ort = status.module;
  const noModel = (): Uint8Array => {
    throw new Error('no saved optimised graph');
  };
  const dims = await withSession(ort, note.sessionKey, noModel, note.threads, async (session) => {
    const zeros = new ort.Tensor('float32', new Float32Array(3 * size.height * size.width), [1, 3, size.height, size.width]);
    const results = await session.run({ [note.inputName]: zeros }, note.outputNames);
    return note.outputNames.map((name) => results[name]!.dims.length);
  }, folder, { memoryPattern: false });
  const activationName = note.outputNames[dims.indexOf(4)];
  const scoresName = note.outputNames[dims.indexOf(2)];
  return activationName === undefined || scoresName === undefined ? 'the first session does not fetch a 4-D and a 2-D value' : { activationName, scoresName };
}

/** Why the floor's outputs are not the command line's, or undefined when they are (within the tolerances above). */
async function differences(reference: string, checked: string): Promise<string | undefined> {
  const ours = (await readdir(checked)).find((name) => name.endsWith('.png'));
  const theirs = (await readdir(reference)).find((name) => name.endsWith('.png'));
  if (ours === undefined || theirs === undefined) return 'no PNG written';
  if (ours !== theirs) return `the floor wrote ${ours}, the command line ${theirs}`;
  const expected = decodeNpy(await readFile(join(reference, theirs.replace(/\.png$/, '.npy')))).data;
  const map = float32Values(await readFile(join(checked, `${ours}.map.f32`)));
  if (map.length !== expected.length) return `the maps have ${map.length} and ${expected.length} values`;
  const mapDifference = Math.max(...map.map((value, i) => Math.abs(value - expected[i]!)));
  if (!(mapDifference <= MAP_TOLERANCE * Math.max(1, ...expected))) return `the maps differ by ${mapDifference}`;
  const [a, b] = await Promise.all([ours, theirs].map(async (name, i) => (await sharp(join(i === 0 ? checked : reference, name)).raw().toBuffer())));
  if (a!.length !== b!.length) return 'the PNGs differ in size';
  let pixelDifference = 0;
  for (let i = 0; i < a!.length; i++) pixelDifference = Math.max(pixelDifference, Math.abs(a![i]! - b![i]!));
  return pixelDifference <= 1 ? undefined : `the PNGs differ by ${pixelDifference} levels`;
}
