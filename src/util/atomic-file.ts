/**
 * Writing files so that a crash or a full disk never leaves a half-written
 * file under the final name. Free of sharp and tfjs: a folder run's main
 * thread writes the manifest with it.
 */
import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Writes `data` to `path` through a temporary file in the same folder
 * (`.<name>.<pid>.<random>.tmp`), flushed to disk before it is renamed over
 * `path`, so readers see either the old file or the complete new one. The
 * temporary file is removed on any failure.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let handle: FileHandle | undefined;
  let created = false;
  try {
    handle = await open(temp, 'wx');
    created = true;
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(temp, path);
  } catch (error) {
    await handle?.close().catch(() => undefined);
    // Only a file this call made: never one that was in the way of 'wx'.
    if (created) await rm(temp, { force: true }).catch(() => undefined);
    throw error;
  }
}
