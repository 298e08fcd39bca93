/**
 * The PyTorch reference processes of `npm run bench` (issue 12): the
 * environment they run in, and the three ways the bench runs them:
 * `gradcam_ref.py` (Grad-CAM latency on the TF.js MobileNet), a timer over a
 * torchvision model rebuilt by `onnx_models.py` (the same weights as the
 * shared ONNX export), and `gradcam_folder.py` (a folder loop).
 *
 * PyTorch is measured two ways, side by side:
 * - **fair**: PyTorch at its best on this machine. Debian's OpenBLAS picks its
 *   AVX-512 kernels only with `OPENBLAS_CORETYPE`/`OPENBLAS_L2_SIZE` unset;
 *   glibc's malloc thresholds at 4 GiB stop it handing torch's buffers back to
 *   the OS after every pass (2,000 page faults on the next one); OpenBLAS's own
 *   threads would fight torch's (`OPENBLAS_NUM_THREADS=1`).
 * - **as-is**: the environment unchanged, as a user's shell would run it.
 *
 * Only these PyTorch processes get the fair settings: camviz's processes,
 * tests and CI keep the environment as it is.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cacheRoot } from '../src/util/cache-root.js';
import { makeFolders } from '../src/util/make-folders.js';
import { sha256Hex } from '../src/util/sha256.js';

const run = promisify(execFile);

/** Debian's Python, where python3-torch is installed (not a pyenv python3 on PATH). */
export const PYTHON = '/usr/bin/python3';

export type TorchEnvKind = 'fair' | 'as-is';

/** What each kind means, for the tables. */
export const TORCH_ENV_LABEL: Record<TorchEnvKind, string> = {
  fair: 'fair (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE unset; GLIBC_TUNABLES malloc mmap/trim thresholds 4 GiB; OPENBLAS_NUM_THREADS=1)',
  'as-is': 'as the environment is',
};

export const FAIR_GLIBC_TUNABLES = 'glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296';

/** The environment of a PyTorch process the bench spawns; a copy: `env` is not changed. */
export function torchEnv(kind: TorchEnvKind, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const copy = { ...env };
  if (kind === 'as-is') return copy;
  delete copy['OPENBLAS_CORETYPE'];
  delete copy['OPENBLAS_L2_SIZE'];
  copy['GLIBC_TUNABLES'] = FAIR_GLIBC_TUNABLES;
  copy['OPENBLAS_NUM_THREADS'] = '1';
  return copy;
}

/** Timings a PyTorch process reports (ms): medians, and the fastest run. */
export interface TorchTimings {
  forward: number;
  gradcam: number;
  forward_min: number;
  gradcam_min: number;
  threads: number;
}

/** Why the reference cannot run here, or undefined when it can. */
export async function torchMissing(torchRef: string, modules = 'torch, cv2, PIL'): Promise<string | undefined> {
  if (!existsSync(join(torchRef, 'gradcam_ref.py'))) return `${torchRef} not found`;
  try {
    await run(PYTHON, ['-c', `import ${modules}`], { timeout: 120_000, env: torchEnv('fair') });
    return undefined;
  } catch {
    return `${modules.split(', ').map((name) => `python3-${name === 'cv2' ? 'opencv' : name.toLowerCase()}`).join(', ')}: not all installed for ${PYTHON} (apt-get install -y --no-install-recommends python3-torch python3-torchvision python3-pil python3-opencv)`;
  }
}

const lastJsonLine = <T>(stdout: string): T => JSON.parse(stdout.trim().split('\n').pop()!) as T;

/** `gradcam_ref.py` on the TF.js layers model: Grad-CAM and Grad-CAM++ from one forward and one head backward. */
export async function torchGradcamTfjs(torchRef: string, kind: TorchEnvKind, threads: number, runs: number, model: string, image: string, layer: string, cls: string): Promise<TorchTimings> {
  const out = join(tmpdir(), `camviz-bench-torch-${process.pid}.json`);
  try {
    const { stdout } = await run(
      PYTHON,
      [join(torchRef, 'gradcam_ref.py'), '--model', model, '--image', image, '--layer', layer, '--class', cls, '--out', out, '--threads', String(threads), '--repeat', String(runs)],
      { timeout: 600_000, maxBuffer: 64 << 20, env: torchEnv(kind) },
    );
    return lastJsonLine<{ timings_ms: TorchTimings }>(stdout).timings_ms;
  } finally {
    await rm(out, { force: true });
  }
}

