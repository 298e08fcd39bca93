/**
 * Memory over a folder run, for `npm run bench`: one `--jobs 1` Grad-CAM run
 * (in this thread, so that tf.memory() sees the model's tensors) over a
 * folder, with the resident memory and the live tensor count sampled as the
 * images go by. A child process, so that the memory is this run's alone.
 * Prints one JSON line: {"exitCode", "samples": [MemorySample], "after"}:
 * `samples` during the run, `after` once it has released its model.
 *
 * Each sample splits the resident memory by who holds it, so that a growth
 * can be told apart: V8's heap and the ArrayBuffers it accounts (from
 * process.memoryUsage()), and, from /proc/self/smaps on Linux, glibc's main
 * heap (the main thread's malloc: ONNX Runtime's arena and runs, Node's
 * Buffers) against glibc's thread arenas (malloc from other threads: sharp's
 * libvips workers and libuv's pool decoding, resizing and encoding images).
 *
 *   node dist/scripts/bench-memory.js '<MemoryRequest as JSON>'
 */
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runBatch } from '../src/batch/runner.js';
import { requestedBackend, useBackend } from '../src/engine/backend.js';
import * as tf from '../src/engine/tf.js';
import { camTaskOptions } from '../src/tasks/defaults.js';
import { closeSessionsAhead, startModelSessionAhead } from '../src/model/session-ahead.js';
import type { Engine } from './bench-engines.js';

export interface MemoryRequest {
  model: string;
  preprocess?: string;
  folder: string;
  /** Absent in a build without the engine option (CAMVIZ_ENGINE is set by the parent as well). */
  engine?: Engine;
}

export interface MemorySample {
  images: number;
  rss: number;
  tensors: number;
  /** V8's heap in use; memory V8 accounts outside its heap, and the ArrayBuffers (Buffers, typed arrays) of it. */
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  /** Resident memory by mapping (bytes), where /proc/self/smaps exists. */
  resident?: ResidentKinds;
}

export interface ResidentKinds {
  /** Anonymous memory: malloc's heaps, V8's heap, wasm memories. */
  anonymous: number;
  /** Mapped files: code, shared libraries. */
  file: number;
  /** glibc's main arena ([heap]): the main thread's malloc. */
  mainHeap: number;
  /** glibc's thread arenas: malloc from other threads, each thread bound to one of up to 8 x cores arenas. */
  threadArenas: number;
}

/** glibc's HEAP_MAX_SIZE on 64-bit: a thread arena's heaps are mapped at multiples of it and never exceed it. */
const ARENA_HEAP_SPAN = 64n << 20n;

interface Mapping {
  start: bigint;
  end: bigint;
  perms: string;
  /** No file behind it (inode 0, not a path). */
  anonymous: boolean;
  name: string;
  rss: number;
}

/** The mappings of /proc/self/smaps with their resident bytes, or undefined where there is none. */
function residentMappings(): Mapping[] | undefined {
  let text: string;
  try {
    text = readFileSync('/proc/self/smaps', 'utf8');
  } catch {
    return undefined;
  }
  const mappings: Mapping[] = [];
  for (const line of text.split('\n')) {
    const header = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (header !== null) {
      const name = header[5]!.trim();
      mappings.push({ start: BigInt(`0x${header[1]}`), end: BigInt(`0x${header[2]}`), perms: header[3]!, anonymous: header[4] === '0' && !name.startsWith('/'), name, rss: 0 });
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    const last = mappings.at(-1);
    if (rss !== null && last !== undefined) last.rss = Number(rss[1]) * 1024;
  }
  return mappings;
}

/**
 * Whether `mappings[i]` is a heap of a glibc thread arena: an anonymous
 * read-write mapping that starts at a multiple of 64 MiB and is either
 * 64 MiB long or followed by its inaccessible reserve up to the next multiple.
 */
function isArenaHeap(mappings: readonly Mapping[], i: number): boolean {
  const mapping = mappings[i]!;
  if (!mapping.anonymous || mapping.name !== '' || !mapping.perms.startsWith('rw') || mapping.start % ARENA_HEAP_SPAN !== 0n) return false;
  if (mapping.end - mapping.start === ARENA_HEAP_SPAN) return true;
  const next = mappings[i + 1];
  return next !== undefined && next.perms.startsWith('---') && next.start === mapping.end && next.end - mapping.start === ARENA_HEAP_SPAN;
}

/** Resident memory by kind, or undefined where /proc/self/smaps does not exist. */
function residentKinds(): ResidentKinds | undefined {
  const mappings = residentMappings();
  if (mappings === undefined) return undefined;
  const kinds: ResidentKinds = { anonymous: 0, file: 0, mainHeap: 0, threadArenas: 0 };
  mappings.forEach((mapping, i) => {
    if (!mapping.anonymous) kinds.file += mapping.rss;
    else {
      kinds.anonymous += mapping.rss;
      if (mapping.name === '[heap]') kinds.mainHeap += mapping.rss;
      else if (isArenaHeap(mappings, i)) kinds.threadArenas += mapping.rss;
    }
  });
  return kinds;
}

async function main(): Promise<void> {
  const request = JSON.parse(process.argv[2] ?? '{}') as MemoryRequest;
  // tf.memory() needs a backend: the one the run will use (CAMVIZ_BACKEND), started before the sampler.
  await useBackend(requestedBackend());
  const outDir = await mkdtemp(join(tmpdir(), 'camviz-bench-memory-'));
  const samples: MemorySample[] = [];
  // Model work is synchronous: the timer fires between batches, where a leak would show.
  const sample = (): void => {
    const images = readdirSync(outDir).filter((name) => name.endsWith('.png')).length;
    const { rss, heapUsed, external, arrayBuffers } = process.memoryUsage();
    const resident = residentKinds();
    samples.push({ images, rss, tensors: tf.memory().numTensors, heapUsed, external, arrayBuffers, ...(resident === undefined ? {} : { resident }) });
  };
  const timer = setInterval(sample, 200);
  try {
    const model = { model: request.model, ...(request.preprocess === undefined ? {} : { preprocess: request.preprocess }), ...(request.engine === undefined ? {} : { engine: request.engine }) };
    // As the command line's --jobs 1 run does (cli/main.ts): its passes then run on the first session, made ahead in a worker.
    if (request.engine !== 'tfjs' && process.env['CAMVIZ_SESSION_AHEAD'] !== '0') await startModelSessionAhead(request.model);
    const result = await runBatch({ task: camTaskOptions(outDir, { model }), inputs: [request.folder], jobs: 1, quiet: true, manifest: true });
    await closeSessionsAhead();
    clearInterval(timer);
    const during = samples.splice(0);
    sample();
    console.log(JSON.stringify({ exitCode: result.exitCode, samples: during, after: samples[0] }));
  } finally {
    clearInterval(timer);
    await rm(outDir, { recursive: true, force: true });
  }
}

await main();
