/**
 * How camviz's modules become one CommonJS file each (scripts/bundle-cli.ts
 * says why and which): the options every bundle is built with, and the
 * writing that refuses an import() call. scripts/cold-floor.ts bundles its
 * measurement the same way.
 */
import { type OutputFile, type Plugin, build } from 'esbuild';
import { rename, writeFile } from 'node:fs/promises';

/** Leaves the modules that must stay their own files (scripts/bundle-cli.ts) outside, required by their path from the bundle's folder. */
const leaveOutside: Plugin = {
  name: 'camviz-leave-outside',
  setup(build) {
    build.onResolve({ filter: /\/import-module\.cjs$/ }, () => ({ path: '../util/import-module.cjs', external: true }));
  },
};

/** How every bundle is built: one CommonJS file for Node 20, written by writeBundle. */
export const COMMON_OPTIONS = { bundle: true, write: false, platform: 'node', target: 'node20', format: 'cjs', logLevel: 'warning' } as const;

/** Bundles the compiled module `entry` (under dist/src/) into `bundlePath`, its dependencies left outside. */
export async function bundleModule(entry: string, bundlePath: string): Promise<void> {
  const result = await build({
    ...COMMON_OPTIONS,
    entryPoints: [entry],
    plugins: [leaveOutside],
    outfile: bundlePath,
    packages: 'external',
    // CommonJS has no import.meta: every module's URL becomes the bundle's, which sits in a folder of dist/src/ as its modules did.
    banner: { js: 'const __camvizModuleUrl = require("node:url").pathToFileURL(__filename).href;' },
    define: { 'import.meta.url': '__camvizModuleUrl' },
    // Stack traces name the bundle's lines; under `node --enable-source-maps`
    // they name the TypeScript sources (esbuild follows tsc's maps).
    sourcemap: 'linked',
  });
  await writeBundle(result.outputFiles, bundlePath);
}

/** Writes a build's files; fails if the bundle calls import(), which a script compiled from cached data cannot (src/util/import-module.cts). */
export async function writeBundle(outputs: readonly OutputFile[], bundlePath: string): Promise<void> {
  for (const output of outputs) {
    if (output.path === bundlePath && /\bimport\s*\(/.test(output.text)) throw new Error(`${bundlePath} holds an import() call: move it to src/util/import-module.cts`);
    await writeWhole(output.path, output.contents);
  }
}

/** A launch during the build reads the old file or the new one, never half of one. */
async function writeWhole(path: string, contents: Uint8Array): Promise<void> {
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, contents);
  await rename(temporary, path);
}
