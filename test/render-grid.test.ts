import assert from 'node:assert/strict';
import { test } from 'node:test';
import { colormapLut, makeFeatureGrid } from '../src/render/index.js';
import { at } from './helpers/arrays.js';

/**
 * torchvision.utils.make_grid(t, nrow, padding, normalize=True, scale_each=True,
 * pad_value) and save_image's mul(255).add_(0.5).clamp_(0, 255).to(uint8), written
 * from the torchvision source for images given as [channel][row][col] arrays.
 */
interface GrayImage {
  width: number;
  height: number;
  gray: number[];
}

function naiveMakeGrid(images: number[][][], nrow: number, padding: number, padValue: number): GrayImage {
  const normed = images.map((img) => {
    const flat = img.flat();
    const low = Math.min(...flat);
    const high = Math.max(...flat);
    return img.map((row) => row.map((v) => (Math.min(Math.max(v, low), high) - low) / Math.max(high - low, 1e-5)));
  });
  const toByte = (v: number) => Math.min(255, Math.max(0, Math.floor(v * 255 + 0.5)));
  const first = at(normed, 0);
  const imageWidth = at(first, 0).length;
  if (normed.length === 1) {
    return { width: imageWidth, height: first.length, gray: first.flat().map(toByte) };
  }
  const nmaps = normed.length;
  const xmaps = Math.min(nrow, nmaps);
  const ymaps = Math.ceil(nmaps / xmaps);
  const height = first.length + padding;
  const width = imageWidth + padding;
  const gridH = height * ymaps + padding;
  const gridW = width * xmaps + padding;
  const grid: number[][] = Array.from({ length: gridH }, () => new Array<number>(gridW).fill(padValue));
  let k = 0;
  for (let y = 0; y < ymaps; y++) {
    for (let x = 0; x < xmaps; x++) {
      if (k >= nmaps) break;
      const image = at(normed, k);
      for (let r = 0; r < height - padding; r++) {
        const target = at(grid, y * height + padding + r);
        const source = at(image, r);
        for (let c = 0; c < width - padding; c++) target[x * width + padding + c] = at(source, c);
      }
      k++;
    }
  }
  return { width: gridW, height: gridH, gray: grid.flat().map(toByte) };
}

/** Channel `c` of an NHWC [h, w, channels] activation, enlarged `scale` times by repeating pixels. */
function channelImage(act: Float32Array, h: number, w: number, channels: number, c: number, scale: number): number[][] {
  const rows: number[][] = [];
  for (let y = 0; y < h * scale; y++) {
    const row: number[] = [];
    for (let x = 0; x < w * scale; x++) row.push(at(act, (Math.floor(y / scale) * w + Math.floor(x / scale)) * channels + c));
    rows.push(row);
  }
  return rows;
}

function smallestScale(h: number, w: number, tileSize: number): number {
  let s = 1;
  while (Math.min(h, w) * s < tileSize) s++;
  return s;
}

// A 3 high x 2 wide x 5 channel activation; channel 2 is constant.
const H = 3;
const W = 2;
const C = 5;
const ACT = new Float32Array(H * W * C);
for (let y = 0; y < H; y++) {
  for (let x = 0; x < W; x++) {
    for (let c = 0; c < C; c++) {
      ACT[(y * W + x) * C + c] = c === 2 ? 7 : Math.sin(1 + y * 3.1 + x * 1.7 + c * 0.9) * (c + 1) + c;
    }
  }
}

function grayOf(rgb: Uint8Array): number[] {
  const gray: number[] = [];
  for (let i = 0; i < rgb.length; i += 3) {
    const [r, g, b] = rgb.subarray(i, i + 3);
    assert.ok(r !== undefined && r === g && r === b, 'gray pixels have r = g = b');
    gray.push(r);
  }
  return gray;
}

test('the grid equals make_grid + save_image for a 3x2x5 activation with a constant channel', () => {
  for (const [nrow, padding, padValue, tileSize] of [
    [undefined, 2, 0, 64],
    [2, 2, 0, 4],
    [4, 1, 0.5, 1],
    [5, 0, 0, 6],
    [1, 3, 1, 2],
  ] as const) {
    const grid = makeFeatureGrid(ACT, { height: H, width: W, channels: C }, { nrow, padding, padValue, tileSize });
    const scale = smallestScale(H, W, tileSize);
    const images = Array.from({ length: C }, (_, c) => channelImage(ACT, H, W, C, c, scale));
    const expected = naiveMakeGrid(images, nrow ?? Math.ceil(Math.sqrt(C)), padding, padValue);
    const what = `nrow ${nrow} padding ${padding} tile ${tileSize}`;
    assert.equal(grid.width, expected.width, what);
    assert.equal(grid.height, expected.height, what);
    assert.deepEqual(grayOf(grid.rgb), expected.gray, what);
    assert.equal(grid.layout.scale, scale);
  }
});

