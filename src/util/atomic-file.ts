/**
 * Writing files so that a crash or a full disk never leaves a half-written
 * file under the final name. Free of sharp and tfjs: a folder run's main
 * thread writes the manifest with it.
 */
import { randomBytes } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { type FileHandle, link, open, rename, rm, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { CamvizError } from './errors.js';
import { fileClosed, retryWhileOutOfDescriptors } from './fd-retry.js';
import { oneLine } from './text.js';

/** What a failed write is reported as: the problem and the file it was writing. */
export class WriteError extends CamvizError {
  /** The file-system error's code (`ENOSPC`...), as on the error it replaces, for callers that test it. */
  readonly code: string | undefined;

  constructor(
    /** The cause in words, e.g. `no space left on device (ENOSPC)`. */
    readonly reason: string,
    file: string,
    cause: unknown,
  ) {
    super(`cannot write: ${reason}`, { file, cause });
    this.name = 'WriteError';
    this.code = (cause as NodeJS.ErrnoException | undefined)?.code;
  }
}

/** The usual causes of a failed write, in words; the code stays for searching. */
const REASONS: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EISDIR: 'a folder is in the way',
  ENOTDIR: 'a file is in the way of a folder',
  EIO: 'input/output error',
  EFBIG: 'file too large',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files in the system',
  ELOOP: 'a symbolic link is in the way',
  ENXIO: 'a FIFO or device is in the way',
  EEXIST: 'a file appeared at this name while it was written',
};

/** A file-system error as `<words> (<CODE>)`, else its first line. */
export function ioReason(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code !== undefined && REASONS[code] !== undefined) return `${REASONS[code]} (${code})`;
  if (code !== undefined) return code;
  return oneLine(error instanceof Error ? error.message : String(error));
}

/** The temporary name of a file being written: `.<name>.<pid>.<12 hex>.tmp` in the same folder. */
export function temporaryName(path: string): string {
  const suffix = `.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  // The name it stands for is cut to fit a file name (an output of a 230-byte stem still fits; its temporary did not: ENAMETOOLONG).
  return join(dirname(path), `.${headOfBytes(basename(path), NAME_MAX_BYTES - 1 - suffix.length)}${suffix}`);
}

/** The longest file name (bytes) of the usual file systems (ext4, xfs, btrfs, APFS, NTFS in UTF-16 units). */
const NAME_MAX_BYTES = 255;

/** The longest start of `text` of at most `maxBytes` UTF-8 bytes, whole characters only. */
function headOfBytes(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  let head = '';
  let bytes = 0;
  for (const char of text) {
    bytes += Buffer.byteLength(char);
    if (bytes > maxBytes) break;
    head += char;
  }
  return head;
}

/** A temporary name's parts (see temporaryName): the name it is renamed to and its writer's process id; undefined for other names. */
export function parseTemporaryName(name: string): { target: string; pid: number } | undefined {
  const match = /^\.(.+)\.(\d+)\.[0-9a-f]{12}\.tmp$/.exec(name);
  return match === null ? undefined : { target: match[1]!, pid: Number(match[2]) };
}

/** The writing process's id in a temporary name (see temporaryName); undefined for other names. */
export function temporaryOwner(name: string): number | undefined {
  return parseTemporaryName(name)?.pid;
}

/** Whether a process with this PID exists on this host (signal 0 checks without sending): is a temporary's writer still running? */
export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, under another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** How writeFileAtomic writes. */
export interface AtomicWriteOptions {
  /**
   * Flush the file to disk before the rename (default true), so that it
   * survives a power cut once the call returns. The rename alone already
   * guarantees that no reader, and no crash of camviz, ever sees a partial
   * file; only a power cut (or a kernel crash) in the seconds after the
   * write can leave the file empty or missing. Per-image outputs (PNG, npy)
   * turn it off: they are derived data that a rerun rewrites, as every
   * image tool writes them (cv2.imwrite, PIL, sharp's toFile), and the flush
   * cost a journal commit per image.
   */
  durable?: boolean;
  /**
   * Called with the written file's stats (through its descriptor) before it
   * is renamed (or linked: noReplace) into place; the file does not appear if it throws. The
   * outputs ledger records the file there (util/outputs-ledger.ts): a
   * rename keeps the file's device, inode, size and modification time.
   */
  beforeRename?: (stats: BigIntStats) => Promise<void>;
  /**
   * Put the file in place only if nothing is at `path` then (default
   * false: replace what is there). For an output that was not there when
   * its caller looked: a file that appeared since (a user's copy landing
   * at that name) must not be replaced, and the write fails with a
   * WriteError of code EEXIST instead. See publishWithoutReplacing.
   */
  noReplace?: boolean;
}

/**
 * What link() fails with on a file system that makes no hard links (vfat,
 * some FUSE and network ones) or will not make this one: there the file is
 * renamed into place as before, and a file that appeared at its name in
 * the meantime is replaced (the window this closes elsewhere).
 */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'ENOSYS']);

/**
 * Puts the written `temp` at `path` unless a file is there: link() fails
 * with EEXIST rather than replace one (rename() replaces it, and Node has
 * no renameat2 RENAME_NOREPLACE), then the temporary name is removed. A
 * temporary name left by a crash between the two is the same file under a
 * name the next run's sweep removes (its writer is gone). `makeLink` is
 * link(), injected by tests as a file system without hard links.
 */
export async function publishWithoutReplacing(temp: string, path: string, makeLink: (from: string, to: string) => Promise<void> = link): Promise<void> {
  try {
    await makeLink(temp, path);
  } catch (error) {
    if (!NO_HARD_LINKS.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
    await rename(temp, path);
    return;
  }
  // The file is in place: a temporary name that cannot be removed now is the sweep's to remove, not a failed write.
  await unlink(temp).catch(() => undefined);
}

/**
 * Writes `data` to `path` through a temporary file in the same folder
 * (`.<name>.<pid>.<random>.tmp`), flushed to disk (unless `durable` is
 * false) before it is renamed over `path`, so readers see either the old
 * file or the complete new one (with `noReplace`, put there only if no
 * file is: publishWithoutReplacing). The temporary file is removed on any
 * failure, which is a WriteError naming `path` (a full disk must say which
 * file it could not write). An open that finds no descriptor free (EMFILE,
 * ENFILE) is tried again once other files close (fd-retry.ts).
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string, options: AtomicWriteOptions = {}): Promise<void> {
  const temp = temporaryName(path);
  let handle: FileHandle | undefined;
  let created = false;
  try {
    handle = await retryWhileOutOfDescriptors(() => open(temp, 'wx'));
    created = true;
    await handle.writeFile(data);
    if (options.durable !== false) await handle.sync();
    const stats = options.beforeRename === undefined ? undefined : await handle.stat({ bigint: true });
    const written = handle;
    handle = undefined;
    await written.close().finally(fileClosed);
    if (stats !== undefined) await options.beforeRename?.(stats);
    await (options.noReplace === true ? publishWithoutReplacing(temp, path) : rename(temp, path));
  } catch (error) {
    await handle?.close().then(fileClosed, () => undefined);
    // Only a file this call made: never one that was in the way of 'wx'.
    if (created) await rm(temp, { force: true }).catch(() => undefined);
    // The hook's own one-line error (a ledger that cannot be appended to names the ledger) stays as it is.
    if (error instanceof CamvizError) throw error;
    throw new WriteError(ioReason(error), path, error);
  }
}
