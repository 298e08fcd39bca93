/**
 * Multithreaded WebAssembly under Node.
 *
 * tfjs-backend-wasm ships a threaded SIMD build (XNNPACK with a pthread
 * pool) but turns it off under Node (tensorflow/tfjs#3830): its pthread
 * workers are created from a `blob:` URL, which Node's worker_threads cannot
 * load. camviz starts that build itself: the pthread worker script is
 * written to a file, and the Emscripten module is created with file paths.
 * The backend also caps XNNPACK's pool at half the logical cores (it assumes
 * two hyper-threads per core), so `os.cpus()` is widened while the module
 * initialises, to get the number of threads asked for.
 *
 * Running pthreads keep the process alive: call `releaseWasmThreads()` when
 * done (the CLI does).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import * as tf from './tf.js';
import { rememberWasmThreads } from './release.js';
import { makeFoldersSync } from '../util/make-folders.js';

const require = createRequire(import.meta.url);
const packageDir = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));

interface EmscriptenModule {
  cwrap(name: string, returnType: string | null, argTypes: string[]): (...args: number[]) => number;
  PThread?: { terminateAllThreads(): void };
}

type WasmFactory = (config: Record<string, unknown>) => Promise<EmscriptenModule>;

/** The pthread worker script as a file (tfjs embeds it as a string). */
function workerScriptPath(): string {
  const { version } = require('@tensorflow/tfjs-backend-wasm/package.json') as { version: string };
  const path = join(os.tmpdir(), `camviz-tfjs-wasm-${version}`, 'threaded-simd.worker.cjs');
  if (existsSync(path)) return path;
  const { wasmWorkerContents } = require(join(packageDir, 'wasm-out', 'tfjs-backend-wasm-threaded-simd.worker.js')) as {
    wasmWorkerContents: string;
  };
  makeFoldersSync(dirname(path));
  // As tfjs does before making its blob: the contents hold "\n" escapes
  // that the template literal turned into newlines inside string literals.
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(temporary, wasmWorkerContents.replace(/\n/g, '\\n'));
  renameSync(temporary, path);
  return path;
}

async function createThreadedModule(threads: number): Promise<EmscriptenModule> {
  const factory = require(join(packageDir, 'wasm-out', 'tfjs-backend-wasm-threaded-simd.js')) as WasmFactory;
  const worker = workerScriptPath();
  const realCpus = os.cpus;
  const logical = realCpus().length;
  os.cpus = () => Array.from({ length: Math.max(2 * threads, logical) }, () => realCpus()[0]!);
  try {
    const module = await factory({
      locateFile: (file: string) =>
        file.endsWith('.wasm') ? join(packageDir, 'dist', 'tfjs-backend-wasm-threaded-simd.wasm') : file.endsWith('.worker.js') ? worker : join(packageDir, 'wasm-out', file),
      mainScriptUrlOrBlob: join(packageDir, 'wasm-out', 'tfjs-backend-wasm-threaded-simd.js'),
    });
    const tfjs = {
      init: module.cwrap('init', null, []),
      initWithThreadsCount: module.cwrap('init_with_threads_count', null, ['number']),
      getThreadsCount: module.cwrap('get_threads_count', 'number', []),
      registerTensor: module.cwrap('register_tensor', null, ['number', 'number', 'number']),
      disposeData: module.cwrap('dispose_data', null, ['number']),
      dispose: module.cwrap('dispose', null, []),
    };
    return Object.assign(module, { tfjs });
  } finally {
    os.cpus = realCpus;
  }
}

/**
 * Registers the threaded build as the `wasm` backend (replacing the
 * single-threaded registration); `tf.setBackend('wasm')` then starts it.
 */
export function registerThreadedWasm(threads: number): void {
  const wasmPackage = require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
  wasmPackage.setThreadsCount(threads);
  tf.removeBackend('wasm');
  tf.registerBackend(
    'wasm',
    async () => {
      const threadedModule = await createThreadedModule(threads);
      rememberWasmThreads(threadedModule.PThread);
      return new wasmPackage.BackendWasm(threadedModule as never);
    },
    2,
  );
}
