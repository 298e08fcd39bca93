/**
 * `.camviz-outputs`: every file camviz has written in an output folder, one
 * JSON value a line, under a header line. A run may replace a file only if
 * camviz wrote it: the manifest lists the last run's outputs only, so a map
 * of an earlier run with other options (`--class 3`, then `--class 5`, then
 * `--class 3` again), or one written after a killed run's last manifest,
 * would pass for a user's file. A folder run reads it back, and the input
 * walk knows a camviz output folder by it (batch/own-outputs.ts).
 *
 * Each line is a version of a file camviz wrote, `[name, stamp, sha256]`:
 * its path inside the folder (with `/`), its device, inode, size and
 * modification time in ns as it was written (file-identity.ts' stampOf),
 * and the sha256 of its bytes. A name alone (a JSON string) is a line of an
 * older camviz, which recorded names only: such a name is trusted as
 * before, whatever file is there, until camviz writes it again. The name
 * alone vouched for whatever file came to be there: a user's picture
 * copied over `x.gradcam.281.png`, or moved there, was replaced by the next
 * run. Older versions of camviz skip the lines they cannot read (not JSON
 * strings), and so refuse to replace what a newer one wrote: the safe side.
 *
 * A file is camviz's when it is a version recorded under its name: the same
 * stamp (one stat), else, at the same size, the same bytes (a copy that
 * kept them: `cp -p`, a backup restored, the folder copied or moved, or a
 * `touch`). Any other file (edited, replaced, moved there) is a user's, and
 * is left alone. Every recorded version counts, not only the last: a run
 * killed after recording a version and before renaming it into place
 * leaves the earlier version there, which must stay camviz's.
 *
 * A version is appended after its temporary file is written and before it
 * is put in place (writeRecordedFile: renamed over camviz's earlier file,
 * or linked where none was), so that no crash leaves a file of camviz's
 * unrecorded; the append is one small O_APPEND write, whole
 * even when worker threads append at once (one cut short by a full disk
 * fails the file's write, and what it left is skipped: lineEntries). Since each write appends a
 * line, a run compacts the ledger before its work (compactLedger).
 */
import { type BigIntStats, constants } from 'node:fs';
import { type FileHandle, lstat, open, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type AtomicWriteOptions, WriteError, ioReason, writeFileAtomic } from './atomic-file.js';
import { fileClosed, retryWhileOutOfDescriptors } from './fd-retry.js';
import { stampOf, stampedSize } from './file-identity.js';
import { readRegularFile } from './read-whole-file.js';
import { sha256Hex } from './sha256.js';

export const LEDGER_NAME = '.camviz-outputs';
/** Unchanged since ledgers held names alone: an older camviz takes a ledger of another header for a user's file, and refuses the folder. */
const LEDGER_HEADER = '# camviz: files camviz wrote in this folder, one JSON string a line';

/** A version of a file camviz wrote: its stamp (stampOf) and the sha256 of its bytes (hex). */
export interface WrittenVersion {
  readonly stamp: string;
  readonly sha256: string;
}

/**
 * The files a ledger lists: name -> the versions camviz wrote under it,
 * oldest first. An empty list is a name an older camviz recorded alone,
 * trusted by its name.
 */
export type LedgerFiles = Map<string, WrittenVersion[]>;

/** A ledger's files, and its count of lines (compactLedger's measure of what is superseded). */
export interface ParsedLedger {
  readonly files: LedgerFiles;
  readonly lines: number;
}

/** The files a ledger's text lists; undefined when it is not a ledger (its first line is not the header). Lines that are neither form (a torn last line, garbage) are skipped. */
export function parseLedger(text: string): ParsedLedger | undefined {
  const [header, ...lines] = text.split('\n');
  if (header !== LEDGER_HEADER) return undefined;
  const files: LedgerFiles = new Map();
  for (const entry of lines.flatMap(lineEntries)) {
    const versions = files.get(entry.name) ?? [];
    if (entry.version !== undefined) versions.push(entry.version);
    files.set(entry.name, versions);
  }
  return { files, lines: lines.length };
}

