/** Reading .npy files (float32, little-endian, C order) in tests. */
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';

/** A little-endian float32 C-order .npy (format 1.0), parsed by hand. */
export function readNpy(path: string): { shape: number[]; data: Float32Array } {
  const bytes = readFileSync(path);
  assert.deepEqual([...bytes.subarray(0, 6)], [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59], 'npy magic');
  assert.equal(bytes[6], 1, 'npy major version');
  const headerLength = bytes.readUInt16LE(8);
  const header = bytes.subarray(10, 10 + headerLength).toString('latin1');
  assert.match(header, /'descr': '<f4'/);
  assert.match(header, /'fortran_order': False/);
  const shape = /'shape': \(([^)]*)\)/.exec(header)![1]!.split(',').map((s) => s.trim()).filter((s) => s !== '').map(Number);
  const start = 10 + headerLength;
  assert.equal(start % 64, 0, 'data aligned to 64 bytes');
  const count = shape.reduce((a, b) => a * b, 1);
  assert.equal(bytes.length - start, count * 4);
  const data = new Float32Array(count);
  for (let i = 0; i < count; i++) data[i] = bytes.readFloatLE(start + i * 4);
  return { shape, data };
}
