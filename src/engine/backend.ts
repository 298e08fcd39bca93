/**
 * Backend selection. The native TensorFlow backends are optional packages
 * (their install script downloads libtensorflow, which fails offline), so
 * they are imported dynamically and their absence is normal. WebAssembly is
 * the default that works everywhere; the pure-JS cpu backend is the last
 * resort.
 */
import * as tf from './tf.js';
import { createRequire } from 'node:module';
import { UsageError, CamvizError, describeError } from '../util/errors.js';
import { BACKEND_CHOICES, type BackendChoice } from './backend-choices.js';

/** Backend packages are CommonJS: `require` skips the ES-module lexing of their bundles. */
const requirePackage = createRequire(import.meta.url);

export { BACKEND_CHOICES, type BackendChoice } from './backend-choices.js';
export type BackendKind = 'gpu' | 'native' | 'wasm' | 'cpu';

export interface BackendInfo {
  kind: BackendKind;
  /** The tfjs backend name: `tensorflow`, `wasm` or `cpu`. */
  tfjsName: string;
  /** Which npm package provides it. */
  packageName: string;
  /** True only when TensorFlow reports a GPU device. */
  gpu: boolean;
  simd?: boolean;
  threads?: number;
}

const NATIVE_PACKAGES = {
  gpu: '@tensorflow/tfjs-node-gpu',
  native: '@tensorflow/tfjs-node',
} as const;

let active: BackendInfo | undefined;

export function parseBackendChoice(value: string | undefined): BackendChoice {
  const choice = (value ?? 'auto').toLowerCase();
  if ((BACKEND_CHOICES as readonly string[]).includes(choice)) return choice as BackendChoice;
  throw new UsageError(`unknown backend '${value}': choose one of ${BACKEND_CHOICES.join(', ')}`);
}

/** The backend chosen by `--backend`, else `CAMVIZ_BACKEND`, else auto. */
export function requestedBackend(flag?: string): BackendChoice {
  return parseBackendChoice(flag ?? process.env['CAMVIZ_BACKEND']);
}

/** The backend in use, once `useBackend` has run. */
export function activeBackend(): BackendInfo | undefined {
  return active;
}

/**
 * Make `choice` the active backend for this process. Repeated calls with a
 * compatible choice are cheap; a process holds at most one native package.
 */
export interface BackendOptions {
  /**
   * WebAssembly threads for one model in this process (CAMVIZ_WASM_THREADS
   * overrides). Threads shorten each forward pass but their workers take
   * about half a second to start: worth it for many images, not for one.
   */
  wasmThreads?: number;
}

export async function useBackend(choice: BackendChoice = requestedBackend(), options: BackendOptions = {}): Promise<BackendInfo> {
  tf.enableProdMode();
  wasmThreadsWanted = requestedWasmThreads(process.env, options.wasmThreads);
  if (active !== undefined && (choice === 'auto' || choice === active.kind)) {
    if (tf.getBackend() !== active.tfjsName) await tf.setBackend(active.tfjsName);
    return active;
  }
  const info = choice === 'auto' ? await useFirstWorking() : await useExactly(choice);
  active = info;
  return info;
}

async function useFirstWorking(): Promise<BackendInfo> {
  const reasons: string[] = [];
  for (const kind of ['gpu', 'native', 'wasm', 'cpu'] as const) {
    try {
      return await useExactly(kind, { acceptCpuOnlyGpuPackage: true });
    } catch (error) {
      reasons.push(`${kind}: ${(error as Error).message}`);
    }
  }
  throw new CamvizError(`no TensorFlow.js backend works here (${reasons.join('; ')})`);
}

interface ExactOptions {
  /** In auto mode tfjs-node-gpu without CUDA still runs natively on the CPU. */
  acceptCpuOnlyGpuPackage?: boolean;
}

async function useExactly(kind: BackendKind, options: ExactOptions = {}): Promise<BackendInfo> {
  switch (kind) {
    case 'gpu':
    case 'native':
      return useNative(kind, options);
    case 'wasm':
      return useWasm();
    case 'cpu':
      if (!(await tf.setBackend('cpu'))) throw new CamvizError('the cpu backend failed to initialise');
      return { kind: 'cpu', tfjsName: 'cpu', packageName: '@tensorflow/tfjs-backend-cpu', gpu: false };
  }
}

async function useNative(kind: 'gpu' | 'native', options: ExactOptions): Promise<BackendInfo> {
  const packageName = await importNativePackage(kind);
  if (!(await tf.setBackend('tensorflow'))) {
    throw new CamvizError(`${packageName} loaded but its backend failed to initialise`);
  }
  const gpu = usesGpuDevice();
  if (kind === 'gpu' && !gpu && !options.acceptCpuOnlyGpuPackage) {
    throw new CamvizError(
      `${packageName} runs on the CPU: TensorFlow found no usable GPU (it needs CUDA 11.2 and cuDNN 8)`,
    );
  }
  return { kind: gpu ? 'gpu' : 'native', tfjsName: 'tensorflow', packageName, gpu };
}

/**
 * Imports the native package for `kind` and returns its name. `native`
 * prefers tfjs-node but accepts tfjs-node-gpu (it runs on the CPU too);
 * `gpu` takes only tfjs-node-gpu.
 */
