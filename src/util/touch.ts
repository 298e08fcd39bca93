import { utimes } from 'node:fs/promises';

/** Sets a file's mtime to now, best effort: a cache's "last used", so that its size bound evicts what was used least recently. */
export async function touch(path: string): Promise<void> {
  const now = new Date();
  await utimes(path, now, now).catch(() => undefined);
}
