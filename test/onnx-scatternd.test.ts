/**
 * ScatterND's reductions (add, mul at opset 16; max, min at 18) with
 * duplicate indices, against two independent computations made at test
 * time: values from ONNX's reference loop in numpy (each update combined
 * in turn into a copy of data; onnx 1.12's `scatter_nd_impl` with
 * np.maximum and np.minimum added as later ONNX has them), and gradients
 * from torch.scatter_reduce (sum, prod, amax, amin, include_self) over
 * the flat indices numpy.ravel_multi_index gives. Values repeat, so
 * maxima tie (torch splits their gradient evenly) and products meet zeros.
 * Skips without a Python that has torch and numpy.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { laid, runNode, toLayout } from '../src/model/onnx/interpret.js';
import type { OnnxNode } from '../src/model/onnx/types.js';
import { forEachBackend } from './helpers/backends.js';
import { assertCloseTo, runTorchScript, torchParity } from './helpers/torch-parity.js';

const { python, skipTorch } = torchParity('torch, numpy', 'python3-torch, python3-numpy');

interface ScatterCase {
  reduction: string;
  dtype: 'float32' | 'int32';
  data: { shape: number[]; values: number[] };
  indices: { shape: number[]; values: number[] };
  updates: { shape: number[]; values: number[] };
  /** The output weights whose weighted sum's gradient is taken. */
  weights: number[];
  output: number[];
  /** torch's gradients (float cases only). */
  dData: number[];
  dUpdates: number[];
  /** How many updates land on an element already landed on. */
  duplicates: number;
}

/** [data shape, indices (with their shape), dtype]: slices, rows and single elements, negative indices among them. */
const SHAPES: [number[], number[][], 'float32' | 'int32'][] = [
  [[4, 3], [[1], [3], [1], [-3]], 'float32'],
  [[3, 2, 2], [[0, 1], [2, 1], [0, 1], [-3, -1], [0, 1]], 'float32'],
  [[2, 3], [[1, 2], [0, 0], [1, 2], [1, -1], [0, 0], [1, 0]], 'float32'],
  [[3, 2], [[2], [2], [0]], 'int32'],
];

const SCRIPT = String.raw`
import json, sys
import numpy as np, torch

out_dir, shapes = sys.argv[1], json.loads(sys.argv[2])
rng = np.random.default_rng(0)
combine = {'add': np.add, 'mul': np.multiply, 'max': np.maximum, 'min': np.minimum}
torch_reduce = {'add': 'sum', 'mul': 'prod', 'max': 'amax', 'min': 'amin'}

def onnx_reference(data, indices, updates, reduction):
    output = np.copy(data)
    for i in np.ndindex(indices.shape[:-1]):
        output[tuple(indices[i])] = combine[reduction](output[tuple(indices[i])], updates[i])
    return output

cases = []
for shape, index_list, dtype in shapes:
    indices = np.array(index_list, dtype=np.int64)
    depth = indices.shape[-1]
    update_shape = list(indices.shape[:-1]) + shape[depth:]
    for reduction in combine:
        # Few distinct values (halves, zeros among them): ties and zero products happen.
        data = (rng.integers(-3, 4, shape) / 2).astype(np.float32)
        updates = (rng.integers(-3, 4, update_shape) / 2).astype(np.float32)
        if dtype == 'int32':
            data, updates = (data * 2).astype(np.int32), (updates * 2).astype(np.int32)
        output = onnx_reference(data, indices, updates, reduction)
        weights = rng.standard_normal(shape).astype(np.float32)
        # Each update element's flat target in data, for torch's scatter_reduce.
        positions = np.stack(np.meshgrid(*[np.arange(d) for d in shape[depth:]], indexing='ij'), -1).reshape(-1, len(shape) - depth) if depth < len(shape) else np.zeros((1, 0), np.int64)
        wrapped = np.where(indices < 0, indices + np.array(shape[:depth]), indices).reshape(-1, depth)
        full = np.concatenate([np.repeat(wrapped, len(positions), 0), np.tile(positions, (len(wrapped), 1))], 1)
        flat = np.ravel_multi_index(tuple(full.T), shape)
        d_grad, u_grad = [], []
        if dtype == 'float32':
            d = torch.tensor(data, dtype=torch.float64, requires_grad=True)
            u = torch.tensor(updates, dtype=torch.float64, requires_grad=True)
            out = d.flatten().scatter_reduce(0, torch.tensor(flat), u.flatten(), torch_reduce[reduction], include_self=True)
            assert np.allclose(out.detach().numpy(), output.flatten())
            d_grad, u_grad = torch.autograd.grad((out * torch.tensor(weights.flatten(), dtype=torch.float64)).sum(), [d, u])
            d_grad, u_grad = d_grad.flatten().tolist(), u_grad.flatten().tolist()
        cases.append({
            'reduction': reduction, 'dtype': dtype,
            'data': {'shape': shape, 'values': data.flatten().tolist()},
            'indices': {'shape': list(indices.shape), 'values': indices.flatten().tolist()},
            'updates': {'shape': update_shape, 'values': updates.flatten().tolist()},
            'weights': weights.flatten().tolist(), 'output': output.flatten().tolist(),
            'dData': d_grad, 'dUpdates': u_grad, 'duplicates': len(flat) - len(set(flat.tolist())),
        })
json.dump(cases, open(out_dir + '/reference.json', 'w'))
`;