async function importNativePackage(kind: 'gpu' | 'native'): Promise<string> {
  const candidates: string[] = kind === 'gpu' ? [NATIVE_PACKAGES.gpu] : [NATIVE_PACKAGES.native, NATIVE_PACKAGES.gpu];
  const loaded = nativePackageLoaded();
  if (loaded !== undefined) {
    if (candidates.includes(loaded)) return loaded;
    throw new CamvizError(`${loaded} is already loaded; one process holds one native TensorFlow package`);
  }
  let lastError: unknown;
  for (const name of candidates) {
    try {
      requirePackage(name);
      nativeLoaded = name;
      return name;
    } catch (error) {
      lastError = error;
      if (!isNotInstalled(error, name)) throw new CamvizError(`${name} failed to load: ${describeError(error)}`);
    }
  }
  throw new CamvizError(`${candidates.join(' / ')} not installed`, { cause: lastError });
}

let nativeLoaded: string | undefined;
function nativePackageLoaded(): string | undefined {
  return nativeLoaded;
}

function usesGpuDevice(): boolean {
  const backend = tf.backend() as unknown as { isUsingGpuDevice?: boolean };
  return backend.isUsingGpuDevice === true;
}

let wasmThreadsWanted = 1;

/** WebAssembly threads: CAMVIZ_WASM_THREADS, else the caller's wish, else 1 (see wasm-threads.ts). */
export function requestedWasmThreads(env: NodeJS.ProcessEnv = process.env, wanted = 1): number {
  const value = env['CAMVIZ_WASM_THREADS'];
  if (value === undefined || value === '') return Math.max(1, Math.floor(wanted));
  const threads = Number(value);
  if (!Number.isInteger(threads) || threads < 1) throw new UsageError(`CAMVIZ_WASM_THREADS '${value}' must be a whole number of at least 1`);
  return threads;
}

async function useWasm(): Promise<BackendInfo> {
  const wasm = requirePackage('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
  const threads = wasmThreadsWanted;
  if (threads > 1 && tf.getBackend() !== 'wasm') {
    const { registerThreadedWasm } = await import('./wasm-threads.js');
    registerThreadedWasm(threads);
  }
  if (!(await tf.setBackend('wasm'))) throw new CamvizError('the wasm backend failed to initialise');
  const { registerWasmGradientKernels } = await import('./wasm-kernels.js');
  registerWasmGradientKernels();
  return {
    kind: 'wasm',
    tfjsName: 'wasm',
    packageName: '@tensorflow/tfjs-backend-wasm',
    gpu: false,
    simd: (await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) as boolean,
    threads: wasm.getThreadsCount(),
  };
}

/**
 * Restarts the wasm backend with `wanted` WebAssembly threads (CAMVIZ_WASM_THREADS
 * overrides) when it runs with fewer, and returns the backend in use. For
 * auto's per-model fallback: a run expecting ONNX Runtime starts no threads
 * (tfjs then only does the CAM arithmetic), and learns that tfjs runs the
 * passes only once the model is loaded. tfjs-wasm takes its thread count
 * when it initialises, so the backend is made again; that is safe only while
 * it holds no tensor (a model's weights are built on cpu, see
 * withWeightsBuiltOnCpu, and the engine is chosen before any image): when it
 * does, it is left as it is. The single-threaded build started first is the
 * only cost beyond a tfjs run's own start (see the README's Engines).
 */
export async function restartWasmWithThreads(wanted: number): Promise<BackendInfo | undefined> {
  const threads = requestedWasmThreads(process.env, wanted);
  if (active?.kind !== 'wasm' || (active.threads ?? 1) >= threads || threads < 2) return active;
  if (tf.engine().findBackend('wasm')?.numDataIds() !== 0) return active;
  // Off wasm first: useWasm registers the threaded build only when wasm is not the backend in use.
  if (!(await tf.setBackend('cpu'))) return active;
  const before = wasmThreadsWanted;
  wasmThreadsWanted = threads;
  active = undefined;
  try {
    active = await useWasm();
  } catch {
    // The threaded build did not start: the single-threaded one did before, so the run goes on with it.
    wasmThreadsWanted = before;
    active = await useWasm();
  }
  return active;
}

/**
 * Runs `build`, which makes a model's weights, with the pure-JS cpu backend
 * active when wasm is, and wasm active again after. tfjs-layers makes every
 * weight twice while it loads a model: zeros, then the loaded values. On
 * wasm both are copies into fresh heap memory, where page faults dominate
 * (about 160 ms of CPU for MobileNet v1 0.75, 60% of its load); on cpu the
 * zeros are an allocation never touched and the loaded values are kept as
 * they are. A weight then moves to the wasm heap once, on its first use by a
 * wasm kernel (tfjs moves data between backends by itself), and code reading
 * weights (the ONNX writer, closed-form heads) reads them without a copy: with
 * ONNX Runtime most never reach wasm. Other tfjs work of this thread that runs
 * while `build` awaits runs on cpu too: correct, only slower (camviz loads
 * its model before any image work). Only when `useBackend` chose wasm: it
 * also set production mode, which keeps the cpu backend's first write from
 * printing tfjs' "install our node backend" notice.
 */
export async function withWeightsBuiltOnCpu<T>(build: () => Promise<T>): Promise<T> {
  if (active?.kind !== 'wasm' || tf.getBackend() !== 'wasm') return build();
  if (!(await tf.setBackend('cpu'))) return build();
  try {
    return await build();
  } finally {
    await tf.setBackend('wasm');
  }
}

export function isNotInstalled(error: unknown, packageName: string): boolean {
  const code = (error as { code?: string }).code;
  const message = (error as Error).message ?? '';
  return (
    (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') &&
    message.includes(packageName)
  );
}

export { releaseBackend } from './release.js';
