/**
 * ONNX Runtime (onnxruntime-node), an optional native engine: loaded lazily
 * and once, so that camviz starts and runs on tfjs when it is absent or
 * broken. `CAMVIZ_ORT_MODULE` names another module to load (tests use it to
 * simulate a missing or broken install).
 *
 * Sessions are made at graph optimisation level "all" (NCHWc layout and
 * fused Conv+activation: 1.2-2.4x faster than "basic"), with intra-op
 * spinning off (spinning threads ruin medians on a loaded machine), and
 * cached per model and fetched values: creating one costs about 240 ms.
 */
import { createHash } from 'node:crypto';
import { appendFile, rename, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { arch, cpus } from 'node:os';
import { join } from 'node:path';
import { temporaryName } from '../util/atomic-file.js';
import { describeError } from '../util/errors.js';
import { makeFolders } from '../util/make-folders.js';
import { readWholeFile } from '../util/read-whole-file.js';
import { touch } from '../util/touch.js';
import { ortThreadsFromEnv } from './ort-threads.js';
import { hasSeal, sealOf, sealedGraph } from './saved-graph-seal.js';

/*
 * The part of onnxruntime-node's API camviz uses, declared here so that
 * camviz builds and type-checks without the optional package installed.
 */

/** An ORT tensor (onnxruntime-common's Tensor, the members camviz reads). */
export interface OrtTensor {
  readonly type: string;
  readonly dims: readonly number[];
  readonly data: unknown;
  dispose(): void;
}

/** What a session says of one of its inputs (tensors: element type and shape, dynamic dims as names). */
export type OrtValueMetadata = { readonly name: string; readonly isTensor: false } | { readonly name: string; readonly isTensor: true; readonly shape: readonly (number | string)[] };

export interface OrtSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata: readonly OrtValueMetadata[];
  run(feeds: Record<string, OrtTensor>, fetches: readonly string[]): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}

export interface OrtSessionCreateOptions {
  readonly graphOptimizationLevel: 'disabled' | 'basic' | 'extended' | 'layout' | 'all';
  readonly executionProviders: readonly string[];
  readonly intraOpNumThreads: number;
  readonly interOpNumThreads: number;
  readonly executionMode: 'sequential' | 'parallel';
  /** ONNX Runtime's CPU memory arena: the buffers of a pass come from it instead of malloc. */
  readonly enableCpuMemArena: boolean;
  /** Buffers planned once from the first pass's shapes, reused by the next passes of the same shapes. */
  readonly enableMemPattern: boolean;
  readonly extra: Readonly<Record<string, string>>;
  /** Where ORT saves the graph it optimised. */
  readonly optimizedModelFilePath?: string;
  /** 0 verbose .. 4 fatal only; camviz runs at 4 (see sessionOptions). */
  readonly logSeverityLevel?: 0 | 1 | 2 | 3 | 4;
}

export interface OrtModule {
  readonly InferenceSession: { create(model: Uint8Array, options: OrtSessionCreateOptions): Promise<OrtSession> };
  readonly Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => OrtTensor;
  readonly env?: { readonly versions?: { readonly common?: string } };
}

export type OnnxRuntimeStatus =
  | { readonly available: true; readonly version: string; readonly module: OrtModule }
  | { readonly available: false; readonly reason: string };

const DEFAULT_MODULE = 'onnxruntime-node';

let loaded: { specifier: string; status: OnnxRuntimeStatus } | undefined;

/** The module specifier ONNX Runtime is loaded from. */
export function onnxRuntimeModule(): string {
  return process.env['CAMVIZ_ORT_MODULE'] ?? DEFAULT_MODULE;
}

/**
 * Whether ONNX Runtime's module is installed where it is loaded from (its
 * path resolves): cheap, as nothing is loaded; a broken install is found
 * only by loading it (loadOnnxRuntime).
 */
export function onnxRuntimeInstalled(): boolean {
  try {
    createRequire(import.meta.url).resolve(onnxRuntimeModule());
    return true;
  } catch {
    return false;
  }
}

