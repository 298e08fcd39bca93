/**
 * The Prod kernel's gradient (src/engine/prod-gradient.ts), which tfjs'
 * own rule cannot compute without tfjs' chained ops: against the product
 * of the other elements of each reduction, written out in loops in
 * float64, with zeros (one and two in a group) and negative values, over
 * one axis, several, and all; and through an ONNX ReduceProd node.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '../src/engine/tfl.js';
import { withTensorFlowGradients } from '../src/engine/tensorflow-gradients.js';
import { runNode } from '../src/model/onnx/interpret.js';
import { laid } from '../src/model/onnx/layout.js';
import { forEachBackend } from './helpers/backends.js';
import { assertAllClose } from './helpers/numeric.js';

const SHAPE = [2, 3, 4];
// Group (i, ·, k) over axis 1 holds a zero at [0,1,0], two zeros at [1,0,3] and [1,2,3].
const VALUES = [
  ...[1.5, -2, 0.5, 3, 0, 1.25, -1, 2, 2, 0.75, 1.5, -0.5],
  ...[-1, 2.5, 1, 0, 0.5, -1.5, 2, 1, 1.25, 1, -0.75, 0],
];

/** Flat index of [i, j, k] in SHAPE. */
const at = (i: number, j: number, k: number): number => (i * SHAPE[1]! + j) * SHAPE[2]! + k;

/** d(sum of weights · prod over `axes`)/dx by hand: each element's weight times the product of the other elements of its group. */
function expectedGradient(axes: number[], weightOf: (i: number, j: number, k: number) => number): number[] {
  const gradient: number[] = [];
  for (let i = 0; i < SHAPE[0]!; i++) {
    for (let j = 0; j < SHAPE[1]!; j++) {
      for (let k = 0; k < SHAPE[2]!; k++) {
        let others = 1;
        for (let a = 0; a < SHAPE[0]!; a++) {
          for (let b = 0; b < SHAPE[1]!; b++) {
            for (let c = 0; c < SHAPE[2]!; c++) {
              const sameGroup = [a, b, c].every((index, axis) => axes.includes(axis) || index === [i, j, k][axis]);
              if (sameGroup && !(a === i && b === j && c === k)) others *= VALUES[at(a, b, c)]!;
            }
          }
        }
        gradient.push(weightOf(i, j, k) * others);
      }
    }
  }
  return gradient;
}

const CASES: { name: string; axes: number[]; keepDims: boolean }[] = [
  { name: 'over the middle axis, dims kept', axes: [1], keepDims: true },
  { name: 'over the last axis', axes: [2], keepDims: false },
  { name: 'over the first and last axes', axes: [0, 2], keepDims: false },
  { name: 'over every axis', axes: [0, 1, 2], keepDims: false },
];

/** Weights of the reduced values, varied: the weight of the reduced value that element (i, j, k) goes to. */
function weightsFor(axes: number[]): { reducedShape: number[]; values: number[]; weightOf: (i: number, j: number, k: number) => number } {
  const reducedShape = SHAPE.map((dim, axis) => (axes.includes(axis) ? 1 : dim));
  const values = Array.from({ length: reducedShape.reduce((a, b) => a * b, 1) }, (_, n) => 0.5 + n * 0.25);
  const weightOf = (i: number, j: number, k: number): number => {
    const [ri, rj, rk] = [i, j, k].map((index, axis) => (axes.includes(axis) ? 0 : index)) as [number, number, number];
    return values[(ri * reducedShape[1]! + rj) * reducedShape[2]! + rk]!;
  };
  return { reducedShape, values, weightOf };
}

forEachBackend(() => {
  test('the gradient of tf.prod, under the executor\'s rules, is the product of the other elements (zeros too)', () => {
    for (const { name, axes, keepDims } of CASES) {
      const { reducedShape, values, weightOf } = weightsFor(axes);
      const got = tf.tidy(() => {
        const x = tf.tensor(VALUES, SHAPE);
        const weights = tf.reshape(tf.tensor(values), keepDims ? reducedShape : reducedShape.filter((_, axis) => !axes.includes(axis)));
        const gradient = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(withTensorFlowGradients(() => tf.prod(v, axes, keepDims)), weights)))(x);
        return Array.from(gradient.dataSync());
      });
      assertAllClose(got, expectedGradient(axes, weightOf), 1e-5, name);
    }
  });

  test('an ONNX ReduceProd on image data can be differentiated', () => {
    const got = tf.tidy(() => {
      const x = tf.tensor(VALUES, SHAPE);
      const node = { name: 'prod', opType: 'ReduceProd', domain: '', inputs: ['x'], outputs: ['y'], attributes: { axes: { kind: 'ints' as const, value: [1] }, keepdims: { kind: 'int' as const, value: 1 } } };
      const gradient = tf.grad((v: tf.Tensor) => tf.sum(withTensorFlowGradients(() => runNode(node, [laid(v)], 13)[0]!.tensor)))(x);
      return Array.from(gradient.dataSync());
    });
    assertAllClose(got, expectedGradient([1], () => 1), 1e-5, 'ReduceProd over axis 1');
  });
});

test('tfjs\' own Prod gradient fails here (why camviz has its own): the rule is needed', () => {
  const x = tf.tensor(VALUES, SHAPE);
  assert.throws(() => tf.grad((v: tf.Tensor) => tf.sum(tf.prod(v, [1])))(x), /reshape is not a function/);
  x.dispose();
});
