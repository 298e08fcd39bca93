#!/usr/bin/env node
// Thin launcher: the CLI lives in the compiled library (npm run build).
// First: the dependencies the CLI loads then compile through the code cache.
import '../dist/src/engine/code-cache-enable.js';
import { main } from '../dist/src/cli/main.js';

main(process.argv).then((code) => {
  process.exitCode = code;
});
