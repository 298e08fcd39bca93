/**
 * One run at a time in an output folder. Two runs writing into the same
 * --out would each write a manifest of their own records over the other's:
 * one run's records would be lost without a word. A lock file names the
 * run holding the folder (PID and host); a lock whose process is gone (a
 * `kill -9`, a crash) is taken over with a note. The same start-up removes
 * the temporary files such a dead process left behind.
 */
import { randomBytes } from 'node:crypto';
import { type Dirent, readFileSync, readlinkSync, unlinkSync } from 'node:fs';
import { readdir, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { CamvizError } from '../util/errors.js';
import { isAlive, temporaryName, temporaryOwner } from '../util/atomic-file.js';
import { readRegularFile } from '../util/read-whole-file.js';

export const LOCK_NAME = '.camviz.lock';

/** What the lock holds, as `<pid>@<host>#<token>[+<start>]`: short, so that a link keeps it in its inode. */
export interface LockOwner {
  pid: number;
  host: string;
  /** Tells this lock from a later one of a process that got the same PID. */
  token: string;
  /** When the process started, in the clock ticks /proc gives (Linux): a process with that PID and another start is not the lock's. */
  start?: string;
}

export interface RunLock {
  readonly path: string;
  /** Removes the lock if it is still this run's. */
  release(): Promise<void>;
}

/** Tries to create the lock this many times when stale locks are taken over in between. */
const ATTEMPTS = 3;

/**
 * Takes the lock of `outDir` for this process. Throws CamvizError naming the
 * holder when a live run (or a run on another host, whose life cannot be
 * checked) holds it; takes over, with a note, a lock whose process is gone.
 */
export async function acquireRunLock(outDir: string, note: (message: string) => void): Promise<RunLock> {
  const path = join(outDir, LOCK_NAME);
  const start = processStart(process.pid);
  const owner: LockOwner = { pid: process.pid, host: hostname(), token: randomBytes(4).toString('hex'), ...(start === undefined ? {} : { start }) };
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    if (await createExclusive(path, formatOwner(owner))) return heldLock(path, owner);
    const text = await readLock(path);
    if (text === undefined) continue; // released meanwhile: try again
    const holder = parseOwner(text);
    if (holder !== undefined && !isStale(holder)) {
      throw new CamvizError(
        `another camviz run (PID ${holder.pid} on ${holder.host}) is writing into this folder: wait for it, or use another --out ` +
          `(if no such run is alive, delete ${LOCK_NAME})`,
        { file: outDir },
      );
    }
    if (await takeOver(path, text)) {
      note(holder === undefined ? `removed an unreadable ${LOCK_NAME} (${path})` : `taking over the lock of PID ${holder.pid}, which is no longer running (${path})`);
    }
  }
  throw new CamvizError(`could not take the lock: other runs keep starting in this folder (${LOCK_NAME})`, { file: outDir });
}

/**
 * Creates the lock with its whole content or not at all: a symbolic link
 * whose target is the content (as Emacs locks files), so that no run ever
 * reads a half-written lock, and so that it can be made on a full disk (a
 * short link needs no data block), where the run then reports what it
 * cannot write. Where links need privileges (Windows), an exclusively
 * created file holds the content.
 */
async function createExclusive(path: string, content: string): Promise<boolean> {
  try {
    await symlink(content, path);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EINVAL') throw lockError(path, error);
  }
  try {
    await writeFile(path, content, { flag: 'wx' });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw lockError(path, error);
  }
}

