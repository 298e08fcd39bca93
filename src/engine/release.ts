/**
 * Letting the process exit. The threaded WebAssembly build keeps pthreads
 * (worker threads) alive; they are remembered here, in a module free of
 * TensorFlow.js, so that a command can release them without loading
 * TensorFlow.js in a thread that never used it (a folder run's main thread).
 */

interface ThreadPool {
  terminateAllThreads(): void;
}

let wasmThreads: ThreadPool | undefined;

/** Called by the threaded build's loader once its pthreads exist. */
export function rememberWasmThreads(pool: ThreadPool | undefined): void {
  wasmThreads = pool;
}

/**
 * Lets the process exit: stops WebAssembly pthreads, if any were started.
 * Kernels that use threads cannot run afterwards: call it when done.
 */
export async function releaseBackend(): Promise<void> {
  wasmThreads?.terminateAllThreads();
  wasmThreads = undefined;
}
