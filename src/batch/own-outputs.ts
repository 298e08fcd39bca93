/**
 * What camviz wrote in a folder: the files a run may replace there, and
 * how the input walk knows a camviz output folder. A folder is one when it
 * holds camviz's manifest.json (checked field by field, not by its name),
 * its ledger of outputs (.camviz-outputs, by its header) or a run lock
 * (.camviz.lock, by its content); its files are those the ledger and the
 * manifest list, with the versions the ledger recorded of each.
 */
import { type Stats } from 'node:fs';
import { lstat, readdir, realpath } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ioReason } from '../util/atomic-file.js';
import { CamvizError } from '../util/errors.js';
import { readOptionalJson } from '../util/json-file.js';
import { type EarlierOutput, type EarlierOutputs, LEDGER_NAME, type ParsedLedger, type WrittenVersion, compactLedger, isWrittenVersion, nameKey, namesAsStored, parseLedger } from '../util/outputs-ledger.js';
import { foldsCaseIn } from './out-dir.js';
import { readRegularFile, readStartOfRegularFile } from '../util/read-whole-file.js';
import { MAX_JSON_BYTES } from '../util/json-file.js';
import { LOCK_NAME, parseOwner, readLock } from './lock.js';
import { MANIFEST_NAME, type Manifest } from './manifest.js';
import { isObject, manifestProblem } from './manifest-check.js';

/** Where a ledger's or a manifest's content says it is not camviz's. */
type Foreign = { file: string; problem: string };

export interface FolderOutputs {
  /** Whether camviz's marks are there: its manifest, its ledger or its run lock. */
  readonly isOutputFolder: boolean;
  /**
   * The files camviz wrote there (paths inside the folder, with `/`): the
   * ledger's and the manifest's, each with the versions the ledger recorded
   * (none: listed by name alone, by an older camviz or by the manifest).
   */
  readonly files: ReadonlyMap<string, readonly WrittenVersion[]>;
  /** The manifest, when it is camviz's. */
  readonly manifest?: Manifest;
  /** A manifest.json or ledger in the folder that is not camviz's. */
  readonly foreign?: Foreign;
  /**
   * Why the folder's manifest.json, stamped by camviz, is not one this
   * version reads (another version's, or edited): it then vouches for no
   * file, and the run replaces it.
   */
  readonly unreadManifest?: string;
}

/**
 * What camviz wrote in `folder`. `names`, when given, are the folder's
 * entries (the walk has listed them): marks not among them are not looked for.
 */
export async function folderOutputs(folder: string, names?: ReadonlySet<string>): Promise<FolderOutputs> {
  const present = (name: string): boolean => names === undefined || names.has(name);
  const ledger = present(LEDGER_NAME) ? await readLedger(folder) : undefined;
  const manifest = present(MANIFEST_NAME) ? await readCamvizManifest(folder) : undefined;
  const locked = present(LOCK_NAME) && (await lockedByCamviz(folder));
  const files = new Map<string, readonly WrittenVersion[]>(ledger?.ledger?.files ?? []);
  // The manifest's outputs not in the ledger (a manifest of a camviz before ledgers) are vouched for by name, as before.
  for (const record of manifest?.manifest?.records ?? []) for (const output of record.outputs) if (!files.has(output)) files.set(output, []);
  const foreign = manifest?.foreign ?? ledger?.foreign;
  return {
    isOutputFolder: ledger?.ledger !== undefined || manifest?.manifest !== undefined || manifest?.unread !== undefined || locked,
    files,
    ...(manifest?.manifest === undefined ? {} : { manifest: manifest.manifest }),
    ...(foreign === undefined ? {} : { foreign }),
    ...(manifest?.unread === undefined ? {} : { unreadManifest: manifest.unread }),
  };
}

/**
 * As folderOutputs, for the output folder of a run about to write there:
 * a manifest.json or a ledger that is not camviz's (a user's own file of
 * that name) is refused, one line naming it, since the run would replace it.
 */
export async function runFolderOutputs(outDir: string): Promise<FolderOutputs> {
  const outputs = await folderOutputs(outDir);
  if (outputs.foreign !== undefined) throw foreignFile(outputs.foreign);
  return outputs;
}

/**
 * Of `files` (paths inside `folder`, with `/`, as the ledger and the
 * manifest list them), those that really lie inside it. A name whose folder
 * is reached through a symbolic link (a linked subfolder in --out) or
 * climbs out of it names a file elsewhere, which an entry in this folder
 * cannot vouch for: a hostile or copied folder's ledger listing
 * `sub/a.gradcam.2.png`, with `sub` a link to the user's folder, made a
 * run replace the user's file there. Such outputs are then written as new
 * ones are: a file in the way is left alone. One look-up per subfolder.
 */