/**
 * A torchvision model's Grad-CAM timed exactly as gradcam_ref.py times the
 * TF.js MobileNet: a forward hook on the layer cuts the graph there (the
 * backward pass covers the head only), then Grad-CAM and Grad-CAM++ in
 * float64; `forward` is inference under no_grad without hooks. The weights
 * are those of the shared ONNX export (onnx_models.build_model, checked
 * against the sidecar's torch_state_sha256), built once and cached: building
 * re-estimates BatchNorm in float64, about 15 s.
 */
const TORCHVISION_TIMER = `
import json, os, statistics, sys, time
sys.dont_write_bytecode = True
mode, ref, name, seed, sidecar, state, image, threads, runs, cls = sys.argv[1:11]
sys.path.insert(0, ref)
import torch
import onnx_models
torch.set_num_threads(int(threads))
expected = json.load(open(sidecar)).get("torch_state_sha256")

def load():
    import torchvision
    model = getattr(torchvision.models, name)(weights=None).eval()
    model.load_state_dict(torch.load(state))
    return model

if mode == "prepare":
    if os.path.exists(state) and onnx_models.state_sha256(load()) == expected:
        sys.exit(0)
    model, _ = onnx_models.build_model(name, int(seed))
    if expected is not None and onnx_models.state_sha256(model) != expected:
        sys.exit("the rebuilt %s does not match %s's torch_state_sha256" % (name, sidecar))
    torch.save(model.state_dict(), state + ".tmp")
    os.replace(state + ".tmp", state)
    sys.exit(0)

from gradcam_ref import gradcam_from, gradcampp_from, minmax
model = load()
layer = json.load(open(sidecar))["default_layer"]
x = onnx_models.to_input(name, onnx_models.load_png_224(image))
runs, cls = int(runs), int(cls)

def ms(t0):
    return (time.perf_counter() - t0) * 1000.0

for _ in range(3):
    with torch.no_grad():
        model(x)
fw = []
for _ in range(runs):
    t0 = time.perf_counter()
    with torch.no_grad():
        model(x)
    fw.append(ms(t0))

store = {}
def cut(module, inputs, output):
    output = output.detach().requires_grad_(True)
    store["A"] = output
    output.register_hook(lambda g: store.__setitem__("G", g))
    return output
handle = model.get_submodule(layer).register_forward_hook(cut)

def gradcam():
    logits = model(x)
    model.zero_grad(set_to_none=True)
    logits[0, cls].backward()
    A = store["A"].detach()[0].double().numpy()
    G = store["G"].detach()[0].double().numpy()
    _, cam = gradcam_from(A, G)
    _, campp = gradcampp_from(A, G)
    return minmax(cam), minmax(campp)

for _ in range(3):
    gradcam()
gc = []
for _ in range(runs):
    t0 = time.perf_counter()
    gradcam()
    gc.append(ms(t0))
handle.remove()
print(json.dumps({"forward": statistics.median(fw), "gradcam": statistics.median(gc),
                  "forward_min": min(fw), "gradcam_min": min(gc), "threads": int(threads)}))
`;

export interface TorchvisionModel {
  /** torchvision's name, as onnx_models.py builds it (e.g. resnet18). */
  name: string;
  seed: number;
  /** The shared ONNX export's sidecar (.json), which holds the weights' sha256. */
  sidecar: string;
  /** A 224x224 RGB PNG (onnx_models.load_png_224 does not resize). */
  image: string;
  cls: number;
}

/**
 * Where the bench keeps what it makes once (a torchvision model's weights,
 * ONNX exports): in camviz's cache, the user's own, not the shared
 * temporary folder, where another user could plant a file under the
 * predictable name (torch.load of a planted pickle runs its code).
 */
function benchCache(): string {
  return join(cacheRoot(), 'bench');
}

/** Where a torchvision model's weights are cached between bench runs (checked against the sidecar on use). */
export function torchvisionState(model: TorchvisionModel): string {
  return join(benchCache(), `torch-${model.name}-seed${model.seed}.pt`);
}

