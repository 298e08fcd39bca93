/**
 * `camviz merge`: joins the output folders of a sharded run (one per CI job)
 * into one folder with one manifest, as if a single job had done it all.
 * Everything is checked before anything is written: shards must come from
 * the same command, model and options, no input may be in two shards, and
 * every output a manifest lists must exist. Files are copied through a
 * temporary name and renamed, so an interrupted merge leaves no torn file.
 */
import { existsSync } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { WriteError } from '../util/atomic-file.js';
import { readRegularFile } from '../util/read-whole-file.js';
import { CamvizError, UsageError } from '../util/errors.js';
import type { InputRecord } from '../tasks/types.js';
import { realPathInside } from '../util/inside-folder.js';
import { acquireRunLock, removeStaleTemporaries } from './lock.js';
import { type Manifest, MANIFEST_NAME, inputLocation, readManifest, summarise, writeManifest } from './manifest.js';
import { REPORT_NAME, thumbnailPath, withUnrecordedThumbnails, writeReport } from './report.js';
import type { Shard } from './shard.js';
import { makeFolders } from '../util/make-folders.js';
import { ensureWritable } from './out-dir.js';
import { compactFolderLedger, refuseForeignPage, replaceableOutputs, runFolderOutputs } from './own-outputs.js';
import { type EarlierOutputs, createLedger, fileAtOutput, writeOwnOutput } from '../util/outputs-ledger.js';

/** One shard folder and its manifest. */
export interface ShardRun {
  /** The folder as the user named it (for messages). */
  dir: string;
  manifest: Manifest;
}

export interface MergeOptions {
  /** Write index.html even when no shard had one. */
  report?: boolean;
  /** Notes that are not errors (a shard missing from the set, differing versions). */
  log?: (message: string) => void;
}

export interface MergeResult {
  manifest: Manifest;
  manifestPath: string;
  reportPath?: string;
  /** Files copied into the output folder. */
  copied: number;
  /** 0 when every merged record is ok, 1 when any failed. */
  exitCode: number;
}

/** Files copied at once. */
const COPY_CONCURRENCY = 4;

/**
 * Merges shard folders into `outDir` (which may be one of them). Throws
 * UsageError when the shards cannot be merged, CamvizError when a listed
 * output is missing; in both cases before writing anything.
 */
export async function mergeRuns(shardDirs: readonly string[], outDir: string, options: MergeOptions = {}): Promise<MergeResult> {
  const log = options.log ?? (() => undefined);
  if (shardDirs.length === 0) throw new UsageError('merge needs at least one shard folder');
  const shards = await readShards(shardDirs);
  const manifest = mergeManifests(shards, log);
  const copies = await plannedCopies(shards, outDir);
  const writesReport = options.report === true || shards.some((shard) => existsSync(join(shard.dir, REPORT_NAME)));
  const earlier = await runFolderOutputs(outDir);
  if (writesReport) await refuseForeignPage(outDir, REPORT_NAME, earlier.files);
  // As a run's: the merge replaces only files camviz wrote in the folder (its ledger's and its manifest's), as it wrote them.
  const own = await replaceableOutputs(outDir, withUnrecordedThumbnails(earlier.files, earlier.manifest?.records ?? []));
  await refuseForeignOutputs(copies, own);

  await ensureWritable(outDir);
  // As a run's: a run writing into the folder meanwhile would lose the merge's files, or the merge its manifest.
  const lock = await acquireRunLock(outDir, log);
  try {
    // A merge killed mid-copy leaves temporary files that nothing else would remove.
    await removeStaleTemporaries(outDir);
    await compactFolderLedger(outDir);
    let copied = 0;
    // Each output copied is recorded as it is put in place, as a run records its outputs (OutputSet): later runs may replace them.
    if (copies.length > 0) await createLedger(outDir);
    await forEachLimited(copies, COPY_CONCURRENCY, async (copy) => {
      await copyFileAtomic(copy, outDir, own);
      copied++;
    });
    const manifestPath = await writeManifest(outDir, manifest);
    const reportPath = writesReport ? await writeReport(outDir, manifest) : undefined;
    return { manifest, manifestPath, ...(reportPath === undefined ? {} : { reportPath }), copied, exitCode: manifest.summary.error > 0 ? 1 : 0 };
  } finally {
    await lock.release();
  }
}

