/** The HTML report of a run (index.html). Being written: see the report module. */
import type { Manifest } from './manifest.js';

export async function writeReport(_outDir: string, _manifest: Manifest): Promise<string> {
  throw new Error('--report is not available yet');
}
