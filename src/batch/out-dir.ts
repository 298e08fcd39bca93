/**
 * The output folder of a run, a merge or a compare: made when missing, and
 * checked to take a file, so that a folder that cannot be made or written
 * is one line naming it (not a raw "EEXIST: file already exists, mkdir")
 * before any work; and removed again, while empty, when the run fails
 * before writing anything.
 */
import { rm, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { CamvizError } from '../util/errors.js';
import { makeFolders } from '../util/make-folders.js';

/** Makes the output folder if needed and checks that a file can be written there; returns the first folder it made, if any. */
export async function ensureWritable(outDir: string): Promise<string | undefined> {
  const probe = join(outDir, `.camviz-write-test-${process.pid}`);
  try {
    const made = await makeFolders(outDir);
    await writeFile(probe, '');
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
