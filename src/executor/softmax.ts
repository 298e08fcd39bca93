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
  const exps = new Float64Array(classes);
  for (let start = 0; start < scores.length; start += classes) {
    let max = -Infinity;
    for (let i = start; i < start + classes; i++) if (scores[i]! > max) max = scores[i]!;
    let sum = 0;
    for (let i = 0; i < classes; i++) sum += exps[i] = Math.exp(scores[start + i]! - max);
    for (let i = 0; i < classes; i++) out[start + i] = exps[i]! / sum;
  }
  return out;
}
