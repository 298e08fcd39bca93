/**
 * An aggregation multigrid V-cycle, the preconditioner of the imputer's
 * conjugate gradients. Plain (Jacobi) conjugate gradients need about as
 * many iterations as the removed regions are wide: several hundred at
 * 224 x 224 with 90% of the pixels removed. Here each level groups its
 * nodes in 2 x 2 blocks of the pixel grid (piecewise-constant
 * prolongation P), its coarse matrix is P^T A P (Galerkin), and a V-cycle
 * smooths with one forward Gauss-Seidel sweep before the coarse correction
 * and one backward sweep after it, so the preconditioner is symmetric, as
 * conjugate gradients need. The coarse correction is scaled by
 * OVER_CORRECTION: a piecewise-constant P's coarse matrix overestimates
 * the energy of smooth errors (by about 2 for a Laplacian-like stencil),
 * so the plain correction undershoots them (over-correction, as in
 * Braess 1995 and Notay's aggregation AMG). Any positive scale keeps the
 * V-cycle symmetric, and positive definite where A is (the Gauss-Seidel
 * sweeps converge on their own); 1.7 halves the iterations on ROAD's
 * masks (about 22 -> 11 per solve at 224 x 224; 1.5-1.9 are all within a
 * few per cent). It changes how fast the iterations converge,
 * not the system they solve.
 *
 * Vectors are blocks of BLOCK right-hand sides interleaved per node
 * ([node][rhs]), so that one pass over the matrix serves the three colour
 * channels (the imputer solves one matrix for all channels); the loops
 * over a block are written out, which the JIT compiles far better than a
 * loop of variable length.
 */

/** Right-hand sides per block. */
export const BLOCK = 3;

/** A sparse symmetric matrix: its diagonal, and its off-diagonal entries in compressed rows. */
export interface SparseMatrix {
  diagonal: Float64Array;
  rowStart: Int32Array;
  columns: Int32Array;
  values: Float64Array;
}

/** Y = A X for blocks of BLOCK vectors interleaved per node. */
export function multiplyMatrix(matrix: SparseMatrix, x: Float64Array, y: Float64Array): void {
  const { diagonal, rowStart, columns, values } = matrix;
  for (let i = 0; i < diagonal.length; i++) {
    const d = diagonal[i]!;
    const row = i * BLOCK;
    let y0 = d * x[row]!;
    let y1 = d * x[row + 1]!;
    let y2 = d * x[row + 2]!;
    for (let k = rowStart[i]!; k < rowStart[i + 1]!; k++) {
      const v = values[k]!;
      const column = columns[k]! * BLOCK;
      y0 += v * x[column]!;
      y1 += v * x[column + 1]!;
      y2 += v * x[column + 2]!;
    }
    y[row] = y0;
    y[row + 1] = y1;
    y[row + 2] = y2;
  }
}

export interface Level {
  matrix: SparseMatrix;
  /** 1 / diagonal, 0 where the diagonal is not positive (a node Gauss-Seidel leaves alone). */
  inverseDiagonal: Float64Array;
  /** Each node's coarse node. */
  aggregate: Int32Array;
  coarse: Level | undefined;
  /** Scratch blocks: this level's size (x, residual) and the coarse level's (coarseRhs). */
  x: Float64Array;
  residual: Float64Array;
  coarseRhs: Float64Array;
}

/** Below this many nodes, a level is solved by COARSEST_SWEEPS symmetric Gauss-Seidel sweeps. */
const COARSEST_NODES = 64;
const COARSEST_SWEEPS = 20;
const MAX_LEVELS = 12;
/** The scale of each level's coarse correction (see the file's comment). */
const OVER_CORRECTION = 1.7;

/**
 * The hierarchy for `matrix`, whose node i sits at cell (xs[i], ys[i]) of
 * a grid `gridWidth` cells wide.
 */