test('the default layout: ceil(sqrt(5)) = 3 per row, 64 px tiles, 2 px padding all round', () => {
  const grid = makeFeatureGrid(ACT, { height: H, width: W, channels: C });
  // scale 32 (2 * 32 = 64 wide, 96 high); 3 columns, 2 rows.
  assert.equal(grid.width, 3 * (64 + 2) + 2);
  assert.equal(grid.height, 2 * (96 + 2) + 2);
  assert.deepEqual(
    grid.layout.tiles.map((t) => [t.channel, t.x, t.y]),
    [
      [0, 2, 2],
      [1, 68, 2],
      [2, 134, 2],
      [3, 2, 100],
      [4, 68, 100],
    ],
  );
  // The constant channel's tile is black, like make_grid's (x - min) / max(0, 1e-5).
  const tile = at(grid.layout.tiles, 2);
  for (let y = tile.y; y < tile.y + 96; y++) {
    for (let x = tile.x; x < tile.x + 64; x++) assert.equal(grid.rgb[(y * grid.width + x) * 3], 0);
  }
});

test('a channel with a range below 1e-5 is divided by 1e-5, as make_grid does', () => {
  // 1 high x 2 wide x 2 channels; channel 0 spans 4e-6, channel 1 spans 2.
  const act = new Float32Array([0, 1, 4e-6, 3]);
  const grid = makeFeatureGrid(act, { height: 1, width: 2, channels: 2 }, { tileSize: 1, padding: 0 });
  const images = [0, 1].map((c) => channelImage(act, 1, 2, 2, c, 1));
  assert.deepEqual(grayOf(grid.rgb), naiveMakeGrid(images, 2, 0, 0).gray);
  assert.deepEqual(grayOf(grid.rgb), [0, 102, 0, 255]); // 4e-6 / 1e-5 = 0.4 -> 102
});

test('a colormap colours tile pixels through its table; padding stays gray', () => {
  const gray = makeFeatureGrid(ACT, { height: H, width: W, channels: C }, { tileSize: 1, padValue: 0.5 });
  const coloured = makeFeatureGrid(ACT, { height: H, width: W, channels: C }, { tileSize: 1, padValue: 0.5, colormap: 'viridis' });
  const lut = colormapLut('viridis');
  const inTile = (px: number) => {
    const x = px % gray.width;
    const y = Math.floor(px / gray.width);
    return gray.layout.tiles.some((t) => x >= t.x && x < t.x + W && y >= t.y && y < t.y + H);
  };
  for (let px = 0; px < gray.width * gray.height; px++) {
    const level = at(gray.rgb, px * 3);
    const expected = inTile(px) ? Array.from(lut.subarray(level * 3, level * 3 + 3)) : [128, 128, 128];
    assert.deepEqual(Array.from(coloured.rgb.subarray(px * 3, px * 3 + 3)), expected, `pixel ${px}`);
  }
});

test('maxChannels keeps the first channels; one channel comes back unpadded', () => {
  const three = makeFeatureGrid(ACT, { height: H, width: W, channels: C }, { maxChannels: 3, tileSize: 1 });
  assert.deepEqual(
    three.layout.tiles.map((t) => t.channel),
    [0, 1, 2],
  );
  assert.equal(three.width, 2 * (W + 2) + 2); // ceil(sqrt(3)) = 2 per row
  const one = makeFeatureGrid(ACT, { height: H, width: W, channels: C }, { maxChannels: 1, tileSize: 1 });
  const expected = naiveMakeGrid([channelImage(ACT, H, W, C, 0, 1)], 8, 2, 0);
  assert.equal(one.width, W);
  assert.equal(one.height, H);
  assert.deepEqual(grayOf(one.rgb), expected.gray);
});

test('bad shapes and options are refused', () => {
  assert.throws(() => makeFeatureGrid(new Float32Array(29), { height: H, width: W, channels: C }), RangeError);
  assert.throws(() => makeFeatureGrid(ACT, { height: H, width: W, channels: C }, { nrow: 0 }), RangeError);
  assert.throws(() => makeFeatureGrid(ACT, { height: H, width: W, channels: C }, { padding: -1 }), RangeError);
  assert.throws(() => makeFeatureGrid(ACT, { height: H, width: W, channels: C }, { padValue: 2 }), RangeError);
  assert.throws(() => makeFeatureGrid(ACT, { height: H, width: W, channels: C }, { maxChannels: 0 }), RangeError);
});
