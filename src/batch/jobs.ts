/**
 * How many worker threads a folder run may start. Each worker holds its own
 * backend and model: more workers than cores only add memory and start-up
 * time (--jobs 1000 once meant 100 workers and 8 GiB for 400 images), and
 * more than memory holds end in swapping or the OOM killer.
 */
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { availableParallelism, freemem } from 'node:os';
import { resolveModelJsonPath } from '../model/io.js';
import { DEFAULT_MODEL, cacheRoot, zooEntry, zooModelJson, zooOrigin } from '../model/zoo.js';
import { join } from 'node:path';
import { readRegularFile } from '../util/read-whole-file.js';
import type { EngineChoice } from '../engine/engine-choices.js';
import { onnxRuntimeInstalled } from '../engine/onnxruntime.js';

/**
 * One worker's memory apart from its weights: Node's thread, the wasm
 * module and its heap, decoded images and PNG buffers. Measured on
 * MobileNet v1 0.75 (10 MB of weights): peak RSS grows by 75-95 MiB per
 * added worker (20 photos, --jobs 2 -> 4 -> 6).
 */
export const WORKER_BASE_BYTES = 100 * 2 ** 20;
/** The weights are held as loaded, fused (BatchNorm folded in) and as activations' and gradients' scale. */
export const WORKER_WEIGHT_FACTOR = 3;

export interface JobLimits {
  /** What --jobs asked for. */
  requested: number;
  cores: number;
  /** Memory free for new workers, in bytes. */
  freeBytes: number;
  /** The model's weights in memory (float32), in bytes; undefined when unknown before loading. */
  weightBytes: number | undefined;
}

export interface JobsDecision {
  jobs: number;
  /** Why fewer than requested: `cores` or `memory`. */
  cappedBy?: 'cores' | 'memory';
}

/**
 * `--jobs` when it is not given. On ONNX Runtime, one process whose session
 * takes every core as intra-op threads: it beats a worker per core in the
 * bench (200 photos, MobileNet v1: 60.5 against 57.7 images/s, and in each
 * earlier run), holds one model instead of one per worker, and starts its
 * first session ahead (cli/main.ts). On tfjs, a worker per core: one
 * single-threaded wasm model each beats one model with wasm threads (37.9
 * against 35.1 images/s). `engine`: as the command resolved it; `tfjsOnly`:
 * the work needs tfjs whatever the engine (guided backprop). Under auto,
 * ONNX Runtime counts when its module is installed (a model it then refuses
 * runs on tfjs in this process, with wasm threads).
 */
export function defaultJobs(engine: EngineChoice, tfjsOnly: boolean): number {
  const cores = availableParallelism();
  if (engine === 'tfjs' || tfjsOnly) return cores;
  return engine === 'onnxruntime' || onnxRuntimeInstalled() ? 1 : cores;
}

/** The estimated memory of one worker holding a model of `weightBytes`. */
export function workerFootprint(weightBytes: number): number {
  return WORKER_BASE_BYTES + WORKER_WEIGHT_FACTOR * weightBytes;
}

/** --jobs capped at the cores and at the workers free memory holds (always at least one). */
export function effectiveJobs(limits: JobLimits): JobsDecision {
  let jobs = limits.requested;
  let cappedBy: JobsDecision['cappedBy'];
  if (jobs > limits.cores) {
    jobs = limits.cores;
    cappedBy = 'cores';
  }
  if (limits.weightBytes !== undefined) {
    const fit = Math.max(1, Math.floor(limits.freeBytes / workerFootprint(limits.weightBytes)));
    if (jobs > fit) {
      jobs = fit;
      cappedBy = 'memory';
    }
  }
  return cappedBy === undefined ? { jobs } : { jobs, cappedBy };
}

/** The limits of this machine (cgroup memory limits included) for a run asking for `requested` workers. */
export async function machineLimits(requested: number, modelSpec: string | undefined): Promise<JobLimits> {
  return { requested, cores: availableParallelism(), freeBytes: freeMemory(), weightBytes: await modelWeightBytes(modelSpec ?? DEFAULT_MODEL) };
}

function freeMemory(): number {
  const free = freemem();
  // A container's limit (cgroup) may be far below the machine's free memory.
  const limit = process.constrainedMemory() ?? 0;
  return limit > 0 ? Math.min(free, Math.max(0, limit - process.memoryUsage.rss())) : free;
}

/**
 * The float32 bytes of a model's weights, from its model.json's weights
 * manifest, for a local model or a zoo model already on disk; undefined
 * otherwise (a URL, a zoo model not yet downloaded, an unreadable file):
 * the workers report those problems themselves.
 */
export async function modelWeightBytes(spec: string): Promise<number | undefined> {
  try {
    const onnxBytes = await onnxFileBytes(spec);
    if (onnxBytes !== undefined) return onnxBytes;
    const path = await localModelJson(spec);
    if (path === undefined) return undefined;
    const json = JSON.parse((await readRegularFile(path)).bytes.toString('utf8')) as { weightsManifest?: { weights?: { shape?: number[] }[] }[] };
    let elements = 0;
    for (const group of json.weightsManifest ?? []) {
      for (const weight of group.weights ?? []) elements += (weight.shape ?? []).reduce((product, dim) => product * dim, 1);
    }
    return elements * Float32Array.BYTES_PER_ELEMENT;
  } catch {
    return undefined;
  }
}

/**
 * A local ONNX model's file size: its initializers make up nearly all of it
 * (external data files aside). Read by name only, so that the main thread
 * of a folder run does not load the ONNX importer (and TensorFlow.js).
 */
async function onnxFileBytes(spec: string): Promise<number | undefined> {
  for (const path of [spec, join(spec, 'model.onnx')]) {
    if (!path.toLowerCase().endsWith('.onnx')) continue;
    const info = await stat(path).catch(() => undefined);
    if (info?.isFile()) return info.size;
  }
  return undefined;
}

async function localModelJson(spec: string): Promise<string | undefined> {
  if (/^https?:\/\//i.test(spec)) return undefined;
  const entry = zooEntry(spec);
  if (entry === undefined) return resolveModelJsonPath(spec);
  // Never a download here: a missing zoo model is the workers' to fetch and report.
  const cached = join(cacheRoot(), 'zoo', entry.name, 'model.json');
  if (entry.embedded === undefined && zooOrigin().kind === 'url' && !existsSync(cached)) return undefined;
  const path = await zooModelJson(entry);
  return existsSync(path) ? path : undefined;
}
