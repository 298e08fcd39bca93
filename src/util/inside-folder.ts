/**
 * Whether a path stays inside a folder: by name (a manifest's or weight
 * manifest's relative paths), and through symbolic links (a file of a
 * model folder or of a shard that links to /etc/passwd).
 */
import { realpath } from 'node:fs/promises';
import { isAbsolute, relative, sep } from 'node:path';

/** Whether `path` lies strictly below `folder` (both resolved; real paths where links matter). */
export function isInsideFolder(folder: string, path: string): boolean {
  const inside = relative(folder, path);
  return inside !== '' && !isAbsolute(inside) && inside !== '..' && !inside.startsWith(`..${sep}`);
}

/** The real path of `path`, and whether it lies inside `realFolder` (a real path): a link may lead it out. Rejects as realpath does. */
export async function realPathInside(realFolder: string, path: string): Promise<{ real: string; inside: boolean }> {
  const real = await realpath(path);
  return { real, inside: isInsideFolder(realFolder, real) };
}
