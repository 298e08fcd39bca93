/**
 * A tiny ONNX model (Conv 3x3 pads 1 -> Relu -> GlobalAveragePool ->
 * Flatten -> Gemm, seeded weights) and its values computed by hand in
 * float64, for the ONNX Runtime executor's tests.
 */
import { mulberry32 } from './numeric.js';
import type { TestModel } from './onnx.js';

export const SIZE = 8;
export const CHANNELS = 4;
export const CLASSES = 3;

/** Seeded values in [-1, 1). */
export function randoms(count: number, seed: number): number[] {
  const next = mulberry32(seed);
  return Array.from({ length: count }, () => next() * 2 - 1);
}

export const convWeights = randoms(CHANNELS * 3 * 3 * 3, 1); // ONNX [M, C, kh, kw]
export const convBias = randoms(CHANNELS, 2);
export const fcWeights = randoms(CLASSES * CHANNELS, 3); // Gemm B with transB: [classes, channels]
export const fcBias = randoms(CLASSES, 4);

/** input -> conv (3x3, pads 1) -> relu -> pool (GAP) -> flatten -> fc (Gemm): batch `batch` ('N': dynamic). */
export function tinyModel(batch: number | string = 'N'): TestModel {
  return {
    nodes: [
      { name: 'conv', opType: 'Conv', inputs: ['input', 'conv.weight', 'conv.bias'], outputs: ['conv_out'], attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }] },
      { name: 'relu', opType: 'Relu', inputs: ['conv_out'], outputs: ['relu_out'] },
      { name: 'pool', opType: 'GlobalAveragePool', inputs: ['relu_out'], outputs: ['pool_out'] },
      { name: 'flatten', opType: 'Flatten', inputs: ['pool_out'], outputs: ['flat_out'] },
      { name: 'fc', opType: 'Gemm', inputs: ['flat_out', 'fc.weight', 'fc.bias'], outputs: ['logits'], attributes: [{ name: 'transB', i: 1 }] },
    ],
    inputs: [{ name: 'input', shape: [batch, 3, SIZE, SIZE] }],
    outputs: [{ name: 'logits', shape: [batch, CLASSES] }],
    initializers: [
      { name: 'conv.weight', dims: [CHANNELS, 3, 3, 3], values: convWeights },
      { name: 'conv.bias', dims: [CHANNELS], values: convBias },
      { name: 'fc.weight', dims: [CLASSES, CHANNELS], values: fcWeights },
      { name: 'fc.bias', dims: [CLASSES], values: fcBias },
    ],
  };
}

/** The tiny model by hand, in float64: conv output and scores per image, NHWC. */
export function tinyByHand(input: Float32Array, batch: number): { conv: Float64Array; scores: Float64Array } {
  const conv = new Float64Array(batch * SIZE * SIZE * CHANNELS);
  const scores = new Float64Array(batch * CLASSES);
  const at = (b: number, y: number, x: number, c: number): number => (y < 0 || x < 0 || y >= SIZE || x >= SIZE ? 0 : input[((b * SIZE + y) * SIZE + x) * 3 + c]!);
  for (let b = 0; b < batch; b++) {
    const pooled = new Float64Array(CHANNELS);
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        for (let m = 0; m < CHANNELS; m++) {
          let sum = convBias[m]!;
          for (let c = 0; c < 3; c++) for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) sum += convWeights[((m * 3 + c) * 3 + i) * 3 + j]! * at(b, y + i - 1, x + j - 1, c);
          conv[((b * SIZE + y) * SIZE + x) * CHANNELS + m] = sum;
          pooled[m]! += Math.max(sum, 0) / (SIZE * SIZE);
        }
      }
    }
    for (let k = 0; k < CLASSES; k++) {
      let score = fcBias[k]!;
      for (let m = 0; m < CHANNELS; m++) score += fcWeights[k * CHANNELS + m]! * pooled[m]!;
      scores[b * CLASSES + k] = score;
    }
  }
  return { conv, scores };
}
