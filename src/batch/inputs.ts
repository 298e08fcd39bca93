/**
 * Expanding the command line's inputs (files and folders) into a sorted
 * list of images, each with the path relative to the folder it was found
 * in, so that outputs can mirror the input tree.
 */
import { type Dirent, statSync } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import { CamvizError, UsageError } from '../util/errors.js';
import { ioReason } from '../util/atomic-file.js';
import { isInsideFolder } from '../util/inside-folder.js';
import { printable } from '../util/text.js';
import { IMAGE_EXTENSIONS } from '../image/formats.js';

import type { InputImage } from '../tasks/types.js';
import { MANIFEST_NAME, REPORT_DIR } from './manifest.js';
import { LEDGER_NAME, type WrittenVersion, fileAtOutput } from '../util/outputs-ledger.js';
import { LOCK_NAME } from './lock.js';
import { folderOutputs } from './own-outputs.js';

export type { InputImage };

export interface ExpandOptions {
  /** A glob on the relative path (`*`, `**`, `?`, `{a,b}`), e.g. `**\/*.jpg`. */
  glob?: string;
  /**
   * The run's output folder: never listed when it lies inside an input
   * folder; when an input folder is the output folder (or lies inside it),
   * the run's own outputs there (see isOutputName) and its report folder
   * are not inputs.
   */
  exclude?: string;
  /**
   * Told what the listing left out: a camviz output folder's files
   * ('outputs': inputs a run does not see, worth a line in any run) and a
   * file met again by another path ('same-file', for --verbose).
   */
  note?: (message: string, kind: 'outputs' | 'same-file') => void;
}

/**
 * Files and folders to images, sorted by relative path. A file given
 * directly is named by its file name; a folder's images by their path
 * inside it, prefixed with the folder's name when several inputs are given.
 * Should two of those names give the same outputs (equal file names given
 * directly, or equally named folders), every image is named instead by its
 * path from the inputs' deepest common folder, so that outputs mirror the
 * input tree and do not collide.
 */
export async function expandInputs(paths: readonly string[], options: ExpandOptions = {}): Promise<InputImage[]> {
  const matcher = options.glob === undefined ? undefined : globToRegExp(options.glob);
  const { exclude } = options;
  const outReal = exclude === undefined ? undefined : await realpath(exclude).catch(() => resolve(exclude));
  const excluded = new Set(outReal === undefined ? [] : [outReal, join(outReal, REPORT_DIR)]);
  const several = paths.length > 1;
  const walk: Walk = { excluded, skipped: new Map() };
  const found: { path: string; real: string; short: string }[] = [];
  for (const path of paths) {
    const info = await stat(path).catch(() => undefined);
    if (info === undefined || !info.isDirectory()) {
      // A missing file stays in the list: loading it reports the error in order.
      found.push({ path, real: await realpath(path).catch(() => resolve(path)), short: basename(path) });
      continue;
    }
    const prefix = several ? `${basename(resolve(path))}/` : '';
    const skippedBefore = walk.skipped.size;
    const listed = await listImages(path, new Set(), walk);
    const inPlace = outReal !== undefined && isWithin(await realpath(path), outReal);
    const outputsBeside = new Set(inPlace ? withoutOutputs(listed.map((file) => file.path)) : []);
    const inFolder = (inPlace ? listed.filter((file) => outputsBeside.has(file.path)) : listed)
      .map((file) => ({ ...file, short: prefix + slashes(relative(path, file.path)) }))
      .filter((image) => matcher === undefined || matcher.test(image.short))
      // Sorted before duplicates are dropped: of a file met twice in a folder, the first name in order is kept, whatever order readdir gave.
      .sort((a, b) => (a.short < b.short ? -1 : a.short > b.short ? 1 : 0));
    if (inFolder.length === 0) {
      const camvizOwn = walk.skipped.size > skippedBefore ? ' but what camviz wrote' : '';
      throw new CamvizError(`folder holds no images${camvizOwn}${options.glob ? ` matching ${options.glob}` : ''} (${IMAGE_EXTENSIONS.join(' ')})`, { file: path });
    }
    found.push(...inFolder);
  }
  for (const [folder, count] of walk.skipped) {
    options.note?.(`${printable(folder)} is a camviz output folder: its ${count} image${count === 1 ? '' : 's'} camviz wrote ${count === 1 ? 'is' : 'are'} not input${count === 1 ? '' : 's'}`, 'outputs');
  }
  const once = firstOfEachFile(found, options.note);
  const short = once.map(({ path, short: name }) => ({ path, relative: name }));
  if (!several || outputCollisions(short).size === 0) return short.sort(byRelativePath);
  const base = commonFolder(paths.map((path) => resolve(path)));
  return once.map(({ path }) => ({ path, relative: slashes(relative(base, resolve(path))) })).sort(byRelativePath);
}

