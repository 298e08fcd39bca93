/**
 * modelWorkInParts: a batch's model work in one part when it succeeds;
 * where it fails for several images, each image alone, so that only the
 * image that breaks the batch fails; when each image succeeds alone, one
 * image at a time for the rest of the run; when each fails alone, no more
 * retries; no retry once the run is stopping, and no model work started
 * after the stop; a thread's batches take turns at their model work.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type Batching, type DecodedInput, type ModelWorkPart, WorkStopped, modelWorkInParts, onePerImage } from '../src/tasks/common.js';

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
    // The stop comes while the batch's model work is under way (a signal during the pass).
    const stop = { requested: false };
    const failing = recordingWork(() => {
      stop.requested = true;
      return true;
    });
    assert.deepEqual(summary(await modelWorkInParts(items('a', 'b'), { oneAtATime: false }, failing.work, { stop })), [
      [['a'], 'error: fails on a+b'],
      [['b'], 'error: fails on a+b'],
    ]);
    assert.deepEqual(failing.calls, [['a', 'b']]);
    stop.requested = false;
    const oneByOne = recordingWork((batch) => {
      stop.requested = true;
      return batch.includes('a');
    });
    assert.deepEqual(summary(await modelWorkInParts(items('a', 'b', 'c'), { oneAtATime: true }, oneByOne.work, { stop })), [[['a'], 'error: fails on a']]);
    assert.deepEqual(oneByOne.calls, [['a']]);
  });

  test('a stopping run starts no image after the stop: one at a time, the image under way finishes and the rest have no part', async () => {
    const stop = { requested: false };
    const { calls, work } = recordingWork((batch) => {
      if (batch.includes('b')) stop.requested = true;
      return false;
    });
    assert.deepEqual(summary(await modelWorkInParts(items('a', 'b', 'c'), { oneAtATime: true }, work, { stop })), [
      [['a'], 'a'],
      [['b'], 'b'],
    ]);
    assert.deepEqual(calls, [['a'], ['b']]);
  });

  test('a batch whose turn comes after the stop does no model work; work that stops early (WorkStopped) leaves its images without a part', async () => {
    const stop = { requested: true };
    const { calls, work } = recordingWork(() => false);
    assert.deepEqual(await modelWorkInParts(items('a', 'b'), { oneAtATime: false }, work, { stop }), []);
    assert.deepEqual(calls, [], 'no model work');
    const batching: Batching = { oneAtATime: false };
    const stopped = async (): Promise<string> => {
      throw new WorkStopped();
    };
    assert.deepEqual(await modelWorkInParts(items('a', 'b'), batching, stopped, { stop: { requested: false } }), []);
    assert.deepEqual(batching, { oneAtATime: false }, 'a stop teaches nothing of batches');
    assert.deepEqual(await modelWorkInParts(items('a'), batching, stopped, { stop: { requested: false } }), []);
  });

  test("a thread's batches take turns: three in flight at once, their model work one at a time, in the order they came", async () => {
    const context = {};
    let inWork = 0;
    let mostAtOnce = 0;
    const order: string[] = [];
    // Work that awaits between its passes (ONNX Runtime's, Score-CAM's masked passes) as its batches' did when they interleaved.
    const passes = async (batch: readonly DecodedInput[]): Promise<string> => {
      inWork++;
      mostAtOnce = Math.max(mostAtOnce, inWork);
      for (let pass = 0; pass < 5; pass++) await new Promise((resolve) => setImmediate(resolve));
      order.push(names(batch).join('+'));
      inWork--;
      return names(batch).join('+');
    };
    const batches = [items('a'), items('b'), items('c')].map((batch) => modelWorkInParts(batch, { oneAtATime: false }, passes, context));
    assert.deepEqual((await Promise.all(batches)).map(summary), [[[['a'], 'a']], [[['b'], 'b']], [[['c'], 'c']]]);
    assert.equal(mostAtOnce, 1, 'one batch in model work at a time');
    assert.deepEqual(order, ['a', 'b', 'c']);
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
