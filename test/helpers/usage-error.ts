/**
 * The shape of every usage error on the command line: exit 2, exactly one
 * line on stderr (`camviz: ...`), nothing on stdout.
 */
import assert from 'node:assert/strict';

import type { CliRun } from './cli.js';

/** Exit 2, one `camviz: ` line on stderr matching `pattern`, nothing on stdout. */
export function assertUsageError(run: CliRun, pattern: RegExp): void {
  assert.equal(run.code, 2, `exit ${run.code}; stderr: ${run.stderr}`);
  assert.equal(run.stdout, '');
  const lines = run.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${run.stderr}`);
  assert.match(lines[0]!, /^camviz: /);
  assert.match(lines[0]!, pattern);
}