/** Reads every shard's manifest; refuses a folder named twice or one without a manifest. */
export async function readShards(shardDirs: readonly string[]): Promise<ShardRun[]> {
  const seen = new Map<string, string>();
  const shards: ShardRun[] = [];
  for (const dir of shardDirs) {
    const real = await realpath(dir).catch(() => resolve(dir));
    const earlier = seen.get(real);
    if (earlier !== undefined) throw new UsageError(`shard folder given twice: ${earlier} and ${dir}`);
    seen.set(real, dir);
    let manifest: Manifest | undefined;
    try {
      manifest = await readManifest(dir);
    } catch (error) {
      throw new UsageError(error instanceof CamvizError ? error.message : String(error), { file: join(dir, MANIFEST_NAME) });
    }
    if (manifest === undefined) throw new UsageError(`no ${MANIFEST_NAME} in shard folder`, { file: dir });
    shards.push({ dir, manifest });
  }
  return shards;
}

/**
 * The merged manifest: records of all shards sorted by relative path,
 * summary recomputed, the shards listed, the earliest start and latest
 * finish (none while any shard is unfinished), interrupted if any was.
 * Throws UsageError when shards disagree on command, model or options
 * (`shard` aside), or when an input or an output file is in two shards.
 */
export function mergeManifests(shards: readonly ShardRun[], log: (message: string) => void = () => undefined): Manifest {
  const first = shards[0];
  if (first === undefined) throw new UsageError('merge needs at least one shard folder');
  for (const shard of shards.slice(1)) checkCompatible(first, shard);
  checkDisjoint(shards);
  noteDifferences(shards, log);

  const workingDirectory = first.manifest.workingDirectory;
  const records = shards.flatMap((shard) => recordsFrom(shard.manifest, workingDirectory)).sort(byRelativePath);
  const finishes = shards.map((shard) => shard.manifest.finishedAt);
  const merged: Manifest = {
    camviz: first.manifest.camviz,
    command: first.manifest.command,
    model: first.manifest.model,
    backend: first.manifest.backend,
    ...(first.manifest.engine === undefined ? {} : { engine: first.manifest.engine }),
    options: first.manifest.options,
    shard: mergedShards(shards),
    startedAt: earliest(shards.map((shard) => shard.manifest.startedAt)),
    finishedAt: finishes.some((finish) => finish === null) ? null : latest(finishes as string[]),
    interrupted: shards.some((shard) => shard.manifest.interrupted),
    ...(workingDirectory === undefined ? {} : { workingDirectory }),
    summary: summarise(records),
    records,
  };
  return merged;
}

/**
 * A shard's records as the merged manifest holds them: inputs given from
 * another working folder than the first shard's (shards run on other
 * machines or from other folders) are made absolute, so that each still
 * names its file from the merged manifest's working folder.
 */
function recordsFrom(manifest: Manifest, workingDirectory: string | undefined): InputRecord[] {
  if (manifest.workingDirectory === workingDirectory) return manifest.records;
  return manifest.records.map((record) => ({ ...record, input: inputLocation(manifest, record) }));
}

function checkCompatible(first: ShardRun, other: ShardRun): void {
  const a = first.manifest;
  const b = other.manifest;
  if (a.command !== b.command) {
    throw new UsageError(`cannot merge: shards ran different commands: ${first.dir} ran ${a.command}, ${other.dir} ran ${b.command}`);
  }
  if (a.model.sha256 !== b.model.sha256) {
    throw new UsageError(
      `cannot merge: shards used different models: ${first.dir} used ${a.model.name} (sha256 ${a.model.sha256.slice(0, 12)}), ` +
        `${other.dir} used ${b.model.name} (sha256 ${b.model.sha256.slice(0, 12)})`,
    );
  }
  // What else decides the outputs beyond the model's file (camviz.json's preprocessing, size and labels); manifests before camviz recorded it have none.
  for (const field of ['preprocess', 'inputSize', 'labels'] as const) {
    const [fromA, fromB] = [a.model[field], b.model[field]];
    if (fromA === undefined || fromB === undefined || JSON.stringify(fromA) === JSON.stringify(fromB)) continue;
    throw new UsageError(`cannot merge: shards used the model with different ${field}: ${first.dir} has ${show(fromA)}, ${other.dir} has ${show(fromB)}`);
  }
  const difference = firstDifference(withoutShard(a.options), withoutShard(b.options), '');
  if (difference !== undefined) {
    throw new UsageError(
      `cannot merge: shards used different options: ${difference.path}: ${first.dir} has ${show(difference.a)}, ${other.dir} has ${show(difference.b)}`,
    );
  }
}

