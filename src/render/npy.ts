/**
 * NumPy .npy files (format version 1.0) of little-endian float32 arrays, so
 * raw maps can be loaded with `np.load` for further analysis.
 */
import { endianness } from 'node:os';

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY
/** Magic, two version bytes, two header-length bytes. */
const PREAMBLE_V1 = MAGIC.length + 4;
const ALIGNMENT = 64;
const littleEndianHost = endianness() === 'LE';

export interface NpyArray {
  data: Float32Array;
  shape: number[];
}

/** An .npy file of `data` in C (row-major) order with the given shape. */
export function encodeNpy(data: Float32Array, shape: readonly number[]): Buffer {
  for (const size of shape) {
    if (!Number.isInteger(size) || size < 0) {
      throw new RangeError(`shape must hold whole numbers >= 0, got [${shape.join(', ')}]`);
    }
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) {
    throw new RangeError(`shape [${shape.join(', ')}] holds ${count} values but data has ${data.length}`);
  }
  const header = headerText(shape);
  if (header.length > 0xffff) throw new RangeError('shape too long for an .npy version 1.0 header');

  const out = Buffer.alloc(PREAMBLE_V1 + header.length + data.byteLength);
  MAGIC.copy(out, 0);
  out[MAGIC.length] = 1; // major version
  out[MAGIC.length + 1] = 0; // minor version
  out.writeUInt16LE(header.length, MAGIC.length + 2);
  out.write(header, PREAMBLE_V1, 'latin1');
  writeFloat32LE(data, out, PREAMBLE_V1 + header.length);
  return out;
}

/** The header dict as NumPy writes it, padded with spaces and ended by '\n' to a multiple of 64 bytes. */
function headerText(shape: readonly number[]): string {
  const dims = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': ${dims}, }`;
  const unpadded = PREAMBLE_V1 + dict.length + 1;
  const padding = (ALIGNMENT - (unpadded % ALIGNMENT)) % ALIGNMENT;
  return `${dict}${' '.repeat(padding)}\n`;
}

function writeFloat32LE(data: Float32Array, out: Buffer, offset: number): void {
  if (littleEndianHost) {
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), offset);
    return;
  }
  for (const [i, value] of data.entries()) out.writeFloatLE(value, offset + i * 4);
}

/**
 * Reads an .npy file of little-endian float32 in C order (what encodeNpy
 * writes; versions 1.0 to 3.0 of the format).
 */
export function decodeNpy(file: Uint8Array): NpyArray {
  const buf = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  if (buf.length < PREAMBLE_V1 || !buf.subarray(0, MAGIC.length).equals(MAGIC)) throw new Error('not an .npy file');
  const major = buf.readUInt8(MAGIC.length); // in range: the length was checked above
  if (major < 1 || major > 3) throw new Error(`unsupported .npy version ${major}`);
  const lengthBytes = major === 1 ? 2 : 4;
  const headerLength = lengthBytes === 2 ? buf.readUInt16LE(MAGIC.length + 2) : buf.readUInt32LE(MAGIC.length + 2);
  const dataStart = MAGIC.length + 2 + lengthBytes + headerLength;
  if (buf.length < dataStart) throw new Error(`.npy header is truncated: it declares ${headerLength} bytes`);
  const header = buf.toString(major === 3 ? 'utf8' : 'latin1', MAGIC.length + 2 + lengthBytes, dataStart);

  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const dims = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || dims === undefined) {
    throw new Error(`bad .npy header: ${header.trim()}`);
  }
  if (descr !== '<f4') throw new Error(`only little-endian float32 ('<f4') is supported, got '${descr}'`);
  if (fortran === 'True') throw new Error('Fortran-order .npy files are not supported');
  const sizes = dims
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  // Decimal whole numbers only: Number() took '0x10' for 16, and gave NaN, fractions and negatives to the allocation.
  if (!sizes.every((size) => /^\d{1,10}$/.test(size))) throw new Error(`bad .npy shape (${dims.trim()}): sizes must be whole numbers`);
  const shape = sizes.map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  if (buf.length - dataStart < count * 4) {
    throw new Error(`.npy data is truncated: need ${count * 4} bytes, have ${buf.length - dataStart}`);
  }

  const data = new Float32Array(count);
  if (littleEndianHost) new Uint8Array(data.buffer).set(buf.subarray(dataStart, dataStart + count * 4));
  else for (let i = 0; i < count; i++) data[i] = buf.readFloatLE(dataStart + i * 4);
  return { data, shape };
}
