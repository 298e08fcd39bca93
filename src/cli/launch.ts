/**
 * The command line's entry point: what `bin/camviz.js` runs, and what the
 * build bundles into one file (scripts/bundle-cli.ts).
 */
// First: the dependencies the CLI loads then compile through the code cache.
import '../engine/code-cache-enable.js';
import { main } from './main.js';

main(process.argv).then((code) => {
  process.exitCode = code;
});
