/**
 * A minimal HDF5 writer for test fixtures, written from the HDF5 File
 * Format Specification (version 3.0): superblock version 2, version-2
 * object headers ("OHDR") with compact link storage for groups (Link Info,
 * Group Info and Link messages), and float32 datasets with a version-2
 * dataspace, an IEEE little-endian float datatype and contiguous layout.
 * Checksums are Jenkins' lookup3 `hashlittle`, as the specification asks.
 * Attributes are fixed-length ASCII strings (a scalar or a 1-D list), as
 * h5py stores the `bytes` Keras writes (`model_config`, `weight_names`).
 * Enough for Keras 3's `model.weights.h5` and legacy full-model `.h5`.
 */

/** A group: named children, each a group or a dataset, and string attributes. */
export interface Hdf5Group {
  children: Record<string, Hdf5Node>;
  attributes?: Record<string, string | readonly string[]>;
}

export type Hdf5Node = Hdf5Group | Hdf5Float32;

export const group = (children: Record<string, Hdf5Node> = {}, attributes?: Record<string, string | readonly string[]>): Hdf5Group => ({
  children,
  ...(attributes === undefined ? {} : { attributes }),
});

export interface Hdf5Float32 {
  shape: readonly number[];
  data: Float32Array;
}

const UNDEFINED_ADDRESS = 0xffffffffffffffffn;
const SUPERBLOCK_SIZE = 48;

function isDataset(node: Hdf5Node): node is Hdf5Float32 {
  return 'data' in node;
}

/** The bytes of an HDF5 file holding `root`. */
export function writeHdf5(root: Hdf5Group): Buffer {
  const chunks: Buffer[] = [Buffer.alloc(SUPERBLOCK_SIZE)];
  let end = SUPERBLOCK_SIZE;
  const place = (bytes: Buffer): number => {
    const address = end;
    chunks.push(bytes);
    end += bytes.length;
    return address;
  };
  const writeNode = (node: Hdf5Node): number => {
    if (isDataset(node)) {
      const data = place(Buffer.from(node.data.buffer, node.data.byteOffset, node.data.byteLength));
      return place(objectHeader(datasetMessages(node, data)));
    }
    const links = Object.entries(node.children).map(([name, child]) => linkMessage(name, writeNode(child)));
    const attributes = Object.entries(node.attributes ?? {}).map(([name, value]) => attributeMessage(name, value));
    return place(objectHeader([linkInfoMessage(), groupInfoMessage(), ...links, ...attributes]));
  };
  const rootAddress = writeNode(root);
  const superblock = chunks[0]!;
  Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]).copy(superblock, 0);
  superblock.writeUInt8(2, 8); // version
  superblock.writeUInt8(8, 9); // size of offsets
  superblock.writeUInt8(8, 10); // size of lengths
  superblock.writeUInt8(0, 11); // file consistency flags
  superblock.writeBigUInt64LE(0n, 12); // base address
  superblock.writeBigUInt64LE(UNDEFINED_ADDRESS, 20); // no superblock extension
  superblock.writeBigUInt64LE(BigInt(end), 28); // end of file
  superblock.writeBigUInt64LE(BigInt(rootAddress), 36);
  superblock.writeUInt32LE(lookup3(superblock.subarray(0, 44)), 44);
  return Buffer.concat(chunks);
}

interface Message {
  type: number;
  body: Buffer;
}

/** A version-2 object header: "OHDR", version, flags (4-byte chunk size), the messages, a checksum. */
function objectHeader(messages: readonly Message[]): Buffer {
  const body = Buffer.concat(
    messages.map(({ type, body: data }) => {
      const head = Buffer.alloc(4);
      head.writeUInt8(type, 0);
      head.writeUInt16LE(data.length, 1);
      head.writeUInt8(0, 3); // message flags
      return Buffer.concat([head, data]);
    }),
  );
  const prefix = Buffer.alloc(10);
  prefix.write('OHDR', 0, 'latin1');
  prefix.writeUInt8(2, 4); // version
  prefix.writeUInt8(2, 5); // flags: chunk 0 size in 4 bytes
  prefix.writeUInt32LE(body.length, 6);
  const unchecked = Buffer.concat([prefix, body]);
  const checksum = Buffer.alloc(4);
  checksum.writeUInt32LE(lookup3(unchecked), 0);
  return Buffer.concat([unchecked, checksum]);
}

