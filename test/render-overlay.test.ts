import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyColormap, heatmapImage, overlayHeatmap } from '../src/render/index.js';

// Two pixels side by side: (10, 200, 255) and (5, 5, 5).
const IMAGE = new Uint8Array([10, 200, 255, 5, 5, 5]);

test('alpha 0.5 with jet, computed by hand', () => {
  // heat 0 -> jet (0, 0, 128); heat 1 -> jet (128, 0, 0).
  const out = overlayHeatmap(IMAGE, new Float32Array([0, 1]), 2, 1);
  // (10 + 0) / 2 = 5, (200 + 0) / 2 = 100, (255 + 128) / 2 = 191.5 -> 192;
  // (5 + 128) / 2 = 66.5 -> 67, 5 / 2 = 2.5 -> 3, 2.5 -> 3.
  assert.deepEqual(Array.from(out), [5, 100, 192, 67, 3, 3]);
});

test('alpha 0.3 with gray, computed by hand', () => {
  // heat 0.5 -> gray 128: 0.7 * 10 + 0.3 * 128 = 45.4 -> 45; 0.7 * 200 + 38.4 = 178.4 -> 178;
  // 0.7 * 255 + 38.4 = 216.9 -> 217. heat 0 -> 0: 0.7 * 5 = 3.5 -> 4.
  const out = overlayHeatmap(IMAGE, new Float32Array([0.5, 0]), 2, 1, { alpha: 0.3, colormap: 'gray' });
  assert.deepEqual(Array.from(out), [45, 178, 217, 4, 4, 4]);
});

test('alpha 0 keeps the photo, alpha 1 is the heatmap alone', () => {
  const heat = new Float32Array([0.25, 0.8]);
  assert.deepEqual(Array.from(overlayHeatmap(IMAGE, heat, 2, 1, { alpha: 0 })), Array.from(IMAGE));
  assert.deepEqual(
    Array.from(overlayHeatmap(IMAGE, heat, 2, 1, { alpha: 1, colormap: 'turbo' })),
    Array.from(applyColormap(heat, 'turbo')),
  );
});

test('heatmapImage is the coloured map; jet is the default', () => {
  const heat = new Float32Array([0, 0.5, 1]);
  assert.deepEqual(Array.from(heatmapImage(heat)), [0, 0, 128, 130, 255, 126, 128, 0, 0]);
  assert.deepEqual(Array.from(heatmapImage(heat, 'magma')), Array.from(applyColormap(heat, 'magma')));
});

test('the blend may be written over the photo itself', () => {
  const image = IMAGE.slice();
  const out = overlayHeatmap(image, new Float32Array([0, 1]), 2, 1, {}, image);
  assert.equal(out, image);
  assert.deepEqual(Array.from(image), [5, 100, 192, 67, 3, 3]);
});

test('sizes and alpha are checked', () => {
  assert.throws(() => overlayHeatmap(IMAGE, new Float32Array(3), 2, 1), RangeError);
  assert.throws(() => overlayHeatmap(IMAGE, new Float32Array(2), 3, 1), RangeError);
  assert.throws(() => overlayHeatmap(IMAGE, new Float32Array(2), 2, 1, { alpha: 1.5 }), RangeError);
  assert.throws(() => overlayHeatmap(IMAGE, new Float32Array(2), 2, 1, { alpha: Number.NaN }), RangeError);
});

test('the blend equals the colormap lookup then the blend formula, for every entry and image byte, as the options change', () => {
  // One pixel per (image byte, colormap entry): heat (k + 0.25) / 255 takes entry k.
  const width = 256;
  const height = 256;
  const image = new Uint8Array(width * height * 3);
  const heat = new Float32Array(width * height);
  for (let k = 0; k < 256; k++) {
    for (let b = 0; b < 256; b++) {
      const p = k * 256 + b;
      heat[p] = k === 0 ? 0 : k === 255 ? 1 : (k + 0.25) / 255;
      image.set([b, 255 - b, (b * 7) & 255], p * 3);
    }
  }
  // Alternating options: the tables the kernels keep (src/render/kernels.ts) must follow the options of each call.
  const optionRuns = [[0.5, 'jet'], [0.3, 'turbo'], [0.3, 'turbo'], [0.3, 'turbo'], [0.5, 'viridis'], [0.7, 'jet'], [0.7, 'jet'], [0.5, 'jet'], [0.7, 'jet']] as const;
  for (const [alpha, colormap] of optionRuns) {
    const lut = applyColormap(Float32Array.from({ length: 256 }, (_, k) => k / 255), colormap);
    const out = overlayHeatmap(image, heat, width, height, { alpha, colormap });
    for (let p = 0; p < width * height; p++) {
      const k = p >> 8;
      for (let c = 0; c < 3; c++) {
        const expected = Math.floor((1 - alpha) * image[p * 3 + c]! + alpha * lut[k * 3 + c]! + 0.5 + 1e-9);
        if (out[p * 3 + c] !== expected) assert.fail(`alpha ${alpha} ${colormap}, entry ${k}, image byte ${image[p * 3 + c]}, channel ${c}: ${out[p * 3 + c]} instead of ${expected}`);
      }
    }
  }
});
