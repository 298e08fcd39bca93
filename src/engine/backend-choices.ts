/**
 * The `--backend` choices, apart from backend.ts (which loads TensorFlow.js)
 * so that the command line can list them without loading it.
 */
export const BACKEND_CHOICES = ['auto', 'gpu', 'native', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];
