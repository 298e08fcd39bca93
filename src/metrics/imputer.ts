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
 * imputed values. The channels share the matrix: their systems are solved
 * side by side, each with its own iteration, in one pass over the matrix
 * and the multigrid levels per step. A region with no kept pixel at all (everything removed)
 * has no information: its system is singular and its solution 0 (plus noise).
 */
import { BLOCK, type SparseMatrix, buildHierarchy, multiplyMatrix, vCycle } from './multigrid.js';
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

/** The removed pixels' system D - W, and its right-hand sides, one per channel. */
interface ImputationSystem {
  /** Pixel index of each unknown. */
  unknowns: Int32Array;
  matrix: SparseMatrix;
  /** [unknown][channel] */
  rhs: Float64Array;
}

function buildSystem(image: PreprocessedImage, keep: Uint8Array): ImputationSystem {
  const { width, height, channels, pixels } = image;
  const slot = new Int32Array(width * height);
  let n = 0;
  for (let index = 0; index < keep.length; index++) if (!keep[index]) slot[index] = n++;
  const unknowns = new Int32Array(n);
  for (let index = 0; index < keep.length; index++) if (!keep[index]) unknowns[slot[index]!] = index;
  const diagonal = new Float64Array(n);
  const rowStart = new Int32Array(n + 1);
  const columns = new Int32Array(n * NEIGHBOURS.length);
  const values = new Float64Array(n * NEIGHBOURS.length);
  const rhs = new Float64Array(n * channels);
  let count = 0;
  for (let u = 0; u < n; u++) {
    const index = unknowns[u]!;
    const y = Math.floor(index / width);
    const x = index - y * width;
    for (let k = 0; k < NEIGHBOURS.length; k++) {
      const [dy, dx, weight] = NEIGHBOURS[k]!;
      const ny = y + dy;
      const nx = x + dx;
      if (ny < 0 || nx < 0 || ny >= height || nx >= width) continue;
      const neighbour = ny * width + nx;
      diagonal[u]! += weight;
      if (keep[neighbour]) {
        for (let c = 0; c < channels; c++) rhs[u * channels + c]! += weight * pixels[neighbour * channels + c]!;
      } else {
        columns[count] = slot[neighbour]!;
        values[count++] = -weight;
      }
    }
    rowStart[u + 1] = count;
  }
  return { unknowns, matrix: { diagonal, rowStart, columns: columns.slice(0, count), values: values.slice(0, count) }, rhs };
}

/** The dot products of a block's columns ([node][BLOCK] interleaved), into `out`. */
function dots(a: Float64Array, b: Float64Array, out: Float64Array): Float64Array {
  let d0 = 0;
  let d1 = 0;
  let d2 = 0;
  for (let i = 0; i < a.length; i += BLOCK) {
    d0 += a[i]! * b[i]!;
    d1 += a[i + 1]! * b[i + 1]!;
    d2 += a[i + 2]! * b[i + 2]!;
  }
  out[0] = d0;
  out[1] = d1;
  out[2] = d2;
  return out;
}

/** y += scale[column] * x, column by column of the blocks. */
function addScaled(y: Float64Array, scale: Float64Array, x: Float64Array): void {
  const [s0, s1, s2] = [scale[0]!, scale[1]!, scale[2]!];
  for (let i = 0; i < y.length; i += BLOCK) {
    y[i]! += s0 * x[i]!;
    y[i + 1]! += s1 * x[i + 1]!;
    y[i + 2]! += s2 * x[i + 2]!;
  }
}

/** p = z + scale[column] * p, column by column of the blocks. */
function scaleAndAdd(p: Float64Array, scale: Float64Array, z: Float64Array): void {
  const [s0, s1, s2] = [scale[0]!, scale[1]!, scale[2]!];
  for (let i = 0; i < p.length; i += BLOCK) {
    p[i] = z[i]! + s0 * p[i]!;
    p[i + 1] = z[i + 1]! + s1 * p[i + 1]!;
    p[i + 2] = z[i + 2]! + s2 * p[i + 2]!;
  }
}