/**
 * ONNX Runtime, loaded on first call (its native library costs 34-143 ms to
 * load), or why it cannot be. The result is kept per module specifier.
 */
export function loadOnnxRuntime(): OnnxRuntimeStatus {
  const specifier = onnxRuntimeModule();
  if (loaded?.specifier === specifier) return loaded.status;
  loaded = { specifier, status: tryLoad(specifier) };
  return loaded.status;
}

/**
 * ONNX Runtime known to load (a worker of this process loaded it: a
 * session made ahead, executor/ort-session-ahead.ts) as a module that this
 * thread loads on first use only: onnxruntime-node's JS and its binding's
 * start cost the main thread about 18 ms even with the library loaded, and
 * a run whose passes all go to that worker never needs them here.
 */
export function lazyOnnxRuntime(version: string): Extract<OnnxRuntimeStatus, { available: true }> {
  const module = (): OrtModule => {
    const status = loadOnnxRuntime();
    if (!status.available) throw new Error(`ONNX Runtime is unavailable: ${status.reason}`);
    return status.module;
  };
  return {
    available: true,
    version,
    module: {
      get InferenceSession() {
        return module().InferenceSession;
      },
      get Tensor() {
        return module().Tensor;
      },
      // All camviz reads of ORT's env is its version (the saved graphs' names), known without loading ORT here.
      get env() {
        return { versions: { common: version } };
      },
    },
  };
}

function tryLoad(specifier: string): OnnxRuntimeStatus {
  optOutOfOrtTelemetry();
  let module: OrtModule;
  try {
    module = createRequire(import.meta.url)(specifier) as OrtModule;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'MODULE_NOT_FOUND' ? `${specifier} is not installed` : `${specifier} does not load: ${describeError(error)}`;
    return { available: false, reason };
  }
  if (typeof module?.InferenceSession?.create !== 'function' || typeof module.Tensor !== 'function') {
    return { available: false, reason: `${specifier} is not ONNX Runtime (no InferenceSession)` };
  }
  const version = typeof module.env?.versions?.common === 'string' ? module.env.versions.common : 'unknown';
  return { available: true, version, module };
}

/**
 * ONNX Runtime 1.29 and later send usage telemetry from official Linux and
 * macOS builds too, and keep a device id under ~/.cache/Microsoft. A
 * command-line tool run in CI must not phone home or write to the home
 * folder unasked: camviz sets ORT's own opt-out (read when the library
 * starts) unless the user has set the variable either way.
 *
 * Only the main thread's setting reaches the library: a worker thread's
 * `process.env` is a copy of its own, which native code never reads. So code
 * that starts a worker which may load ORT calls this first, on its thread.
 */
export function optOutOfOrtTelemetry(): void {
  process.env['ORT_DISABLE_TELEMETRY'] ??= '1';
}

export interface OrtSessionOptions {
  /** Intra-op threads (default: env CAMVIZ_ORT_THREADS, else 1). */
  readonly threads?: number;
}

/** The intra-op thread count: the option, else CAMVIZ_ORT_THREADS, else 1. */
export function ortThreads(threads?: number): number {
  return threads ?? ortThreadsFromEnv() ?? 1;
}

/** How a session departs from camviz's defaults (sessionOptions). */
export interface SessionTuning {
  /**
   * Plan a pass's buffers from the first pass of its shapes (default true).
   * Off for the host workers' fresh sessions: with it, the second pass of a
   * new shape allocates and touches its planned block anew (MobileNet v1,
   * batch 8: 13,000 page faults, 0.2 s of CPU), without it the arena's
   * buffers from the first pass serve it; later passes cost the same.
   */
  readonly memoryPattern?: boolean;
  /**
   * Where the model's external data files are: a session made from bytes
   * has no path of its own, and ONNX Runtime refuses external locations it
   * cannot resolve inside a folder it is given.
   */
  readonly externalDataFolder?: string;
}

