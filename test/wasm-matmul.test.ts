/**
 * wasmMatMul and the BatchMatMul gradient built on it
 * (src/engine/wasm-matmul.ts): on wasm, products made of untransposed
 * batch-1 products (XNNPACK's path), with tfjs' values. Checked against
 * the cpu backend's own matMul and its own gradient (a second
 * implementation), for every transpose, batch 1, a batch the right operand
 * shares, batches on both sides, a broadcast left operand, ranks 2 to 4,
 * and one row (a classifier's gradient, where the product is swapped).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
// tfjs' gradients are registered by the tfjs-layers bundle, which camviz's executor loads.
import '../src/engine/tfl.js';
import { useBackend } from '../src/engine/backend.js';
import { withTensorFlowGradients } from '../src/engine/tensorflow-gradients.js';
import { wasmMatMul } from '../src/engine/wasm-matmul.js';
import { exactRandomValues, maxAbsDifference } from './helpers/numeric.js';

interface ProductCase {
  name: string;
  a: number[];
  b: number[];
  transposeA: boolean;
  transposeB: boolean;
}

const CASES: ProductCase[] = [];
for (const [transposeA, transposeB] of [[false, false], [false, true], [true, false], [true, true]] as const) {
  const t = (shape: number[], transposed: boolean): number[] => (transposed ? [...shape.slice(0, -2), shape.at(-1)!, shape.at(-2)!] : shape);
  const suffix = `${transposeA ? 'Aᵀ' : 'A'}·${transposeB ? 'Bᵀ' : 'B'}`;
  CASES.push(
    { name: `rank 2, ${suffix}`, a: t([7, 5], transposeA), b: t([5, 9], transposeB), transposeA, transposeB },
    { name: `one row, ${suffix}`, a: t([1, 12], transposeA), b: t([12, 10], transposeB), transposeA, transposeB },
    { name: `batch 1 rank 3, ${suffix}`, a: t([1, 6, 4], transposeA), b: t([1, 4, 3], transposeB), transposeA, transposeB },
    { name: `a batch the right operand shares, ${suffix}`, a: t([3, 5, 4], transposeA), b: t([4, 6], transposeB), transposeA, transposeB },
    { name: `batches on both sides (attention heads), ${suffix}`, a: t([1, 3, 5, 4], transposeA), b: t([1, 3, 4, 5], transposeB), transposeA, transposeB },
    { name: `a broadcast left operand, ${suffix}`, a: t([1, 5, 4], transposeA), b: t([2, 4, 3], transposeB), transposeA, transposeB },
    // Slices of at least 2^20 multiply-adds: run slice by slice (smaller ones are one call of tfjs' kernel).
    { name: `large batched slices, ${suffix}`, a: t([2, 128, 64], transposeA), b: t([2, 64, 128], transposeB), transposeA, transposeB },
    { name: `large slices, a broadcast left operand, ${suffix}`, a: t([1, 128, 64], transposeA), b: t([2, 64, 128], transposeB), transposeA, transposeB },
  );
}

interface Outcome {
  product: Float32Array;
  shape: number[];
  gradA: Float32Array;
  gradB: Float32Array;
}

/** The product, and the gradients of sum(product · weights) (weights varied, so that each output element counts differently). */
function run(c: ProductCase, multiply: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor): Outcome {
  return tf.tidy(() => {
    const a = tf.tensor(exactRandomValues(c.a.reduce((x, y) => x * y, 1), 1), c.a);
    const b = tf.tensor(exactRandomValues(c.b.reduce((x, y) => x * y, 1), 2), c.b);
    const product = multiply(a, b);
    const weights = tf.tensor(exactRandomValues(product.size, 3), product.shape);
    const [gradA, gradB] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(multiply(x, y), weights)))([a, b]);
    return { product: product.dataSync() as Float32Array, shape: product.shape, gradA: gradA!.dataSync() as Float32Array, gradB: gradB!.dataSync() as Float32Array };
  });
}

/**
 * tf.matMul of operands broadcast to one batch first (tf.broadcastTo, whose
 * gradient sums the broadcast back): tfjs' own BatchMatMul gradient gives a
 * broadcast operand the product's batch, a shape tf.grads refuses.
 */
function broadcastMatMul(a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean): tf.Tensor {
  const batch = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const widened = (t: tf.Tensor): tf.Tensor => (batch.length === 0 ? t : tf.broadcastTo(t, [...batch, ...t.shape.slice(-2)]));
  return tf.matMul(widened(a), widened(b), transposeA, transposeB);
}

test('on wasm, wasmMatMul and its gradient give the cpu backend\'s matMul and gradient', async () => {
  const expected = new Map<string, Outcome>();
  await useBackend('cpu');
  for (const c of CASES) expected.set(c.name, run(c, (a, b) => broadcastMatMul(a, b, c.transposeA, c.transposeB)));
  await useBackend('wasm');
  for (const c of CASES) {
    const reference = expected.get(c.name)!;
    const got = withTensorFlowGradients(() => run(c, (a, b) => wasmMatMul(a, b, c.transposeA, c.transposeB)));
    assert.deepEqual(got.shape, reference.shape, `${c.name}: shape`);
    assert.ok(maxAbsDifference(got.product, reference.product) <= 1e-4, `${c.name}: product`);
    assert.ok(maxAbsDifference(got.gradA, reference.gradA) <= 1e-4, `${c.name}: gradient of a`);
    assert.ok(maxAbsDifference(got.gradB, reference.gradB) <= 1e-4, `${c.name}: gradient of b`);
  }
});