/** No input (relative path) and no output file may come from two shards: one would overwrite the other. */
function checkDisjoint(shards: readonly ShardRun[]): void {
  const inputs = new Map<string, string>();
  const outputs = new Map<string, { dir: string; input: string }>();
  for (const shard of shards) {
    const mine = new Set<string>();
    for (const record of shard.manifest.records) {
      const owner = inputs.get(record.relative);
      if (owner !== undefined && owner !== shard.dir) {
        throw new UsageError(`cannot merge: input ${record.relative} is in two shards: ${owner} and ${shard.dir}`);
      }
      // A run records each input once: a manifest listing one twice was edited or joined by hand, and compare would refuse the merge later.
      if (mine.has(record.relative)) throw new UsageError(`cannot merge: input ${record.relative} is listed twice in one shard's manifest`, { file: join(shard.dir, MANIFEST_NAME) });
      mine.add(record.relative);
      for (const output of record.outputs) {
        const earlier = outputs.get(output);
        if (earlier !== undefined) {
          const writers =
            earlier.dir === shard.dir
              ? `two inputs of one shard, ${shard.dir}: ${earlier.input} and ${record.relative}`
              : `two shards: ${earlier.dir} (for ${earlier.input}) and ${shard.dir} (for ${record.relative})`;
          throw new UsageError(`cannot merge: output ${output} is written by ${writers}`);
        }
        outputs.set(output, { dir: shard.dir, input: record.relative });
      }
    }
    for (const relative of mine) inputs.set(relative, shard.dir);
  }
}

/** What may differ without changing outputs, but is worth a note. */
function noteDifferences(shards: readonly ShardRun[], log: (message: string) => void): void {
  const distinct = (values: string[]): string[] => [...new Set(values)];
  const versions = distinct(shards.map((shard) => shard.manifest.camviz));
  if (versions.length > 1) log(`note: shards ran different camviz versions (${versions.join(', ')})`);
  const backends = distinct(shards.map((shard) => shard.manifest.backend.kind));
  if (backends.length > 1) log(`note: shards ran on different backends (${backends.join(', ')}); the manifest names the first`);
  const engines = distinct(shards.map((shard) => shard.manifest.engine?.kind ?? 'tfjs'));
  if (engines.length > 1) log(`note: shards ran on different engines (${engines.join(', ')}); the manifest names the first`);
  const list = mergedShards(shards) ?? [];
  const counts = distinct(list.map((shard) => String(shard.count)));
  if (counts.length > 1) {
    log(`note: shards come from splits of different sizes (${list.map((shard) => `${shard.index}/${shard.count}`).join(', ')})`);
  } else if (list.length > 0) {
    const count = list[0]!.count;
    const missing = Array.from({ length: count }, (_, i) => i + 1).filter((index) => !list.some((shard) => shard.index === index));
    if (missing.length > 0) log(`note: shard${missing.length > 1 ? 's' : ''} ${missing.map((index) => `${index}/${count}`).join(', ')} not merged`);
  }
  const unsharded = shards.filter((shard) => shard.manifest.shard === null);
  if (unsharded.length > 0 && shards.length > 1) log(`note: ${unsharded.map((shard) => shard.dir).join(', ')} ran without --shard`);
}

/** Every shard the inputs cover, once each, in order. */
function mergedShards(shards: readonly ShardRun[]): Shard[] | null {
  const byKey = new Map<string, Shard>();
  for (const shard of shards) {
    for (const entry of shard.manifest.shard ?? []) {
      const key = `${entry.index}/${entry.count}`;
      if (!byKey.has(key)) byKey.set(key, entry);
    }
  }
  if (byKey.size === 0) return null;
  return [...byKey.values()].sort((a, b) => a.count - b.count || a.index - b.index);
}

/** The options shards must share: not the shard itself, nor the batch size, which changes how images are grouped, not what is written. */
function withoutShard(options: Record<string, unknown>): Record<string, unknown> {
  const { shard: _shard, batchSize: _batchSize, ...rest } = options;
  return rest;
}

interface Difference {
  path: string;
  a: unknown;
  b: unknown;
}

