/** SpareBuffers (src/executor/spare-buffers.ts): buffers kept for reuse across passes, each with one taker at a time. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SpareBuffers } from '../src/executor/spare-buffers.js';

test('a buffer given back is taken again for its length only, once; none of that length: a new one', () => {
  const spares = new SpareBuffers();
  const first = spares.take(6);
  assert.equal(first.length, 6);
  first.fill(7);
  spares.keep(first);
  assert.notEqual(spares.take(5), first, 'another length');
  assert.equal(spares.take(6), first, 'the same buffer, its old values in it');
  assert.deepEqual([...first], [7, 7, 7, 7, 7, 7]);
  assert.notEqual(spares.take(6), first, 'taken: not handed out twice');
});

test('takers in flight together get different buffers', () => {
  const spares = new SpareBuffers();
  spares.keep(new Float32Array(4));
  const [a, b] = [spares.take(4), spares.take(4)];
  assert.notEqual(a, b);
});

test('at most `limit` kept, the oldest dropped first; empty buffers and clear() keep none', () => {
  const spares = new SpareBuffers(2);
  const [a, b, c] = [new Float32Array(3), new Float32Array(3), new Float32Array(3)];
  for (const buffer of [a, b, c]) spares.keep(buffer);
  const taken = [spares.take(3), spares.take(3), spares.take(3)];
  assert.deepEqual([taken[0] === b, taken[1] === c, taken[2] !== a], [true, true, true]);
  spares.keep(new Float32Array(0));
  spares.keep(a);
  spares.clear();
  assert.notEqual(spares.take(3), a);
});

test('a buffer given back twice is kept once: two takers never get the same one', () => {
  const spares = new SpareBuffers();
  const buffer = new Float32Array(5);
  spares.keep(buffer);
  spares.keep(buffer);
  const [a, b] = [spares.take(5), spares.take(5)];
  assert.equal(a, buffer);
  assert.notEqual(b, buffer);
});
