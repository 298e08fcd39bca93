/**
 * An aggregation multigrid V-cycle, the preconditioner of the imputer's
 * conjugate gradients. Plain (Jacobi) conjugate gradients need about as
 * many iterations as the removed regions are wide: several hundred at
 * 224 x 224 with 90% of the pixels removed. Here each level groups its
 * nodes in 2 x 2 blocks of the pixel grid (piecewise-constant
 * prolongation P), its coarse matrix is P^T A P (Galerkin), and a V-cycle
 * smooths with one forward Gauss-Seidel sweep before the coarse correction
 * and one backward sweep after it, so the preconditioner is symmetric, as
 * conjugate gradients need. It changes how fast the iterations converge,
 * not the system they solve.
 */

/** A sparse symmetric matrix: its diagonal, and its off-diagonal entries in compressed rows. */
export interface SparseMatrix {
  diagonal: Float64Array;
  rowStart: Int32Array;
  columns: Int32Array;
  values: Float64Array;
}

/** y = A x */
export function multiplyMatrix(matrix: SparseMatrix, x: Float64Array, y: Float64Array): void {
  const { diagonal, rowStart, columns, values } = matrix;
  for (let i = 0; i < diagonal.length; i++) {
    let sum = diagonal[i]! * x[i]!;
    for (let k = rowStart[i]!; k < rowStart[i + 1]!; k++) sum += values[k]! * x[columns[k]!]!;
    y[i] = sum;
  }
}

interface Level {
  matrix: SparseMatrix;
  /** Each node's coarse node. */
  aggregate: Int32Array;
  coarse: Level | undefined;
  /** Scratch vectors: this level's size (x, residual) and the coarse level's (coarseRhs). */
  x: Float64Array;
  residual: Float64Array;
  coarseRhs: Float64Array;
}

/** Below this many nodes, a level is solved by COARSEST_SWEEPS symmetric Gauss-Seidel sweeps. */
const COARSEST_NODES = 64;
const COARSEST_SWEEPS = 20;
const MAX_LEVELS = 12;

/** The hierarchy for `matrix`, whose node i sits at grid cell (xs[i], ys[i]). */
export function buildHierarchy(matrix: SparseMatrix, xs: Int32Array, ys: Int32Array, depth = 0): Level {
  const n = matrix.diagonal.length;
  const level: Level = { matrix, aggregate: new Int32Array(n), coarse: undefined, x: new Float64Array(n), residual: new Float64Array(n), coarseRhs: new Float64Array(0) };
  if (n <= COARSEST_NODES || depth >= MAX_LEVELS) return level;
  const index = new Map<number, number>();
  const coarseXs: number[] = [];
  const coarseYs: number[] = [];
  for (let i = 0; i < n; i++) {
    const cx = xs[i]! >> 1;
    const cy = ys[i]! >> 1;
    const key = cy * 65536 + cx;
    let coarse = index.get(key);
    if (coarse === undefined) {
      coarse = coarseXs.length;
      index.set(key, coarse);
      coarseXs.push(cx);
      coarseYs.push(cy);
    }
    level.aggregate[i] = coarse;
  }
  if (coarseXs.length === n) return level;
  const cxs = Int32Array.from(coarseXs);
  const cys = Int32Array.from(coarseYs);
  level.coarse = buildHierarchy(galerkin(matrix, level.aggregate, cxs, cys), cxs, cys, depth + 1);
  level.coarseRhs = new Float64Array(cxs.length);
  return level;
}

/**
 * P^T A P for the piecewise-constant P of `aggregate`. Entries join nodes
 * at most one cell apart (the 8-neighbour stencil, and 2 x 2 blocks of it),
 * so each coarse row has at most 8 off-diagonal entries, one per offset.
 */
function galerkin(matrix: SparseMatrix, aggregate: Int32Array, xs: Int32Array, ys: Int32Array): SparseMatrix {
  const size = xs.length;
  const diagonal = new Float64Array(size);
  const stencil = new Float64Array(size * 9);
  const neighbour = new Int32Array(size * 9).fill(-1);
  for (let i = 0; i < matrix.diagonal.length; i++) {
    const row = aggregate[i]!;
    diagonal[row]! += matrix.diagonal[i]!;
    for (let k = matrix.rowStart[i]!; k < matrix.rowStart[i + 1]!; k++) {
      const column = aggregate[matrix.columns[k]!]!;
      if (column === row) {
        diagonal[row]! += matrix.values[k]!;
        continue;
      }
      const slot = row * 9 + (ys[column]! - ys[row]! + 1) * 3 + (xs[column]! - xs[row]! + 1);
      stencil[slot]! += matrix.values[k]!;
      neighbour[slot] = column;
    }
  }
  const rowStart = new Int32Array(size + 1);
  const columns: number[] = [];
  const values: number[] = [];
  for (let row = 0; row < size; row++) {
    for (let slot = row * 9; slot < row * 9 + 9; slot++) {
      if (neighbour[slot]! < 0) continue;
      columns.push(neighbour[slot]!);
      values.push(stencil[slot]!);
    }
    rowStart[row + 1] = columns.length;
  }
  return { diagonal, rowStart, columns: Int32Array.from(columns), values: Float64Array.from(values) };
}

/** One Gauss-Seidel sweep on A x = b, forward or backward. */
function gaussSeidel(matrix: SparseMatrix, b: Float64Array, x: Float64Array, forward: boolean): void {
  const { diagonal, rowStart, columns, values } = matrix;
  const n = diagonal.length;
  for (let step = 0; step < n; step++) {
    const i = forward ? step : n - 1 - step;
    if (!(diagonal[i]! > 0)) continue;
    let sum = b[i]!;
    for (let k = rowStart[i]!; k < rowStart[i + 1]!; k++) sum -= values[k]! * x[columns[k]!]!;
    x[i] = sum / diagonal[i]!;
  }
}

/** z = B r, B the V-cycle from zero: symmetric and positive definite where A is. */
export function vCycle(level: Level, r: Float64Array, z: Float64Array): void {
  const { matrix, coarse } = level;
  z.fill(0);
  if (coarse === undefined) {
    for (let sweep = 0; sweep < COARSEST_SWEEPS; sweep++) {
      gaussSeidel(matrix, r, z, true);
      gaussSeidel(matrix, r, z, false);
    }
    return;
  }
  gaussSeidel(matrix, r, z, true);
  multiplyMatrix(matrix, z, level.residual);
  const { coarseRhs } = level;
  coarseRhs.fill(0);
  for (let i = 0; i < r.length; i++) coarseRhs[level.aggregate[i]!]! += r[i]! - level.residual[i]!;
  const correction = coarse.x;
  vCycle(coarse, coarseRhs, correction);
  for (let i = 0; i < z.length; i++) z[i]! += correction[level.aggregate[i]!]!;
  gaussSeidel(matrix, r, z, false);
}
