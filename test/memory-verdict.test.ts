/**
 * The bench's verdict on a folder run's memory (scripts/memory-verdict.ts),
 * on sample series worked out by hand: one sample every 10 images of a
 * 1,000-image run, as bench-memory.ts takes them.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MemorySample } from '../scripts/bench-memory.js';
import { memoryVerdict } from '../scripts/memory-verdict.js';

const MiB = 2 ** 20;
const KiB = 2 ** 10;

/** Samples at images 0, 10, ..., 990, with the resident memory and live tensors `at` gives. */
function series(at: (images: number, index: number) => { rss: number; tensors?: number }): MemorySample[] {
  return Array.from({ length: 100 }, (_, index) => {
    const images = index * 10;
    const { rss, tensors = 137 } = at(images, index);
    return { images, rss, tensors, heapUsed: 20 * MiB, external: 0, arrayBuffers: 0 };
  });
}

describe('the memory verdict', () => {
  test('flat memory with a dip at image 200, spikes every seventh sample and a spike at the end: growth 0, flat', () => {
    const samples = series((images, index) => ({ rss: 320 * MiB + (images === 200 ? -20 * MiB : index % 7 === 0 || images === 990 ? 25 * MiB : 0) }));
    // The rule before (the sample at image 200 against the last): (345 - 300) / 300 = +15%.
    const verdict = memoryVerdict(samples, 1000)!;
    assert.deepEqual([verdict.warm[0]!.images, verdict.warm.at(-1)!.images, verdict.end[0]!.images, verdict.end.at(-1)!.images], [200, 390, 800, 990]);
    assert.equal(verdict.growth, 0);
    assert.equal(verdict.flat, true);
  });

  test('a leak of 32 KiB an image: the medians at images 295 and 895 differ by 18.75 MiB, +5.7%, not flat', () => {
    const verdict = memoryVerdict(series((images) => ({ rss: 320 * MiB + images * 32 * KiB })), 1000)!;
    // Medians of 20 samples: the mean of images 290 and 300 (295), and of 890 and 900 (895).
    assert.equal(verdict.change((sample) => sample.rss), 600 * 32 * KiB);
    assert.ok(Math.abs(verdict.growth - 18.75 / (320 + (295 * 32) / 1024)) < 1e-12);
    assert.equal(verdict.flat, false);
  });

  test('a leak of 16 KiB an image stays within 5% over this run (+2.9%): flat', () => {
    const verdict = memoryVerdict(series((images) => ({ rss: 320 * MiB + images * 16 * KiB })), 1000)!;
    assert.ok(Math.abs(verdict.growth - 9.375 / (320 + (295 * 16) / 1024)) < 1e-12);
    assert.equal(verdict.flat, true);
  });

  test('one tensor left every 100 images is not flat, however flat the memory; a passing spike of tensors is', () => {
    const leaking = memoryVerdict(series((images) => ({ rss: 320 * MiB, tensors: 137 + Math.floor(images / 100) })), 1000)!;
    assert.equal(leaking.growth, 0);
    assert.equal(leaking.flat, false);
    assert.equal(leaking.tensorsAdded, 7);
    const passing = memoryVerdict(series((_, index) => ({ rss: 320 * MiB, tensors: index % 3 === 0 ? 142 : 137 })), 1000)!;
    assert.equal(passing.flat, true);
  });

  test('a run too short for a window has no verdict; a measure some samples lack has no change', () => {
    assert.equal(memoryVerdict(series(() => ({ rss: 320 * MiB })).slice(0, 19), 1000), undefined);
    const verdict = memoryVerdict(series(() => ({ rss: 320 * MiB })), 1000)!;
    assert.equal(verdict.change((sample) => sample.resident?.mainHeap), undefined);
    assert.equal(verdict.change((sample) => sample.heapUsed), 0);
  });
});