/** Link Info (type 2), version 0: no creation order, links stored compactly (no fractal heap, no name index). */
function linkInfoMessage(): Message {
  const body = Buffer.alloc(18);
  body.writeUInt8(0, 0);
  body.writeUInt8(0, 1);
  body.writeBigUInt64LE(UNDEFINED_ADDRESS, 2);
  body.writeBigUInt64LE(UNDEFINED_ADDRESS, 10);
  return { type: 2, body };
}

/** Group Info (type 10), version 0, default phase changes. */
function groupInfoMessage(): Message {
  return { type: 10, body: Buffer.from([0, 0]) };
}

/** Link (type 6), version 1: a hard link, name length in one byte, ASCII. */
function linkMessage(name: string, address: number): Message {
  const nameBytes = Buffer.from(name, 'latin1');
  if (nameBytes.length > 255) throw new Error(`link name too long: ${name}`);
  const body = Buffer.alloc(3 + nameBytes.length + 8);
  body.writeUInt8(1, 0); // version
  body.writeUInt8(0, 1); // flags: 1-byte name length, hard link, ASCII
  body.writeUInt8(nameBytes.length, 2);
  nameBytes.copy(body, 3);
  body.writeBigUInt64LE(BigInt(address), 3 + nameBytes.length);
  return { type: 6, body };
}

/** Attribute (type 12) version 3: ASCII name, a fixed-length null-padded string datatype, a scalar or 1-D dataspace. */
function attributeMessage(name: string, value: string | readonly string[]): Message {
  const strings = typeof value === 'string' ? [value] : value;
  const size = Math.max(1, ...strings.map((text) => Buffer.byteLength(text, 'latin1')));
  const nameBytes = Buffer.concat([Buffer.from(name, 'latin1'), Buffer.alloc(1)]);
  // Datatype version 1, class 3 (string): null-padded, ASCII.
  const datatype = Buffer.alloc(8);
  datatype.writeUInt8(0x13, 0);
  datatype.writeUInt8(0x01, 1);
  datatype.writeUInt32LE(size, 4);
  // Dataspace version 2: scalar (type 0) for one string, else simple 1-D.
  const dataspace = typeof value === 'string' ? Buffer.from([2, 0, 0, 0]) : Buffer.alloc(12);
  if (typeof value !== 'string') {
    dataspace.writeUInt8(2, 0);
    dataspace.writeUInt8(1, 1);
    dataspace.writeUInt8(1, 3);
    dataspace.writeBigUInt64LE(BigInt(strings.length), 4);
  }
  const data = Buffer.alloc(size * strings.length);
  strings.forEach((text, i) => data.write(text, i * size, 'latin1'));
  const head = Buffer.alloc(9);
  head.writeUInt8(3, 0); // version
  head.writeUInt8(0, 1); // flags
  head.writeUInt16LE(nameBytes.length, 2);
  head.writeUInt16LE(datatype.length, 4);
  head.writeUInt16LE(dataspace.length, 6);
  head.writeUInt8(0, 8); // name encoding: ASCII
  return { type: 12, body: Buffer.concat([head, nameBytes, datatype, dataspace, data]) };
}

