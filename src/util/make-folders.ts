/**
 * `mkdir -p`: a folder and the folders above it that are missing. Node 20's
 * own `mkdir(path, { recursive: true })` loops for ever where a file system
 * answers ENOENT for a folder it cannot make (under /proc: `--out
 * /proc/x` hung at 100% CPU). This goes up with stat to the nearest folder
 * that is there, then down with one plain mkdir a level, which fails at
 * once. The errors are Node's own: EEXIST when `path` is a file, ENOTDIR
 * when a file is on the way, and whatever mkdir says (ENOENT, EACCES...).
 */
import { type Stats, mkdirSync, statSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/** Makes `path` and the missing folders above it; returns the first folder made (the highest), or undefined when `path` was there. */
export async function makeFolders(path: string): Promise<string | undefined> {
  const missing: string[] = [];
  for (let current = resolve(path); ; current = dirname(current)) {
    const found = await stat(current).then(
      (info) => info,
      (error: NodeJS.ErrnoException) => absentOrThrow(error),
    );
    if (found !== undefined) {
      checkFolder(found, current, path);
      break;
    }
    missing.unshift(current);
    if (dirname(current) === current) break;
  }
  for (const folder of missing) await mkdir(folder).catch((error: NodeJS.ErrnoException) => madeMeanwhile(error));
  return missing[0];
}

/** As makeFolders, synchronously. */
export function makeFoldersSync(path: string): string | undefined {
  const missing: string[] = [];
  for (let current = resolve(path); ; current = dirname(current)) {
    let found: Stats | undefined;
    try {
      found = statSync(current);
    } catch (error) {
      found = absentOrThrow(error as NodeJS.ErrnoException);
    }
    if (found !== undefined) {
      checkFolder(found, current, path);
      break;
    }
    missing.unshift(current);
    if (dirname(current) === current) break;
  }
  for (const folder of missing) {
    try {
      mkdirSync(folder);
    } catch (error) {
      madeMeanwhile(error as NodeJS.ErrnoException);
    }
  }
  return missing[0];
}

function absentOrThrow(error: NodeJS.ErrnoException): undefined {
  if (error.code === 'ENOENT') return undefined;
  throw error;
}

/** Refuses a file where a folder is wanted, with Node's codes. */
function checkFolder(found: Stats, at: string, path: string): void {
  if (found.isDirectory()) return;
  const code = at === resolve(path) ? 'EEXIST' : 'ENOTDIR';
  throw Object.assign(new Error(`${code}: ${code === 'EEXIST' ? 'file already exists' : 'not a directory'}, mkdir '${path}'`), { code, syscall: 'mkdir', path });
}

/** Another process made the folder between the stat and the mkdir: as good as made. */
function madeMeanwhile(error: NodeJS.ErrnoException): void {
  if (error.code !== 'EEXIST') throw error;
}
