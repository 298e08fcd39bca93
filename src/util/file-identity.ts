/**
 * A file's identity as it was when read: what the model caches (model/
 * file-fingerprints.ts) and the V8 code cache (engine/code-cache.ts) record,
 * so that later runs can tell the very same, unchanged file from another.
 */
import type { BigIntStats } from 'node:fs';

/**
 * A file as it was when read: its real path, device and inode, size, and
 * modification and change times in nanoseconds (decimal strings of
 * `stat(..., { bigint: true })`), taken before its bytes were read.
 */
export interface FileIdentity {
  readonly path: string;
  readonly dev: string;
  readonly ino: string;
  readonly size: string;
  readonly mtimeNs: string;
  readonly ctimeNs: string;
}

/** The identity of the file at `path` (a real path) whose stats, taken through its descriptor, are `stats`. */
export function identityOf(path: string, stats: BigIntStats): FileIdentity {
  return { path, dev: String(stats.dev), ino: String(stats.ino), size: String(stats.size), mtimeNs: String(stats.mtimeNs), ctimeNs: String(stats.ctimeNs) };
}

/** Whether two identities are of one file, unchanged. */
export function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return a.path === b.path && a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

/**
 * A file's stamp as `<dev>:<ino>:<size>:<mtimeNs>`: what the outputs ledger
 * (util/outputs-ledger.ts) records of a file camviz wrote, to tell it from
 * a file put in its place. No path (the ledger keys it by name) and no
 * change time: the rename that puts a written file in place changes it.
 */
export function stampOf(stats: BigIntStats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}`;
}

/** The size (bytes, decimal) a stamp (stampOf) records. */
export function stampedSize(stamp: string): string | undefined {
  return stamp.split(':')[2];
}
