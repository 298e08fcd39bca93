/**
 * Chunked float32 HDF5 datasets (h5py's `chunks=` / `compression='gzip'`),
 * read here rather than by jsfive, whose reading is bounded by nothing the
 * file cannot lie about: it inflates each chunk whole and walks every
 * element of the chunk shape the layout declares, so that a file of a few
 * hundred KiB can hold it for minutes and gigabytes. Here every chunk must
 * sit inside the file, at a chunk-aligned position inside the dataset,
 * once; it inflates to exactly one chunk's bytes or is refused; the index
 * holds no more chunks than the dataset has. Formats from the HDF5 File
 * Format Specification 3.0: Data Layout message version 3 class 2 (chunked,
 * version-1 B-tree index), filters deflate (1) and shuffle (2).
 */
import { inflateSync } from 'node:zlib';
import { CamvizError } from '../../util/errors.js';

const DEFLATE = 1;
const SHUFFLE = 2;
const BTREE_NODE_HEADER = 24;
/** Deeper chunk B-trees than this would index more chunks than any file holds. */
const MAX_BTREE_LEVEL = 32;

/** A filter of the dataset's pipeline, in the order it was applied when writing. */
export interface ChunkFilter {
  id: number;
}

export interface ChunkedDataset {
  bytes: Buffer;
  /** Offset of the Data Layout message's body in `bytes`. */
  layoutAt: number;
  shape: readonly number[];
  filters: readonly ChunkFilter[];
  path: string;
  file: string;
}

/** True when the Data Layout message at `layoutAt` says chunked (class 2: its second byte from version 3 on, its third before). */
export function isChunkedLayout(bytes: Buffer, layoutAt: number): boolean {
  if (layoutAt + 3 > bytes.length) return false;
  return bytes.readUInt8(layoutAt + (bytes.readUInt8(layoutAt) >= 3 ? 1 : 2)) === 2;
}

/** The dataset's values, assembled from its chunks; missing chunks are zeros (the default fill value). */
export function readChunkedFloat32(dataset: ChunkedDataset): Float32Array {
  const fail = (problem: string): never => {
    throw new CamvizError(`HDF5 dataset '${dataset.path}' ${problem}`, { file: dataset.file });
  };
  const { bytes, layoutAt, shape } = dataset;
  for (const filter of dataset.filters) if (filter.id !== DEFLATE && filter.id !== SHUFFLE) fail(`uses HDF5 filter ${filter.id}; only deflate and shuffle are read`);
  if (layoutAt + 11 > bytes.length || bytes.readUInt8(layoutAt) !== 3) fail(`has a chunked layout of version ${bytes.readUInt8(layoutAt)}; only version 3 is read`);
  const dimensionality = bytes.readUInt8(layoutAt + 2);
  if (dimensionality !== shape.length + 1 || layoutAt + 11 + 4 * dimensionality > bytes.length) fail(`declares ${dimensionality - 1}-D chunks for a ${shape.length}-D shape`);
  const index = Number(bytes.readBigUInt64LE(layoutAt + 3));
  const chunk = shape.map((_, axis) => bytes.readUInt32LE(layoutAt + 11 + 4 * axis));
  if (bytes.readUInt32LE(layoutAt + 11 + 4 * shape.length) !== 4) fail('declares chunk elements that are not 4 bytes');
  // A chunk no larger than the dataset along any axis: its inflated size is then bounded by the dataset's, itself by the file's.
  if (chunk.some((dim, axis) => dim === 0 || dim > Math.max(1, shape[axis]!))) fail(`declares chunks of [${chunk.join(', ')}] for its shape [${shape.join(', ')}]`);
  const chunkCount = shape.reduce((product, dim, axis) => product * Math.ceil(dim / chunk[axis]!), 1);
  const entries = chunkEntries(bytes, index, dimensionality, chunkCount, fail);
  const values = new Float32Array(shape.reduce((product, dim) => product * dim, 1));
  const chunkValues = chunk.reduce((product, dim) => product * dim, 1);
  const seen = new Set<string>();
  for (const entry of entries) {
    const origin = entry.offsets.slice(0, shape.length);
    if (origin.some((offset, axis) => offset % chunk[axis]! !== 0 || offset >= shape[axis]!)) fail(`indexes a chunk at [${origin.join(', ')}], not a chunk of the dataset`);
    const key = origin.join(',');
    if (seen.has(key)) fail(`indexes the chunk at [${key}] twice`);
    seen.add(key);
    if (entry.address + entry.size > bytes.length) fail(`has a chunk past the end of the file (at ${entry.address}, ${entry.size} bytes)`);
    const data = unfiltered(bytes.subarray(entry.address, entry.address + entry.size), dataset.filters, entry.filterMask, chunkValues * 4, fail);
    place(values, shape, new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)), chunk, origin);
  }
  return values;
}

interface ChunkEntry {
  size: number;
  filterMask: number;
  offsets: number[];
  address: number;
}