/**
 * Conjugate gradients for (D - W) X = B from X = 0, one independent
 * iteration per column of the block B ([unknown][BLOCK]), sharing each
 * pass over the matrix and the preconditioner (z = M r); a column stops
 * once its residual is below RELATIVE_TOLERANCE of its right-hand side.
 */
function solveImputation(matrix: SparseMatrix, b: Float64Array, precondition: (r: Float64Array, z: Float64Array) => void): Float64Array {
  const maxIterations = 10 * matrix.diagonal.length + 10;
  const x = new Float64Array(b.length);
  const r = b.slice();
  const z = new Float64Array(b.length);
  const q = new Float64Array(b.length);
  precondition(r, z);
  const p = z.slice();
  const limit = dots(b, b, new Float64Array(BLOCK)).map((bb) => RELATIVE_TOLERANCE ** 2 * bb);
  const rz = dots(r, z, new Float64Array(BLOCK));
  const rr = dots(r, r, new Float64Array(BLOCK));
  const scratch = new Float64Array(BLOCK);
  const alpha = new Float64Array(BLOCK);
  const beta = new Float64Array(BLOCK);
  // A column is done once converged, or at a singular direction (what is left has no kept pixel to follow).
  const active = Uint8Array.from(rr, (value, c) => (value > limit[c]! ? 1 : 0));
  for (let iteration = 0; iteration < maxIterations && active.includes(1); iteration++) {
    multiplyMatrix(matrix, p, q);
    const pq = dots(p, q, scratch);
    for (let c = 0; c < BLOCK; c++) {
      if (!(pq[c]! > 0)) active[c] = 0;
      alpha[c] = active[c] ? rz[c]! / pq[c]! : 0;
    }
    addScaled(x, alpha, p);
    addScaled(r, alpha.map((a) => -a), q);
    dots(r, r, rr);
    for (let c = 0; c < BLOCK; c++) if (!(rr[c]! > limit[c]!)) active[c] = 0;
    if (!active.includes(1)) break;
    precondition(r, z);
    const rzNext = dots(r, z, scratch);
    for (let c = 0; c < BLOCK; c++) {
      beta[c] = active[c] ? rzNext[c]! / rz[c]! : 0;
      rz[c] = rzNext[c]!;
    }
    scaleAndAdd(p, beta, z);
  }
  return x;
}

/**
 * The image with the pixels where `keep` is 0 imputed (plus noise drawn
 * from `uniform`, a seeded generator); kept pixels are unchanged.
 */
export function noisyLinearImputation(image: PreprocessedImage, keep: Uint8Array, noise: number, uniform: () => number): Float32Array {
  const { width, channels } = image;
  const system = buildSystem(image, keep);
  const { unknowns, rhs } = system;
  const n = unknowns.length;
  const ys = unknowns.map((index) => Math.floor(index / width));
  const xs = unknowns.map((index, u) => index - ys[u]! * width);
  const hierarchy = buildHierarchy(system.matrix, xs, ys, width);
  const precondition = (r: Float64Array, z: Float64Array): void => vCycle(hierarchy, r, z);
  // Channels are solved BLOCK at a time (the last block padded with zero right-hand sides, which stay 0).
  const solution = new Float64Array(n * channels);
  for (let first = 0; first < channels; first += BLOCK) {
    const block = new Float64Array(n * BLOCK);
    const count = Math.min(BLOCK, channels - first);
    for (let u = 0; u < n; u++) for (let c = 0; c < count; c++) block[u * BLOCK + c] = rhs[u * channels + first + c]!;
    const x = solveImputation(system.matrix, block, precondition);
    for (let u = 0; u < n; u++) for (let c = 0; c < count; c++) solution[u * channels + first + c] = x[u * BLOCK + c]!;
  }
  // Noise is drawn channel by channel, unknown by unknown: the order the seeded records were made in.
  const out = image.pixels.slice();
  const normal = gaussian(uniform);
  for (let c = 0; c < channels; c++) {
    for (let u = 0; u < n; u++) out[unknowns[u]! * channels + c] = solution[u * channels + c]! + noise * normal();
  }
  return out;
}
