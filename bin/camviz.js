#!/usr/bin/env node
// Thin launcher (CommonJS: bin/package.json). The CLI lives in the compiled
// library (npm run build), which the build also bundles into one CommonJS
// file. Loading that one file instead of some 200 ES modules, each
// resolved, read and compiled on its own, takes about 60 ms off every
// start, and the code cache keeps its compiled code like the dependencies'.
// One small bundle turns the cache on and runs it
// (src/cli/launch-support.ts says why it is not an ES module). A bundle
// missing or older than the compiled modules (a `tsc` run without the
// bundling step) is stale: the modules run instead.
'use strict';

const SUPPORT = '../dist/src/cli/launch-support.cjs';

function launchBundle() {
  try {
    return require(SUPPORT).launchBundle();
  } catch (error) {
    // Only this file missing means "no bundles": anything else (a dependency the bundle needs) is the error it is.
    if (error && error.code === 'MODULE_NOT_FOUND' && String(error.message).includes('launch-support.cjs')) return false;
    throw error;
  }
}

if (!launchBundle()) {
  import('../dist/src/cli/launch.js').catch((error) => {
    process.stderr.write(`camviz: cannot start (${error instanceof Error ? error.message : String(error)}); run npm run build\n`);
    process.exitCode = 1;
  });
}
