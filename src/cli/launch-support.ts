/**
 * What bin/camviz.js runs first, bundled on its own into
 * dist/src/cli/launch-support.cjs (scripts/bundle-cli.ts): the code cache
 * turned on, then the command line's bundle required through it.
 *
 * The launcher is CommonJS, and requires this one file: as an ES module
 * importing the code cache's and the bundle choice's modules (seven files,
 * each resolved, read and compiled without a cache, and Node's ES module
 * loader before them) it reached its first line 15-20 ms later, and cold
 * runs took 0.96-0.98x the time this way (ONNX Runtime; the ONNX export,
 * MobileNet v1 and Darknet-tiny; interleaved).
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { enableCodeCache } from '../engine/code-cache.js';
import { bundleIsCurrent } from '../util/bundle-choice.js';
import { SHARP_BUNDLE_PATH } from '../util/sharp-choice.js';

/**
 * Runs the command line's bundle through the code cache and returns true,
 * when it and this file's own bundle stand for the compiled modules; false
 * when either is older than them (a `tsc` run without the bundling step):
 * the launcher then runs the modules (./launch.ts), so that no stale
 * bundle runs old code. Resolved from this module's folder, which holds
 * both the bundles and the modules.
 */
export function launchBundle(): boolean {
  const bundle = new URL('./camviz.cjs', import.meta.url);
  const current =
    bundleIsCurrent(bundle, new URL('./run.js', import.meta.url)) &&
    bundleIsCurrent(new URL('./launch-support.cjs', import.meta.url), new URL('./launch-support.js', import.meta.url));
  if (!current) return false;
  const bundlePath = fileURLToPath(bundle);
  // First, so that the bundles and the dependencies they load compile through the cache.
  enableCodeCache([bundlePath, SHARP_BUNDLE_PATH]);
  createRequire(import.meta.url)(bundlePath);
  return true;
}
