/**
 * One float32 dataset of an HDF5 file written by ./hdf5-writer.ts made
 * chunked, and deflated when asked, as h5py writes datasets created with
 * `chunks=` / `compression='gzip'`; written from the HDF5 File Format
 * Specification (version 3.0), checked with jsfive only (no libhdf5 here).
 * The chunks, a version-1 B-tree of type 1 indexing them, and a new
 * version-2 object header (the dataspace, datatype and fill value messages
 * of the old one, a Filter Pipeline message, a version-3 chunked Data
 * Layout message) are appended; the link to the dataset is pointed at the
 * new header (the parent's header checksum recomputed) and the
 * superblock's end of file moved. The old header and data stay, unlinked.
 */
import { deflateSync } from 'node:zlib';
import { lookup3 } from './hdf5-writer.js';

const UNDEFINED_ADDRESS = 0xffffffffffffffffn;
const DATA_LAYOUT = 8;
const FILTER_PIPELINE = 11;
/** libhdf5's default "K" for chunk B-trees: a node has room for 2K children, and is read whole. */
const CHUNK_BTREE_K = 32;

export interface ChunkedOptions {
  /** The dataset's shape and values (row-major), as written. */
  shape: readonly number[];
  data: Float32Array;
  /** The shape of one chunk; edge chunks are stored whole, padded with zeros, as libhdf5 does. */
  chunk: readonly number[];
  deflate: boolean;
  /** HDF5's shuffle filter before deflating (h5py's `shuffle=True`). */
  shuffle?: boolean;
  /** What is stored for each chunk, if not its (deflated) values: for hostile files. */
  storedAs?: (stored: Buffer) => Buffer;
}

/** `file` with the dataset whose object header is at `headerAddress`, linked as `name`, stored in chunks. */
export function withChunkedDataset(file: Buffer, headerAddress: number, name: string, options: ChunkedOptions): Buffer {
  const pieces: Buffer[] = [file];
  let end = file.length;
  const place = (bytes: Buffer): number => {
    const address = end;
    pieces.push(bytes);
    end += bytes.length;
    return address;
  };
  const chunks = chunkOrigins(options.shape, options.chunk).map((origin) => {
    const raw = chunkValues(options, origin);
    const shuffled = options.shuffle === true ? shuffledBytes(raw, 4) : raw;
    const filtered = options.deflate ? deflateSync(shuffled) : shuffled;
    const stored = options.storedAs?.(filtered) ?? filtered;
    return { origin, size: stored.length, address: place(stored) };
  });
  const btree = place(chunkBTree(chunks, options.chunk.length + 1));
  const kept = messagesOf(file, headerAddress).filter((message) => message.type !== DATA_LAYOUT);
  const pipeline = [...(options.shuffle === true ? [SHUFFLE_FILTER] : []), ...(options.deflate ? [DEFLATE_FILTER] : [])];
  const filters = pipeline.length > 0 ? [{ type: FILTER_PIPELINE, body: filterPipeline(pipeline) }] : [];
  const header = place(objectHeader([...kept, ...filters, { type: DATA_LAYOUT, body: chunkedLayout(btree, options.chunk) }]));
  const out = Buffer.concat(pieces);
  relink(out, headerAddress, name, header);
  out.writeBigUInt64LE(BigInt(end), 28); // superblock version 2: end-of-file address
  out.writeUInt32LE(lookup3(out.subarray(0, 44)), 44);
  return out;
}

/** Where each chunk starts, in elements, row-major. */
function chunkOrigins(shape: readonly number[], chunk: readonly number[]): number[][] {
  let origins: number[][] = [[]];
  shape.forEach((dim, axis) => {
    const starts = Array.from({ length: Math.ceil(dim / chunk[axis]!) }, (_, i) => i * chunk[axis]!);
    origins = origins.flatMap((origin) => starts.map((start) => [...origin, start]));
  });
  return origins;
}

/** The bytes of the chunk at `origin`: the dataset's values inside it, zeros past its edges. */
function chunkValues({ shape, data, chunk }: ChunkedOptions, origin: readonly number[]): Buffer {
  const count = chunk.reduce((product, dim) => product * dim, 1);
  const values = new Float32Array(count);
  for (let i = 0; i < count; i += 1) {
    let rest = i;
    let source = 0;
    let inside = true;
    for (let axis = 0; axis < chunk.length; axis += 1) {
      const below = chunk.slice(axis + 1).reduce((product, dim) => product * dim, 1);
      const index = origin[axis]! + Math.floor(rest / below);
      rest %= below;
      inside &&= index < shape[axis]!;
      source = source * shape[axis]! + index;
    }
    if (inside) values[i] = data[source]!;
  }
  return Buffer.from(values.buffer);
}

