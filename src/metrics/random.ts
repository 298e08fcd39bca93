/**
 * Seeded randomness for the metrics, so that a run's values are the same
 * for any --jobs, --batch-size or input order: the random baseline maps and
 * ROAD's imputation noise are drawn from seeds derived from names (an
 * input's relative path, a class, a percentile), not from a shared stream.
 */

/** mulberry32: a small, fast 32-bit generator; uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A 32-bit seed from a name (FNV-1a over its UTF-16 code units). */
export function seedOf(name: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    hash ^= name.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** Standard normal draws (Box-Muller) from a uniform generator. */
export function gaussian(uniform: () => number): () => number {
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const value = spare;
      spare = undefined;
      return value;
    }
    // 1 - u keeps the logarithm's argument in (0, 1].
    const radius = Math.sqrt(-2 * Math.log(1 - uniform()));
    const angle = 2 * Math.PI * uniform();
    spare = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  };
}

/** A map of `width` x `height` values uniform in [0, 1), the same for the same seed. */
export function uniformMap(width: number, height: number, seed: number): Float32Array {
  const next = mulberry32(seed);
  return Float32Array.from({ length: width * height }, () => next());
}
