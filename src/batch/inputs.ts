/**
 * Expanding the command line's inputs (files and folders) into a sorted
 * list of images, each with the path relative to the folder it was found
 * in, so that outputs can mirror the input tree.
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, extname, join, relative } from 'node:path';
import { CamvizError } from '../errors.js';
import { IMAGE_EXTENSIONS } from '../model/image.js';

export interface InputImage {
  /** The path as given or found (for messages and the manifest). */
  path: string;
  /** Relative path under its input folder; the file name for a file given directly. */
  relative: string;
}

export interface ExpandOptions {
  /** A glob on the relative path (`*`, `**`, `?`, `{a,b}`), e.g. `**\/*.jpg`. */
  glob?: string;
}

export async function expandInputs(paths: readonly string[], options: ExpandOptions = {}): Promise<InputImage[]> {
  const matcher = options.glob === undefined ? undefined : globToRegExp(options.glob);
  const images: InputImage[] = [];
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
    const found = (await listImages(path))
      .map((file) => ({ path: file, relative: relative(path, file).split('\\').join('/') }))
      .filter((image) => matcher === undefined || matcher.test(image.relative));
    if (found.length === 0) {
      throw new CamvizError(`folder holds no images${options.glob ? ` matching ${options.glob}` : ''} (${IMAGE_EXTENSIONS.join(' ')})`, { file: path });
    }
    found.sort((a, b) => (a.relative < b.relative ? -1 : a.relative > b.relative ? 1 : 0));
    images.push(...found);
  }
  return images;
}

async function listImages(folder: string): Promise<string[]> {
  const entries = await readdir(folder, { withFileTypes: true });
  const files: string[] = [];
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const full = join(folder, entry.name);
    if (entry.isDirectory()) files.push(...(await listImages(full)));
    else if (entry.isFile() && IMAGE_EXTENSIONS.includes(extname(entry.name).toLowerCase())) files.push(full);
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