/** A version-1 B-tree leaf of type 1 (raw data chunks): keys are chunk size, filter mask and offsets (element size last, 0). */
function chunkBTree(chunks: readonly { origin: number[]; size: number; address: number }[], dimensionality: number): Buffer {
  if (chunks.length > 2 * CHUNK_BTREE_K) throw new Error(`at most ${2 * CHUNK_BTREE_K} chunks fit one B-tree node`);
  const keySize = 8 + 8 * dimensionality;
  const node = Buffer.alloc(24 + (2 * CHUNK_BTREE_K + 1) * keySize + 2 * CHUNK_BTREE_K * 8);
  node.write('TREE', 0, 'latin1');
  node.writeUInt8(1, 4); // node type: raw data chunks
  node.writeUInt8(0, 5); // level: a leaf
  node.writeUInt16LE(chunks.length, 6);
  node.writeBigUInt64LE(UNDEFINED_ADDRESS, 8);
  node.writeBigUInt64LE(UNDEFINED_ADDRESS, 16);
  let at = 24;
  const key = (size: number, offsets: readonly number[]): void => {
    node.writeUInt32LE(size, at);
    node.writeUInt32LE(0, at + 4); // filter mask: every filter applied
    [...offsets, 0].forEach((offset, i) => node.writeBigUInt64LE(BigInt(offset), at + 8 + 8 * i));
    at += keySize;
  };
  for (const chunk of chunks) {
    key(chunk.size, chunk.origin);
    node.writeBigUInt64LE(BigInt(chunk.address), at);
    at += 8;
  }
  // The last key bounds the last child: one past it along the slowest axis.
  const last = chunks.at(-1)!;
  key(0, last.origin.map((offset, axis) => (axis === 0 ? offset + 1 : offset)));
  return node;
}

/** A filter: its id and its one client value (shuffle: the element size; deflate: the level). */
const SHUFFLE_FILTER = { id: 2, value: 4 };
const DEFLATE_FILTER = { id: 1, value: 6 };

/** Filter Pipeline message version 2: the filters in the order they were applied, each mandatory, with one client value. */
function filterPipeline(filters: readonly { id: number; value: number }[]): Buffer {
  const body = Buffer.alloc(2 + 10 * filters.length);
  body.writeUInt8(2, 0);
  body.writeUInt8(filters.length, 1);
  filters.forEach(({ id, value }, i) => {
    body.writeUInt16LE(id, 2 + 10 * i);
    body.writeUInt16LE(0, 4 + 10 * i); // flags: mandatory
    body.writeUInt16LE(1, 6 + 10 * i); // one client value
    body.writeUInt32LE(value, 8 + 10 * i);
  });
  return body;
}

/** HDF5's shuffle: byte 0 of every element, then byte 1, and so on. */
function shuffledBytes(data: Buffer, size: number): Buffer {
  const count = data.length / size;
  const out = Buffer.alloc(data.length);
  for (let i = 0; i < count; i += 1) for (let byte = 0; byte < size; byte += 1) out[byte * count + i] = data[i * size + byte]!;
  return out;
}

/** Data Layout message version 3, class 2 (chunked): dimensionality (rank + 1), the B-tree's address, the chunk's sizes and the element's (4 bytes). */
function chunkedLayout(btree: number, chunk: readonly number[]): Buffer {
  const body = Buffer.alloc(3 + 8 + 4 * (chunk.length + 1));
  body.writeUInt8(3, 0);
  body.writeUInt8(2, 1);
  body.writeUInt8(chunk.length + 1, 2);
  body.writeBigUInt64LE(BigInt(btree), 3);
  [...chunk, 4].forEach((dim, i) => body.writeUInt32LE(dim, 11 + 4 * i));
  return body;
}

interface Message {
  type: number;
  body: Buffer;
}

/** The messages of the version-2 object header at `address` (as ./hdf5-writer.ts writes them: one chunk, 4-byte size). */
function messagesOf(file: Buffer, address: number): Message[] {
  if (file.toString('latin1', address, address + 4) !== 'OHDR' || file[address + 5] !== 2) throw new Error(`no version-2 object header with a 4-byte chunk size at ${address}`);
  const end = address + 10 + file.readUInt32LE(address + 6);
  const messages: Message[] = [];
  for (let at = address + 10; at + 4 <= end; ) {
    const size = file.readUInt16LE(at + 1);
    messages.push({ type: file[at]!, body: Buffer.from(file.subarray(at + 4, at + 4 + size)) });
    at += 4 + size;
  }
  return messages;
}

/** A version-2 object header: "OHDR", version 2, flags 2 (4-byte chunk size), the messages, a lookup3 checksum. */
function objectHeader(messages: readonly Message[]): Buffer {
  const body = Buffer.concat(messages.map(({ type, body: data }) => Buffer.concat([Buffer.from([type, data.length & 0xff, data.length >> 8, 0]), data])));
  const prefix = Buffer.alloc(10);
  prefix.write('OHDR', 0, 'latin1');
  prefix.writeUInt8(2, 4);
  prefix.writeUInt8(2, 5);
  prefix.writeUInt32LE(body.length, 6);
  const unchecked = Buffer.concat([prefix, body]);
  const checksum = Buffer.alloc(4);
  checksum.writeUInt32LE(lookup3(unchecked), 0);
  return Buffer.concat([unchecked, checksum]);
}

/** Points the Link message (version 1, one-byte name length) `name` -> `from` at `to`, and re-checksums the header holding it. */
function relink(file: Buffer, from: number, name: string, to: number): void {
  const address = Buffer.alloc(8);
  address.writeBigUInt64LE(BigInt(from));
  const link = Buffer.concat([Buffer.from([1, 0, name.length]), Buffer.from(name, 'latin1'), address]);
  const at = file.indexOf(link);
  if (at < 0 || file.indexOf(link, at + 1) >= 0) throw new Error(`no single link '${name}' to ${from}`);
  file.writeBigUInt64LE(BigInt(to), at + link.length - 8);
  const header = file.lastIndexOf('OHDR', at, 'latin1');
  const checksumAt = header + 10 + file.readUInt32LE(header + 6);
  file.writeUInt32LE(lookup3(file.subarray(header, checksumAt)), checksumAt);
}
