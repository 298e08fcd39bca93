/**
 * A regular file's bytes, read by one request to libuv's threads.
 *
 * `fs.promises.readFile` reads 512 KiB per request, and each next request
 * waits for the main thread to take the last one's callback. A read started
 * ahead of a load (util/reads-ahead.ts) while the command line loads its
 * modules, which hold the main thread for a few hundred milliseconds,
 * therefore made no progress until they were loaded: MobileNet v1's 10 MB
 * ONNX file came in 20 parts after them, with the main thread idle in
 * between. Here the file is opened and checked at once, synchronously
 * (microseconds), and its bytes read by one request that goes on whatever
 * the main thread does (readWholeFile); readRegularFile opens it
 * asynchronously, for reads that must wait for the main thread, and
 * openRegularFile opens and checks one for a caller that reads it itself.
 */
import { type BigIntStats, type Stats, closeSync, close, constants, fstatSync, openSync, read, readSync, statSync } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import { fileClosed, retryWhileOutOfDescriptors } from './fd-retry.js';

/** The largest file read (Node's own limit for one buffer read by readFile). */
export const MAX_FILE_BYTES = 2 ** 31 - 1;

/**
 * Opens `path` now (not following it into a FIFO's wait: O_NONBLOCK) and
 * reads it whole. Rejects, as readFile does, with the system's error (its
 * `code`: ENOENT, EACCES...), and with code EISDIR for a folder, EINVAL for
 * anything else that is not a regular file and ERR_FS_FILE_TOO_LARGE for
 * one over `maxBytes`. The bytes are those
 * up to the size at open: a file that grows meanwhile is read to that size.
 * The stats returned were taken through the descriptor before the read.
 */
export function readWholeFile(path: string, maxBytes = MAX_FILE_BYTES): Promise<{ bytes: Buffer; stats: BigIntStats }> {
  let opened: { fd: number; stats: BigIntStats };
  try {
    opened = openRegularFileSync(path);
  } catch (error) {
    return Promise.reject(error as Error);
  }
  try {
    const { stats } = opened;
    return readOpened(opened.fd, checkedSize(stats, path, maxBytes)).then((bytes) => ({ bytes, stats }));
  } catch (error) {
    closeSync(opened.fd);
    return Promise.reject(error as Error);
  }
}

