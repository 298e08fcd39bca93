/**
 * ONNX Runtime (onnxruntime-node), an optional native engine: loaded lazily
 * and once, so that camviz starts and runs on tfjs when it is absent or
 * broken. `CAMVIZ_ORT_MODULE` names another module to load (tests use it to
 * simulate a missing or broken install).
 *
 * Sessions are made at graph optimisation level "all" (NCHWc layout and
 * fused Conv+activation: 1.2-2.4x faster than "basic"), with intra-op
 * spinning off (spinning threads ruin medians on a loaded machine), and
 * cached per model bytes identity: creating one costs about 240 ms.
 */
import { createRequire } from 'node:module';
import type * as Ort from 'onnxruntime-node';

export type OrtModule = typeof Ort;
export type OrtSession = Ort.InferenceSession;
export type OrtTensor = Ort.Tensor;

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
 * ONNX Runtime, loaded on first call (its native library costs 34-143 ms to
 * load), or why it cannot be. The result is kept per module specifier.
 */
export function loadOnnxRuntime(): OnnxRuntimeStatus {
  const specifier = onnxRuntimeModule();
  if (loaded?.specifier === specifier) return loaded.status;
  loaded = { specifier, status: tryLoad(specifier) };
  return loaded.status;
}

function tryLoad(specifier: string): OnnxRuntimeStatus {
  let module: OrtModule;
  try {
    module = createRequire(import.meta.url)(specifier) as OrtModule;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'MODULE_NOT_FOUND' ? `${specifier} is not installed` : `${specifier} does not load: ${firstLine(error)}`;
    return { available: false, reason };
  }
  if (typeof module?.InferenceSession?.create !== 'function' || typeof module.Tensor !== 'function') {
    return { available: false, reason: `${specifier} is not ONNX Runtime (no InferenceSession)` };
  }
  const version = typeof module.env?.versions?.common === 'string' ? module.env.versions.common : 'unknown';
  return { available: true, version, module };
}

export interface OrtSessionOptions {
  /** Intra-op threads (default: env CAMVIZ_ORT_THREADS, else 1). */
  readonly threads?: number;
}

/** The intra-op thread count: the option, else CAMVIZ_ORT_THREADS, else 1. */
export function ortThreads(threads?: number): number {
  if (threads !== undefined) return threads;
  const fromEnv = Number.parseInt(process.env['CAMVIZ_ORT_THREADS'] ?? '', 10);
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : 1;
}

/** The session options camviz runs with (see the file comment for why). */
export function sessionOptions(threads: number): Ort.InferenceSession.SessionOptions {
  return {
    graphOptimizationLevel: 'all',
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    // onnxruntime-node passes `extra` as flat string config entries.
    extra: { 'session.intra_op.allow_spinning': '0' },
  };
}

/** Sessions already made (or being made), per cache key. */
const sessions = new Map<string, Promise<OrtSession>>();

/**
 * A session for the model `bytes()` returns, made once per `cacheKey` (which
 * must identify the bytes and the thread count). A failed creation is not
 * cached, so that its error is reported to every caller.
 */
export function cachedSession(ort: OrtModule, cacheKey: string, bytes: () => Uint8Array, threads: number): Promise<OrtSession> {
  const key = `${cacheKey}|t${threads}`;
  const cached = sessions.get(key);
  if (cached !== undefined) return cached;
  const made = ort.InferenceSession.create(bytes(), sessionOptions(threads));
  sessions.set(key, made);
  made.catch(() => sessions.delete(key));
  return made;
}

/** Releases every cached session (for tests and long-lived processes switching models). */
export async function releaseOrtSessions(): Promise<void> {
  const all = [...sessions.values()];
  sessions.clear();
  for (const made of all) {
    const session = await made.catch(() => undefined);
    await session?.release();
  }
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return (text.split('\n').find((line) => line.trim() !== '') ?? text).trim();
}
