/**
 * `manifest.json`: what a run did, one record per input, so that CI can
 * check results, `--skip-existing` can resume, and `camviz merge` can join
 * shards. Same inputs and options give the same manifest apart from
 * timings and clock times.
 */
import { join, resolve } from 'node:path';
import { CamvizError } from '../util/errors.js';
import { createHash } from 'node:crypto';
import type { ModelMetadata } from '../model/metadata.js';
import { readOptionalJson } from '../util/json-file.js';
import { manifestProblem } from './manifest-check.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import type { InputRecord, TaskOptions } from '../tasks/types.js';
import type { EngineReport } from '../model/engine.js';
import type { Shard } from './shard.js';

export const MANIFEST_NAME = 'manifest.json';
/** The report's page (report.ts); named here, free of sharp, so that listing inputs can skip it. */
export const REPORT_NAME = 'index.html';
/** Report assets live here, apart from the run's outputs. */
export const REPORT_DIR = '_report';

export interface Manifest {
  camviz: string;
  command: TaskOptions['command'];
  model: ManifestModel;
  backend: { kind: string; package: string };
  /** What ran the model's passes (ONNX Runtime or tfjs) and, under auto, why tfjs did; absent in manifests before engines. */
  engine?: EngineReport;
  /** The options that decide the outputs (paths excluded). */
  options: Record<string, unknown>;
  /** The shards this manifest covers (several after `camviz merge`). */
  shard: Shard[] | null;
  startedAt: string;
  finishedAt: string | null;
  /** True when a signal or --fail-fast stopped the run before every input was done. */
  interrupted: boolean;
  /**
   * The run's working folder, which the records' `input` paths (as they
   * were given) are relative to: later commands (metrics' pointing game,
   * merge's report) find the inputs from any folder. Absent in manifests of
   * earlier camviz, whose inputs are then taken from the current folder.
   */
  workingDirectory?: string;
  summary: { inputs: number; ok: number; error: number };
  records: InputRecord[];
}

/**
 * The model a run used: its name, where it came from, the sha256 of its
 * file, and what else decides its outputs beyond the file (its
 * preprocessing, input size and labels, which camviz.json or the zoo may
 * set and the options then do not show; absent in manifests of earlier
 * camviz). Merge refuses shards that differ in any of them.
 */
export interface ManifestModel {
  name: string;
  source: string;
  sha256: string;
  preprocess?: string;
  inputSize?: { width: number; height: number };
  /** The sha256 of the labels (as JSON), or null when the model has none. */
  labels?: string | null;
}

/** The manifest's record of a loaded model. */
export function manifestModel(meta: ModelMetadata): ManifestModel {
  return {
    name: meta.name,
    source: meta.source,
    sha256: meta.sha256,
    preprocess: meta.preprocess,
    inputSize: { width: meta.inputSize.width, height: meta.inputSize.height },
    labels: meta.labels === undefined ? null : createHash('sha256').update(JSON.stringify(meta.labels)).digest('hex'),
  };
}

/** Where a record's input file is: its path as given, from the run's working folder (see Manifest.workingDirectory). */
export function inputLocation(manifest: Pick<Manifest, 'workingDirectory'>, record: Pick<InputRecord, 'input'>): string {
  return resolve(manifest.workingDirectory ?? '', record.input);
}

export function summarise(records: readonly InputRecord[]): Manifest['summary'] {
  const errors = records.filter((record) => record.status === 'error').length;
  return { inputs: records.length, ok: records.length - errors, error: errors };
}

export async function writeManifest(outDir: string, manifest: Manifest): Promise<string> {
  const path = join(outDir, MANIFEST_NAME);
  await writeFileAtomic(path, `${JSON.stringify(manifest, null, 2)}\n`);
  return path;
}

export async function readManifest(outDir: string): Promise<Manifest | undefined> {
  const path = join(outDir, MANIFEST_NAME);
  const manifest = await readOptionalJson(path, MANIFEST_NAME);
  if (manifest === undefined) return undefined;
  const problem = manifestProblem(manifest);
  if (problem !== undefined) throw new CamvizError(`not a camviz manifest: ${problem}`, { file: path });
  return manifest as Manifest;
}

/** The options that decide what a run writes, for the manifest and for merge checks. */
export function manifestOptions(options: TaskOptions): Record<string, unknown> {
  const { outDir: _outDir, model: _model, ...rest } = options;
  // Like the backend, the engine is where the run happened, recorded apart: it does not change what is written beyond rounding.
  const { backend: _backend, model: _modelName, wasmThreads: _threads, wasmThreadsIfTfjs: _threadsIfTfjs, engine: _engine, ortThreads: _ortThreads, tfjsOnly: _tfjsOnly, ...modelOptions } = options.model;
  return { ...rest, model: modelOptions };
}
