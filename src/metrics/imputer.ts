/**
 * ROAD's noisy linear imputation (Rong et al. 2022; pytorch-grad-cam's
 * `NoisyLinearImputer`): every removed pixel becomes the weighted average
 * of its 8 neighbours (1/6 the axial ones, 1/12 the diagonal ones, weights
 * renormalised over the neighbours inside the image), removed neighbours
 * being unknowns themselves. That is one sparse linear system per channel,
 * D x - W x = W v (D: each pixel's weight sum, W: the weights between
 * removed pixels, v: the kept neighbours' values); ROAD solves it exactly
 * (scipy's spsolve). Here it is solved by conjugate gradients with an
 * aggregation multigrid preconditioner (multigrid.ts; the matrix is symmetric and positive definite
 * wherever removed pixels touch a kept one) to a relative residual of
 * 1e-6, then Gaussian noise of standard deviation `noise` is added to the
 * imputed values. A region with no kept pixel at all (everything removed)
 * has no information: its system is singular and its solution 0 (plus noise).
 */
import { type SparseMatrix, buildHierarchy, multiplyMatrix, vCycle } from './multigrid.js';
import { gaussian } from './random.js';
import type { PreprocessedImage } from './types.js';

/** [dy, dx, weight]: ROAD's neighbour weights, in its order. */
const NEIGHBOURS: readonly (readonly [number, number, number])[] = [
  [1, 1, 1 / 12],
  [0, 1, 1 / 6],
  [-1, 1, 1 / 12],
  [1, -1, 1 / 12],
  [0, -1, 1 / 6],
  [-1, -1, 1 / 12],
  [1, 0, 1 / 6],
  [-1, 0, 1 / 6],
];

/** ROAD's default noise (`NoisyLinearImputer(noise=0.01)`), in model-input units. */
export const ROAD_NOISE = 0.01;

const RELATIVE_TOLERANCE = 1e-6;

/** The removed pixels' system D - W, and the right-hand side per channel. */
interface ImputationSystem {
  /** Pixel index of each unknown. */
  unknowns: Int32Array;
  matrix: SparseMatrix;
  /** [channel][unknown] */
  rhs: Float64Array[];
}

function buildSystem(image: PreprocessedImage, keep: Uint8Array): ImputationSystem {
  const { width, height, channels, pixels } = image;
  const slot = new Int32Array(width * height).fill(-1);
  const unknownList: number[] = [];
  keep.forEach((kept, index) => {
    if (!kept) {
      slot[index] = unknownList.length;
      unknownList.push(index);
    }
  });
  const unknowns = Int32Array.from(unknownList);
  const n = unknowns.length;
  const diagonal = new Float64Array(n);
  const rowStart = new Int32Array(n + 1);
  const columns: number[] = [];
  const values: number[] = [];
  const rhs = Array.from({ length: channels }, () => new Float64Array(n));
  for (let u = 0; u < n; u++) {
    const index = unknowns[u]!;
    const y = Math.floor(index / width);
    const x = index - y * width;
    for (const [dy, dx, weight] of NEIGHBOURS) {
      const ny = y + dy;
      const nx = x + dx;
      if (ny < 0 || nx < 0 || ny >= height || nx >= width) continue;
      const neighbour = ny * width + nx;
      diagonal[u]! += weight;
      if (keep[neighbour]) {
        for (let c = 0; c < channels; c++) rhs[c]![u]! += weight * pixels[neighbour * channels + c]!;
      } else {
        columns.push(slot[neighbour]!);
        values.push(-weight);
      }
    }
    rowStart[u + 1] = columns.length;
  }
  return { unknowns, matrix: { diagonal, rowStart, columns: Int32Array.from(columns), values: Float64Array.from(values) }, rhs };
}

function dot(a: Float64Array, b: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i]! * b[i]!;
  return sum;
}

/** Conjugate gradients for (D - W) x = b from x = 0, preconditioned by `precondition` (z = B r). */
function solveImputation(matrix: SparseMatrix, b: Float64Array, precondition: (r: Float64Array, z: Float64Array) => void, maxIterations = 10 * b.length + 10): Float64Array {
  const n = b.length;
  const x = new Float64Array(n);
  const r = Float64Array.from(b);
  const z = new Float64Array(n);
  precondition(r, z);
  const p = Float64Array.from(z);
  const q = new Float64Array(n);
  const limit = (RELATIVE_TOLERANCE * Math.sqrt(dot(b, b))) ** 2;
  let rz = dot(r, z);
  for (let iteration = 0; iteration < maxIterations && dot(r, r) > limit; iteration++) {
    multiplyMatrix(matrix, p, q);
    const pq = dot(p, q);
    if (!(pq > 0)) break; // a singular direction: what is left has no kept pixel to follow
    const alpha = rz / pq;
    for (let i = 0; i < n; i++) {
      x[i]! += alpha * p[i]!;
      r[i]! -= alpha * q[i]!;
    }
    precondition(r, z);
    const rzNext = dot(r, z);
    const beta = rzNext / rz;
    rz = rzNext;
    for (let i = 0; i < n; i++) p[i] = z[i]! + beta * p[i]!;
  }
  return x;
}

/**
 * The image with the pixels where `keep` is 0 imputed (plus noise drawn
 * from `uniform`, a seeded generator); kept pixels are unchanged.
 */
export function noisyLinearImputation(image: PreprocessedImage, keep: Uint8Array, noise: number, uniform: () => number): Float32Array {
  const system = buildSystem(image, keep);
  const out = image.pixels.slice();
  const normal = gaussian(uniform);
  const { unknowns } = system;
  const ys = unknowns.map((index) => Math.floor(index / image.width));
  const hierarchy = buildHierarchy(system.matrix, unknowns.map((index, u) => index - ys[u]! * image.width), ys);
  const precondition = (r: Float64Array, z: Float64Array): void => vCycle(hierarchy, r, z);
  system.rhs.forEach((b, channel) => {
    const solution = solveImputation(system.matrix, b, precondition);
    for (let u = 0; u < solution.length; u++) out[system.unknowns[u]! * image.channels + channel] = solution[u]! + noise * normal();
  });
  return out;
}
