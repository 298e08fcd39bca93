/**
 * The first principal component of a feature map, as pytorch-grad-cam's
 * `get_2d_projection` (Eigen-CAM, and `--eigen-smooth`): the activations as
 * an (h*w) x C matrix, centred per channel, projected on their first right
 * singular vector.
 *
 * SVD leaves the sign of that vector free (NumPy returns whatever LAPACK
 * gives). We fix it so that the projection agrees with the plain channel
 * sum of the same activations, so that the ReLU afterwards keeps the
 * regions the activations point at.
 */
import { wasmMatMul } from '../engine/wasm-matmul.js';
import * as tf from '../engine/tf.js';

export function firstPrincipalProjection(activations: tf.Tensor4D): tf.Tensor3D {
  const [batch, height, width, channels] = activations.shape;
  const positions = height * width;
  const projections = new Float32Array(batch * positions);
  for (let image = 0; image < batch; image++) {
    const { centred, channelSum } = tf.tidy(() => {
      const matrix = tf.reshape(tf.slice(activations, [image, 0, 0, 0], [1, height, width, channels]), [positions, channels]);
      return { centred: tf.sub(matrix, tf.mean(matrix, 0, true)), channelSum: tf.sum(matrix, 1) };
    });
    try {
      const projection = projectOnFirstComponent(centred);
      const sum = channelSum.dataSync();
      let agreement = 0;
      for (let i = 0; i < positions; i++) agreement += projection[i]! * sum[i]!;
      const sign = agreement < 0 ? -1 : 1;
      for (let i = 0; i < positions; i++) projections[image * positions + i] = sign * projection[i]!;
    } finally {
      tf.dispose([centred, channelSum]);
    }
  }
  return tf.tensor3d(projections, [batch, height, width]);
}

/** X v1 for the top right singular vector v1 of X (n x c), via the smaller Gram matrix. */
function projectOnFirstComponent(matrix: tf.Tensor): Float64Array {
  const [rows, columns] = matrix.shape as [number, number];
  if (rows <= columns) {
    // X X^T = U S^2 U^T and X v1 = s1 u1.
    const gram = tf.tidy(() => wasmMatMul(matrix, matrix, false, true).dataSync() as Float32Array);
    const { vector, value } = topEigenvector(gram, rows);
    const scale = Math.sqrt(Math.max(value, 0));
    return vector.map((entry) => entry * scale);
  }
  const covariance = tf.tidy(() => wasmMatMul(matrix, matrix, true, false).dataSync() as Float32Array);
  const { vector } = topEigenvector(covariance, columns);
  const data = matrix.dataSync();
  const projection = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    let dot = 0;
    for (let j = 0; j < columns; j++) dot += data[i * columns + j]! * vector[j]!;
    projection[i] = dot;
  }
  return projection;
}

/**
 * The dominant eigenpair of a symmetric positive semi-definite n x n matrix,
 * by power iteration in double precision from a fixed start vector.
 */
export function topEigenvector(matrix: ArrayLike<number>, n: number, maxIterations = 3000, tolerance = 1e-12): { vector: Float64Array; value: number } {
  let vector = new Float64Array(n);
  // A fixed, generic start vector: deterministic, and never orthogonal to
  // the top eigenvector in practice.
  for (let i = 0; i < n; i++) vector[i] = 1 + ((i * 7919) % 101) / 101;
  normalise(vector);
  let value = 0;
  let next = new Float64Array(n);
  for (let iteration = 0; iteration < maxIterations; iteration++) {
    for (let i = 0; i < n; i++) {
      let sum = 0;
      const row = i * n;
      for (let j = 0; j < n; j++) sum += matrix[row + j]! * vector[j]!;
      next[i] = sum;
    }
    value = normalise(next);
    if (value === 0) return { vector: new Float64Array(n), value: 0 };
    let change = 0;
    for (let i = 0; i < n; i++) change = Math.max(change, Math.abs(next[i]! - vector[i]!));
    [vector, next] = [next, vector];
    if (change < tolerance) break;
  }
  return { vector, value };
}

function normalise(vector: Float64Array): number {
  let norm = 0;
  for (const entry of vector) norm += entry * entry;
  norm = Math.sqrt(norm);
  if (norm > 0) for (let i = 0; i < vector.length; i++) vector[i]! /= norm;
  return norm;
}
