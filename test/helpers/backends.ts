/**
 * Runs a block of tests once per backend that must work everywhere: the
 * pure-JS cpu backend and WebAssembly. The native backends are optional
 * and are not tested here.
 */
import { before, describe } from 'node:test';
import { type BackendKind, useBackend } from '../../src/engine/backend.js';

export const PORTABLE_BACKENDS = ['cpu', 'wasm'] as const;

export function forEachBackend(register: (backend: BackendKind) => void, backends: readonly BackendKind[] = PORTABLE_BACKENDS): void {
  for (const backend of backends) {
    describe(`backend ${backend}`, () => {
      before(async () => {
        await useBackend(backend);
      });
      register(backend);
    });
  }
}
