#!/usr/bin/env node
// Thin launcher: the CLI lives in the compiled library (npm run build), which
// the build also bundles into one CommonJS file. Loading that one file instead
// of some 200 ES modules, each resolved, read and compiled on its own, takes
// about 60 ms off every start. A bundle older than the compiled entry point
// (a `tsc` run without the bundling step) is stale: the modules run instead.
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';

const cliFolder = new URL('../dist/src/cli/', import.meta.url);

function modifiedMs(name) {
  try {
    return statSync(new URL(name, cliFolder)).mtimeMs;
  } catch {
    return undefined;
  }
}

const bundled = modifiedMs('camviz.cjs');
const compiled = modifiedMs('launch.js');
if (bundled !== undefined && (compiled === undefined || bundled >= compiled)) createRequire(import.meta.url)('../dist/src/cli/camviz.cjs');
else await import('../dist/src/cli/launch.js');
