import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { COLORMAPS, applyColormap, colormapIndex, colormapLut, isColormapName } from '../src/render/index.js';
import type { ColormapName } from '../src/render/index.js';
import { findPython } from './helpers/python.js';

const cv2Python = findPython('cv2');

function entry(name: ColormapName, index: number): number[] {
  return Array.from(colormapLut(name).subarray(index * 3, index * 3 + 3));
}

/** round(255 * v) of a row of matplotlib's float table. */
const bytesOf = (row: number[]): number[] => row.map((v) => Math.round(v * 255));

// Rows 0, 128 and 255 as printed in matplotlib lib/matplotlib/_cm_listed.py.
const MATPLOTLIB_ROWS: Record<string, [number[], number[], number[]]> = {
  viridis: [
    [0.267004, 0.004874, 0.329415],
    [0.127568, 0.566949, 0.550556],
    [0.993248, 0.906157, 0.143936],
  ],
  inferno: [
    [0.001462, 0.000466, 0.013866],
    [0.735683, 0.215906, 0.330245],
    [0.988362, 0.998364, 0.644924],
  ],
  magma: [
    [0.001462, 0.000466, 0.013866],
    [0.716387, 0.214982, 0.47529],
    [0.987053, 0.991438, 0.749504],
  ],
  plasma: [
    [0.050383, 0.029803, 0.527975],
    [0.798216, 0.280197, 0.469538],
    [0.940015, 0.975158, 0.131326],
  ],
  cividis: [
    [0.0, 0.135112, 0.304751],
    [0.488697, 0.485318, 0.471008],
    [0.995737, 0.909344, 0.217772],
  ],
};

test('matplotlib maps hold round(255 * v) of the published float rows', () => {
  for (const [name, rows] of Object.entries(MATPLOTLIB_ROWS)) {
    assert.ok(isColormapName(name));
    assert.deepEqual(entry(name, 0), bytesOf(rows[0]), `${name}[0]`);
    assert.deepEqual(entry(name, 128), bytesOf(rows[1]), `${name}[128]`);
    assert.deepEqual(entry(name, 255), bytesOf(rows[2]), `${name}[255]`);
  }
  // Spelled out once, so the rounding itself is checked by hand too.
  assert.deepEqual(entry('viridis', 0), [68, 1, 84]);
  assert.deepEqual(entry('viridis', 255), [253, 231, 37]);
});

test("turbo is Google's published turbo_srgb_bytes", () => {
  assert.deepEqual(entry('turbo', 0), [48, 18, 59]);
  assert.deepEqual(entry('turbo', 1), [50, 21, 67]);
  assert.deepEqual(entry('turbo', 128), [164, 252, 60]);
  assert.deepEqual(entry('turbo', 255), [122, 4, 3]);
});

test("jet matches OpenCV's COLORMAP_JET (as RGB) at 0, 0.5 and 1", () => {
  // OpenCV colormap.cpp Jet: b[0] = 0.5 -> 128; at 128: r = 129.5/255, g = 1, b = 125.5/255,
  // rounded half to even by convertTo; r[255] = 0.5.
  assert.deepEqual(Array.from(applyColormap(new Float32Array([0, 0.5, 1]), 'jet')), [0, 0, 128, 130, 255, 126, 128, 0, 0]);
});

test('gray is the identity ramp', () => {
  const lut = colormapLut('gray');
  for (let i = 0; i < 256; i++) assert.deepEqual(Array.from(lut.subarray(i * 3, i * 3 + 3)), [i, i, i]);
});

test('values map to entry round(255 * v), clamped, NaN to 0', () => {
  const cases: [number, number][] = [
    [0, 0],
    [0.4 / 255, 0],
    [0.6 / 255, 1],
    [0.5, 128],
    [254.4 / 255, 254],
    [1, 255],
    [-3, 0],
    [7, 255],
    [Number.NaN, 0],
    [Number.POSITIVE_INFINITY, 255],
    [Number.NEGATIVE_INFINITY, 0],
  ];
  for (const [value, index] of cases) assert.equal(colormapIndex(value), index, `value ${value}`);
  const values = new Float32Array(cases.map(([v]) => v));
  const rgb = applyColormap(values, 'gray');
  assert.deepEqual(
    Array.from(rgb.filter((_, i) => i % 3 === 0)),
    cases.map(([, index]) => index),
  );
});

test('applyColormap writes into a given buffer and checks its size', () => {
  const out = new Uint8Array(6);
  const result = applyColormap(new Float32Array([0, 1]), 'viridis', out);
  assert.equal(result, out);
  assert.deepEqual(Array.from(out), [68, 1, 84, 253, 231, 37]);
  assert.throws(() => applyColormap(new Float32Array(3), 'jet', new Uint8Array(8)), RangeError);
});

test('colormapLut hands out copies; names are checked', () => {
  const lut = colormapLut('jet');
  lut.fill(0);
  assert.deepEqual(entry('jet', 0), [0, 0, 128]);
  assert.deepEqual([...COLORMAPS], ['jet', 'turbo', 'viridis', 'inferno', 'magma', 'plasma', 'cividis', 'gray']);
  assert.equal(isColormapName('hot'), false);
  assert.throws(() => colormapLut('hot' as ColormapName), /unknown colormap/);
});

const noCv2 = cv2Python === null ? 'no python3 with cv2' : false;

test('every table equals OpenCV applyColorMap output (BGR swapped)', { skip: noCv2 }, () => {
  const names = {
    jet: 'JET',
    turbo: 'TURBO',
    viridis: 'VIRIDIS',
    inferno: 'INFERNO',
    magma: 'MAGMA',
    plasma: 'PLASMA',
    cividis: 'CIVIDIS',
  };
  const script = `
import json, cv2, numpy as np
ramp = np.arange(256, dtype=np.uint8).reshape(1, 256)
names = ${JSON.stringify(names)}
print(json.dumps({k: cv2.applyColorMap(ramp, getattr(cv2, 'COLORMAP_' + v))[0][:, ::-1].reshape(-1).tolist() for k, v in names.items()}))
`;
  const run = spawnSync(cv2Python!, ['-c', script], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  const tables = JSON.parse(run.stdout) as Record<string, number[]>;
  for (const name of Object.keys(names) as ColormapName[]) {
    assert.deepEqual(Array.from(colormapLut(name)), tables[name], name);
  }
});