async function filesReallyInside(folder: string, files: Iterable<string>): Promise<Set<string>> {
  const real = await realpath(folder).catch(() => resolve(folder));
  const subfolders = new Map<string, boolean>();
  const inside = new Set<string>();
  for (const file of files) {
    const slash = file.lastIndexOf('/');
    if (slash < 0) {
      inside.add(file);
      continue;
    }
    const sub = file.slice(0, slash);
    let isReal = subfolders.get(sub);
    if (isReal === undefined) {
      isReal = await isRealSubfolder(folder, real, sub);
      subfolders.set(sub, isReal);
    }
    if (isReal) inside.add(file);
  }
  return inside;
}

/** How the output folder's file system names files: the run's probe and listing; a test's stand-in for one that folds case. */
export interface FileSystemView {
  foldsCase(folder: string): Promise<boolean>;
  list(folder: string): Promise<string[]>;
}

/**
 * The earlier outputs in `outDir` (`files`, as folderOutputs found them)
 * that may be replaced, looked up by the start of their names: those that
 * really lie in the folder (filesReallyInside), compared as the folder's
 * file system compares names (folded case, on macOS' and Windows' by
 * default: foldsCaseIn), and there, of the names an older camviz recorded
 * alone, those stored as spelled (namesAsStored). Sorted once, looked up by
 * binary search: one look-up per image of a folder run, or per file merged.
 */
