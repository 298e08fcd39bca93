/**
 * The pointing game (Zhang et al. 2016): a map "points" at an object when
 * its peak (the maximum of the map upsampled to the picture, the `peak`
 * camviz reports) lies inside the object's box. The hit rate over
 * (image, class) pairs with a known box is the score. Shared by
 * `camviz metrics` and scripts/pointing-game.ts.
 */

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface PointingTally {
  hits: number;
  total: number;
}

/** Whether a peak (in the box's pixels) lies in the box: x in [x, x + width), y likewise. */
export function pointsInside(peak: { x: number; y: number }, box: Box): boolean {
  return peak.x >= box.x && peak.x < box.x + box.width && peak.y >= box.y && peak.y < box.y + box.height;
}

/** Counts one attempt: a hit when the peak lies in any of the class's boxes. */
export function tallyPointing(tally: PointingTally, peak: { x: number; y: number }, boxes: readonly Box[]): void {
  tally.total++;
  if (boxes.some((box) => pointsInside(peak, box))) tally.hits++;
}

/** hits / total, or 0 for no attempts. */
export function hitRate({ hits, total }: PointingTally): number {
  return total === 0 ? 0 : hits / total;
}
