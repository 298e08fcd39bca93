/**
 * Whether a bundle the build made (scripts/bundle-cli.ts) stands for the
 * compiled modules it was made from: it exists and is at least as new as
 * them. `tsc` alone rewrites the modules and leaves the bundle older: then
 * the modules run, so that a stale bundle never runs old code. Nothing but
 * node:fs: bin/camviz.js reads this before anything else loads.
 */
import { statSync } from 'node:fs';

export function bundleIsCurrent(bundle: URL, modules: URL): boolean {
  const bundled = modifiedMs(bundle);
  const compiled = modifiedMs(modules);
  return bundled !== undefined && (compiled === undefined || bundled >= compiled);
}

function modifiedMs(file: URL): number | undefined {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}
