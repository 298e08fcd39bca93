/**
 * The output folder of a run, a merge or a compare: made when missing, and
 * checked to take a file, so that a folder that cannot be made or written
 * is one line naming it (not a raw "EEXIST: file already exists, mkdir")
 * before any work; and removed again, while empty, when the run fails
 * before writing anything.
 */
import { lstat, rm, rmdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { temporaryName } from '../util/atomic-file.js';
import { CamvizError } from '../util/errors.js';
import { makeFolders } from '../util/make-folders.js';

/** Makes the output folder if needed and checks that a file can be written there; returns the first folder it made, if any. */
export async function ensureWritable(outDir: string): Promise<string | undefined> {
  // A temporary file's name: one a run killed while probing leaves is swept by the next (lock.ts' removeStaleTemporaries).
  const probe = temporaryName(join(outDir, 'camviz-write-test'));
  try {
    const made = await makeFolders(outDir);
    await writeFile(probe, '', { flag: 'wx' });
    await rm(probe, { force: true });
    return made;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new CamvizError(`output folder is not writable (${code ?? (error as Error).message})`, { file: outDir });
  }
}

/** Removes `folder`, then its parents up to `top`, each only while it is empty (a folder a run made, and nothing was written in). */
export async function removeEmptyFolders(folder: string, top: string): Promise<void> {
  const last = resolve(top);
  for (let current = resolve(folder); ; current = dirname(current)) {
    if (!(await rmdir(current).then(() => true, () => false))) return;
    if (current === last || dirname(current) === current) return;
  }
}

/**
 * Whether the file system of `folder` (an existing folder) takes names that
 * differ in case alone for one file, as macOS' and Windows' do by default:
 * a probe file named in lower case is looked up in upper case. One probe a
 * run: the outputs ledger's look-ups then compare names as the folder
 * does. (A file of the upper-case name that is another file says the
 * file system tells them apart.) When the probe cannot tell (a folder that
 * cannot be written or looked into), folding is assumed, the safe side: a
 * name an older camviz recorded alone then vouches for fewer files.
 */
export async function foldsCaseIn(folder: string): Promise<boolean> {
  // A temporary file's name (lower case already): one a run killed while probing leaves is swept by the next (lock.ts' removeStaleTemporaries).
  const lower = temporaryName(join(folder, 'camviz-case-probe'));
  const upper = join(folder, basename(lower).toUpperCase());
  try {
    await writeFile(lower, '', { flag: 'wx' });
  } catch {
    return true;
  }
  try {
    const [mine, looked] = await Promise.all([lstat(lower), lstat(upper).catch((error: NodeJS.ErrnoException) => error)]);
    if (looked instanceof Error) return (looked as NodeJS.ErrnoException).code !== 'ENOENT';
    return looked.ino === mine.ino && looked.dev === mine.dev;
  } finally {
    await rm(lower, { force: true });
  }
}
