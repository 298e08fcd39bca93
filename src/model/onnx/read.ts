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
import { printable } from '../../util/text.js';
import { isNotRegularFileCode, openRegularFile, readWholeFile } from '../../util/read-whole-file.js';
import { pathInside } from '../io.js';
import { type FileIdentity, identityOf } from '../../util/file-identity.js';
import { recordedFingerprint, unchangedIdentity } from '../file-fingerprints.js';
import { onnxCacheDir } from '../onnx-writer/cache-limit.js';
import { MAX_PROTOBUF_BYTES, ONNX_MODEL_FILE, takeOnnxAhead } from './file.js';
import {
  allocateNumericData,
  bytesOf,
  type ExternalDataRef,
  littleEndianToHost,
  type NumericElementType,
  type NumericTensorData,
  parseOnnxModelWithExternalData,
} from './parse.js';
import type { OnnxModel } from './types.js';

/** An ONNX file as read and parsed: the model, and the sha256 of the bytes parsed. */
export interface ReadOnnx {
  readonly model: OnnxModel;
  /** Hex sha256 of the .onnx file's bytes that were parsed (external data aside). */
  readonly sha256: string;
  /** Set when the model keeps tensors in external files. */
  readonly externalData?: OnnxExternalData;
}

/**
 * A model's external data as read: what ONNX Runtime, which reads those
 * files again itself, needs to find them, and to know it reads what camviz
 * read.
 */
export interface OnnxExternalData {
  /** The model file's folder, which the tensors' locations are relative to. */
  readonly folder: string;
  /** Hex sha256 of the .onnx file's bytes and of every external tensor's bytes as read: what the model computes with. */
  readonly fingerprint: string;
  /** Each external file read: the path ONNX Runtime opens (the model's folder and the location), and the identity of what camviz read there, taken through its descriptor before the read. */
  readonly files: readonly { readonly path: string; readonly identity: FileIdentity }[];
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
  const onnxIdentity = await settledIdentity(file, read.stats);
  const sha256 = await sha256Of(onnxIdentity, read.bytes);
  const { model, external } = parseOnnxModelWithExternalData(read.bytes, file, { adoptBytes: true });
  if (external.length === 0) return { model, sha256 };
  const files = await readExternalData(external, file);
  return { model, sha256, externalData: await externalDataOf(file, sha256, onnxIdentity, external, files) };
}

/** What the recorded sha256 of an ONNX file depends on beyond the file (model/file-fingerprints.ts). */
const SHA256_OF_THE_FILE = { kind: 'sha256 of an ONNX file' } as const;

/** What the recorded fingerprint of an ONNX file with external data depends on beyond the files. */
const SHA256_WITH_EXTERNAL_DATA = { kind: 'sha256 of an ONNX file and its external tensors' } as const;

/**
 * The identity of `file` as its stats were before the read, when its path
 * still names it unchanged after the read and its file system keeps change
 * times (model/file-fingerprints.ts); else undefined, and it is hashed.
 */
async function settledIdentity(file: string, statsBefore: BigIntStats): Promise<FileIdentity | undefined> {
  const real = await realpath(file).catch(() => undefined);
  return real === undefined ? undefined : unchangedIdentity(real, statsBefore);
}

/**
 * The sha256 of `bytes` read from the file of `identity`: recorded by that
 * identity, which a later run that finds the file as it was takes instead
 * of hashing it (25 ms for MobileNet v1's 10 MB, on the main thread of a
 * cold start). Hashed when the file has no identity (written or renamed
 * during the read, or on a file system that may not keep change times).
 */
async function sha256Of(identity: FileIdentity | undefined, bytes: Buffer): Promise<string> {
  const hash = (): string => createHash('sha256').update(bytes).digest('hex');
  return recordedFingerprint(onnxCacheDir(), identity === undefined ? [] : [identity], SHA256_OF_THE_FILE, hash);
}

/**
 * The model's external data as read, with the fingerprint of the weights it
 * computes with: the .onnx bytes' sha256 and each external tensor's place
 * and bytes, hashed, and recorded by the identities of the external files
 * and the .onnx file (an external file first: the .onnx file's own record
 * is keyed by its path), as the .onnx file's sha256 is.
 */
async function externalDataOf(file: string, sha256: string, onnxIdentity: FileIdentity | undefined, refs: readonly ExternalDataRef[], files: readonly ExternalFile[]): Promise<OnnxExternalData> {
  const hash = (): string => {
    const digest = createHash('sha256').update(sha256);
    for (const ref of refs) digest.update(`\u0000${ref.label}\u0000${ref.location}\u0000${ref.offset}\u0000${ref.byteLength}\u0000`).update(bytesOf(ref.tensor.data as NumericTensorData));
    return digest.digest('hex');
  };
  const unchanged = files.map((entry) => entry.unchanged);
  const identities = onnxIdentity !== undefined && unchanged.every((identity) => identity !== undefined) ? [...(unchanged as FileIdentity[]), onnxIdentity] : [];
  const fingerprint = await recordedFingerprint(onnxCacheDir(), identities, SHA256_WITH_EXTERNAL_DATA, hash);
  return { folder: dirname(file), fingerprint, files: files.map((entry) => ({ path: entry.path, identity: entry.read })) };
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

/** An external data file as read: its identity before the read, and the same once the read is over if nothing changed it meanwhile. */
interface ExternalFile {
  /** The path as the location names it. */
  readonly path: string;
  readonly read: FileIdentity;
  readonly unchanged: FileIdentity | undefined;
}

/** Fills each tensor's data from its file; tensors sharing a file read it through one handle. */
async function readExternalData(refs: ExternalDataRef[], modelFile: string): Promise<ExternalFile[]> {
  const files: ExternalFile[] = [];
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
    // ONNX Runtime reads a location as a C string, up to a NUL: 'w.bin\0../x' would be w.bin to it and x to camviz's checks.
    if (/[\u0000-\u001f\u007f]/.test(location)) {
      throw new CamvizError(`${first.label} has external data at a location with a control character ('${printable(location)}'): refused`, { file: modelFile });
    }
    const path = pathInside(folder, location);
    if (path === undefined) {
      throw new CamvizError(`${first.label} has external data at '${location}', outside the model folder: refused`, { file: modelFile });
    }
    const { handle, real, stats } = await openConfined(path, realFolder);
    try {
      for (const ref of group) await readTensorBytes(handle, Number(stats.size), ref, path);
    } finally {
      await handle.close();
    }
    files.push({ path, read: identityOf(real, stats), unchanged: await unchangedIdentity(real, stats) });
  }
  return files;
}

/** Opens `path` after checking that its real path is a regular file inside `realFolder`; with that real path and the file's stats through the descriptor. */
async function openConfined(path: string, realFolder: string): Promise<{ handle: FileHandle; real: string; stats: BigIntStats }> {
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
  const { handle, stats } = await openRegularFile(real).catch((error: unknown) => {
    const code = errorCode(error);
    if (isNotRegularFileCode(code)) throw new CamvizError('external data file is not a regular file: refused', { file: path });
    throw new CamvizError(`external data file unreadable (${code})`, { file: path, cause: error });
  });
  return { handle, real, stats };
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
