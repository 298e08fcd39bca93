/**
 * Expecting camviz to refuse something: the error a user sees must be a
 * CamvizError and fit on one line.
 */
import assert from 'node:assert/strict';

import { CamvizError } from '../../src/util/errors.js';

/** Runs `load` expecting a one-line CamvizError, and returns it; a result that loads after all is disposed. */
export async function expectCamvizError(load: () => Promise<unknown>): Promise<CamvizError> {
  let caught: unknown;
  try {
    const result = await load();
    (result as { dispose?: () => void } | undefined)?.dispose?.();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof CamvizError, `expected a CamvizError, got ${String(caught)}`);
  assert.ok(!caught.describe().includes('\n'), `one line: ${caught.describe()}`);
  return caught;
}
