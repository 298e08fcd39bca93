/**
 * `.camviz-outputs`: every file camviz has written in an output folder, one
 * JSON string (its path inside the folder, with `/`) a line, under a
 * header line. A run may replace a file only if camviz wrote it: the
 * manifest lists the last run's outputs only, so a map of an earlier run
 * with other options (`--class 3`, then `--class 5`, then `--class 3`
 * again), or one written after a killed run's last manifest, would pass
 * for a user's file. Each new output's name is added before the output
 * appears (the append is one small O_APPEND write, whole even when worker
 * threads append at once). A folder run reads it back, and the input walk
 * knows a camviz output folder by it (batch/own-outputs.ts).
 */
import { constants } from 'node:fs';
import { type FileHandle, lstat, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WriteError, ioReason } from './atomic-file.js';
import { fileClosed, retryWhileOutOfDescriptors } from './fd-retry.js';

export const LEDGER_NAME = '.camviz-outputs';
const LEDGER_HEADER = '# camviz: files camviz wrote in this folder, one JSON string a line';

/** The files a ledger's text lists; undefined when it is not a ledger (its first line is not the header). A torn last line is skipped. */
export function parseLedger(text: string): Set<string> | undefined {
  const [header, ...lines] = text.split('\n');
  if (header !== LEDGER_HEADER) return undefined;
  const files = new Set<string>();
  for (const line of lines) {
    const name = parsedName(line);
    if (name !== undefined) files.add(name);
  }
  return files;
}

function parsedName(line: string): string | undefined {
  if (line === '') return undefined;
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * How the ledger is opened to append: never through a link (O_NOFOLLOW: a
 * ledger swapped for a link to a file elsewhere fails, ELOOP), nor waiting
 * for a FIFO's reader (O_NONBLOCK: a FIFO swapped in fails, ENXIO; a
 * regular file's writes ignore the flag).
 */
const APPEND_FLAGS = constants.O_WRONLY | constants.O_APPEND | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** Makes the folder's ledger (its header alone) unless one exists; returns whether it made it. */
export async function createLedger(folder: string): Promise<boolean> {
  try {
    await writeFile(join(folder, LEDGER_NAME), `${LEDGER_HEADER}\n`, { flag: 'wx' });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

/**
 * Adds `name` (a path inside `folder`, with `/`) to the folder's ledger.
 * A ledger that is gone (removed during the run) is not made again without
 * its header: the name then stays unrecorded, and a later run refuses to
 * replace that file, the safe side. Other failures are thrown.
 */
export async function addToLedger(folder: string, name: string): Promise<void> {
  const path = join(folder, LEDGER_NAME);
  let handle: FileHandle;
  try {
    handle = await retryWhileOutOfDescriptors(() => open(path, APPEND_FLAGS));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new WriteError(ioReason(error), path, error);
  }
  try {
    // Checked through the descriptor: what is appended to is what was checked.
    if (!(await handle.stat()).isFile()) throw new Error('not a regular file');
    await handle.write(`${JSON.stringify(name)}\n`);
  } catch (error) {
    throw new WriteError(ioReason(error), path, error);
  } finally {
    await handle.close().finally(fileClosed);
  }
}

/**
 * Whether something is at `path` (the entry itself: a link counts, wherever
 * it leads), which an output camviz did not write there must not replace.
 * A path that cannot be looked at (ENOENT: free; ENOTDIR, a file where its
 * folder goes) is not in the way here: the write reports it.
 */
export async function isTaken(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}
