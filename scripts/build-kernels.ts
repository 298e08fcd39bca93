/**
 * Compiles the drawing's WebAssembly kernels, src/render/kernels.wat, to
 * dist/src/render/kernels.wasm (src/render/kernels.ts loads it), with
 * WABT's wat2wasm. Run after `tsc` (npm run build). The binary is written
 * under a temporary name and renamed, so a failed build leaves no partial
 * file; a text that does not assemble or validate fails the build.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import wabt from 'wabt';

const source = fileURLToPath(new URL('../../src/render/kernels.wat', import.meta.url));
const target = fileURLToPath(new URL('../src/render/kernels.wasm', import.meta.url));

/** What the kernels use beyond WebAssembly 1.0: both are in every Node camviz runs on (20+). */
const FEATURES = { simd: true, bulk_memory: true } as const;

async function main(): Promise<void> {
  const toolkit = await wabt();
  const parsed = toolkit.parseWat(source, await readFile(source, 'utf8'), FEATURES);
  try {
    parsed.validate();
    const { buffer } = parsed.toBinary({});
    const temporary = `${target}.${process.pid}.tmp`;
    await writeFile(temporary, buffer);
    await rename(temporary, target);
  } finally {
    parsed.destroy();
  }
}

await main();
