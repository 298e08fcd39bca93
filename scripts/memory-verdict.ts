/**
 * Whether a folder run's memory stayed flat (issue 12: "memory flat over
 * 1,000 images"), from the samples bench-memory.ts takes between batches.
 * Pure, so that the rule is tested on series worked out by hand
 * (test/memory-verdict.test.ts).
 */
import { median } from './bench-stats.js';
import type { MemorySample } from './bench-memory.js';

/** How much resident memory may grow from the warm window to the end. */
export const MAX_GROWTH = 0.05;

export interface MemoryVerdict {
  /** The samples of the run's second fifth (after warm-up: code, caches, the allocators' first high-water marks). */
  readonly warm: readonly MemorySample[];
  /** The samples of its last fifth. */
  readonly end: readonly MemorySample[];
  /** The end's median RSS over the warm window's, less one. */
  readonly growth: number;
  /** Live tensors at the last sample less at the first warm one. */
  readonly tensorsAdded: number;
  /** No tensor left behind, and `growth` within MAX_GROWTH. */
  readonly flat: boolean;
  /** The change of the medians of some other measure (undefined where a sample lacks it). */
  change(of: (sample: MemorySample) => number | undefined): number | undefined;
}

/**
 * The verdict on the samples of a run of `total` images taken while it ran,
 * undefined when a window holds none. Each window is judged by its median:
 * a single sample moves by 20-30 MiB with where the collections and the
 * photos' buffers happen to fall (by single samples, two runs of one build
 * gave +4.2% and +11.0%; one run on ONNX Runtime gave +7.3% by single
 * samples and +0.3% by the medians), while a leak moves every sample of
 * the last fifth, and so its median.
 */
export function memoryVerdict(samples: readonly MemorySample[], total: number): MemoryVerdict | undefined {
  const within = (from: number, to: number): MemorySample[] => samples.filter((sample) => sample.images >= from && sample.images < to);
  const warm = within(total / 5, (2 * total) / 5);
  const end = within((4 * total) / 5, total);
  if (warm.length === 0 || end.length === 0) return undefined;
  const change = (of: (sample: MemorySample) => number | undefined): number | undefined => {
    const [from, to] = [medianOf(warm, of), medianOf(end, of)];
    return from === undefined || to === undefined ? undefined : to - from;
  };
  const growth = change((sample) => sample.rss)! / median(warm.map((sample) => sample.rss));
  return {
    warm,
    end,
    growth,
    tensorsAdded: end.at(-1)!.tensors - warm[0]!.tensors,
    flat: noTensorLeft(samples, warm[0]!.images) && growth <= MAX_GROWTH,
    change,
  };
}

function medianOf(window: readonly MemorySample[], of: (sample: MemorySample) => number | undefined): number | undefined {
  const values = window.map(of).filter((value) => value !== undefined);
  return values.length === window.length ? median(values) : undefined;
}

/**
 * Whether the run left no tensor behind after warm-up: the fewest live
 * tensors of the last half of its samples are no more than of the half
 * before. A sample may fall while an image's tensors are alive (ONNX
 * Runtime's passes are asynchronous: the timer fires during one), so two
 * single samples differ by such a transient; a tensor left per image, or
 * per hundred, raises the fewest.
 */
function noTensorLeft(samples: readonly MemorySample[], warmImages: number): boolean {
  const warm = samples.filter((sample) => sample.images >= warmImages);
  const half = Math.floor(warm.length / 2);
  const fewest = (part: readonly MemorySample[]): number => Math.min(...part.map((sample) => sample.tensors));
  return half > 0 && fewest(warm.slice(half)) <= fewest(warm.slice(0, half));
}
