/** Small text helpers shared by error messages. */

/** Levenshtein distance, for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** Up to `count` candidates closest to `wanted`, nearest first, if reasonably close. */
export function closestMatches(wanted: string, candidates: readonly string[], count = 3, key: (candidate: string) => string = (c) => c): string[] {
  const target = wanted.toLowerCase();
  return candidates
    .map((candidate) => ({ candidate, distance: editDistance(target, key(candidate).toLowerCase()) }))
    .filter((entry) => entry.distance <= Math.max(2, Math.ceil(target.length / 2)))
    .sort((a, b) => a.distance - b.distance)
    .slice(0, count)
    .map((entry) => entry.candidate);
}
