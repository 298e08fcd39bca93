/**
 * Expanding the command line's inputs (files and folders) into a sorted
 * list of images, each with the path relative to the folder it was found
 * in, so that outputs can mirror the input tree.
 */
import { readdir, realpath, stat } from 'node:fs/promises';
import { basename, extname, join, relative, resolve } from 'node:path';
import { CamvizError } from '../errors.js';
import { IMAGE_EXTENSIONS } from '../model/formats.js';

import type { InputImage } from '../tasks/types.js';

export type { InputImage };

export interface ExpandOptions {
  /** A glob on the relative path (`*`, `**`, `?`, `{a,b}`), e.g. `**\/*.jpg`. */
  glob?: string;
}

/**
 * Files and folders to images, sorted by relative path. A file given
 * directly is named by its file name; a folder's images by their path
 * inside it, prefixed with the folder's name when several inputs are given,
 * so that outputs mirror the input tree and equal file names in different
 * folders do not collide.
 */
export async function expandInputs(paths: readonly string[], options: ExpandOptions = {}): Promise<InputImage[]> {
  const matcher = options.glob === undefined ? undefined : globToRegExp(options.glob);
  const images: InputImage[] = [];
  const prefixFolders = paths.length > 1;
  for (const path of paths) {
    const info = await stat(path).catch(() => undefined);
    if (info === undefined) {
      // A missing file stays in the list: loading it reports the error in order.
      images.push({ path, relative: basename(path) });
      continue;
    }
    if (!info.isDirectory()) {
      images.push({ path, relative: basename(path) });
      continue;
    }
    const prefix = prefixFolders ? `${basename(resolve(path))}/` : '';
    const found = (await listImages(path))
      .map((file) => ({ path: file, relative: prefix + relative(path, file).split('\\').join('/') }))
      .filter((image) => matcher === undefined || matcher.test(image.relative));
    if (found.length === 0) {
      throw new CamvizError(`folder holds no images${options.glob ? ` matching ${options.glob}` : ''} (${IMAGE_EXTENSIONS.join(' ')})`, { file: path });
    }
    images.push(...found);
  }
  return images.sort(byRelativePath);
}

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

/**
 * Image files under `folder`, recursively. Symbolic links are followed (data
 * sets kept by DVC or git-annex are trees of links); a linked folder already
 * being listed is skipped, so that a link to a parent does not loop.
 */
async function listImages(folder: string, listing: ReadonlySet<string> = new Set()): Promise<string[]> {
  const real = await realpath(folder);
  if (listing.has(real)) return [];
  const within = new Set([...listing, real]);
  const entries = await readdir(folder, { withFileTypes: true });
  const files: string[] = [];
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const full = join(folder, entry.name);
    // undefined: a dangling link. Named like an image, it is kept, so that
    // loading reports it (a data set's missing file) instead of skipping it.
    const target = entry.isSymbolicLink() ? await stat(full).catch(() => undefined) : entry;
    if (target?.isDirectory()) files.push(...(await listImages(full, within)));
    else if ((target === undefined || target.isFile()) && IMAGE_EXTENSIONS.includes(extname(entry.name).toLowerCase())) files.push(full);
  }
  return files;
}

/** A minimal glob: `**` any folders, `*` and `?` within a name, `{a,b}` alternatives. */
export function globToRegExp(glob: string): RegExp {
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

