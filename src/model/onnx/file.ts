/**
 * The `.onnx` file a local `--model` names, and its bytes read ahead of the
 * load. Light on purpose (node's fs and path only): the command line
 * imports it before the command's modules load, and the model loader
 * before it knows it needs the ONNX importer (its op library and tfjs).
 */
import { type BigIntStats, type Stats, closeSync, constants, openSync, readSync, statSync } from 'node:fs';
import { ReadsAhead } from '../../util/reads-ahead.js';
import { readWholeFile } from '../../util/read-whole-file.js';
import { basename, dirname, extname, join, resolve } from 'node:path';

/** The file name a model folder holds its ONNX graph under. */
export const ONNX_MODEL_FILE = 'model.onnx';

/** Protobuf messages cannot exceed 2 GiB; bigger models keep their weights in external data. */
export const MAX_PROTOBUF_BYTES = 2 ** 31 - 1;

/**
 * Whether a file holds an ONNX ModelProto rather than a model.json: its
 * name ends in `.onnx`, or its first byte is 0x08, the tag of ir_version
 * (field 1, a varint), which protobuf writers put first and no JSON text
 * starts with.
 */
export function isOnnxFile(path: string): boolean {
  if (extname(path).toLowerCase() === '.onnx') return true;
  let fd: number | undefined;
  try {
    // O_NONBLOCK: a FIFO is not waited on (it has no first byte to read then).
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    const first = Buffer.alloc(1);
    return readSync(fd, first, 0, 1, 0) === 1 && first[0] === 0x08;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * The .onnx file (absolute) a local `--model` value names, or undefined when
 * it is not an ONNX model. Synchronous (a few stats): a read ahead finds the
 * file and starts its read within one call (see util/read-whole-file.ts).
 */
export function localOnnxPath(spec: string): string | undefined {
  const path = resolve(spec);
  const info = statOrUndefined(path);
  if (info === undefined) return undefined;
  if (info.isDirectory()) {
    const inside = join(path, ONNX_MODEL_FILE);
    const hasJson = statOrUndefined(join(path, 'model.json'))?.isFile() === true;
    return !hasJson && statOrUndefined(inside)?.isFile() === true ? inside : undefined;
  }
  return info.isFile() && isOnnxFile(path) ? path : undefined;
}

/** The path's stats, or undefined for any failure (missing, ENOTDIR, ELOOP, EACCES...): the TF.js loader then says what is wrong. */
function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

/** Whether a URL names a .onnx file (query and fragment aside). */
export function isOnnxUrl(spec: string): boolean {
  if (!/^https?:\/\//i.test(spec)) return false;
  try {
    return new URL(spec).pathname.toLowerCase().endsWith('.onnx');
  } catch {
    return false;
  }
}

/** A file read ahead: the .onnx file a spec named, its bytes, and its stats taken before they were read. */
interface AheadRead {
  readonly file: string;
  readonly bytes: Buffer;
  readonly stats: BigIntStats;
}

/**
 * ONNX files being read ahead of their load, by the absolute path of the
 * spec given (the file, or its folder), registered at once so that a load
 * that starts early still finds the read. Each is taken once, by the first
 * read of that file (read.ts).
 */
const readsAhead = new ReadsAhead<AheadRead>();

/**
 * Starts reading the ONNX file `spec` names (a .onnx file, or a folder with
 * model.onnx), if it names one, for a later load of it: the command line
 * calls it before the command's modules load, which hold the main thread
 * about 0.4 s while the file (10 MB for MobileNet v1, and its page faults)
 * is read on libuv's threads. Only a regular file the load would read is
 * read; its external data are left to the load (they are known once the
 * graph is parsed). A read that fails is made again, and reported, by the
 * load. The promise settles (never rejects) when the read ends.
 */
export function readOnnxAhead(spec: string): Promise<void> {
  const key = resolve(spec);
  return readsAhead.start(key, () => readNow(key));
}

/** Starts the read within the call: nothing awaited before it (see util/read-whole-file.ts). */
function readNow(path: string): Promise<AheadRead | undefined> {
  const file = localOnnxPath(path);
  if (file === undefined) return Promise.resolve(undefined);
  // What the load would refuse before reading it (read.ts: not a regular file, too large) is not read.
  return readWholeFile(file, MAX_PROTOBUF_BYTES).then((read) => ({ file, ...read }));
}

/**
 * The bytes of the ONNX file `file` (absolute) read ahead, and its stats
 * before the read, taken once: undefined when none were read, the read
 * failed or named another file.
 */
export async function takeOnnxAhead(file: string): Promise<{ bytes: Buffer; stats: BigIntStats } | undefined> {
  const keys = basename(file) === ONNX_MODEL_FILE ? [file, dirname(file)] : [file];
  for (const key of keys) {
    const read = await readsAhead.take(key);
    if (read?.file === file) return { bytes: read.bytes, stats: read.stats };
  }
  return undefined;
}
