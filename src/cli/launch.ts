/**
 * The command line from its modules, when bin/camviz.js finds no current
 * bundle of them (a `tsc` run without the bundling step).
 */
// First: the dependencies the CLI loads then compile through the code cache.
import '../engine/code-cache-enable.js';
import './run.js';