function datasetMessages(dataset: Hdf5Float32, dataAddress: number): Message[] {
  // Dataspace (type 1) version 2: simple, no maximum dimensions.
  const dataspace = Buffer.alloc(4 + 8 * dataset.shape.length);
  dataspace.writeUInt8(2, 0);
  dataspace.writeUInt8(dataset.shape.length, 1);
  dataspace.writeUInt8(0, 2);
  dataspace.writeUInt8(1, 3);
  dataset.shape.forEach((dim, i) => dataspace.writeBigUInt64LE(BigInt(dim), 4 + 8 * i));
  // Datatype (type 3) version 1, class 1 (floating point): IEEE 754 binary32, little-endian.
  const datatype = Buffer.alloc(20);
  datatype.writeUInt8(0x11, 0);
  datatype.writeUInt8(0x20, 1); // little-endian, no padding, mantissa normalisation: implied most significant bit
  datatype.writeUInt8(31, 2); // sign bit position
  datatype.writeUInt8(0, 3);
  datatype.writeUInt32LE(4, 4); // size
  datatype.writeUInt16LE(0, 8); // bit offset
  datatype.writeUInt16LE(32, 10); // bit precision
  datatype.writeUInt8(23, 12); // exponent location
  datatype.writeUInt8(8, 13); // exponent size
  datatype.writeUInt8(0, 14); // mantissa location
  datatype.writeUInt8(23, 15); // mantissa size
  datatype.writeUInt32LE(127, 16); // exponent bias
  // Fill Value (type 5) version 3: early allocation, fill value never written, undefined.
  const fill = Buffer.from([3, 0x01 | (2 << 2)]);
  // Data Layout (type 8) version 3, contiguous.
  const layout = Buffer.alloc(18);
  layout.writeUInt8(3, 0);
  layout.writeUInt8(1, 1);
  layout.writeBigUInt64LE(BigInt(dataAddress), 2);
  layout.writeBigUInt64LE(BigInt(dataset.data.byteLength), 10);
  return [
    { type: 1, body: dataspace },
    { type: 3, body: datatype },
    { type: 5, body: fill },
    { type: 8, body: layout },
  ];
}

/** Bob Jenkins' lookup3 `hashlittle` with initial value 0, the HDF5 metadata checksum. */
export function lookup3(key: Uint8Array): number {
  let a = (0xdeadbeef + key.length) >>> 0;
  let b = a;
  let c = a;
  const rot = (x: number, k: number): number => ((x << k) | (x >>> (32 - k))) >>> 0;
  // Little-endian 32-bit words, zero past the end of the key.
  const word = (at: number): number => ((key[at] ?? 0) | ((key[at + 1] ?? 0) << 8) | ((key[at + 2] ?? 0) << 16) | ((key[at + 3] ?? 0) << 24)) >>> 0;
  let at = 0;
  let length = key.length;
  while (length > 12) {
    a = (a + word(at)) >>> 0;
    b = (b + word(at + 4)) >>> 0;
    c = (c + word(at + 8)) >>> 0;
    a = (a - c) >>> 0; a ^= rot(c, 4); c = (c + b) >>> 0;
    b = (b - a) >>> 0; b ^= rot(a, 6); a = (a + c) >>> 0;
    c = (c - b) >>> 0; c ^= rot(b, 8); b = (b + a) >>> 0;
    a = (a - c) >>> 0; a ^= rot(c, 16); c = (c + b) >>> 0;
    b = (b - a) >>> 0; b ^= rot(a, 19); a = (a + c) >>> 0;
    c = (c - b) >>> 0; c ^= rot(b, 4); b = (b + a) >>> 0;
    length -= 12;
    at += 12;
  }
  if (length === 0) return c >>> 0;
  // The last 1-12 bytes, zero-padded.
  a = (a + word(at)) >>> 0;
  b = (b + word(at + 4)) >>> 0;
  c = (c + word(at + 8)) >>> 0;
  c ^= b; c = (c - rot(b, 14)) >>> 0;
  a ^= c; a = (a - rot(c, 11)) >>> 0;
  b ^= a; b = (b - rot(a, 25)) >>> 0;
  c ^= b; c = (c - rot(b, 16)) >>> 0;
  a ^= c; a = (a - rot(c, 4)) >>> 0;
  b ^= a; b = (b - rot(a, 14)) >>> 0;
  c ^= b; c = (c - rot(b, 24)) >>> 0;
  return c >>> 0;
}