function lockError(path: string, error: unknown): CamvizError {
  return new CamvizError(`cannot create the run lock (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, { file: path, cause: error });
}

/** The lock's content (a link's target, or a file's text); undefined when there is none. */
export async function readLock(path: string): Promise<string | undefined> {
  try {
    return await readlink(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EINVAL') return undefined;
    // Not waited on if a FIFO stands there (readRegularFile refuses it).
    return readRegularFile(path).then(({ bytes }) => bytes.toString('utf8'), () => undefined);
  }
}

/**
 * Moves a stale lock aside and removes it. If another run replaced it
 * between our read and the move, that live lock is put back and false
 * returned (the next attempt then sees it).
 */
async function takeOver(path: string, staleText: string): Promise<boolean> {
  const aside = `${temporaryName(path)}.stale`;
  try {
    await rename(path, aside);
  } catch {
    return false; // gone already: someone else took it over
  }
  const moved = await readLock(aside);
  // A live lock made between our read and the move goes back (unless yet another run has made one since).
  if (moved !== staleText) await putBack(aside, path);
  await rm(aside, { force: true });
  return moved === staleText;
}

/** Makes the lock at `path` again with `aside`'s content, unless a lock exists there again. */
async function putBack(aside: string, path: string): Promise<void> {
  const content = await readLock(aside);
  if (content !== undefined) await createExclusive(path, content).catch(() => false);
}

/**
 * The lock as taken, also removed when the process exits without releasing
 * it: a command left waiting on something that never answers ends through
 * 'exit' (cli/run.ts), and its lock made the next run say it took over a
 * dead run's lock. (A kill -9 still leaves it, for the next run to take over.)
 */
function heldLock(path: string, owner: LockOwner): RunLock {
  const atExit = (): void => releaseLockSync(path, owner);
  process.on('exit', atExit);
  heldTokens.add(owner.token);
  return {
    path,
    release: async () => {
      process.off('exit', atExit);
      await releaseLock(path, owner);
      heldTokens.delete(owner.token);
    },
  };
}

/** releaseLock inside 'exit', where nothing asynchronous runs: a link's target is read, a file lock is left alone. */
function releaseLockSync(path: string, owner: LockOwner): void {
  try {
    if (parseOwner(readlinkSync(path))?.token === owner.token) unlinkSync(path);
  } catch {
    // Not a link (a file lock, where links need privileges), or gone: nothing more can be done at exit.
  }
}

async function releaseLock(path: string, owner: LockOwner): Promise<void> {
  const text = await readLock(path);
  if (text !== undefined && parseOwner(text)?.token === owner.token) await rm(path, { force: true }).catch(() => undefined);
}

export function formatOwner(owner: LockOwner): string {
  return `${owner.pid}@${owner.host}#${owner.token}${owner.start === undefined ? '' : `+${owner.start}`}`;
}

export function parseOwner(text: string): LockOwner | undefined {
  const match = /^(\d+)@(.*)#([0-9a-f]*)(?:\+(\d+))?$/.exec(text.trim());
  if (match === null) return undefined;
  return { pid: Number(match[1]), host: match[2]!, token: match[3]!, ...(match[4] === undefined ? {} : { start: match[4] }) };
}

/**
 * Whether the run that made a lock is gone: only on this host (a run on
 * another cannot be checked). A live PID alone misleads, as PIDs are
 * reused (in containers, each job's first processes get the same few):
 * a lock naming this process's PID with a token it does not hold, or a
 * live process whose start differs from the one the lock recorded, is a
 * dead run's. (The start is the kernel's count since boot, compared with
 * itself: no file system's or wall clock's time is involved.)
 */
function isStale(owner: LockOwner): boolean {
  if (owner.host !== hostname()) return false;
  if (owner.pid === process.pid) return !heldTokens.has(owner.token);
  if (!isAlive(owner.pid)) return true;
  if (owner.start === undefined) return false;
  const start = processStart(owner.pid);
  return start !== undefined && start !== owner.start;
}

/** The tokens of the locks this process holds now (several runs of the library may run in one process). */
const heldTokens = new Set<string>();

/** When process `pid` started, in clock ticks after boot (/proc/<pid>/stat's 22nd field, Linux); undefined elsewhere. */
function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
    const ticks = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    return ticks !== undefined && /^\d+$/.test(ticks) ? ticks : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Removes temporary files (`.<name>.<pid>.<random>.tmp`) under `outDir`
 * whose writing process is gone: a killed run leaves them, and nothing else
 * would ever remove them. Files of live processes are left alone. Returns
 * how many were removed.
 */
export async function removeStaleTemporaries(outDir: string): Promise<number> {
  let removed = 0;
  for (const file of await temporaryFiles(outDir)) {
    if (isAlive(file.pid)) continue;
    await rm(file.path, { recursive: true, force: true }).catch(() => undefined);
    removed++;
  }
  return removed;
}

/** Temporary files under `folder` (not following links), with their writers' PIDs. */
async function temporaryFiles(folder: string): Promise<{ path: string; pid: number }[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(folder, { withFileTypes: true });
  } catch {
    return [];
  }
  const found: { path: string; pid: number }[] = [];
  for (const entry of entries) {
    const path = join(folder, entry.name);
    // Outputs mirror input paths, which never hold hidden folders (such as .git).
    // A temporary folder too: compare's difference images are staged in one (compare-report.ts).
    const pid = entry.isFile() || entry.isDirectory() ? temporaryOwner(entry.name) : undefined;
    if (pid !== undefined) found.push({ path, pid });
    else if (entry.isDirectory() && !entry.name.startsWith('.')) found.push(...(await temporaryFiles(path)));
  }
  return found;
}
