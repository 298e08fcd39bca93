/**
 * A regular file's bytes, read by one request to libuv's threads.
 *
 * `fs.promises.readFile` reads 512 KiB per request, and each next request
 * waits for the main thread to take the last one's callback. A read started
 * ahead of a load (util/reads-ahead.ts) while the command line loads its
 * modules, which hold the main thread for a few hundred milliseconds,
 * therefore made no progress until they were loaded: MobileNet v1's 10 MB
 * ONNX file came in 20 parts after them, its 55 weight files of the TF.js
 * model each after an open, a stat and a read, with the main thread idle
 * in between. Here the file is opened and checked at once, synchronously
 * (microseconds), and its bytes read by one request that goes on whatever
 * the main thread does.
 */
import { closeSync, close, constants, fstatSync, openSync, read } from 'node:fs';

/** The largest file read (Node's own limit for one buffer read by readFile). */
export const MAX_FILE_BYTES = 2 ** 31 - 1;

/**
 * Opens `path` now (not following it into a FIFO's wait: O_NONBLOCK) and
 * reads it whole. Rejects, as readFile does, with the system's error (its
 * `code`: ENOENT, EACCES...), and with code EINVAL for what is not a regular
 * file and ERR_FS_FILE_TOO_LARGE for one over `maxBytes`. The bytes are those
 * up to the size at open: a file that grows meanwhile is read to that size.
 */
export function readWholeFile(path: string, maxBytes = MAX_FILE_BYTES): Promise<Buffer> {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    return Promise.reject(error as Error);
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) throw codedError('EINVAL', `not a regular file: ${path}`);
    if (stats.size > Math.min(maxBytes, MAX_FILE_BYTES)) throw codedError('ERR_FS_FILE_TOO_LARGE', `${path} is ${stats.size} bytes, more than the ${maxBytes} read`);
    return readOpened(fd, stats.size);
  } catch (error) {
    closeSync(fd);
    return Promise.reject(error as Error);
  }
}

/** Reads `size` bytes of the open file `fd` from its start, then closes it. */
function readOpened(fd: number, size: number): Promise<Buffer> {
  const bytes = Buffer.allocUnsafe(size);
  return new Promise<Buffer>((resolve, reject) => {
    const finish = (error: Error | null, filled: number): void => {
      close(fd, () => undefined);
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
