/**
 * Reads started ahead of their use (src/util/reads-ahead.ts): taken once,
 * by key; one under way is not started twice; a failed read is taken as
 * undefined, never thrown.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReadsAhead } from '../src/util/reads-ahead.js';

test('a read is taken once, by its key; a second start under way reads nothing more', async () => {
  const reads = new ReadsAhead<string>();
  let started = 0;
  const read = async (): Promise<string> => {
    started++;
    return 'bytes';
  };
  await Promise.all([reads.start('a', read), reads.start('a', read)]);
  assert.equal(started, 1);
  assert.equal(await reads.take('b'), undefined);
  assert.equal(await reads.take('a'), 'bytes');
  assert.equal(await reads.take('a'), undefined, 'taken once');
});

test('a failed read settles its start and is taken as undefined', async () => {
  const reads = new ReadsAhead<string>();
  await reads.start('a', () => Promise.reject(new Error('EACCES')));
  assert.equal(await reads.take('a'), undefined);
});
