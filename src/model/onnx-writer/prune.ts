/**
 * Pruning the ONNX cache folder (`<cache>/onnx/`), best effort, whenever
 * camviz writes to it (a written model, or ONNX Runtime's saved session):
 *
 * - files this build can never read again are removed: entries of another
 *   writer version (their record says which), saved sessions of the older
 *   names (`<32 hex>.ort`, `<32 hex>.ort.onnx`), and the temporary files
 *   (`.<name>.<pid>.<random>.tmp`) of a process that is gone;
 * - the entries of this version are bounded in size (CAMVIZ_ONNX_CACHE_MB):
 *   least recently used first out, by mtime, which a cache hit touches.
 *
 * An entry is a written model's `.onnx` and `.json` and the saved sessions
 * named after it (`<key>.<32 hex>.ort`), or the saved sessions of one ONNX
 * model file. Only regular files of camviz's own names are considered: never
 * a symbolic link (nor what it points to), a folder, or another name.
 * Entries this process has used are never evicted by it, nor entries used
 * in the last minute (perhaps by another run); another running camviz that
 * loses an entry it reads writes it again (see cache.ts).
 * Cheap: one readdir, an lstat per file of camviz's, the first bytes of
 * each record; no hashing.
 */
import type { Dirent } from 'node:fs';
import { lstat, open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { SAVED_GRAPH_NAME } from '../../engine/onnxruntime.js';
import { isAlive, parseTemporaryName, temporaryOwner } from '../../util/atomic-file.js';
import { WRITER_VERSION } from './write.js';

export { DEFAULT_ONNX_CACHE_MB, ONNX_CACHE_LIMIT_VARIABLE, onnxCacheLimitBytes } from './cache-limit.js';

/** A written model's file: `<fingerprint>-<H>x<W>.onnx` or `.json` (its record). */
const WRITTEN_FILE = /^([0-9a-f]{64}-\d+x\d+)\.(onnx|json)$/;
/** Saved sessions of earlier builds: `<32 hex>.ort`, and before it `<32 hex>.ort.onnx` (ONNX format). */
const OLD_SAVED_GRAPH_NAME = /^[0-9a-f]{32}\.ort(\.onnx)?$/;
/** How a record begins (cache.ts writes `writerVersion` first). */
const RECORD_HEAD = /^\{"writerVersion":(\d+)[,}]/;

/** A temporary whose writer is gone is removed only once this old: a PID seen from another PID namespace (a container sharing the cache) may look dead. */
export const TEMPORARY_GRACE_MS = 10 * 60 * 1000;

/** An entry used this recently is not evicted: another run may be reading or writing it (a later prune may evict it). */
export const RECENT_USE_MS = 60 * 1000;

/** The stems of the entries this process has read or written: its own prune never evicts them. */
const usedStems = new Set<string>();

/** Notes that this process uses the entry `stem` (a written model's key, or a saved session's stem). */
export function markUsed(stem: string): void {
  usedStems.add(stem);
}

/** The entry a file of the cache belongs to (its stem), or undefined for a file that is not an entry's. */
export function entryStem(name: string): string | undefined {
  return (WRITTEN_FILE.exec(name) ?? SAVED_GRAPH_NAME.exec(name))?.[1];
}

export { touch } from '../../util/touch.js';

export interface PruneOptions {
  /** The size bound in bytes of this version's entries; 0: none. */
  readonly limitBytes: number;
  /** Entries never evicted (besides those this process used): the one just written or read. */
  readonly keep?: readonly string[];
  /** Says what could not be done (pruning never fails the run). */
  readonly log?: (message: string) => void;
  /** The time now, in ms (tests). */
  readonly now?: number;
}

export interface PruneResult {
  /** The names of the files removed. */
  readonly removed: string[];
  /** Their bytes. */
  freedBytes: number;
}

interface CacheFile {
  readonly name: string;
  readonly size: number;
  readonly mtimeMs: number;
}

/** One entry of this version: its files, their bytes, and when it was last used (its newest mtime). */
interface Entry {
  readonly stem: string;
  readonly files: CacheFile[];
  size: number;
  lastUsed: number;
}

/** Prunes `folder` (see the file comment). Never throws: what fails is said through `log`. */
export async function pruneOnnxCache(folder: string, options: PruneOptions): Promise<PruneResult> {
  const remover = new Remover(folder, options.log);
  let dirents: Dirent[];
  try {
    dirents = await readdir(folder, { withFileTypes: true });
  } catch (error) {
    options.log?.(`cannot prune the ONNX cache: ${codeOf(error)} (${folder})`);
    return remover.result;
  }
  // Dirent types come from readdir without following links: a symbolic link is never a file here.
  const ours = dirents.filter((dirent) => dirent.isFile() && isCamvizName(dirent.name));
  const files = (await Promise.all(ours.map((dirent) => statOf(folder, dirent.name)))).filter((file) => file !== undefined);
  const now = options.now ?? Date.now();
  const entries = new Map<string, Entry>();
  for (const file of files) {
    const stem = entryStem(file.name);
    if (OLD_SAVED_GRAPH_NAME.test(file.name) || (temporaryOwner(file.name) !== undefined && isAbandoned(file, now))) await remover.remove(file);
    else if (stem !== undefined) addTo(entries, stem, file);
  }
  for (const entry of await ofOtherVersions(folder, [...entries.values()])) {
    await remover.removeEntry(entry);
    entries.delete(entry.stem);
  }
  if (options.limitBytes > 0) {
    const kept = new Set([...usedStems, ...(options.keep ?? [])]);
    const evictable = (entry: Entry): boolean => !kept.has(entry.stem) && entry.lastUsed < now - RECENT_USE_MS;
    await evictLeastRecentlyUsed([...entries.values()], options.limitBytes, evictable, remover);
  }
  const { removed, freedBytes } = remover.result;
  if (removed.length > 0) options.log?.(`pruned the ONNX cache: ${removed.length} files, ${(freedBytes / 2 ** 20).toFixed(1)} MiB (${folder})`);
  return remover.result;
}

function codeOf(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? (error as Error).message;
}

/** Removes files of the folder, and counts them. A file that cannot be removed (a read-only folder) stops it, said once: the others could not be either. */
class Remover {
  readonly result: PruneResult = { removed: [], freedBytes: 0 };
  private blocked = false;

  constructor(
    private readonly folder: string,
    private readonly log: ((message: string) => void) | undefined,
  ) {}

  async remove(file: CacheFile): Promise<void> {
    if (this.blocked) return;
    try {
      await rm(join(this.folder, file.name));
      this.result.removed.push(file.name);
      this.result.freedBytes += file.size;
    } catch (error) {
      // Gone already: another run pruned it, or the folder went.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      this.blocked = true;
      this.log?.(`cannot prune the ONNX cache: ${codeOf(error)} (${join(this.folder, file.name)})`);
    }
  }

  /** Removes an entry's files, its record first: a reader never trusts a record whose model is gone. */
  async removeEntry(entry: Entry): Promise<void> {
    const recordFirst = [...entry.files].sort((a, b) => Number(b.name.endsWith('.json')) - Number(a.name.endsWith('.json')));
    for (const file of recordFirst) await this.remove(file);
  }
}

/** The file's size and mtime, unless it is gone or no longer a regular file. */
async function statOf(folder: string, name: string): Promise<CacheFile | undefined> {
  const stats = await lstat(join(folder, name)).catch(() => undefined);
  return stats?.isFile() === true ? { name, size: stats.size, mtimeMs: stats.mtimeMs } : undefined;
}

function addTo(entries: Map<string, Entry>, stem: string, file: CacheFile): void {
  const entry = entries.get(stem) ?? { stem, files: [], size: 0, lastUsed: 0 };
  entry.files.push(file);
  entry.size += file.size;
  entry.lastUsed = Math.max(entry.lastUsed, file.mtimeMs);
  entries.set(stem, entry);
}

/** A file of camviz's own names: an entry's, an older saved session's, or a temporary of one of them (`.<name>.<pid>.<random>.tmp`). */
function isCamvizName(name: string): boolean {
  const inner = parseTemporaryName(name)?.target ?? name;
  return WRITTEN_FILE.test(inner) || SAVED_GRAPH_NAME.test(inner) || OLD_SAVED_GRAPH_NAME.test(inner);
}

/** A temporary (of camviz's names) whose process is gone, and old enough. */
function isAbandoned(file: CacheFile, now: number): boolean {
  return now - file.mtimeMs >= TEMPORARY_GRACE_MS && !isAlive(temporaryOwner(file.name)!);
}

/** The entries whose records say another writer version (read at once). */
async function ofOtherVersions(folder: string, entries: readonly Entry[]): Promise<Entry[]> {
  const versions = await Promise.all(entries.map((entry) => writerVersionOf(folder, entry)));
  return entries.filter((_, i) => versions[i] === 'other');
}

/**
 * Whether the entry's record says another writer version. Without a record
 * (being written, or removed as damaged) or with one that does not begin as
 * camviz writes them, the entry is not known to be of another version.
 */
async function writerVersionOf(folder: string, entry: Entry): Promise<'this' | 'other' | 'unknown'> {
  const record = entry.files.find((file) => file.name.endsWith('.json'));
  if (record === undefined) return 'unknown';
  let head: string;
  try {
    const handle = await open(join(folder, record.name), 'r');
    try {
      const { buffer, bytesRead } = await handle.read(Buffer.alloc(32), 0, 32, 0);
      head = buffer.subarray(0, bytesRead).toString('latin1');
    } finally {
      await handle.close();
    }
  } catch {
    return 'unknown';
  }
  const version = RECORD_HEAD.exec(head)?.[1];
  if (version === undefined) return 'unknown';
  return Number(version) === WRITER_VERSION ? 'this' : 'other';
}

/** Evicts whole entries, least recently used first, until they fit in `limitBytes`; only those `evictable` says. */
async function evictLeastRecentlyUsed(entries: Entry[], limitBytes: number, evictable: (entry: Entry) => boolean, remover: Remover): Promise<void> {
  let total = entries.reduce((sum, entry) => sum + entry.size, 0);
  for (const entry of entries.sort((a, b) => a.lastUsed - b.lastUsed)) {
    if (total <= limitBytes) return;
    if (!evictable(entry)) continue;
    await remover.removeEntry(entry);
    total -= entry.size;
  }
}
