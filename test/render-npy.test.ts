import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { decodeNpy, encodeNpy } from '../src/render/index.js';
import { findPython } from './helpers/python.js';

const dir = await mkdtemp(join(tmpdir(), 'camviz-render-npy-'));
after(() => rm(dir, { recursive: true, force: true }));

function parts(file: Buffer): { header: string; data: Buffer } {
  const length = file.readUInt16LE(8);
  return { header: file.toString('latin1', 10, 10 + length), data: file.subarray(10 + length) };
}

test('the header is NumPy format 1.0, <f4, C order, padded to 64 bytes with a final newline', () => {
  const file = encodeNpy(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
  assert.deepEqual([...file.subarray(0, 8)], [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  const { header, data } = parts(file);
  assert.equal((10 + header.length) % 64, 0);
  assert.ok(header.endsWith('\n'));
  assert.equal(header.trimEnd(), "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
  assert.match(header, /^\{[^\n]*\} *\n$/);
  // Values little-endian float32: 1.0 = 0x3f800000.
  assert.deepEqual([...data.subarray(0, 4)], [0x00, 0x00, 0x80, 0x3f]);
  assert.equal(data.length, 24);
});

test('shapes of 0, 1 and 3 dimensions are written as Python tuples', () => {
  assert.equal(parts(encodeNpy(new Float32Array([7]), [])).header.trimEnd(), "{'descr': '<f4', 'fortran_order': False, 'shape': (), }");
  assert.equal(parts(encodeNpy(new Float32Array(5), [5])).header.trimEnd(), "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }");
  assert.match(parts(encodeNpy(new Float32Array(0), [0, 4, 2])).header, /'shape': \(0, 4, 2\), \}/);
});

test('decodeNpy reads back what encodeNpy wrote', () => {
  const data = new Float32Array([0.1, -2.5, Number.NaN, 3e38, -0, 1e-40]);
  const back = decodeNpy(encodeNpy(data, [3, 2]));
  assert.deepEqual(back.shape, [3, 2]);
  assert.deepEqual(back.data, data);
});

test('encodeNpy refuses a shape that does not fit the data', () => {
  assert.throws(() => encodeNpy(new Float32Array(5), [2, 3]), RangeError);
  assert.throws(() => encodeNpy(new Float32Array(2), [2.5]), RangeError);
});

const numpyPython = findPython('numpy');

const noNumpy = numpyPython === null ? 'no python3 with numpy' : false;

test('numpy loads the file with the right shape, dtype and values', { skip: noNumpy }, async () => {
  const values = Float32Array.from({ length: 7 * 5 * 3 }, (_, i) => Math.fround(Math.sin(i) * 100));
  const path = join(dir, 'map.npy');
  await writeFile(path, encodeNpy(values, [7, 5, 3]));
  const script = `
import json, sys, numpy as np
a = np.load(sys.argv[1])
print(json.dumps({'shape': list(a.shape), 'dtype': a.dtype.str, 'fortran': bool(np.isfortran(a)), 'values': a.reshape(-1).tolist()}))
`;
  const run = spawnSync(numpyPython!, ['-c', script, path], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  const loaded = JSON.parse(run.stdout) as { shape: number[]; dtype: string; fortran: boolean; values: number[] };
  assert.deepEqual(loaded.shape, [7, 5, 3]);
  assert.equal(loaded.dtype, '<f4');
  assert.equal(loaded.fortran, false);
  assert.deepEqual(loaded.values, Array.from(values));
});

test('decodeNpy reads a file numpy wrote', { skip: noNumpy }, async () => {
  const path = join(dir, 'from-numpy.npy');
  const script = `import numpy as np, sys; np.save(sys.argv[1], np.arange(12, dtype='<f4').reshape(3, 4) / 8)`;
  const run = spawnSync(numpyPython!, ['-c', script, path], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  const back = decodeNpy(await readFile(path));
  assert.deepEqual(back.shape, [3, 4]);
  assert.deepEqual(Array.from(back.data), Array.from({ length: 12 }, (_, i) => i / 8));
});

test('decodeNpy refuses a shape that is not decimal whole numbers, and a truncated header, with a message saying so', () => {
  const npyWithShape = (shape: string): Buffer => {
    const header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape}), }`.padEnd(117, ' ') + '\n';
    return Buffer.concat([Buffer.from([0x93]), Buffer.from('NUMPY'), Buffer.from([1, 0]), Buffer.from([header.length, 0]), Buffer.from(header, 'latin1'), Buffer.alloc(1024)]);
  };
  for (const shape of ['abc, 8', '1.5, 8', '0x10, 0x10', '-8, 8', '1e3, 1']) {
    assert.throws(() => decodeNpy(npyWithShape(shape)), /bad \.npy shape \(.*\): sizes must be whole numbers/, shape);
  }
  assert.deepEqual(decodeNpy(npyWithShape('16, 16')).shape, [16, 16]);
  assert.throws(() => decodeNpy(npyWithShape('4, 4').subarray(0, 40)), /\.npy header is truncated: it declares 118 bytes/);
});