const timerArgs = (mode: string, torchRef: string, model: TorchvisionModel, threads: number, runs: number): string[] =>
  ['-c', TORCHVISION_TIMER, mode, torchRef, model.name, String(model.seed), model.sidecar, torchvisionState(model), model.image, String(threads), String(runs), String(model.cls)];

/** Builds (or checks) the cached weights once, before any timed process. */
export async function prepareTorchvision(torchRef: string, model: TorchvisionModel): Promise<void> {
  await makeFolders(benchCache());
  await run(PYTHON, timerArgs('prepare', torchRef, model, 2, 0), { timeout: 600_000, env: torchEnv('fair') });
}

export async function torchGradcamTorchvision(torchRef: string, kind: TorchEnvKind, threads: number, runs: number, model: TorchvisionModel): Promise<TorchTimings> {
  const { stdout } = await run(PYTHON, timerArgs('time', torchRef, model, threads, runs), { timeout: 600_000, maxBuffer: 64 << 20, env: torchEnv(kind) });
  return lastJsonLine<TorchTimings>(stdout);
}

export interface FolderRun {
  /** Whole process, start to exit (s). */
  seconds: number;
  /** What the process reports for its own loop, without Python's start and torch's import (s). */
  loopSeconds?: number;
}

/** `gradcam_folder.py` over a folder, the whole process timed from outside (as camviz's CLI is). */
export async function torchFolderLoop(torchRef: string, kind: TorchEnvKind, threads: number, model: string, folder: string): Promise<FolderRun> {
  const out = await mkdtemp(join(tmpdir(), 'camviz-bench-torch-'));
  try {
    const started = performance.now();
    const { stdout } = await run(PYTHON, [join(torchRef, 'gradcam_folder.py'), '--model', model, '--images', folder, '--out', out, '--threads', String(threads)], {
      timeout: 1_800_000,
      env: torchEnv(kind),
    });
    const seconds = (performance.now() - started) / 1000;
    return { seconds, loopSeconds: lastJsonLine<{ seconds: number }>(stdout).seconds };
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

/** An ONNX export of a torchvision model made by the shared tool, and its sidecar. */
export interface TorchvisionExport {
  model: string;
  sidecar: string;
}

/**
 * Exports a torchvision model with `export_onnx.py` (random weights from the
 * seed, as the shared ResNet-18), once: issue 12's target names ResNet-50,
 * which the shared assets do not hold. Cached by name and seed (benchCache),
 * and made again when the file's hash is not the sidecar's.
 */
export async function exportTorchvision(torchRef: string, name: string, seed: number): Promise<TorchvisionExport> {
  const folder = join(benchCache(), `onnx-${name}-seed${seed}`);
  const cached: TorchvisionExport = { model: join(folder, `${name}.onnx`), sidecar: join(folder, `${name}.json`) };
  if (await exportIsWhole(cached)) return cached;
  await makeFolders(benchCache());
  const fresh = await mkdtemp(`${folder}-making-`);
  try {
    await run(PYTHON, [join(torchRef, 'export_onnx.py'), name, '--seed', String(seed), '--out-dir', fresh], { timeout: 900_000, maxBuffer: 64 << 20, env: torchEnv('fair') });
    await rm(folder, { recursive: true, force: true });
    await rename(fresh, folder);
  } finally {
    await rm(fresh, { recursive: true, force: true });
  }
  return cached;
}

async function exportIsWhole(made: TorchvisionExport): Promise<boolean> {
  if (!existsSync(made.model) || !existsSync(made.sidecar)) return false;
  const { sha256 } = JSON.parse(await readFile(made.sidecar, 'utf8')) as { sha256?: string };
  return sha256Hex(await readFile(made.model)) === sha256;
}

/** The sidecar's fields the bench reads. */
export async function sidecarSeed(sidecar: string): Promise<number | undefined> {
  const parsed = JSON.parse(await readFile(sidecar, 'utf8')) as { seed?: number; weights?: string };
  return parsed.seed ?? Number(/random seed (\d+)/.exec(parsed.weights ?? '')?.[1] ?? Number.NaN);
}