/**
 * One entry per file: the same file given twice (overlapping shell globs,
 * `x.png ./x.png`, a folder and a file inside it, a symbolic link and its
 * target, a linked folder and the folder) is one input, named as it was
 * first found (command-line order, then sorted names within a folder),
 * where it would otherwise write the same outputs twice or collide with
 * itself. Files are told apart by their real paths, as the paths of files
 * that cannot be resolved (missing: their run reports them) are by name.
 */
function firstOfEachFile<T extends { path: string; real: string }>(found: readonly T[], note?: ExpandOptions['note']): T[] {
  const firstByFile = new Map<string, string>();
  const once: T[] = [];
  for (const entry of found) {
    const file = entry.real;
    const first = firstByFile.get(file);
    if (first === undefined) {
      firstByFile.set(file, entry.path);
      once.push(entry);
    } else if (resolve(first) !== resolve(entry.path)) {
      note?.(`${printable(entry.path)} is the same file as ${printable(first)}: one input, named as the first`, 'same-file');
    }
  }
  return once;
}

/**
 * Whether the inputs are one path that names a file (links followed): a
 * run of one image given by itself. False for several paths, a folder, or a
 * path that cannot be looked at (its run reports it).
 */
export function isOneFile(inputs: readonly string[]): boolean {
  const [input, ...others] = inputs;
  if (input === undefined || others.length > 0) return false;
  try {
    return statSync(input).isFile();
  } catch {
    return false;
  }
}

const slashes = (path: string): string => path.split('\\').join('/');

export function byRelativePath(a: InputImage, b: InputImage): number {
  if (a.relative !== b.relative) return a.relative < b.relative ? -1 : 1;
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}

/** Inputs whose outputs would land on an earlier input's: input -> the earlier input's path. */
export function outputCollisions(images: readonly InputImage[]): Map<InputImage, string> {
  const first = new Map<string, InputImage>();
  const collisions = new Map<InputImage, string>();
  for (const image of images) {
    const key = image.relative.replace(/\.[^./]*$/, '').toLowerCase();
    const earlier = first.get(key);
    if (earlier === undefined) first.set(key, image);
    else collisions.set(image, earlier.path);
  }
  return collisions;
}

/** An image file found by the walk: its path as found, and its real path (links resolved), by which a file met twice is told. */
interface FoundFile {
  path: string;
  real: string;
}

/**
 * A camviz output folder met by the walk: its path as walked, and the files
 * camviz wrote there, with the versions its ledger recorded of each (a
 * file there now that is none of them is a user's: camvizWriter).
 */
interface OutputFolder {
  folder: string;
  files: ReadonlyMap<string, readonly WrittenVersion[]>;
}

/** What one walk of the input folders shares. */
interface Walk {
  /** The run's output folder and its report folder (real paths): never listed below an input folder. */
  excluded: ReadonlySet<string>;
  /** Per camviz output folder met, the images left out as its outputs. */
  skipped: Map<string, number>;
}

