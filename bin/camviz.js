#!/usr/bin/env node
// Thin launcher: the CLI lives in the compiled library (npm run build), which
// the build also bundles into one CommonJS file. Loading that one file instead
// of some 200 ES modules, each resolved, read and compiled on its own, takes
// about 60 ms off every start, and the code cache keeps its compiled code
// like the dependencies'. A bundle older than the compiled modules (a `tsc`
// run without the bundling step) is stale: the modules run instead.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { enableCodeCache } from '../dist/src/engine/code-cache.js';
import { bundleIsCurrent } from '../dist/src/util/bundle-choice.js';

const bundle = new URL('../dist/src/cli/camviz.cjs', import.meta.url);
if (bundleIsCurrent(bundle, new URL('../dist/src/cli/run.js', import.meta.url))) {
  // First, so that the bundle and the dependencies it loads compile through the cache.
  const bundlePath = fileURLToPath(bundle);
  enableCodeCache([bundlePath]);
  createRequire(import.meta.url)(bundlePath);
} else {
  await import('../dist/src/cli/launch.js');
}
