/**
 * The seal after a saved optimised graph (engine/onnxruntime.ts): ONNX
 * Runtime loads any flatbuffer it can parse, so a saved graph with a byte
 * changed on disk, or another model's graph under this one's name, made
 * sessions that ran and gave wrong scores on every later run. camviz
 * appends a seal when it saves the graph, and loads only a file whose
 * seal holds:
 *
 *   magic (8 bytes) | the graph's length (u64) | its CRC-32 (u32) | 0 (u32) | the name's hash (32 ASCII hex)
 *
 * little-endian, after the graph's bytes. The name's hash is the one in
 * the file's name (the model, its outputs, ONNX Runtime's version and the
 * CPU), so a graph copied under another name does not pass; the CRC-32
 * (zlib's, about 2 ms for MobileNet v1's 10 MB) tells a changed byte; the
 * length a file cut or grown. The seal is read first, on its own, so that
 * a file without one is refused without reading it whole (a 2 GB file
 * there cost 10 s). ONNX Runtime is given the graph's bytes alone.
 */
import { readSync } from 'node:fs';
import { crc32 } from '../util/crc32.js';
import { withRegularFileSync } from '../util/read-whole-file.js';

const MAGIC = Buffer.from('CVZSEAL\u0001', 'latin1');
const HASH_CHARS = 32;

/** The seal's size in bytes. */
export const SEAL_BYTES = MAGIC.length + 8 + 4 + 4 + HASH_CHARS;

/** The seal of the graph `graph` saved under the name hash `nameHash` (32 hex characters). */
export function sealOf(graph: Uint8Array, nameHash: string): Buffer {
  const seal = Buffer.alloc(SEAL_BYTES);
  MAGIC.copy(seal, 0);
  seal.writeBigUInt64LE(BigInt(graph.length), MAGIC.length);
  seal.writeUInt32LE(crc32(graph), MAGIC.length + 8);
  seal.write(checkedHash(nameHash), MAGIC.length + 16, 'latin1');
  return seal;
}

/** The graph's bytes in `file` (a view), when its seal holds for `nameHash`; undefined otherwise. */
export function sealedGraph(file: Uint8Array, nameHash: string): Uint8Array | undefined {
  if (file.length < SEAL_BYTES) return undefined;
  const seal = Buffer.from(file.buffer, file.byteOffset + file.length - SEAL_BYTES, SEAL_BYTES);
  const length = sealedLength(seal, nameHash, file.length);
  if (length === undefined) return undefined;
  const graph = file.subarray(0, length);
  return crc32(graph) === seal.readUInt32LE(MAGIC.length + 8) ? graph : undefined;
}

/**
 * Whether the file at `path` ends in a seal for `nameHash` that fits its
 * size: read alone, so that a file without one is refused unread. Its CRC
 * is checked once the file is read (sealedGraph).
 */
export function hasSeal(path: string, nameHash: string): boolean {
  return (
    withRegularFileSync(path, (fd, size) => {
      if (size < SEAL_BYTES) return false;
      const seal = Buffer.alloc(SEAL_BYTES);
      return readSync(fd, seal, 0, SEAL_BYTES, size - SEAL_BYTES) === SEAL_BYTES && sealedLength(seal, nameHash, size) !== undefined;
    }) ?? false
  );
}

/** The graph's length the seal states, when its magic and name hash are right and the length fits a file of `fileSize` bytes. */
function sealedLength(seal: Buffer, nameHash: string, fileSize: number): number | undefined {
  if (!seal.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  if (seal.toString('latin1', MAGIC.length + 16, SEAL_BYTES) !== checkedHash(nameHash)) return undefined;
  const length = seal.readBigUInt64LE(MAGIC.length);
  return length === BigInt(fileSize - SEAL_BYTES) ? Number(length) : undefined;
}

function checkedHash(nameHash: string): string {
  if (!new RegExp(`^[0-9a-f]{${HASH_CHARS}}$`).test(nameHash)) throw new Error(`a saved graph's name hash is ${HASH_CHARS} hex characters, not '${nameHash}'`);
  return nameHash;
}
