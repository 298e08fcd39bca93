/**
 * Gradient kernels that tfjs-backend-wasm 4.22 lacks, registered for wasm
 * as compositions of kernels it has. (Placeholder until the full set lands.)
 */
export function registerWasmGradientKernels(): void {}
