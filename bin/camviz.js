#!/usr/bin/env node
// Thin launcher: the CLI lives in the compiled library (npm run build), which
// the build also bundles into one CommonJS file. Loading that one file instead
// of some 200 ES modules, each resolved, read and compiled on its own, takes
// about 60 ms off every start, and the code cache keeps its compiled code
// like the dependencies'. A bundle older than the compiled modules (a `tsc`
// run without the bundling step) is stale: the modules run instead.
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { enableCodeCache } from '../dist/src/engine/code-cache.js';

const cliFolder = new URL('../dist/src/cli/', import.meta.url);
const bundle = fileURLToPath(new URL('camviz.cjs', cliFolder));

function modifiedMs(url) {
  try {
    return statSync(url).mtimeMs;
  } catch {
    return undefined;
  }
}

const bundled = modifiedMs(bundle);
const compiled = modifiedMs(new URL('run.js', cliFolder));
if (bundled !== undefined && (compiled === undefined || bundled >= compiled)) {
  // First, so that the bundle and the dependencies it loads compile through the cache.
  enableCodeCache([bundle]);
  createRequire(import.meta.url)(bundle);
} else {
  await import('../dist/src/cli/launch.js');
}