export async function replaceableOutputs(
  outDir: string,
  files: ReadonlyMap<string, readonly WrittenVersion[]>,
  view: FileSystemView = { foldsCase: foldsCaseIn, list: (folder) => readdir(folder) },
): Promise<(start: string) => EarlierOutputs> {
  const foldsCase = await view.foldsCase(outDir);
  const inside = await filesReallyInside(outDir, files.keys());
  const nameOnly = [...inside].filter((name) => files.get(name)?.length === 0);
  const stored = foldsCase ? await namesAsStored(outDir, nameOnly, view.list) : new Set(nameOnly);
  const sorted = [...inside]
    .filter((name) => stored.has(name) || files.get(name)?.length !== 0)
    .map((name) => ({ name, versions: files.get(name) ?? [], key: nameKey(name, foldsCase) }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const keys = sorted.map((file) => file.key);
  return (start) => {
    const prefix = nameKey(start, foldsCase);
    const found: EarlierOutput[] = [];
    for (let i = firstAtLeast(keys, prefix); i < sorted.length && keys[i]!.startsWith(prefix); i++) found.push({ name: sorted[i]!.name, versions: sorted[i]!.versions });
    return { foldsCase, files: found };
  };
}

/** Whether `sub` (with `/`) names a folder in `folder` (whose real path is `real`) reached without a link; one not there yet is made by the run, as a folder. */
async function isRealSubfolder(folder: string, real: string, sub: string): Promise<boolean> {
  if (sub.split('/').some((part) => part === '' || part === '.' || part === '..')) return false;
  try {
    return (await realpath(join(folder, sub))) === join(real, sub);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') return false;
    // Missing: a dangling link on the way is not a missing folder.
    return lstat(join(folder, sub)).then(() => false, () => isRealSubfolderParent(folder, real, sub));
  }
}

/** A missing subfolder is real when its parent is (or is missing too, up to `folder`). */
function isRealSubfolderParent(folder: string, real: string, sub: string): Promise<boolean> {
  const slash = sub.lastIndexOf('/');
  return slash < 0 ? Promise.resolve(true) : isRealSubfolder(folder, real, sub.slice(0, slash));
}

/** camviz's static pages (the run report, the compare page) carry this tag in their head (report.ts' staticPage). */
const PAGE_MARK = '<meta name="generator" content="camviz';
/** How much of a page's start is read for the tag: it is in the first few hundred bytes. */
const PAGE_HEAD_BYTES = 4096;

/**
 * Refuses to replace a page `name` in `outDir` that camviz did not write:
 * `--report`'s index.html (or compare's compare.html) where a user keeps a
 * page of their own under that name, or camviz's page edited or replaced
 * since camviz wrote it (the ledger's versions of it, `files` when the
 * caller has read them). A missing page, or anything that is not a regular
 * file (its write reports it), is no obstacle here. A page of an older
 * camviz, which recorded no versions of it, is known by its tag alone.
 */
export async function refuseForeignPage(outDir: string, name: string, files?: ReadonlyMap<string, readonly WrittenVersion[]>): Promise<void> {
  const path = join(outDir, name);
  const head = (await readStartOfRegularFile(path, PAGE_HEAD_BYTES))?.toString('latin1');
  if (head === undefined) return;
  if (!head.includes(PAGE_MARK)) throw foreignFile({ file: path, problem: 'it has no camviz generator tag' });
  const versions = (files ?? (await readLedger(outDir))?.ledger?.files)?.get(name) ?? [];
  const stats = versions.length === 0 ? undefined : await lstat(path, { bigint: true }).catch(() => undefined);
  if (stats !== undefined && !(await isWrittenVersion(path, stats, versions))) throw foreignFile({ file: path, problem: 'it was changed or replaced since camviz wrote it' });
}

function foreignFile({ file, problem }: Foreign): CamvizError {
  return new CamvizError(`not camviz's (${problem}): camviz replaces no file it did not write; move it, or use another --out`, { file });
}

/**
 * The folder's ledger; undefined when there is none. Anything else in its
 * place is foreign, not absent: taken for no ledger, a FIFO there made each
 * output's append wait for a reader for ever (signals unheard, libuv's
 * threads all blocked), a link had camviz append to a file elsewhere and
 * trust its names, and a ledger too large to read made camviz refuse its
 * own outputs as a user's files.
 */
async function readLedger(folder: string): Promise<{ ledger?: ParsedLedger; foreign?: Foreign } | undefined> {
  const path = join(folder, LEDGER_NAME);
  const unlike = await ledgerEntryProblem(path);
  if (unlike === null) return undefined;
  if (unlike !== undefined) return { foreign: { file: path, problem: unlike } };
  let bytes: Buffer;
  try {
    ({ bytes } = await readRegularFile(path, MAX_JSON_BYTES));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return { foreign: { file: path, problem: ledgerReadProblem(error) } };
  }
  const ledger = parseLedger(bytes.toString('utf8'));
  return ledger === undefined ? { foreign: { file: path, problem: 'its first line is not the header camviz writes' } } : { ledger };
}

/**
 * Compacts the ledger of `outDir` (compactLedger), read again: called under
 * the run lock, where the run's first look at the folder was not. A ledger
 * that is not camviz's was refused by that look.
 */
export async function compactFolderLedger(outDir: string): Promise<void> {
  const ledger = (await readLedger(outDir))?.ledger;
  if (ledger !== undefined) await compactLedger(outDir, ledger);
}

/** What is wrong with the entry at a ledger's path (the entry itself, links not followed): null when there is none to be seen, undefined when it is a regular file. */
async function ledgerEntryProblem(path: string): Promise<string | null | undefined> {
  let entry: Stats;
  try {
    entry = await lstat(path);
  } catch {
    // Missing, or the folder itself is the problem (--out a file: ENOTDIR; not searchable: EACCES), which the run's check of its folder reports.
    return null;
  }
  if (entry.isSymbolicLink()) return 'it is a symbolic link; camviz writes its ledger as a file';
  return entry.isFile() ? undefined : 'it is not a regular file';
}

function ledgerReadProblem(error: unknown): string {
  return (error as NodeJS.ErrnoException).code === 'ERR_FS_FILE_TOO_LARGE' ? `it is larger than the ${MAX_JSON_BYTES} bytes read` : `it cannot be read: ${ioReason(error)}`;
}

async function readCamvizManifest(folder: string): Promise<{ manifest?: Manifest; foreign?: Foreign; unread?: string } | undefined> {
  const path = join(folder, MANIFEST_NAME);
  let value: unknown;
  try {
    value = await readOptionalJson(path, MANIFEST_NAME);
  } catch (error) {
    return { foreign: { file: path, problem: error instanceof CamvizError ? error.message : String(error) } };
  }
  if (value === undefined) return undefined;
  const problem = manifestProblem(value);
  if (problem === undefined) return { manifest: value as Manifest };
  // camviz stamps its version in every manifest: one that carries it but fails the field check is camviz's all the same (another version's, or edited), not a user's file.
  if (isObject(value) && typeof value['camviz'] === 'string') return { unread: problem };
  return { foreign: { file: path, problem: `not a camviz manifest: ${problem}` } };
}

async function lockedByCamviz(folder: string): Promise<boolean> {
  const text = await readLock(join(folder, LOCK_NAME));
  return text !== undefined && parseOwner(text) !== undefined;
}

/** The index of the first of the sorted `items` not before `key`. */
function firstAtLeast(items: readonly string[], key: string): number {
  let low = 0;
  let high = items.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (items[middle]! < key) low = middle + 1;
    else high = middle;
  }
  return low;
}
