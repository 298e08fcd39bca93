/**
 * Which copy of sharp's JavaScript to load. The build bundles it into
 * dist/src/util/sharp-bundle.cjs (scripts/bundle-cli.ts): one file the code
 * cache compiles, instead of some 70 small modules resolved, read and
 * compiled one by one (cold runs on ONNX Runtime took 0.95-0.98x the
 * time). That bundle is used when it holds the version of sharp installed
 * now. sharp itself is loaded when the bundle is missing (a `tsc` build
 * alone), holds another version (sharp changed since the build), or fails
 * to load (its native parts, required from the installed sharp's folder,
 * missing or broken): then sharp reports what is wrong, as it would have
 * without the bundle.
 * Nothing here loads sharp until asked: the launcher names the bundle to
 * the code cache first, and the build imports the bundle's path.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type Sharp from 'sharp';
import { installedPackageVersion } from './package-version.js';

export type SharpModule = typeof Sharp;

/** What the bundle exports: the sharp version it holds, and its loader, which requires sharp's native parts from the installed sharp's entry file. */
interface SharpBundle {
  readonly version: string;
  load(installedEntry: string): unknown;
}

/** The installed sharp: its entry file (what `require('sharp')` loads) and its version. */
export interface InstalledSharp {
  readonly entry: string;
  readonly version: string;
}

const require = createRequire(import.meta.url);

/** The bundle's path. `../util/` keeps it right from the command line's bundle too, which sits in dist/src/cli/. */
export const SHARP_BUNDLE_PATH = fileURLToPath(new URL('../util/sharp-bundle.cjs', import.meta.url));

/** sharp: its bundled JavaScript when that fits the installed sharp, else sharp's own (which throws as sharp does). */
export function requireSharp(): SharpModule {
  return bundledSharp(SHARP_BUNDLE_PATH, installedSharp()) ?? (require('sharp') as SharpModule);
}

/** sharp's JavaScript from the bundle at `bundlePath` when it holds the `installed` sharp's version; undefined otherwise. */
export function bundledSharp(bundlePath: string, installed: InstalledSharp | undefined): SharpModule | undefined {
  if (installed === undefined) return undefined;
  let bundle: Partial<SharpBundle>;
  try {
    bundle = require(bundlePath) as Partial<SharpBundle>;
  } catch {
    return undefined;
  }
  if (bundle.version !== installed.version || typeof bundle.load !== 'function') return undefined;
  try {
    const loaded = bundle.load(installed.entry);
    // sharp is a function (its constructor): anything else is no sharp.
    return typeof loaded === 'function' ? (loaded as SharpModule) : undefined;
  } catch {
    return undefined;
  }
}

/** The installed sharp, found as `require('sharp')` finds it; undefined when it is not there (or names no version). */
export function installedSharp(): InstalledSharp | undefined {
  try {
    const entry = require.resolve('sharp');
    const version = installedPackageVersion(entry, 'sharp');
    return version === undefined ? undefined : { entry, version };
  } catch {
    return undefined;
  }
}