const OPSET_OF: Record<string, number> = { add: 16, mul: 16, max: 18, min: 18 };

function scatterNode(reduction: string): OnnxNode {
  return { name: '/ScatterND', opType: 'ScatterND', domain: '', inputs: ['data', 'indices', 'updates'], outputs: ['y'], attributes: { reduction: { kind: 'string', value: reduction } } };
}

describe("ScatterND's reductions with duplicate indices, against numpy and torch.scatter_reduce", { skip: skipTorch }, () => {
  let folder: string;
  let cases: ScatterCase[];
  before(async () => {
    folder = await mkdtemp(join(tmpdir(), 'camviz-scatternd-'));
    cases = runTorchScript<ScatterCase[]>(python!, SCRIPT, [folder, JSON.stringify(SHAPES)], folder, 'numpy/torch ScatterND');
  });
  after(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  forEachBackend(() => {
    test('every reduction gives the values of ONNX reference loop and the gradients of torch.scatter_reduce', () => {
      assert.equal(cases.length, SHAPES.length * 4);
      for (const c of cases) {
        const what = `${c.reduction} on ${c.dtype} [${c.data.shape.join(', ')}] with indices [${c.indices.shape.join(', ')}]`;
        assert.ok(c.duplicates > 0, `${what}: no duplicate index`);
        tf.tidy(() => {
          const node = scatterNode(c.reduction);
          const indices = laid(tf.tensor(c.indices.values, c.indices.shape, 'int32'));
          const scatter = (data: tf.Tensor, updates: tf.Tensor): tf.Tensor => toLayout(runNode(node, [laid(data), indices, laid(updates)], OPSET_OF[c.reduction]!)[0]!, 'onnx');
          const data = tf.tensor(c.data.values, c.data.shape, c.dtype);
          const updates = tf.tensor(c.updates.values, c.updates.shape, c.dtype);
          const output = scatter(data, updates);
          assert.equal(output.dtype, c.dtype, what);
          assert.deepEqual(output.shape, c.data.shape, what);
          assertCloseTo(output.dataSync(), c.output, 1e-6, what);
          if (c.dtype !== 'float32') return;
          const weights = tf.tensor(c.weights, c.data.shape);
          const [dData, dUpdates] = tf.grads((d: tf.Tensor, u: tf.Tensor) => tf.sum(tf.mul(scatter(d, u), weights)))([data, updates]);
          assertCloseTo(dData!.dataSync(), c.dData, 1e-5, `${what}: gradient of data`);
          assertCloseTo(dUpdates!.dataSync(), c.dUpdates, 1e-5, `${what}: gradient of updates`);
        });
      }
    });
  });
});

describe("ScatterND's mul with many updates on one element", () => {
  forEachBackend(() => {
    test('takes a number of ops that grows with the log of the duplicates (not one per update), with the product and its gradient', async () => {
      // A hostile or careless model: 3001 updates on one element. One Mul per update was 3000 kernels (and tape entries).
      const count = 3001;
      const factors = Array.from({ length: count }, (_, i) => 1 + ((i % 7) - 3) / 4096);
      const node = scatterNode('mul');
      const indices = laid(tf.tensor(new Array<number>(count).fill(1), [count, 1], 'int32'));
      const data = tf.tensor1d([5, 2, 7]);
      const updates = tf.tensor1d(factors);
      const scatter = (d: tf.Tensor, u: tf.Tensor): tf.Tensor => toLayout(runNode(node, [laid(d), indices, laid(u)], 16)[0]!, 'onnx');
      const profile = await tf.profile(() => tf.tidy(() => scatter(data, updates)));
      assert.ok(profile.kernels.length < 100, `${profile.kernels.length} kernels for ${count} updates on one element`);
      const expected = factors.reduce((product, factor) => product * factor, 2);
      tf.tidy(() => {
        assertCloseTo(scatter(data, updates).dataSync(), [5, expected, 7], 1e-5, 'product');
        // d(product)/d(factor i) = product / factor i (no zero among them).
        const dUpdates = tf.grad((u: tf.Tensor) => tf.sum(scatter(data, u)))(updates);
        assertCloseTo(dUpdates.dataSync(), factors.map((factor) => expected / factor), 1e-4, 'gradient of updates');
      });
      tf.dispose([data, updates, indices.tensor]);
    });
  });
});
