/**
 * preprocessInto, the pass from RGB bytes to the model's input values: each
 * preprocessing, checked against the per-pixel formula with the channel
 * order tested per pixel (the pass's first form).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PREPROCESS_NAMES, type PreprocessName, preprocessInto } from '../src/image/preprocess.js';

/** The constants of each preprocessing (channel order after the swap), as Keras and torchvision define them. */
const AFFINE: Record<PreprocessName, { scale: number[]; offset: number[]; bgr: boolean }> = {
  tf: { scale: [1 / 127.5, 1 / 127.5, 1 / 127.5], offset: [-1, -1, -1], bgr: false },
  torch: {
    scale: [0.229, 0.224, 0.225].map((std) => 1 / (255 * std)),
    offset: [0.485, 0.456, 0.406].map((mean, c) => -mean / [0.229, 0.224, 0.225][c]!),
    bgr: false,
  },
  caffe: { scale: [1, 1, 1], offset: [-103.939, -116.779, -123.68], bgr: true },
  unit: { scale: [1 / 255, 1 / 255, 1 / 255], offset: [0, 0, 0], bgr: false },
  none: { scale: [1, 1, 1], offset: [0, 0, 0], bgr: false },
};

/** The first form of the pass: the channel order tested at every pixel. */
function preprocessedByPixel(pixels: Uint8Array, name: PreprocessName, out: Float32Array, offset: number): void {
  const { scale, offset: shift, bgr } = AFFINE[name];
  for (let i = 0; i < pixels.length; i += 3) {
    const [r, g, b] = [pixels[i]!, pixels[i + 1]!, pixels[i + 2]!];
    const ordered = bgr ? [b, g, r] : [r, g, b];
    for (let c = 0; c < 3; c++) out[offset + i + c] = ordered[c]! * scale[c]! + shift[c]!;
  }
}

test('preprocessInto equals the per-pixel formula for every preprocessing, at an offset, every byte value', () => {
  assert.deepEqual([...PREPROCESS_NAMES].sort(), Object.keys(AFFINE).sort());
  // Every byte value in every channel: 256 pixels of (v, 255 - v, 7v mod 256).
  const pixels = Uint8Array.from({ length: 256 * 3 }, (_, i) => [i / 3, 255 - (i - 1) / 3, (((i - 2) / 3) * 7) & 255][i % 3]!);
  for (const name of PREPROCESS_NAMES) {
    const ours = new Float32Array(pixels.length + 6).fill(-7);
    const expected = new Float32Array(pixels.length + 6).fill(-7);
    preprocessInto(pixels, name, ours, 3);
    preprocessedByPixel(pixels, name, expected, 3);
    assert.deepEqual(ours, expected, name);
  }
});