/**
 * The session options camviz runs with (see the file comment for why).
 * The CPU arena and the memory pattern are ORT's defaults, set here so that
 * they stay: over a 1,000-image folder run the arena reaches its size on the
 * first images and keeps it, while without it every pass mallocs and frees
 * its buffers (RSS 500 MiB instead of 350, still growing; the memory
 * pattern off was no flatter). What a long run on ORT still grows by is
 * glibc's thread arenas, where sharp decodes and encodes photos of varying
 * sizes (README, Performance).
 */
export function sessionOptions(threads: number, tuning: SessionTuning = {}): OrtSessionCreateOptions {
  return {
    graphOptimizationLevel: 'all',
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    enableCpuMemArena: true,
    enableMemPattern: tuning.memoryPattern ?? true,
    // Fatal only: a pass that fails throws, and camviz reports it once on its
    // own line; ORT's logger also wrote each failure to stderr, coloured, over
    // two lines. (Its warnings are for developers: saving a level-"all" graph
    // warns that it is for this machine only, which is how camviz keeps it.)
    logSeverityLevel: 4,
    // onnxruntime-node passes `extra` as flat string config entries.
    extra: {
      'session.intra_op.allow_spinning': '0',
      ...(tuning.externalDataFolder === undefined ? {} : { 'session.model_external_initializers_file_folder_path': tuning.externalDataFolder }),
    },
  };
}

/**
 * How many sessions stay cached. Each holds its own copy of the weights and
 * the optimised graph; a process asks for a new one per set of fetched
 * layers, so the cache is bounded: least recently used first out.
 */
export const MAX_CACHED_SESSIONS = 8;

interface CachedSession {
  readonly made: Promise<OrtSession>;
  /** Calls of `withSession` using it now: an evicted session is released when the last one ends. */
  users: number;
  evicted: boolean;
}

/** Sessions made or being made, per key, least recently used first. */
const sessions = new Map<string, CachedSession>();

/**
 * Runs `use` with the session of the model `bytes()` returns, made once per
 * `cacheKey` (which must identify the bytes), thread count and tuning. A failed
 * creation is not cached, so that every caller gets its error.
 */
export async function withSession<T>(
  ort: OrtModule,
  cacheKey: string,
  bytes: () => Uint8Array,
  threads: number,
  use: (session: OrtSession) => Promise<T>,
  optimizedFolder?: string,
  tuning: SessionTuning = {},
): Promise<T> {
  const key = `${cacheKey}|t${threads}${tuning.memoryPattern === false ? '|p0' : ''}`;
  const entry = acquire(key, () => createSession(ort, cacheKey, bytes, threads, optimizedFolder, tuning));
  entry.users++;
  try {
    return await use(await entry.made);
  } finally {
    entry.users--;
    if (entry.evicted && entry.users === 0) release(entry);
  }
}

function acquire(key: string, create: () => Promise<OrtSession>): CachedSession {
  const cached = sessions.get(key);
  if (cached !== undefined) {
    sessions.delete(key);
    sessions.set(key, cached);
    return cached;
  }
  const entry: CachedSession = { made: create(), users: 0, evicted: false };
  sessions.set(key, entry);
  entry.made.catch(() => {
    if (sessions.get(key) === entry) sessions.delete(key);
  });
  for (const [oldKey, old] of sessions) {
    if (sessions.size <= MAX_CACHED_SESSIONS) break;
    sessions.delete(oldKey);
    old.evicted = true;
    if (old.users === 0) release(old);
  }
  return entry;
}

/**
 * The saved graph's bytes, per session made from them: ORT reads the
 * weights in place (see `SAVED_GRAPH_LOAD`), so the bytes must live as long
 * as the session. A session that is no longer reachable lets them go.
 */
const savedGraphBytes = new WeakMap<OrtSession, Uint8Array>();

/**
 * How the optimised graph is saved: in ORT's own format (a flatbuffer),
 * whatever the file's name ends with.
 */
const SAVED_GRAPH_SAVE: Readonly<Record<string, string>> = { 'session.save_model_format': 'ORT' };

