/**
 * What camviz wrote in a folder: the files a run may replace there, and
 * how the input walk knows a camviz output folder. A folder is one when it
 * holds camviz's manifest.json (checked field by field, not by its name),
 * its ledger of outputs (.camviz-outputs, by its header) or a run lock
 * (.camviz.lock, by its content); its files are those the ledger and the
 * manifest list.
 */
import { type Stats } from 'node:fs';
import { lstat, realpath } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ioReason } from '../util/atomic-file.js';
import { CamvizError } from '../util/errors.js';
import { readOptionalJson } from '../util/json-file.js';
import { LEDGER_NAME, parseLedger } from '../util/outputs-ledger.js';
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
  /** The files camviz wrote there (paths inside the folder, with `/`): the ledger's and the manifest's. */
  readonly files: ReadonlySet<string>;
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
  const files = new Set(ledger?.files ?? []);
  for (const record of manifest?.manifest?.records ?? []) for (const output of record.outputs) files.add(output);
  const foreign = manifest?.foreign ?? ledger?.foreign;
  return {
    isOutputFolder: ledger?.files !== undefined || manifest?.manifest !== undefined || manifest?.unread !== undefined || locked,
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
export async function filesReallyInside(folder: string, files: ReadonlySet<string>): Promise<Set<string>> {
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
 * Refuses to replace a page at `path` that camviz did not write: `--report`'s
 * index.html (or compare's compare.html) where a user keeps a page of their
 * own under that name. A missing page, or anything that is not a regular
 * file (its write reports it), is no obstacle here.
 */
export async function refuseForeignPage(path: string): Promise<void> {
  const head = (await readStartOfRegularFile(path, PAGE_HEAD_BYTES))?.toString('latin1');
  if (head !== undefined && !head.includes(PAGE_MARK)) throw foreignFile({ file: path, problem: 'it has no camviz generator tag' });
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
async function readLedger(folder: string): Promise<{ files?: Set<string>; foreign?: Foreign } | undefined> {
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
  const files = parseLedger(bytes.toString('utf8'));
  return files === undefined ? { foreign: { file: path, problem: 'its first line is not the header camviz writes' } } : { files };
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