/** As openRegularFile, synchronously: the file's descriptor (the caller closes it) and its stats; throws what openRegularFile rejects with. */
export function openRegularFileSync(path: string): { fd: number; stats: BigIntStats } {
  const before = statSync(path);
  if (!before.isFile()) throw notRegular(before, path);
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const stats = fstatSync(fd, { bigint: true });
    if (!stats.isFile()) throw notRegular(stats, path);
    return { fd, stats };
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

/** A regular file opened for reading, and its stats taken through the descriptor. */
export interface OpenRegularFile {
  readonly handle: FileHandle;
  readonly stats: BigIntStats;
}

/**
 * Opens `path` for reading without waiting for a FIFO's writer (O_NONBLOCK)
 * and checks through the descriptor that it is a regular file: what is
 * checked is what is read, even if the path is swapped meanwhile, where a
 * stat before the open alone would let a FIFO swapped in after it hang the
 * open. The stat before is kept as well: what is plainly no regular file
 * is refused without being opened (opening a FIFO releases a writer
 * waiting on it, and some devices act when opened). Rejects with the
 * system's error (its `code`), EISDIR for a folder and EINVAL for anything
 * else that is not a regular file. An open that finds no descriptor free
 * (EMFILE, ENFILE) is tried again once other files close (fd-retry.ts). The
 * caller closes the handle, and says so (closeFile).
 */
export async function openRegularFile(path: string): Promise<OpenRegularFile> {
  const before = await stat(path);
  if (!before.isFile()) throw notRegular(before, path);
  const handle = await retryWhileOutOfDescriptors(() => open(path, constants.O_RDONLY | constants.O_NONBLOCK));
  try {
    const stats = await handle.stat({ bigint: true });
    if (!stats.isFile()) throw notRegular(stats, path);
    return { handle, stats };
  } catch (error) {
    await closeFile(handle);
    throw error;
  }
}

/** Closes `handle` and wakes the opens waiting for a free descriptor (fd-retry.ts). */
export async function closeFile(handle: FileHandle): Promise<void> {
  try {
    await handle.close();
  } finally {
    fileClosed();
  }
}

/**
 * As readWholeFile, but opened and checked asynchronously (openRegularFile):
 * the read starts once the main thread takes the open's callback, and the
 * stats returned were taken through the descriptor before the bytes were
 * read. For reads that must not run beside the main thread's work: a TF.js
 * model's model.json, read ahead while the command's modules load
 * (src/model/io.ts; opened at once, its weight files were then looked up
 * and read beside the module loading, which they slowed: 1.03x the wall
 * time of a MobileNet run, interleaved), and files named by the user.
 */
export async function readRegularFile(path: string, maxBytes = MAX_FILE_BYTES): Promise<{ bytes: Buffer; stats: BigIntStats }> {
  const { handle, stats } = await openRegularFile(path);
  try {
    return { bytes: await readFromStart(handle, checkedSize(stats, path, maxBytes)), stats };
  } finally {
    await closeFile(handle);
  }
}

/**
 * The first `length` bytes (fewer when it is shorter) of the regular file
 * at `path`, opened as openRegularFile opens it; undefined when it cannot
 * be (missing, not a regular file, unreadable). For a header's look
 * (a PNG's size, a page's generator tag).
 */
export async function readStartOfRegularFile(path: string, length: number): Promise<Buffer | undefined> {
  const opened = await openRegularFile(path).catch(() => undefined);
  if (opened === undefined) return undefined;
  try {
    return await readFromStart(opened.handle, length);
  } finally {
    await closeFile(opened.handle);
  }
}

/**
 * The first `length` bytes of the open file (fewer if it is shorter now),
 * read in requests of at most MAX_FILE_BYTES: Node 20's FileHandle.read
 * aborts the process on a longer one (a native assertion, not an error).
 */
export async function readFromStart(handle: FileHandle, length: number): Promise<Buffer> {
  const bytes = Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await handle.read(bytes, filled, Math.min(length - filled, MAX_FILE_BYTES), filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled === length ? bytes : bytes.subarray(0, filled);
}

/**
 * A regular file's bytes, read synchronously up to its size at open;
 * undefined when it is missing or unreadable, not a regular file (a device
 * or a FIFO, which may never end: a cache entry replaced by a link to
 * /dev/zero must not be read for ever) or larger than `maxBytes`. For
 * caches and notes, whose problems only cost a miss.
 */
export function readRegularFileSync(path: string, maxBytes: number): Buffer | undefined {
  return withRegularFileSync(path, (fd, size) => {
    if (size > Math.min(maxBytes, MAX_FILE_BYTES)) return undefined;
    const bytes = Buffer.allocUnsafe(size);
    // Up to the size at open: a file that grows meanwhile is read to that size.
    return bytes.subarray(0, readSyncFromStart(fd, bytes, size));
  });
}

/**
 * What `use` makes of the regular file at `path`, opened synchronously
 * (without waiting for a FIFO's writer) and given with its size at open;
 * undefined when it is missing, unreadable or not a regular file, or when
 * `use` throws. The file is closed after.
 */
export function withRegularFileSync<T>(path: string, use: (fd: number, size: number) => T | undefined): T | undefined {
  let opened: { fd: number; stats: BigIntStats };
  try {
    opened = openRegularFileSync(path);
  } catch {
    return undefined;
  }
  try {
    return use(opened.fd, Number(opened.stats.size));
  } catch {
    return undefined;
  } finally {
    closeSync(opened.fd);
  }
}

/**
 * As readFromStart, synchronously, into `bytes`: the count of the first
 * `length` bytes of the open file read (fewer if it is shorter now).
 */
export function readSyncFromStart(fd: number, bytes: Uint8Array, length: number): number {
  let filled = 0;
  while (filled < length) {
    const read = readSync(fd, bytes, filled, Math.min(length - filled, MAX_FILE_BYTES), filled);
    if (read === 0) break;
    filled += read;
  }
  return filled;
}

/** The size to read of a regular file (its opener checked that) whose stats are `stats`; one over `maxBytes` throws as readFile does (ERR_FS_FILE_TOO_LARGE). */
function checkedSize(stats: Stats | BigIntStats, path: string, maxBytes: number): number {
  const size = Number(stats.size);
  if (size > Math.min(maxBytes, MAX_FILE_BYTES)) throw codedError('ERR_FS_FILE_TOO_LARGE', `${path} is ${size} bytes, more than the ${maxBytes} read`);
  return size;
}

/** Whether `code` is one of this module's refusals of what is not a regular file (a folder, a FIFO, a device). */
export function isNotRegularFileCode(code: string | undefined): boolean {
  return code === 'EISDIR' || code === 'EINVAL';
}

/** The error for what is not a regular file: EISDIR for a folder (as reading one fails), EINVAL otherwise. */
function notRegular(stats: Stats | BigIntStats, path: string): NodeJS.ErrnoException {
  return stats.isDirectory() ? codedError('EISDIR', `is a directory: ${path}`) : codedError('EINVAL', `not a regular file: ${path}`);
}

/** Reads `size` bytes of the open file `fd` from its start, then closes it. */
function readOpened(fd: number, size: number): Promise<Buffer> {
  const bytes = Buffer.allocUnsafe(size);
  return new Promise<Buffer>((resolve, reject) => {
    const finish = (error: Error | null, filled: number): void => {
      close(fd, fileClosed);
      if (error === null) resolve(filled === size ? bytes : bytes.subarray(0, filled));
      else reject(error);
    };
    // One request reads all of a regular file; a short read (a file cut meanwhile) asks for the rest.
    const readFrom = (filled: number): void => {
      if (filled === size) return finish(null, filled);
      read(fd, bytes, filled, size - filled, filled, (error, count) => {
        if (error !== null) finish(error, filled);
        else if (count === 0) finish(null, filled);
        else readFrom(filled + count);
      });
    };
    readFrom(0);
  });
}

function codedError(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}