/**
 * The entries of a line: itself, or, when it is not one, the versions
 * that start within it. An append cut short (a full disk) leaves a line
 * without its end, and the next append runs on after it: that version
 * counts all the same. A version starts at `["`, which no JSON string of a
 * name holds but at its last character (its quotes are escaped), so no
 * part of a torn line passes for one.
 */
function lineEntries(line: string): { name: string; version?: WrittenVersion }[] {
  const whole = parsedLine(line);
  if (whole !== undefined) return [whole];
  return line.split(/(?=\[")/).flatMap((part) => {
    const entry = parsedLine(part);
    return entry?.version === undefined ? [] : [entry];
  });
}

function parsedLine(line: string): { name: string; version?: WrittenVersion } | undefined {
  if (line === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value === 'string') return { name: value };
  if (!Array.isArray(value) || value.length !== 3 || !value.every((part) => typeof part === 'string')) return undefined;
  const [name, stamp, sha256] = value as [string, string, string];
  return { name, version: { stamp, sha256 } };
}

function ledgerLine(name: string, version: WrittenVersion | undefined): string {
  return `${JSON.stringify(version === undefined ? name : [name, version.stamp, version.sha256])}\n`;
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
 * Adds a version of `name` (a path inside `folder`, with `/`) to the
 * folder's ledger. A ledger that is gone (removed during the run) is not
 * made again without its header: the file then stays unrecorded, and a
 * later run refuses to replace it, the safe side. Other failures are thrown.
 */
export async function addToLedger(folder: string, name: string, version: WrittenVersion): Promise<void> {
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
    // writeFile, not write: a full disk (or a file size limit) cuts a write short without an error, and the file would appear unrecorded; writeFile writes the rest, which then fails.
    await handle.writeFile(ledgerLine(name, version));
  } catch (error) {
    throw new WriteError(ioReason(error), path, error);
  } finally {
    await handle.close().finally(fileClosed);
  }
}

/**
 * Writes `data` at `path` (`name` inside `folder`) as writeFileAtomic
 * does, its version recorded in the folder's ledger before it appears (and
 * before the caller's own beforeRename).
 */
export async function writeRecordedFile(folder: string, name: string, path: string, data: Uint8Array | string, options: AtomicWriteOptions = {}): Promise<void> {
  const sha256 = sha256Hex(data);
  let recorded: WrittenVersion | undefined;
  await writeFileAtomic(path, data, {
    ...options,
    beforeRename: async (stats) => {
      recorded = { stamp: stampOf(stats), sha256 };
      await addToLedger(folder, name, recorded);
      await options.beforeRename?.(stats);
    },
  });
  if (recorded !== undefined) await recordIfRestamped(folder, name, path, recorded);
}

/**
 * Records the file at `path` (`name` inside `folder`) as it is now: one
 * that only its name vouched for (an older camviz's), which stays camviz's
 * once its name alone no longer does. A file that changes while it is read
 * is recorded with a stamp and bytes of two files, and vouched for by
 * neither: the safe side.
 */
export async function recordAsIs(folder: string, name: string, path: string): Promise<void> {
  const stats = await lstat(path, { bigint: true });
  if (!stats.isFile()) return;
  const { bytes } = await readRegularFile(path, Number(stats.size));
  await addToLedger(folder, name, { stamp: stampOf(stats), sha256: sha256Hex(bytes) });
}

/**
 * A rename keeps a file's stamp on the usual file systems; where it does
 * not (some network and FUSE file systems, or one that sets the
 * modification time on close), the file as it is now is recorded as well,
 * or camviz would take its own file for a user's. A file swapped in by
 * someone else in the microseconds since the rename would be recorded too:
 * a window left open, far smaller than the one a name alone left.
 */
async function recordIfRestamped(folder: string, name: string, path: string, recorded: WrittenVersion): Promise<void> {
  const now = await lstat(path, { bigint: true }).catch(() => undefined);
  if (now !== undefined && now.isFile() && stampOf(now) !== recorded.stamp) await addToLedger(folder, name, { stamp: stampOf(now), sha256: recorded.sha256 });
}

/**
 * What a run knows of the earlier outputs an image may replace (batch/
 * runner.ts gives each image those named after it): their ledger entries,
 * and whether the output folder's file system takes names that differ in
 * case alone for one file (macOS' and Windows' by default).
 */
export interface EarlierOutputs {
  readonly foldsCase: boolean;
  readonly files: readonly EarlierOutput[];
}

/** A file the ledger (or the manifest) lists; `versions` empty: listed by name alone. */
export interface EarlierOutput {
  readonly name: string;
  readonly versions: readonly WrittenVersion[];
}

/** A name as the file system tells names apart: on one that folds case, `Cat.png` and `cat.png` are one file. */
export function nameKey(name: string, foldsCase: boolean): string {
  return foldsCase ? name.normalize('NFC').toLowerCase() : name;
}

/**
 * What vouches for the file at output `name`: the versions recorded under
 * it (under any name the file system takes for it), 'name' when only a
 * name recorded alone does, undefined when nothing does. Recorded versions
 * outweigh a name alone: camviz has written the file since an older camviz
 * listed it. A name alone vouches only when spelled as the output is: on a
 * file system that folds case, the ledger's `cat.x.png` says nothing of a
 * user's `Cat.x.png`, the same file to it (runner.ts also drops such names
 * whose file there is stored under another spelling: namesAsStored).
 */
export function vouchFor(earlier: EarlierOutputs, name: string): readonly WrittenVersion[] | 'name' | undefined {
  const key = nameKey(name, earlier.foldsCase);
  const same = earlier.files.filter((file) => nameKey(file.name, earlier.foldsCase) === key);
  const versions = same.flatMap((file) => file.versions);
  if (versions.length > 0) return versions;
  return same.some((file) => file.name === name) ? 'name' : undefined;
}

/**
 * What is at output `name`'s `path` for a write there: 'nothing', a file
 * camviz may replace ('camviz's': vouchFor vouches for it, or it is an
 * empty file where camviz wrote one), or one it may not ('foreign'). A
 * path that cannot be looked at for another reason (ENOTDIR: a file where
 * its folder goes) counts as nothing here: the write reports it. A write
 * where nothing was is made with noReplace (atomic-file.ts), so that a file
 * that appears in the meantime is not replaced either.
 */
export async function fileAtOutput(path: string, name: string, earlier: EarlierOutputs): Promise<'nothing' | "camviz's" | 'foreign'> {
  let stats: BigIntStats;
  try {
    stats = await lstat(path, { bigint: true });
  } catch {
    return 'nothing';
  }
  const vouch = vouchFor(earlier, name);
  if (vouch === 'name') return "camviz's";
  if (vouch === undefined) return 'foreign';
  // What a power cut can leave of an output not flushed to disk (AtomicWriteOptions): its name, no bytes; and an empty file holds nothing to lose.
  return (stats.isFile() && stats.size === 0n) || (await isWrittenVersion(path, stats, vouch)) ? "camviz's" : 'foreign';
}

/**
 * Writes output `name` (a path inside `folder`) at `path` as
 * writeRecordedFile does, unless a file camviz may not replace is there
 * (fileAtOutput) or appears there before it is put in place: 'foreign'
 * then, and that file is left as it is. Where nothing was, the file is put
 * in place only if still nothing is (noReplace); camviz's earlier file is
 * replaced by a rename, which would also replace a file swapped in since
 * the look (that window is not closed).
 */
export async function writeOwnOutput(folder: string, name: string, path: string, data: Uint8Array | string, earlier: EarlierOutputs, options: AtomicWriteOptions = {}): Promise<'written' | 'foreign'> {
  const there = await fileAtOutput(path, name, earlier);
  if (there === 'foreign') return 'foreign';
  try {
    await writeRecordedFile(folder, name, path, data, { ...options, noReplace: there === 'nothing' });
  } catch (error) {
    if (error instanceof WriteError && error.code === 'EEXIST' && there === 'nothing') return 'foreign';
    throw error;
  }
  return 'written';
}

/**
 * Whether the file at `path` (its lstat: `stats`) is one of `versions`: the
 * same stamp, else (a regular file of a recorded size) the same bytes. A
 * link, however it leads, is never camviz's: camviz writes files.
 */
export async function isWrittenVersion(path: string, stats: BigIntStats, versions: readonly WrittenVersion[]): Promise<boolean> {
  const stamp = stampOf(stats);
  if (versions.some((version) => version.stamp === stamp)) return true;
  if (!stats.isFile()) return false;
  const sameSize = versionsOfSize(versions, stats.size);
  if (sameSize.length === 0) return false;
  // Bounded by the recorded size: a file grown meanwhile fails the read (ERR_FS_FILE_TOO_LARGE), and is not camviz's.
  const bytes = await readRegularFile(path, Number(stats.size)).then(({ bytes: read }) => read, () => undefined);
  if (bytes === undefined) return false;
  const sha256 = sha256Hex(bytes);
  return sameSize.some((version) => version.sha256 === sha256);
}

/** The versions written at `size` bytes: only those can be the file of that size (isWrittenVersion), or be kept for it (compactLedger). */
function versionsOfSize(versions: readonly WrittenVersion[], size: bigint): WrittenVersion[] {
  return versions.filter((version) => stampedSize(version.stamp) === String(size));
}

/**
 * Of the names an older camviz recorded alone (`names`, paths inside
 * `folder`), those whose file there is stored under that very spelling, or
 * is missing. On a file system that folds case, `lstat('cat.x.png')` finds
 * a user's `Cat.x.png`; only the folder's listing tells the spellings
 * apart. One listing per subfolder; `list` is the file system's (injected
 * by tests: this one, Linux's, tells case apart).
 */
export async function namesAsStored(folder: string, names: readonly string[], list: (path: string) => Promise<string[]> = (path) => readdir(path)): Promise<Set<string>> {
  const listings = new Map<string, Promise<Listing | undefined>>();
  const kept = new Set<string>();
  for (const name of names) {
    const slash = name.lastIndexOf('/');
    const sub = slash < 0 ? '' : name.slice(0, slash);
    let listing = listings.get(sub);
    if (listing === undefined) {
      listing = list(join(folder, sub)).then(
        (entries) => ({ exact: new Set(entries), folded: new Set(entries.map((entry) => nameKey(entry, true))) }),
        () => undefined,
      );
      listings.set(sub, listing);
    }
    const entries = await listing;
    const base = name.slice(slash + 1);
    // A folder that cannot be listed holds nothing to replace (its writes report it); a name with no file under any spelling has nothing to mistake.
    if (entries === undefined || entries.exact.has(base) || !entries.folded.has(nameKey(base, true))) kept.add(name);
  }
  return kept;
}

/** A folder's entries, as stored and as a file system that folds case compares them. */
interface Listing {
  readonly exact: ReadonlySet<string>;
  readonly folded: ReadonlySet<string>;
}

/** A ledger is compacted when it has more lines than this, and more than twice its files. */
const COMPACT_ABOVE_LINES = 4096;

/**
 * Rewrites the folder's ledger without the versions that can no longer
 * vouch for anything, when they are most of it: each write of a file adds
 * a line, and a folder rerun daily would grow its ledger for ever (then
 * read whole by every run, and refused past its size bound). Kept per
 * name: the versions of the file's size (among them the file's own, if it
 * is camviz's); the last version alone when none is (the file there is
 * then a user's, and must stay one); nothing for a file that is gone; a
 * name recorded alone, as it is. Called under the folder's run lock, before
 * any write, with the ledger's current text (`ledger`); through a temporary
 * file renamed over it, so that no crash loses it.
 */
export async function compactLedger(folder: string, ledger: ParsedLedger): Promise<boolean> {
  if (ledger.lines <= Math.max(COMPACT_ABOVE_LINES, 2 * ledger.files.size)) return false;
  const lines = [`${LEDGER_HEADER}\n`];
  for (const [name, versions] of ledger.files) {
    if (versions.length === 0) {
      lines.push(ledgerLine(name, undefined));
      continue;
    }
    const stats = await lstat(join(folder, name), { bigint: true }).catch(() => undefined);
    if (stats === undefined) continue;
    const sameSize = versionsOfSize(versions, stats.size);
    for (const version of sameSize.length > 0 ? sameSize : versions.slice(-1)) lines.push(ledgerLine(name, version));
  }
  await writeFileAtomic(join(folder, LEDGER_NAME), lines.join(''));
  return true;
}
