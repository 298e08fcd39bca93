/**
 * Small JSON indexes beside the ONNX cache, `{"entries": {key: entry}}`,
 * the most recently written last and the oldest dropped past a bound:
 * fingerprints by file identity (file-fingerprints.ts) and first sessions
 * by model file (session-ahead.ts). Reading never fails nor waits (a
 * missing, unreadable, oversized, foreign or special file is an empty
 * index, each entry is checked);
 * writing is atomic and best effort (it only saves later runs work).
 */
import { dirname } from 'node:path';
import { writeFileAtomic } from '../util/atomic-file.js';
import { readRegularFile, readRegularFileSync } from '../util/read-whole-file.js';
import { makeFolders } from '../util/make-folders.js';

export type EntryIndex<T> = Record<string, T>;

/** The largest index read (a few hundred bytes an entry, a few hundred entries): a larger file is taken for an empty one. */
const MAX_INDEX_BYTES = 1024 * 1024;

/**
 * The entries of the index at `path` that `check` accepts; none when it is
 * missing, unreadable, larger than MAX_INDEX_BYTES or no regular file (a
 * FIFO is not waited on, a device not read without end: the read opens
 * without waiting and checks what it opened).
 */
export async function readEntryIndex<T>(path: string, check: (value: unknown) => T | undefined): Promise<EntryIndex<T>> {
  const read = await readRegularFile(path, MAX_INDEX_BYTES).catch(() => undefined);
  return read === undefined ? {} : parseEntryIndex(read.bytes.toString('utf8'), check);
}

/** As readEntryIndex, synchronously: for a read at the very start of a run, before anything else is loaded. */
export function readEntryIndexSync<T>(path: string, check: (value: unknown) => T | undefined): EntryIndex<T> {
  const bytes = readRegularFileSync(path, MAX_INDEX_BYTES);
  return bytes === undefined ? {} : parseEntryIndex(bytes.toString('utf8'), check);
}

/** The entries of an index file's text that `check` accepts (it returns the entry, or undefined to drop it). */
function parseEntryIndex<T>(text: string, check: (value: unknown) => T | undefined): EntryIndex<T> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return {};
  }
  const entries = (parsed as { entries?: unknown } | null)?.entries;
  if (typeof entries !== 'object' || entries === null || Array.isArray(entries)) return {};
  const index: EntryIndex<T> = {};
  for (const [key, value] of Object.entries(entries as Record<string, unknown>)) {
    const entry = check(value);
    if (entry !== undefined) index[key] = entry;
  }
  return index;
}

/**
 * Writes `index` with `entry` under `key`, as the most recent, keeping the
 * `max` most recent. Two runs writing at once may lose one's entry, which
 * costs a later run the work the entry saves. Never throws.
 */
export async function writeEntryIndex<T>(path: string, index: EntryIndex<T>, key: string, entry: T, max: number): Promise<void> {
  const entries = Object.entries(index).filter(([other]) => other !== key);
  entries.push([key, entry]);
  await writeEntries(path, entries, max);
}

/** Writes the index at `path` (as `check` reads it) without the entry under `key`, if it holds one. Never throws. */
export async function removeEntry<T>(path: string, key: string, check: (value: unknown) => T | undefined): Promise<void> {
  const index = await readEntryIndex(path, check);
  if (!(key in index)) return;
  const entries = Object.entries(index).filter(([other]) => other !== key);
  await writeEntries(path, entries, entries.length);
}

async function writeEntries<T>(path: string, entries: [string, T][], max: number): Promise<void> {
  try {
    await makeFolders(dirname(path));
    await writeFileAtomic(path, `${JSON.stringify({ entries: Object.fromEntries(entries.slice(-max)) })}\n`, { durable: false });
  } catch {
    // Only a later run's saving is lost.
  }
}