/**
 * Image files under `folder`, recursively. Symbolic links are followed (data
 * sets kept by DVC or git-annex are trees of links); a linked folder already
 * being listed is skipped, so that a link to a parent does not loop. In a
 * camviz output folder (own-outputs.ts), at any depth below it, the images
 * camviz wrote there (its ledger's and its manifest's files) and its
 * `_report` folder are not listed: a run with `--out` inside its input
 * folder never reads an earlier run's maps back as images.
 */
async function listImages(folder: string, listing: ReadonlySet<string>, walk: Walk, outputFolders: readonly OutputFolder[] = []): Promise<FoundFile[]> {
  const real = await realpath(folder).catch((error: unknown) => {
    throw unlistable(folder, error);
  });
  // An input folder is listed even when it is the output folder (listing is empty only for it).
  if (listing.has(real) || (listing.size > 0 && walk.excluded.has(real))) return [];
  const within = new Set([...listing, real]);
  // Refused, not skipped: a run that left out a folder it was given would pass CI with images unseen.
  const entries = await readdir(folder, { withFileTypes: true }).catch((error: unknown) => {
    throw unlistable(folder, error);
  });
  const here = await outputFolderAt(folder, entries);
  const enclosing = here === undefined ? outputFolders : [...outputFolders, here];
  const files: FoundFile[] = [];
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const full = join(folder, entry.name);
    // undefined: a dangling link. Anything named like an image that is not a
    // folder (a dangling link, a FIFO, a device, a link to one) is kept, so
    // that loading reports it (a data set's missing file) instead of
    // skipping it unsaid; loading reads regular files only.
    const target = entry.isSymbolicLink() ? await stat(full).catch(() => undefined) : entry;
    if (target?.isDirectory()) {
      if (here === undefined || entry.name !== REPORT_DIR) files.push(...(await listImages(full, within, walk, enclosing)));
    } else if (IMAGE_EXTENSIONS.includes(extname(entry.name).toLowerCase())) {
      const writer = await camvizWriter(enclosing, full);
      if (writer !== undefined) walk.skipped.set(writer.folder, (walk.skipped.get(writer.folder) ?? 0) + 1);
      // A link's real path is looked up; any other file's is its folder's, joined: no look-up per file.
      else files.push({ path: full, real: entry.isSymbolicLink() ? await realpath(full).catch(() => full) : join(real, entry.name) });
    }
  }
  return files;
}

/**
 * The output folder (of `enclosing`) whose camviz wrote the file at `path`,
 * if it is still camviz's there by the rule that lets a run replace it
 * (fileAtOutput: the version recorded, or a copy with its bytes). One
 * replaced or edited since is a user's, as a run would refuse to replace
 * it: an input like any picture of theirs in the folder, not left out
 * unsaid as camviz's.
 */
async function camvizWriter(enclosing: readonly OutputFolder[], path: string): Promise<OutputFolder | undefined> {
  for (const output of enclosing) {
    const name = slashes(relative(output.folder, path));
    const versions = output.files.get(name);
    if (versions !== undefined && (await fileAtOutput(path, name, { foldsCase: false, files: [{ name, versions }] })) !== 'foreign') return output;
  }
  return undefined;
}

/** `folder` as a camviz output folder, if it is one (its entries hold camviz's marks, own-outputs.ts). */
async function outputFolderAt(folder: string, entries: readonly Dirent[]): Promise<OutputFolder | undefined> {
  const names = new Set(entries.map((entry) => entry.name));
  if (!OUTPUT_FOLDER_MARKS.some((name) => names.has(name))) return undefined;
  const outputs = await folderOutputs(folder, names);
  return outputs.isOutputFolder ? { folder, files: outputs.files } : undefined;
}

const OUTPUT_FOLDER_MARKS: readonly string[] = [MANIFEST_NAME, LEDGER_NAME, LOCK_NAME];

function unlistable(folder: string, error: unknown): CamvizError {
  return new CamvizError(`cannot list the folder: ${ioReason(error)}`, { file: folder, cause: error });
}

function isWithin(path: string, folder: string): boolean {
  return path === folder || isInsideFolder(folder, path);
}