/**
 * How a saved graph is loaded. ORT format only (any other bytes, an old
 * ONNX-format entry included, are refused, so the graph is made again), and
 * from the bytes as they are: without `use_ort_model_bytes_directly` ORT
 * copies the 10 MB, and with `use_ort_model_bytes_for_initializers` the
 * weights are read in place instead of copied into tensors of their own.
 * Against loading the ONNX-format graph this costs 0.67-0.71x the CPU time
 * (MobileNet v1 0.75, a fresh process's session; loaded from its path,
 * where ORT reads and copies it, 0.85x; thread count, prepacking and the
 * memory pattern change nothing). Runs are as fast, their outputs
 * bit-identical.
 */
const SAVED_GRAPH_LOAD: Readonly<Record<string, string>> = {
  'session.load_model_format': 'ORT',
  'session.use_ort_model_bytes_directly': '1',
  'session.use_ort_model_bytes_for_initializers': '1',
};

/**
 * A session of the model `bytes()` returns. With `folder`, the graph ORT
 * optimised (level "all": NCHWc layout, fusions) is kept there in ORT
 * format, and later sessions load it with optimisation off: under half the
 * cost of making one from the model (see `SAVED_GRAPH_LOAD`). Its name holds
 * the ORT version and the CPU, as the optimised graph is for this machine
 * only. camviz seals the file (engine/saved-graph-seal.ts): a saved graph
 * whose seal does not hold (a byte changed, cut, another model's under this
 * name, saved before seals) or that does not load (from another ORT build)
 * is made again from the model and saved over; a folder that cannot be
 * written, or a graph ORT cannot save, only costs the saving.
 */
async function createSession(ort: OrtModule, cacheKey: string, bytes: () => Uint8Array, threads: number, folder: string | undefined, tuning: SessionTuning): Promise<OrtSession> {
  const options = sessionOptions(threads, tuning);
  if (folder === undefined) return ort.InferenceSession.create(bytes(), options);
  const nameHash = savedGraphHash(ort, cacheKey);
  const path = join(folder, `${optimizedName(cacheKey, nameHash)}${SAVED_GRAPH_SUFFIX}`);
  const loaded = await loadSavedGraph(ort, path, nameHash, options);
  if (loaded !== undefined) {
    await tellSavedGraph(path, 'read');
    return loaded;
  }
  const temporary = await makeFolders(folder).then(
    () => temporaryName(path),
    () => undefined,
  );
  if (temporary === undefined) return ort.InferenceSession.create(bytes(), options);
  try {
    const saving = { ...options, extra: { ...options.extra, ...SAVED_GRAPH_SAVE }, optimizedModelFilePath: temporary } as const;
    // Read once: `bytes()` may read and check the model's file.
    const model = bytes();
    const session = await ort.InferenceSession.create(model, saving).catch(() => undefined);
    // A graph ORT cannot save in its format still runs: made again without saving (a model ORT refuses fails there).
    if (session === undefined) return await ort.InferenceSession.create(model, options);
    if (await sealAndRename(temporary, path, nameHash)) await tellSavedGraph(path, 'written');
    return session;
  } finally {
    await rm(temporary, { force: true }).catch(() => undefined);
  }
}

/** What the saved optimised graph's file name ends with (ORT's own extension for its format). */
export const SAVED_GRAPH_SUFFIX = '.ort';

/** Where the optimised graph of the model `cacheKey` is kept in `folder` (whether or not it is there yet). */
export function savedGraphPath(ort: OrtModule, cacheKey: string, folder: string): string {
  return join(folder, `${optimizedName(cacheKey, savedGraphHash(ort, cacheKey))}${SAVED_GRAPH_SUFFIX}`);
}

/**
 * Seals the graph ONNX Runtime saved at `temporary` (engine/saved-graph-seal.ts)
 * and renames it to `path`; false when either fails (the session is made
 * all the same, and a later one saves again).
 */
