/**
 * Bundles the command line (dist/src/cli/run.js and the camviz modules it
 * imports) into one CommonJS file, dist/src/cli/camviz.cjs, which
 * bin/camviz.js runs through the code cache: one file to read and compile
 * instead of some 200 ES modules, each resolved and instantiated on its own
 * (about 60 ms of every start). The folder runs' worker threads get theirs,
 * dist/src/batch/worker.cjs (src/batch/pool.ts), for the same reason, and
 * ONNX Runtime's host workers theirs, dist/src/executor/ort-host-worker.cjs
 * (src/executor/ort-host-pool.ts): few modules, but a CommonJS entry starts
 * a worker sooner than an ES module; and the launcher its first file,
 * dist/src/cli/launch-support.cjs, which turns the code cache on and
 * requires the command line's bundle. The dependencies stay outside (tfjs,
 * sharp and onnxruntime-node find their own files beside them); so does
 * src/util/import-module.cts, the one place that calls
 * import(): a script compiled from cached data cannot (its comment says
 * why). The build fails if a bundle holds an import() all the same.
 *
 * sharp's own JavaScript gets a bundle too, dist/src/util/sharp-bundle.cjs
 * (src/util/sharp-choice.ts says when it is used): sharp loads as some 70
 * small modules (semver alone is 47), each resolved, read and compiled
 * without a code cache; one cached file instead made cold runs 0.95-0.98x
 * the time (ONNX Runtime, interleaved). Its native parts stay outside: the
 * `.node` binary and the `@img/sharp-*` packages that hold it and libvips
 * are required from the installed sharp's own folder, so the bundle loads
 * the binary sharp itself would.
 *
 * Run after `tsc` (npm run build): it bundles the compiled output. Each
 * bundle sits in the folder of its entry module, as every module it holds
 * sat in a folder of dist/src/, so the URLs they resolve relative to
 * themselves (package.json, worker files: written as ../<folder>/name.js)
 * stay right.
 */
import { type Plugin, build } from 'esbuild';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SHARP_BUNDLE_PATH, installedSharp } from '../src/util/sharp-choice.js';
import { COMMON_OPTIONS, bundleModule, writeBundle } from './bundling.js';

const sourceFolder = fileURLToPath(new URL('../src/', import.meta.url));

/** Entry module -> its bundle, both under dist/src/. */
const BUNDLES: ReadonlyArray<readonly [entry: string, bundle: string]> = [
  ['cli/run.js', 'cli/camviz.cjs'],
  ['batch/worker.js', 'batch/worker.cjs'],
  ['executor/ort-host-worker.js', 'executor/ort-host-worker.cjs'],
  // bin/camviz.js's first file: the code cache, then the command line's bundle (src/cli/launch-support.ts).
  ['cli/launch-support.js', 'cli/launch-support.cjs'],
];

/**
 * The require of sharp's native parts (a binary built from source, the
 * platform's `@img/sharp-*` packages, names computed or not): made at run
 * time from the installed sharp's entry file (the bundle's `load`), so
 * that they resolve from sharp's folder, not the bundle's. esbuild would
 * otherwise bundle them, or take a computed name for a pattern of files.
 */
const SHARP_REQUIRE = '__camvizSharpRequire';

/** sharp's own files with their native requires through SHARP_REQUIRE. */
const sharpNativeOutside: Plugin = {
  name: 'camviz-sharp-native-outside',
  setup(build) {
    build.onLoad({ filter: /[\\/]sharp[\\/]dist[\\/][^\\/]+\.cjs$/ }, async (args) => ({
      contents: (await readFile(args.path, 'utf8')).replace(/\brequire\((?=`|["']@img\/sharp-)/g, `${SHARP_REQUIRE}(`),
      loader: 'js',
    }));
  },
};

/**
 * The bundle exports the version of sharp it holds and a function that
 * loads it, given the installed sharp's entry file (its native parts are
 * required from there): src/util/sharp-choice.ts loads it only when the
 * installed sharp is that version (the installed one may change after the
 * build).
 */
async function bundleSharp(bundlePath: string): Promise<void> {
  const installed = installedSharp();
  if (installed === undefined) throw new Error('sharp is not installed, or its package.json names no version');
  const result = await build({
    stdin: {
      contents: [
        `exports.version = ${JSON.stringify(installed.version)};`,
        'exports.load = (installedEntry) => {',
        `  ${SHARP_REQUIRE} = require('node:module').createRequire(installedEntry);`,
        `  return require(${JSON.stringify(installed.entry)});`,
        '};',
      ].join('\n'),
      resolveDir: dirname(installed.entry),
      loader: 'js',
    },
    ...COMMON_OPTIONS,
    plugins: [sharpNativeOutside],
    banner: { js: `let ${SHARP_REQUIRE};` },
    outfile: bundlePath,
  });
  await writeBundle(result.outputFiles, bundlePath);
}

for (const [entry, bundlePath] of BUNDLES) await bundleModule(`${sourceFolder}${entry}`, `${sourceFolder}${bundlePath}`);
await bundleSharp(SHARP_BUNDLE_PATH);