export function buildHierarchy(matrix: SparseMatrix, xs: Int32Array, ys: Int32Array, gridWidth: number, depth = 0): Level {
  const n = matrix.diagonal.length;
  const inverseDiagonal = matrix.diagonal.map((d) => (d > 0 ? 1 / d : 0));
  const level: Level = { matrix, inverseDiagonal, aggregate: new Int32Array(n), coarse: undefined, x: new Float64Array(n * BLOCK), residual: new Float64Array(n * BLOCK), coarseRhs: new Float64Array(0) };
  if (n <= COARSEST_NODES || depth >= MAX_LEVELS) return level;
  // Coarse cell (cx, cy) -> coarse node + 1 (0: none yet), in order of first appearance.
  const coarseWidth = (gridWidth + 1) >> 1;
  let coarseHeight = 0;
  for (let i = 0; i < n; i++) coarseHeight = Math.max(coarseHeight, (ys[i]! >> 1) + 1);
  const cell = new Int32Array(coarseWidth * coarseHeight);
  const coarseXs = new Int32Array(n);
  const coarseYs = new Int32Array(n);
  let size = 0;
  for (let i = 0; i < n; i++) {
    const cx = xs[i]! >> 1;
    const cy = ys[i]! >> 1;
    const key = cy * coarseWidth + cx;
    if (cell[key] === 0) {
      coarseXs[size] = cx;
      coarseYs[size] = cy;
      cell[key] = ++size;
    }
    level.aggregate[i] = cell[key]! - 1;
  }
  if (size === n) return level;
  const cxs = coarseXs.slice(0, size);
  const cys = coarseYs.slice(0, size);
  level.coarse = buildHierarchy(galerkin(matrix, level.aggregate, cxs, cys), cxs, cys, coarseWidth, depth + 1);
  level.coarseRhs = new Float64Array(size * BLOCK);
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
  const columns = new Int32Array(size * 8);
  const values = new Float64Array(size * 8);
  let count = 0;
  for (let row = 0; row < size; row++) {
    for (let slot = row * 9; slot < row * 9 + 9; slot++) {
      if (neighbour[slot]! < 0) continue;
      columns[count] = neighbour[slot]!;
      values[count++] = stencil[slot]!;
    }
    rowStart[row + 1] = count;
  }
  return { diagonal, rowStart, columns: columns.slice(0, count), values: values.slice(0, count) };
}

/** One Gauss-Seidel sweep on A X = B (blocks of BLOCK), forward or backward. */
function gaussSeidel(level: Level, b: Float64Array, x: Float64Array, forward: boolean): void {
  const { matrix: { rowStart, columns, values }, inverseDiagonal } = level;
  const n = inverseDiagonal.length;
  const step = forward ? 1 : -1;
  for (let i = forward ? 0 : n - 1; i >= 0 && i < n; i += step) {
    const inverse = inverseDiagonal[i]!;
    if (inverse === 0) continue;
    const row = i * BLOCK;
    let s0 = b[row]!;
    let s1 = b[row + 1]!;
    let s2 = b[row + 2]!;
    for (let k = rowStart[i]!; k < rowStart[i + 1]!; k++) {
      const v = values[k]!;
      const column = columns[k]! * BLOCK;
      s0 -= v * x[column]!;
      s1 -= v * x[column + 1]!;
      s2 -= v * x[column + 2]!;
    }
    x[row] = s0 * inverse;
    x[row + 1] = s1 * inverse;
    x[row + 2] = s2 * inverse;
  }
}

/** Z = B R, B the V-cycle from zero: symmetric and positive definite where A is. */
export function vCycle(level: Level, r: Float64Array, z: Float64Array): void {
  const { matrix, coarse, aggregate } = level;
  z.fill(0);
  if (coarse === undefined) {
    for (let sweep = 0; sweep < COARSEST_SWEEPS; sweep++) {
      gaussSeidel(level, r, z, true);
      gaussSeidel(level, r, z, false);
    }
    return;
  }
  gaussSeidel(level, r, z, true);
  const { residual, coarseRhs } = level;
  multiplyMatrix(matrix, z, residual);
  coarseRhs.fill(0);
  for (let i = 0; i < aggregate.length; i++) {
    const row = i * BLOCK;
    const target = aggregate[i]! * BLOCK;
    coarseRhs[target]! += r[row]! - residual[row]!;
    coarseRhs[target + 1]! += r[row + 1]! - residual[row + 1]!;
    coarseRhs[target + 2]! += r[row + 2]! - residual[row + 2]!;
  }
  const correction = coarse.x;
  vCycle(coarse, coarseRhs, correction);
  for (let i = 0; i < aggregate.length; i++) {
    const row = i * BLOCK;
    const source = aggregate[i]! * BLOCK;
    z[row]! += OVER_CORRECTION * correction[source]!;
    z[row + 1]! += OVER_CORRECTION * correction[source + 1]!;
    z[row + 2]! += OVER_CORRECTION * correction[source + 2]!;
  }
  gaussSeidel(level, r, z, false);
}
