/**
 * The probabilities of class scores where a model has no softmax of its
 * own: each row's softmax, taken in double and rounded to float32 once.
 * One function for every pass that reports them (network.ts, for every
 * engine) and for a planned run (tasks/planned-cam.ts), so that both
 * record the same probability to the bit.
 */

/** The softmax of each row of `classes` scores in `scores` (rows one after another). */
export function softmaxRows(scores: Float32Array, classes: number): Float32Array {
  const out = new Float32Array(scores.length);
  for (let start = 0; start < scores.length; start += classes) {
    let max = -Infinity;
    for (let i = start; i < start + classes; i++) if (scores[i]! > max) max = scores[i]!;
    let sum = 0;
    for (let i = start; i < start + classes; i++) sum += Math.exp(scores[i]! - max);
    for (let i = start; i < start + classes; i++) out[i] = Math.exp(scores[i]! - max) / sum;
  }
  return out;
}