/** The leaf entries of the version-1 B-tree (type 1) at `address`, at most `limit` of them. */
function chunkEntries(bytes: Buffer, address: number, dimensionality: number, limit: number, fail: (problem: string) => never): ChunkEntry[] {
  const keySize = 8 + 8 * dimensionality;
  const entries: ChunkEntry[] = [];
  // A tree indexing `limit` chunks has at most as many inner nodes as leaves; more visits mean nodes shared or looping.
  let nodes = 0;
  const visit = (at: number, expectedLevel: number | undefined): void => {
    nodes += 1;
    if (nodes > 2 * limit + 1) fail('has a malformed chunk index (more nodes than chunks)');
    if (at + BTREE_NODE_HEADER > bytes.length || bytes.toString('latin1', at, at + 4) !== 'TREE' || bytes.readUInt8(at + 4) !== 1) fail(`has no chunk index where its layout says (at ${at})`);
    const level = bytes.readUInt8(at + 5);
    if ((expectedLevel !== undefined && level !== expectedLevel) || level > MAX_BTREE_LEVEL) fail('has a malformed chunk index (B-tree levels)');
    const used = bytes.readUInt16LE(at + 6);
    if (at + BTREE_NODE_HEADER + used * (keySize + 8) + keySize > bytes.length) fail('has a chunk index past the end of the file');
    for (let i = 0; i < used; i += 1) {
      const key = at + BTREE_NODE_HEADER + i * (keySize + 8);
      const child = Number(bytes.readBigUInt64LE(key + keySize));
      if (level > 0) {
        visit(child, level - 1);
        continue;
      }
      if (entries.length === limit) fail(`indexes more chunks than its ${limit}`);
      const offsets = Array.from({ length: dimensionality }, (_, axis) => Number(bytes.readBigUInt64LE(key + 8 + 8 * axis)));
      entries.push({ size: bytes.readUInt32LE(key), filterMask: bytes.readUInt32LE(key + 4), offsets, address: child });
    }
  };
  visit(address, undefined);
  return entries;
}

/** A chunk's bytes with the filters undone (last applied, first undone), exactly `chunkBytes` long. */
function unfiltered(stored: Buffer, filters: readonly ChunkFilter[], mask: number, chunkBytes: number, fail: (problem: string) => never): Buffer {
  let data = stored;
  for (let i = filters.length - 1; i >= 0; i -= 1) {
    if ((mask & (1 << i)) !== 0) continue;
    data = filters[i]!.id === DEFLATE ? inflated(data, chunkBytes, fail) : unshuffled(data, 4);
  }
  if (data.length !== chunkBytes) fail(`has a chunk of ${data.length} bytes where ${chunkBytes} belong`);
  return data;
}

function inflated(data: Buffer, chunkBytes: number, fail: (problem: string) => never): Buffer {
  try {
    // One byte over a chunk is enough to tell a chunk that inflates to more (a bomb) from one that fits.
    return inflateSync(data, { maxOutputLength: chunkBytes + 1 });
  } catch (error) {
    const tooLarge = (error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE';
    return fail(tooLarge ? `has a chunk that inflates beyond its ${chunkBytes} bytes (a bomb?): refused` : `has a chunk that does not inflate: ${(error as Error).message}`);
  }
}

/** HDF5's shuffle filter stores byte 0 of every element, then byte 1...: back to whole elements. */
function unshuffled(data: Buffer, size: number): Buffer {
  const count = Math.floor(data.length / size);
  const out = Buffer.from(data);
  for (let byte = 0; byte < size; byte += 1) {
    for (let i = 0; i < count; i += 1) out[i * size + byte] = data[byte * count + i]!;
  }
  return out;
}

/** Copies the part of a chunk (shape `chunk`, at `origin`) that lies inside the dataset into `values` (row-major). */
function place(values: Float32Array, shape: readonly number[], chunkData: Float32Array, chunk: readonly number[], origin: readonly number[]): void {
  const rank = shape.length;
  if (rank === 0) {
    values[0] = chunkData[0]!;
    return;
  }
  // Rows along the last axis are contiguous in both: copy them whole.
  const rowLength = Math.min(chunk[rank - 1]!, shape[rank - 1]! - origin[rank - 1]!);
  const rows = chunk.slice(0, -1).reduce((product, dim) => product * dim, 1);
  for (let row = 0; row < rows; row += 1) {
    let rest = row;
    let target = 0;
    let inside = true;
    for (let axis = 0; axis < rank - 1; axis += 1) {
      const below = chunk.slice(axis + 1, -1).reduce((product, dim) => product * dim, 1);
      const index = origin[axis]! + Math.floor(rest / below);
      rest %= below;
      inside &&= index < shape[axis]!;
      target = target * shape[axis]! + index;
    }
    if (!inside) continue;
    const start = target * shape[rank - 1]! + origin[rank - 1]!;
    values.set(chunkData.subarray(row * chunk[rank - 1]!, row * chunk[rank - 1]! + rowLength), start);
  }
}