/** The first place (a dotted path) where two JSON values differ, objects compared key by key. */
export function firstDifference(a: unknown, b: unknown, path: string): Difference | undefined {
  if (isRecord(a) && isRecord(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    for (const key of keys) {
      const found = firstDifference(a[key], b[key], path === '' ? key : `${path}.${key}`);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  return canonical(a) === canonical(b) ? undefined : { path: path === '' ? '(all)' : path, a, b };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** JSON with sorted keys; a missing value and `undefined` are the same. */
function canonical(value: unknown): string {
  if (value === undefined) return 'undefined';
  return JSON.stringify(value, (_key, inner: unknown) =>
    isRecord(inner) ? Object.fromEntries(Object.keys(inner).sort().map((key) => [key, inner[key]])) : inner,
  );
}

function show(value: unknown): string {
  return value === undefined ? 'nothing' : JSON.stringify(value);
}

function byRelativePath(a: InputRecord, b: InputRecord): number {
  if (a.relative !== b.relative) return a.relative < b.relative ? -1 : 1;
  return a.input < b.input ? -1 : a.input > b.input ? 1 : 0;
}

function earliest(times: readonly string[]): string {
  return times.reduce((best, time) => (Date.parse(time) < Date.parse(best) ? time : best));
}

function latest(times: readonly string[]): string {
  return times.reduce((best, time) => (Date.parse(time) > Date.parse(best) ? time : best));
}

interface Copy {
  from: string;
  to: string;
  /** Its name inside the merged folder (an output's as the manifest lists it), under which the folder's ledger records it. */
  name: string;
}

/**
 * The files to copy: every output each record lists (which must exist) and
 * its input's thumbnail when the shard has one. Nothing from a shard that
 * is the output folder itself: its files are already in place.
 */
async function plannedCopies(shards: readonly ShardRun[], outDir: string): Promise<Copy[]> {
  const outReal = await realpath(outDir).catch(() => resolve(outDir));
  const copies: Copy[] = [];
  for (const shard of shards) {
    const shardReal = await realpath(shard.dir).catch(() => resolve(shard.dir));
    const inPlace = shardReal === outReal;
    for (const record of shard.manifest.records) {
      for (const output of record.outputs) {
        const from = insidePath(shard.dir, output);
        const info = await stat(from).catch(() => undefined);
        if (!info?.isFile()) throw new CamvizError(`output listed in ${MANIFEST_NAME} is missing`, { file: from });
        const real = await confinedFile(shardReal, from);
        if (!inPlace) copies.push({ from: real, to: insidePath(outDir, output), name: output });
      }
      if (inPlace) continue;
      const thumb = thumbnailPath(record.relative);
      if (!isSafeRelative(thumb)) continue;
      const from = join(shard.dir, thumb);
      if ((await stat(from).catch(() => undefined))?.isFile()) copies.push({ from: await confinedFile(shardReal, from), to: join(outDir, thumb), name: thumb });
    }
  }
  return copies;
}

/**
 * Refuses, before anything is written, a merge whose outputs (or
 * thumbnails) would replace a file camviz did not write (`own`: what the folder's ledger and
 * manifest say it did): a user's own file of an output's name in the
 * folder merged into, or camviz's edited or replaced since. One line
 * naming the file.
 */
async function refuseForeignOutputs(copies: readonly Copy[], own: (start: string) => EarlierOutputs): Promise<void> {
  for (const copy of copies) {
    if ((await fileAtOutput(copy.to, copy.name, own(copy.name))) === 'foreign') throw foreignOutput(copy.to);
  }
}

function foreignOutput(path: string): CamvizError {
  return new CamvizError("a file camviz did not write has this output's name: the merge replaces none (move it, or merge into another folder)", { file: path });
}

/**
 * The real path of a shard's file, refused when a symbolic link leads it
 * out of the shard's folder (`shardReal`, a real path): a shard is
 * often a CI artifact from elsewhere, and a link in it to /etc/shadow was
 * copied into the merged folder.
 */
async function confinedFile(shardReal: string, path: string): Promise<string> {
  const { real, inside } = await realPathInside(shardReal, path);
  if (!inside) throw new CamvizError(`a shard's file leads out of its folder through a symbolic link: refused (to ${real})`, { file: path });
  return real;
}

/** `folder/relative`, refusing a manifest path that would lead outside the folder. */
function insidePath(folder: string, relative: string): string {
  if (!isSafeRelative(relative)) throw new UsageError(`${MANIFEST_NAME} lists an output outside its folder: ${relative}`, { file: folder });
  return join(folder, relative);
}

function isSafeRelative(path: string): boolean {
  return path !== '' && !isAbsolute(path) && !/^[A-Za-z]:/.test(path) && !path.split(/[\\/]/).includes('..');
}

/**
 * Copies through a temporary file in the target folder, flushed to disk,
 * then put in place (writeOwnOutput): a crash never leaves an empty
 * file under the final name. An output or a thumbnail is recorded in the ledger of
 * `outDir` as the file it is there (its own inode and time: the shard's
 * ledger speaks of the shard's files). Read whole: shards hold maps and
 * thumbnails, and four are copied at once.
 */
async function copyFileAtomic(copy: Copy, outDir: string, own: (start: string) => EarlierOutputs): Promise<void> {
  let written: 'written' | 'foreign';
  try {
    const { bytes } = await readRegularFile(copy.from);
    await makeFolders(dirname(copy.to));
    // Looked at again: a file that came to its name since refuseForeignOutputs looked (before the lock) is not replaced either.
    written = await writeOwnOutput(outDir, copy.name, copy.to, bytes, own(copy.name));
  } catch (error) {
    const reason = error instanceof WriteError ? error.reason : (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new CamvizError(`could not copy ${copy.from}: ${reason}`, { file: copy.to });
  }
  if (written === 'foreign') throw foreignOutput(copy.to);
}

async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  });
  await Promise.all(lanes);
}
