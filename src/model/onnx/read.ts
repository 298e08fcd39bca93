/**
 * Reading an `.onnx` file from disk, with its external data. External data
 * files obey the rule camviz applies to TF.js weight files (../io.ts): the
 * `location` is relative to the model's folder and must stay inside it by
 * name, and a symbolic link is followed only to a regular file whose real
 * path is inside the model folder's real path. Only the bytes each tensor
 * declares are read, straight into its typed array, after checking that the
 * file holds them.
 */
import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { type FileHandle, realpath, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { CamvizError } from '../../util/errors.js';
import { isNotRegularFileCode, openRegularFile, readWholeFile } from '../../util/read-whole-file.js';
import { pathInside } from '../io.js';
import { recordedFingerprint, unchangedIdentity } from '../file-fingerprints.js';
import { onnxCacheDir } from '../onnx-writer/cache-limit.js';
import { MAX_PROTOBUF_BYTES, ONNX_MODEL_FILE, takeOnnxAhead } from './file.js';
import {
  allocateNumericData,
  bytesOf,
  type ExternalDataRef,
  littleEndianToHost,
  type NumericElementType,
  parseOnnxModelWithExternalData,
} from './parse.js';
import type { OnnxModel } from './types.js';

/** An ONNX file as read and parsed: the model, and the sha256 of the bytes parsed. */
export interface ReadOnnx {
  readonly model: OnnxModel;
  /** Hex sha256 of the .onnx file's bytes that were parsed (external data aside). */
  readonly sha256: string;
}

/** Reads and parses an `.onnx` file (or a folder's `model.onnx`) and the external data it refers to. */
export async function readOnnxFile(path: string): Promise<OnnxModel> {
  return (await readOnnxWithSha256(path)).model;
}

/**
 * As readOnnxFile, with the sha256 of the bytes parsed: the file is read
 * once (or taken as the command line read it ahead: file.ts), and its
 * identity is that of what was parsed, even if it changes on disk after.
 */
export async function readOnnxWithSha256(path: string): Promise<ReadOnnx> {
  const file = await resolveOnnxPath(path);
  const size = (await stat(file)).size;
  if (size > MAX_PROTOBUF_BYTES) {
    throw new CamvizError(`ONNX file is ${size} bytes, more than protobuf's 2 GiB limit`, { file });
  }
  const read =
    (await takeOnnxAhead(file)) ??
    (await readWholeFile(file, MAX_PROTOBUF_BYTES).catch((error: unknown) => {
      throw new CamvizError(`cannot read the ONNX file (${errorCode(error)})`, { file, cause: error });
    }));
  // Before the parse: it adopts the buffer (read for it alone), and moves weights within it.
  const sha256 = await sha256Of(file, read);
  const { model, external } = parseOnnxModelWithExternalData(read.bytes, file, { adoptBytes: true });
  if (external.length > 0) await readExternalData(external, file);
  return { model, sha256 };
}

/** What the recorded sha256 of an ONNX file depends on beyond the file (model/file-fingerprints.ts). */
const SHA256_OF_THE_FILE = { kind: 'sha256 of an ONNX file' } as const;

/**
 * The sha256 of the bytes read from `file`: recorded by the file's identity
 * (model/file-fingerprints.ts) as its stats were before the read, which a
 * later run that finds the file as it was takes instead of hashing it (25 ms
 * for MobileNet v1's 10 MB, on the main thread of a cold start). Hashed
 * when the file's identity after the read is not that (a write or a
 * rename meanwhile), and on a file system that may not keep change times.
 */
async function sha256Of(file: string, { bytes, stats }: { bytes: Buffer; stats: BigIntStats }): Promise<string> {
  const hash = (): string => createHash('sha256').update(bytes).digest('hex');
  const real = await realpath(file).catch(() => undefined);
  const identity = real === undefined ? undefined : await unchangedIdentity(real, stats);
  return recordedFingerprint(onnxCacheDir(), identity === undefined ? [] : [identity], SHA256_OF_THE_FILE, hash);
}

/** The `.onnx` file itself, or `model.onnx` inside a folder. */
async function resolveOnnxPath(path: string): Promise<string> {
  const absolute = resolve(path);
  const info = await stat(absolute).catch(() => undefined);
  if (info === undefined) throw new CamvizError('model not found', { file: path });
  // A device or a FIFO would be read without end.
  if (info.isFile()) return absolute;
  if (!info.isDirectory()) throw new CamvizError('model is not a regular file', { file: path });
  const candidate = join(absolute, ONNX_MODEL_FILE);
  if (!(await stat(candidate).catch(() => undefined))?.isFile()) {
    throw new CamvizError('model folder has no model.onnx', { file: path });
  }
  return candidate;
}

/** Fills each tensor's data from its file; tensors sharing a file read it through one handle. */
async function readExternalData(refs: ExternalDataRef[], modelFile: string): Promise<void> {
  const folder = dirname(modelFile);
  const realFolder = await realpath(folder);
  const byLocation = new Map<string, ExternalDataRef[]>();
  for (const ref of refs) {
    const group = byLocation.get(ref.location);
    if (group === undefined) byLocation.set(ref.location, [ref]);
    else group.push(ref);
  }
  for (const [location, group] of byLocation) {
    const first = group[0] as ExternalDataRef;
    const path = pathInside(folder, location);
    if (path === undefined) {
      throw new CamvizError(`${first.label} has external data at '${location}', outside the model folder: refused`, { file: modelFile });
    }
    const handle = await openConfined(path, realFolder);
    try {
      const size = (await handle.stat()).size;
      for (const ref of group) await readTensorBytes(handle, size, ref, path);
    } finally {
      await handle.close();
    }
  }
}

/** Opens `path` after checking that its real path is a regular file inside `realFolder`. */
async function openConfined(path: string, realFolder: string): Promise<FileHandle> {
  let real: string;
  try {
    real = await realpath(path);
  } catch (error) {
    const code = errorCode(error);
    throw new CamvizError(code === 'ENOENT' ? 'external data file missing' : `external data file unreadable (${code})`, { file: path });
  }
  // `relative` of a path outside the folder starts with '..' (or is absolute), which pathInside refuses.
  if (pathInside(realFolder, relative(realFolder, real)) === undefined) {
    throw new CamvizError(`external data file links outside the model folder (to ${real}): refused`, { file: path });
  }
  // The resolved path: a link swapped after the check is not followed again.
  // Opened without waiting for a FIFO's writer, and checked through the descriptor: a FIFO swapped in is refused, not waited on.
  const { handle } = await openRegularFile(real).catch((error: unknown) => {
    const code = errorCode(error);
    if (isNotRegularFileCode(code)) throw new CamvizError('external data file is not a regular file: refused', { file: path });
    throw new CamvizError(`external data file unreadable (${code})`, { file: path, cause: error });
  });
  return handle;
}

/**
 * Reads the bytes the tensor declares at its offset, after checking the file
 * holds them. A missing `length` entry means "the declared size": bytes after
 * it (another tensor's, in a shared file) are not read.
 */
async function readTensorBytes(handle: FileHandle, size: number, ref: ExternalDataRef, path: string): Promise<void> {
  const end = ref.offset + ref.byteLength;
  if (end > size) {
    throw new CamvizError(
      `external data file is too short for ${ref.label}: ${size} bytes, the tensor needs bytes ${ref.offset} to ${end}`,
      { file: path },
    );
  }
  const data = allocateNumericData(ref.tensor.type as NumericElementType, ref.count);
  const bytes = bytesOf(data);
  let filled = 0;
  while (filled < bytes.length) {
    const { bytesRead } = await handle.read(bytes, filled, bytes.length - filled, ref.offset + filled);
    if (bytesRead === 0) throw new CamvizError(`external data file ended while reading ${ref.label}`, { file: path });
    filled += bytesRead;
  }
  littleEndianToHost(data);
  ref.tensor.data = data;
}

function errorCode(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? (error as Error).message;
}
