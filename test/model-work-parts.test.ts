/**
 * modelWorkInParts: a batch's model work in one part when it succeeds;
 * where it fails for several images, each image alone, so that only the
 * image that breaks the batch fails; when each image succeeds alone, one
 * image at a time for the rest of the run; when each fails alone, no more
 * retries; and no retry once the run is stopping.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type Batching, type DecodedInput, type ModelWorkPart, modelWorkInParts, onePerImage } from '../src/tasks/common.js';

/** Stand-ins: the work below reads only each item's name. */
function items(...names: string[]): DecodedInput[] {
  return names.map((name) => ({ input: { path: name, relative: name }, timings: {} }) as unknown as DecodedInput);
}

const names = (list: readonly DecodedInput[]): string[] => list.map((item) => item.input.path);

/** What each part holds: its images' names, and the value or the error's message. */
function summary(parts: readonly ModelWorkPart<string>[]): [string[], string][] {
  return parts.map((part) => [names(part.items), 'value' in part ? part.value : `error: ${(part.error as Error).message}`]);
}

/** Work that records its calls, joins its images' names, and throws where `fails` says. */
function recordingWork(fails: (batch: readonly string[]) => boolean): { calls: string[][]; work: (batch: readonly DecodedInput[]) => Promise<string> } {
  const calls: string[][] = [];
  return {
    calls,
    work: async (batch) => {
      calls.push(names(batch));
      if (fails(names(batch))) throw new Error(`fails on ${names(batch).join('+')}`);
      return names(batch).join('+');
    },
  };
}

describe('modelWorkInParts', () => {
  test('a batch that succeeds is one part, run once', async () => {
    const batching: Batching = { oneAtATime: false };
    const { calls, work } = recordingWork(() => false);
    const parts = await modelWorkInParts(items('a', 'b', 'c'), batching, work);
    assert.deepEqual(summary(parts), [[['a', 'b', 'c'], 'a+b+c']]);
    assert.deepEqual(calls, [['a', 'b', 'c']]);
    assert.equal(batching.oneAtATime, false);
  });

  test('when every image fails alone as well, later failed batches are not retried (a model failing everywhere ran each batch twice)', async () => {
    const batching: Batching = { oneAtATime: false };
    const { calls, work } = recordingWork(() => true);
    assert.deepEqual(summary(await modelWorkInParts(items('a', 'b'), batching, work)), [
      [['a'], 'error: fails on a'],
      [['b'], 'error: fails on b'],
    ]);
    assert.equal(batching.retryUseless, true);
    calls.length = 0;
    assert.deepEqual(summary(await modelWorkInParts(items('c', 'd'), batching, work)), [
      [['c'], 'error: fails on c+d'],
      [['d'], 'error: fails on c+d'],
    ]);
    assert.deepEqual(calls, [['c', 'd']], 'the batch once, no image alone');
  });

  test('a stopping run retries no failed batch, and starts no image after one fails alone (they have no part: not done)', async () => {
    const stop = { requested: true };
    const failing = recordingWork(() => true);
    assert.deepEqual(summary(await modelWorkInParts(items('a', 'b'), { oneAtATime: false }, failing.work, stop)), [
      [['a'], 'error: fails on a+b'],
      [['b'], 'error: fails on a+b'],
    ]);
    assert.deepEqual(failing.calls, [['a', 'b']]);
    const oneByOne = recordingWork((batch) => batch.includes('b'));
    assert.deepEqual(summary(await modelWorkInParts(items('a', 'b', 'c'), { oneAtATime: true }, oneByOne.work, stop)), [
      [['a'], 'a'],
      [['b'], 'error: fails on b'],
    ]);
    assert.deepEqual(oneByOne.calls, [['a'], ['b']]);
  });

  test('an image that breaks its batch fails alone; the others succeed; later batches stay whole', async () => {
    const batching: Batching = { oneAtATime: false };
    const { calls, work } = recordingWork((batch) => batch.includes('bad'));
    const parts = await modelWorkInParts(items('a', 'bad', 'c'), batching, work);
    assert.deepEqual(summary(parts), [
      [['a'], 'a'],
      [['bad'], 'error: fails on bad'],
      [['c'], 'c'],
    ]);
    assert.deepEqual(calls, [['a', 'bad', 'c'], ['a'], ['bad'], ['c']]);
    assert.equal(batching.oneAtATime, false, 'one bad image does not make the run go one at a time');
    const next = recordingWork(() => false);
    await modelWorkInParts(items('d', 'e'), batching, next.work);
    assert.deepEqual(next.calls, [['d', 'e']]);
  });

  test('when every image succeeds alone, the rest of the run goes one image at a time without failing first', async () => {
    const batching: Batching = { oneAtATime: false };
    const { calls, work } = recordingWork((batch) => batch.length > 1);
    assert.deepEqual(summary(await modelWorkInParts(items('a', 'b'), batching, work)), [
      [['a'], 'a'],
      [['b'], 'b'],
    ]);
    assert.equal(batching.oneAtATime, true);
    calls.length = 0;
    assert.deepEqual(summary(await modelWorkInParts(items('c', 'd'), batching, work)), [
      [['c'], 'c'],
      [['d'], 'd'],
    ]);
    assert.deepEqual(calls, [['c'], ['d']], 'no failing batch first');
  });

  test('one image is run once, its failure its own; no image, no work', async () => {
    const batching: Batching = { oneAtATime: false };
    const { calls, work } = recordingWork(() => true);
    assert.deepEqual(summary(await modelWorkInParts(items('a'), batching, work)), [[['a'], 'error: fails on a']]);
    assert.deepEqual(calls, [['a']]);
    assert.equal(batching.oneAtATime, false);
    assert.equal(batching.retryUseless, undefined, 'one image alone teaches nothing of batches');
    assert.deepEqual(await modelWorkInParts([], batching, work), []);
    assert.equal(calls.length, 1);
  });
});

test('onePerImage: a result per image passes; fewer (a model folding its batch into one row) is an error the retry acts on', () => {
  assert.deepEqual(onePerImage([1, 2], items('a', 'b')), [1, 2]);
  assert.throws(() => onePerImage([1], items('a', 'b')), /the model gave 1 result for 2 images: it takes one image at a time/);
});