test('on wasm, tf.matMul differentiated under the rule gives tfjs\' own gradients of the broadcast product', async () => {
  await useBackend('wasm');
  for (const c of CASES) {
    // tf.matMul itself (what tfjs-layers and the graph converter call): its gradient is the rule's, recorded with it.
    const ruled = withTensorFlowGradients(() => run(c, (a, b) => tf.matMul(a, b, c.transposeA, c.transposeB)));
    const own = run(c, (a, b) => broadcastMatMul(a, b, c.transposeA, c.transposeB));
    assert.ok(maxAbsDifference(ruled.gradA, own.gradA) <= 1e-4, `${c.name}: gradient of a`);
    assert.ok(maxAbsDifference(ruled.gradB, own.gradB) <= 1e-4, `${c.name}: gradient of b`);
  }
});

/** Whether a case's product is batched on both sides in slices too small to run one by one (tfjs' kernel takes it whole). */
function smallBatched(c: ProductCase): boolean {
  const batch = (shape: number[]): number => shape.slice(0, -2).reduce((x, y) => x * y, 1);
  const [rows, inner] = c.transposeA ? [c.a.at(-1)!, c.a.at(-2)!] : [c.a.at(-2)!, c.a.at(-1)!];
  const columns = c.transposeB ? c.b.at(-2)! : c.b.at(-1)!;
  return batch(c.b) > 1 && rows * inner * columns < 2 ** 20;
}

test('on wasm, the products wasmMatMul asks of the kernel are of batch 1 (XNNPACK\'s path)', async () => {
  await useBackend('wasm');
  for (const c of CASES.filter((one) => !smallBatched(one))) {
    const profile = await tf.profile(() => {
      withTensorFlowGradients(() => run(c, (a, b) => wasmMatMul(a, b, c.transposeA, c.transposeB)));
    });
    const products = profile.kernels.filter((kernel) => kernel.name === 'BatchMatMul');
    assert.ok(products.length > 0, c.name);
    for (const kernel of products) {
      for (const shape of kernel.inputShapes) assert.ok(shape.length === 2 || shape.slice(0, -2).every((dim) => dim === 1), `${c.name}: a product of ${JSON.stringify(kernel.inputShapes)}`);
    }
  }
});

test('on cpu and for int32, wasmMatMul is tf.matMul', async () => {
  await useBackend('cpu');
  const a = tf.tensor([[1, 2], [3, 4]], [2, 2], 'int32');
  const b = tf.tensor([[5], [6]], [2, 1], 'int32');
  const product = wasmMatMul(a, b);
  assert.equal(product.dtype, 'int32');
  assert.deepEqual(Array.from(product.dataSync()), [17, 39]);
  tf.dispose([a, b, product]);
});

test('on wasm, wasmMatMul of empty operands gives the cpu backend\'s shape and values (zeros where the inner dim is 0)', async () => {
  // A zero-length M, N, batch or inner dim, transposed too.
  const cases: [number[], number[], boolean, boolean][] = [
    [[0, 4], [4, 3], false, false],
    [[2, 0], [0, 3], false, false],
    [[0, 2], [3, 0], true, true],
    [[3, 2], [2, 0], false, false],
    [[0, 2, 3], [0, 3, 4], false, false],
    [[2, 3, 0], [0, 4], false, false],
  ];
  const product = (c: (typeof cases)[number], multiply: typeof wasmMatMul): { shape: number[]; values: number[] } =>
    tf.tidy(() => {
      const result = multiply(tf.ones(c[0]), tf.ones(c[1]), c[2], c[3]);
      return { shape: result.shape, values: Array.from(result.dataSync()) };
    });
  await useBackend('cpu');
  const expected = cases.map((c) => product(c, (a, b, ta, tb) => tf.matMul(a, b, ta, tb)));
  await useBackend('wasm');
  cases.forEach((c, i) => assert.deepEqual(product(c, wasmMatMul), expected[i], JSON.stringify(c)));
  // Inner dims that differ are still refused.
  assert.throws(() => tf.tidy(() => wasmMatMul(tf.ones([2, 0]), tf.ones([1, 3]))), /inner shapes/);
});

test('on wasm, wasmMatMul and its gradient leave no tensor behind', async () => {
  await useBackend('wasm');
  const operands = [tf.ones([2, 3, 5, 4]), tf.ones([2, 3, 4, 6]), tf.ones([4, 6]), tf.ones([5, 4])];
  const [batched, right, weight, matrix] = operands as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
  const once = (): void => {
    for (const [x, y] of [[batched, right], [batched, weight], [matrix, right]] as const) {
      tf.dispose(wasmMatMul(x, y, false, false, true));
      tf.dispose(withTensorFlowGradients(() => tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(wasmMatMul(p, q)))([x, y])));
    }
  };
  once();
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) once();
  assert.equal(tf.memory().numTensors, before);
  tf.dispose(operands);
});

test('on wasm, a batch of many small products is one call of tfjs\' kernel, not one per slice', async () => {
  await useBackend('wasm');
  // An Einsum's per-pixel products or Swin's windows: sliced, each slice cost about 0.1-0.4 ms (4096 slices of 4x4: 1.5 s, against 3 ms).
  for (const [transposeA, transposeB] of [[false, false], [true, true]] as const) {
    const profile = await tf.profile(() => {
      tf.tidy(() => {
        const [a, b] = [tf.ones([512, 4, 4]), tf.ones([512, 4, 4])];
        withTensorFlowGradients(() => tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(wasmMatMul(x, y, transposeA, transposeB)))([a, b]));
      });
    });
    const calls = profile.kernels.filter((kernel) => kernel.name === 'BatchMatMul').length;
    assert.ok(calls <= 3, `${transposeA}, ${transposeB}: ${calls} BatchMatMul calls for the product and its two gradients`);
  }
});
