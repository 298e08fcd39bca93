/**
 * A model's fingerprint (a sha256) recorded by the identity of the files it
 * was read from, so that a later run that finds them as they were skips
 * hashing them: `file-fingerprints.json` in the ONNX cache folder, per real
 * path of the model's first file. The ONNX writer's cache keys a TF.js
 * layers model by it (onnx-writer/cache.ts; 10 MB hashed for MobileNet v1,
 * 20 ms of a cold start), the ONNX loader an .onnx file (onnx/read.ts; its
 * sha256 keys the saved ONNX Runtime session, 25 ms for the same network).
 *
 * Safe because a file's bytes cannot change while its identity stays: any
 * write sets its ctime to the current time, and ctime cannot be set by a
 * user (utimes restores mtime but sets ctime); a file replaced or copied has
 * another inode or real path; files changed within SETTLED_MS of the record
 * are not recorded (two writes in one clock tick, writes through a mapping
 * before the kernel writes the page back). Identities are taken through the
 * descriptor before the bytes are read and kept only when the path names
 * the file unchanged after the read (unchangedIdentity); a file on a file
 * system that may not keep change times (keepsChangeTimes) gets none, and
 * is hashed.
 */
import { createHash } from 'node:crypto';
import { type BigIntStats, statSync } from 'node:fs';
import { realpath, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { type FileIdentity, identityOf, sameIdentity } from '../util/file-identity.js';
import { type EntryIndex, readEntryIndex, removeEntry, writeEntryIndex } from './entry-index.js';

/** The index of fingerprints by file identity, in the cache folder. */
export const FILE_FINGERPRINTS_NAME = 'file-fingerprints.json';

/** The index keeps the models most recently recorded: one line each, a few hundred bytes. */
const MAX_FILE_FINGERPRINTS = 256;

/**
 * A file changed this recently is not recorded. Its next write could fall
 * in the same tick of the file system's clock (the kernel's coarse clock,
 * a few ms; 1-2 s on some file systems) and leave every field of its
 * identity as it was: git's "racily clean" files. And a write through a
 * shared mapping (mmap) sets the times only when it makes a clean page
 * dirty: a page still dirty takes more writes unseen until the kernel
 * writes it back, 30 s after it became dirty by default
 * (vm.dirty_expire_centisecs) plus the flusher's 5 s period.
 */
export const SETTLED_MS = 40_000;

/**
 * The identity of the file at `path` (a real path) that `before` gives (its
 * stats, taken through the descriptor before its bytes were read), if the
 * path still names that file unchanged once they are read; undefined when
 * it was written, replaced or removed meanwhile: the bytes read may then be
 * neither the old file's nor the new one's, and are hashed.
 */
export async function unchangedIdentity(path: string, before: BigIntStats): Promise<FileIdentity | undefined> {
  const identity = identityOf(path, before);
  const [after, kept] = await Promise.all([stat(path, { bigint: true }).catch(() => undefined), keepsChangeTimes(path, before.dev)]);
  return kept && after !== undefined && sameIdentity(identity, identityOf(path, after)) ? identity : undefined;
}

/**
 * Whether `path`, followed through links, names the file of `identity`
 * unchanged: a synchronous stat, for a check just before another reader
 * (ONNX Runtime) opens that path.
 */
export function namesFileSync(path: string, identity: FileIdentity): boolean {
  const now = statSync(path, { bigint: true, throwIfNoEntry: false });
  return now !== undefined && sameIdentity(identity, identityOf(identity.path, now));
}

/**
 * Linux file systems (statfs magic numbers) whose change time every write
 * sets: ext2-4, xfs, btrfs, tmpfs, overlayfs, zfs, f2fs. Elsewhere (vfat and
 * exFAT report the modification time as the change time, network and FUSE
 * file systems may keep none; other systems are not checked) files get no
 * identity and are hashed.
 */
const CHANGE_TIME_FILESYSTEMS = new Set([0xef53, 0x58465342, 0x9123683e, 0x01021994, 0x794c7630, 0x2fc12fc1, 0xf2f52010]);

/**
 * Whether the file system `path` is on keeps change times: the file's own,
 * which may be another than its folder's (a file bind-mounted alone). Asked
 * once per device (`device`, the file's st_dev) for a few seconds: a
 * device is one file system while mounted, and a model's files are mostly
 * on one (MobileNet's 56 files took 56 statfs calls, 3-7 ms of a cold
 * start's main thread); an answer does not outlive CHANGE_TIMES_ANSWER_MS,
 * as a device number may be given to another file system after an unmount.
 */
async function keepsChangeTimes(path: string, device: bigint): Promise<boolean> {
  if (process.platform !== 'linux') return false;
  const known = changeTimesKept.get(device);
  if (known !== undefined && performance.now() - known.askedAt < CHANGE_TIMES_ANSWER_MS) return known.kept;
  const kept = statfs(path).then(
    (info) => CHANGE_TIME_FILESYSTEMS.has(info.type),
    () => false,
  );
  changeTimesKept.set(device, { kept, askedAt: performance.now() });
  return kept;
}

/** How long keepsChangeTimes trusts an answer for a device (ms): a model's load reads its files within it. */
const CHANGE_TIMES_ANSWER_MS = 10_000;

/** keepsChangeTimes' answers, per device, with when they were asked for. */
const changeTimesKept = new Map<bigint, { readonly kept: Promise<boolean>; readonly askedAt: number }>();

interface FileFingerprint {
  /** The sha256 of the files' identities and what the fingerprint depends on beyond them: 64 bytes, not 11 KB for MobileNet's 55 files. */
  readonly identity: string;
  readonly fingerprint: string;
}

let fingerprintsComputed = 0;

/** How many fingerprints recordedFingerprint computed (the others were taken from the index): for tests. */
export function computedFingerprintCount(): number {
  return fingerprintsComputed;
}

/**
 * The fingerprint of the model read from `identities` (the first one's path
 * keys the record): the one recorded in `folder` when every file still has
 * the identity it had then, and `dependsOn` (what else the fingerprint
 * depends on: versions, what kind of fingerprint it is) is as it was; else
 * `compute()`, then recorded when every file has settled. A record that
 * cannot be read or written only costs a hash.
 */
export async function recordedFingerprint(folder: string, identities: readonly FileIdentity[], dependsOn: Readonly<Record<string, string | number>>, compute: () => string): Promise<string> {
  const first = identities[0];
  if (first === undefined) return countedCompute(compute);
  const identity = createHash('sha256').update(JSON.stringify({ ...dependsOn, files: identities })).digest('hex');
  const indexPath = join(folder, FILE_FINGERPRINTS_NAME);
  const index = await readFileFingerprints(indexPath);
  const known = index[first.path];
  if (known?.identity === identity) return known.fingerprint;
  const fingerprint = countedCompute(compute);
  if (identities.every((file) => settled(file))) await writeEntryIndex(indexPath, index, first.path, { identity, fingerprint }, MAX_FILE_FINGERPRINTS);
  return fingerprint;
}

function countedCompute(compute: () => string): string {
  fingerprintsComputed++;
  return compute();
}

/** Whether the file last changed SETTLED_MS or more before `beforeMs` (now, by default): long enough ago to be recorded. */
function settled(file: FileIdentity, beforeMs = Date.now()): boolean {
  const changedNs = BigInt(file.mtimeNs) > BigInt(file.ctimeNs) ? BigInt(file.mtimeNs) : BigInt(file.ctimeNs);
  return changedNs < BigInt(Math.floor(beforeMs - SETTLED_MS)) * 1_000_000n;
}

/**
 * The identity of the file `path` names (links followed), for a record
 * that later runs trust while it holds (tasks/cam-plan.ts): null when there
 * is no file there; undefined when it cannot be trusted: it changed within
 * SETTLED_MS before `beforeMs` or since (a process's start: what the
 * process read may not be what is there now), or its file system keeps no
 * change times.
 */
export async function settledIdentity(path: string, beforeMs: number): Promise<FileIdentity | null | undefined> {
  const stats = await stat(path, { bigint: true }).catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' || error.code === 'ENOTDIR' ? null : undefined));
  if (stats === null || stats === undefined) return stats;
  const real = await realpath(path).catch(() => undefined);
  if (real === undefined || !stats.isFile() || !(await keepsChangeTimes(real, stats.dev))) return undefined;
  const identity = identityOf(real, stats);
  return settled(identity, beforeMs) ? identity : undefined;
}

/**
 * Drops the fingerprint recorded for the model file at `path` (a real
 * path), so that the next run hashes it: for a record found wrong (the
 * bytes hashed later do not match it, though the file kept its identity).
 * Best effort, as the record.
 */
export async function forgetFingerprint(folder: string, path: string): Promise<void> {
  await removeEntry(join(folder, FILE_FINGERPRINTS_NAME), path, checkedFingerprint);
}

/** The recorded fingerprints; none when the index is missing or unreadable (then it is written anew). */
function readFileFingerprints(path: string): Promise<EntryIndex<FileFingerprint>> {
  return readEntryIndex(path, checkedFingerprint);
}

function checkedFingerprint(value: unknown): FileFingerprint | undefined {
  const entry = value as Partial<FileFingerprint> | null;
  return typeof entry?.identity === 'string' && typeof entry.fingerprint === 'string' && /^[0-9a-f]{64}$/.test(entry.fingerprint) ? { identity: entry.identity, fingerprint: entry.fingerprint } : undefined;
}
