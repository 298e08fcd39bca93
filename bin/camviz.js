#!/usr/bin/env node
// Thin launcher (CommonJS: bin/package.json). The CLI lives in the compiled
// library (npm run build), which the build also bundles into one CommonJS
// file. Loading that one file instead of some 200 ES modules, each
// resolved, read and compiled on its own, takes about 60 ms off every
// start, and the code cache keeps its compiled code like the dependencies'.
// One small bundle turns the cache on and runs it
// (src/cli/launch-support.ts says why it is not an ES module). Bundles
// missing or older than the compiled modules (a `tsc` run without the
// bundling step) are stale: the modules run instead.
'use strict';

const { existsSync } = require('node:fs');
const { join } = require('node:path');
const { pathToFileURL } = require('node:url');

const support = join(__dirname, '..', 'dist', 'src', 'cli', 'launch-support.cjs');
const modules = join(__dirname, '..', 'dist', 'src', 'cli', 'launch.js');

if (!(existsSync(support) && require(support).launchBundle())) {
  if (existsSync(modules)) {
    import(pathToFileURL(modules).href);
  } else {
    process.stderr.write(`camviz: not built (${modules} is missing): run npm run build\n`);
    process.exitCode = 1;
  }
}
