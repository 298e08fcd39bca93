/** The top classes of a score or probability row, in plain JS: shared by predictions, CAM requests and planned runs (which load no tfjs). */

/** The indices of the `k` largest values, largest first; ties in index order. */
export function topClassIndices(values: Float32Array, k: number): number[] {
  const count = Math.min(Math.max(0, k), values.length);
  // A few classes asked (the usual top 1 to 5): keep them in order in one
  // pass, where sorting all 1,001 indices cost 0.2 ms an image.
  if (count > TOP_BY_SELECTION) return sortedClassIndices(values).slice(0, count);
  const top: number[] = [];
  for (let index = 0; index < values.length; index++) {
    const value = values[index]!;
    // Full: only a strictly larger value enters (ties keep the lower index first).
    if (top.length === count && !(value > values[top[count - 1]!]!)) continue;
    let slot = top.length === count ? count - 1 : top.length;
    while (slot > 0 && values[top[slot - 1]!]! < value) {
      top[slot] = top[slot - 1]!;
      slot--;
    }
    top[slot] = index;
  }
  return top;
}

/** Up to this many classes, topClassIndices selects rather than sorts. */
const TOP_BY_SELECTION = 16;

/** Every class index, the largest value first, ties by index. */
function sortedClassIndices(values: Float32Array): number[] {
  return Array.from(values.keys()).sort((a, b) => values[b]! - values[a]! || a - b);
}