async function sealAndRename(temporary: string, path: string, nameHash: string): Promise<boolean> {
  try {
    const { bytes } = await readWholeFile(temporary);
    await appendFile(temporary, sealOf(bytes, nameHash));
    await rename(temporary, path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The session of the graph saved at `path`, or undefined when there is none,
 * its seal does not hold for `nameHash` (changed on disk, another model's,
 * saved before seals) or it does not load.
 */
async function loadSavedGraph(ort: OrtModule, path: string, nameHash: string, options: OrtSessionCreateOptions): Promise<OrtSession | undefined> {
  if (!hasSeal(path, nameHash)) return undefined;
  const saved = await readWholeFile(path).then(
    ({ bytes }) => bytes,
    () => undefined,
  );
  const graph = saved === undefined ? undefined : sealedGraph(saved, nameHash);
  if (saved === undefined || graph === undefined) return undefined;
  try {
    const session = await ort.InferenceSession.create(graph, { ...options, graphOptimizationLevel: 'disabled', extra: { ...options.extra, ...SAVED_GRAPH_LOAD } });
    savedGraphBytes.set(session, saved);
    return session;
  } catch {
    // Damaged or from another ORT build: made again by the caller, and saved over.
    return undefined;
  }
}

/**
 * The saved optimised graph's name, `<stem>.<32 hex>`: the stem is the
 * cache key's leading letters, digits and dashes (the model's part: a written
 * model's cache key, an ONNX file's sha256), so that the cache's pruning
 * (model/onnx-writer/prune.ts) keeps and evicts it with its model; the hash
 * (savedGraphHash) covers the model and its outputs (the whole cacheKey), ORT's version, the CPU.
 */
function optimizedName(cacheKey: string, nameHash: string): string {
  const stem = /^[A-Za-z0-9-]{1,100}/.exec(cacheKey)?.[0] ?? 'session';
  // SAVED_GRAPH_NAME must match what this makes.
  return `${stem}.${nameHash}`;
}

/** The hash in a saved graph's name (and its seal): of the model and its outputs (the cache key), ONNX Runtime's version and the CPU. */
function savedGraphHash(ort: OrtModule, cacheKey: string): string {
  const machine = `${arch()} ${cpus()[0]?.model ?? 'unknown cpu'}`;
  return createHash('sha256').update(`${cacheKey}\u0000${ort.env?.versions?.common ?? 'unknown'}\u0000${machine}`).digest('hex').slice(0, 32);
}

/** A saved optimised graph's file name (see optimizedName), its model's stem first. */
export const SAVED_GRAPH_NAME = /^([A-Za-z0-9-]{1,100})\.[0-9a-f]{32}\.ort$/;

/** What happened to a saved graph: read for a session, or written. */
export type SavedGraphEvent = 'read' | 'written';

/** Told of every saved graph read or written: the cache's owner (model/onnx-writer/cache.ts) touches it and prunes the folder. */
let savedGraphListener: ((path: string, event: SavedGraphEvent) => Promise<void>) | undefined;

/** Sets the listener of saved graphs read or written (one; undefined: none). */
export function onSavedGraph(listener: ((path: string, event: SavedGraphEvent) => Promise<void>) | undefined): void {
  savedGraphListener = listener;
}

/** Says that the graph saved at `path` was read for a session elsewhere (a worker's: its listener is not this thread's). */
export function savedGraphRead(path: string): Promise<void> {
  return tellSavedGraph(path, 'read');
}

/**
 * Tells the listener; what it fails at never fails the session. A graph
 * read is touched here, listener or not: its mtime is the cache's "last
 * used" (model/onnx-writer/prune.ts), and a planned run (tasks/cam-plan.ts)
 * loads no cache owner to listen.
 */
async function tellSavedGraph(path: string, event: SavedGraphEvent): Promise<void> {
  if (event === 'read') await touch(path);
  await savedGraphListener?.(path, event).catch(() => undefined);
}

function release(entry: CachedSession): void {
  entry.made.then((session) => session.release()).catch(() => undefined);
}

/** How many sessions are cached (for tests). */
export function cachedSessionCount(): number {
  return sessions.size;
}

/** Releases every cached session not in use (for tests and long-lived processes switching models). */
export function releaseOrtSessions(): void {
  for (const [key, entry] of sessions) {
    sessions.delete(key);
    entry.evicted = true;
    if (entry.users === 0) release(entry);
  }
}