/**
 * The images among `files` that are not a run's outputs written beside
 * them: `<stem>.<method>.<class>.png` (a CAM map) or `<stem>.<layer>.fmap.png`
 * (a feature-map grid), where another of the files, in the same folder,
 * is `<stem>.<ext>`.
 */
export function withoutOutputs(files: readonly string[]): string[] {
  const stems = new Set(files.map(withoutExtension));
  return files.filter((file) => !isOutputName(file, stems));
}

function withoutExtension(path: string): string {
  const extension = extname(path);
  return extension === '' ? path : path.slice(0, -extension.length);
}

function isOutputName(file: string, stems: ReadonlySet<string>): boolean {
  const match = /^(.+)\.(?:\d+|fmap)\.png$/i.exec(file);
  if (match === null) return false;
  const named = match[1]!;
  // `<stem>.<what>`: the stem may hold dots itself, so every split is tried.
  for (let dot = named.lastIndexOf('.'); dot > 0; dot = named.lastIndexOf('.', dot - 1)) {
    const stem = named.slice(0, dot);
    if (stem.includes(sep) && dirname(stem) !== dirname(file)) break;
    if (stems.has(stem)) return true;
  }
  return false;
}

/** The deepest folder holding every one of the absolute `paths` (a folder input counts as its own parent's child). */
function commonFolder(paths: readonly string[]): string {
  const parts = paths.map((path) => dirname(path).split(sep));
  const shared: string[] = [];
  for (let i = 0; parts.every((list) => i < list.length && list[i] === parts[0]![i]); i++) shared.push(parts[0]![i]!);
  return shared.length === 1 && shared[0] === '' ? sep : shared.join(sep);
}

/** A minimal glob: `**` any folders, `*` and `?` within a name, `{a,b}` alternatives. */
export function globToRegExp(given: string): RegExp {
  const glob = simplifiedGlob(given);
  checkGlob(given, glob);
  let pattern = '';
  for (let i = 0; i < glob.length; i++) {
    const char = glob[i]!;
    if (char === '*' && glob[i + 1] === '*') {
      pattern += glob[i + 2] === '/' ? '(?:.*/)?' : '.*';
      i += glob[i + 2] === '/' ? 2 : 1;
    } else if (char === '*') pattern += '[^/]*';
    else if (char === '?') pattern += '[^/]';
    else if (char === '{') pattern += '(?:';
    else if (char === '}') pattern += ')';
    else if (char === ',' && glob.lastIndexOf('{', i) > glob.lastIndexOf('}', i)) pattern += '|';
    else pattern += char.replace(/[.+^$()|[\]\\]/g, '\\$&');
  }
  // A pattern without a folder part matches file names at any depth.
  return new RegExp(`^${glob.includes('/') ? '' : '(?:.*/)?'}${pattern}$`, 'i');
}

// The glob with repeats that match the same names folded: a run of
// "**" and slash is one, three stars or more are two. Nested, they made the
// regular expression backtrack for minutes on each path (200 of them hung a run).
function simplifiedGlob(glob: string): string {
  return glob.replace(/\*{3,}/g, '**').replace(/(?:\*\*\/)+/g, '**/');
}

/** At most this many `**` or `*` in a glob: each may backtrack over the whole path. */
const MAX_GLOB_WILDCARDS = 16;

/** Refuses, as a usage error, a glob whose braces do not pair or that holds too many wildcards to match in bounded time. */
function checkGlob(given: string, glob: string): void {
  let depth = 0;
  for (const char of glob) {
    if (char === '{') depth++;
    else if (char === '}' && --depth < 0) break;
  }
  if (depth !== 0) throw new UsageError(`--glob '${given}': its braces { } do not pair`);
  if ((glob.match(/\*+/g) ?? []).length > MAX_GLOB_WILDCARDS) throw new UsageError(`--glob '${given}': more than ${MAX_GLOB_WILDCARDS} wildcards (* or **)`);
}

