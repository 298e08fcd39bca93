/**
 * The forward engines the bench's camviz rows run on (issue 12): `tfjs`
 * (the executor on a tfjs backend) and `onnxruntime` (onnxruntime-node).
 * Each camviz row runs once per engine of `--engines`, passing
 * `--engine <e>` to CLI processes, `engine` to `loadModel`, and
 * `CAMVIZ_ENGINE` to every child process.
 *
 * A build without the engine option (before issue 12's CLI work) still
 * benches: its only engine is tfjs, which then runs without the option, and
 * the other engines' rows are skipped with the reason, not crashed on.
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { LoadOptions } from '../src/model/load.js';

const run = promisify(execFile);

export const ENGINES = ['tfjs', 'onnxruntime'] as const;
export type Engine = (typeof ENGINES)[number];

/** `loadModel`'s options with the engine (part of LoadOptions once issue 12's `--engine` is built). */
export type EngineLoadOptions = LoadOptions & { engine?: 'auto' | Engine };

/** Why a row of an engine did not run: printed as the row's reason, not thrown further. */
export class EngineSkip extends Error {}

export interface EngineSupport {
  /** The engines the camviz rows run on, in order. */
  engines: Engine[];
  /** True when this build's CLI has `--engine` (and `loadModel` the `engine` option). */
  optionBuilt: boolean;
  /** Engines asked for that cannot run here, with the reason. */
  skipped: Map<Engine, string>;
}

/** onnxruntime-node loads in this process (an optional dependency: it may be absent). */
export function onnxRuntimeLoads(): boolean {
  try {
    createRequire(import.meta.url)('onnxruntime-node');
    return true;
  } catch {
    return false;
  }
}

/** `--engines a,b`: the names asked for, or the default (both when onnxruntime-node loads). */
export function parseEngines(value: string | undefined): Engine[] {
  if (value === undefined) return onnxRuntimeLoads() ? [...ENGINES] : ['tfjs'];
  const names = value.split(',').map((name) => name.trim()).filter((name) => name !== '');
  for (const name of names) {
    if (!(ENGINES as readonly string[]).includes(name)) throw new Error(`--engines: unknown engine '${name}' (known: ${ENGINES.join(', ')})`);
  }
  return [...new Set(names)] as Engine[];
}

/** Whether this build's CLI knows `--engine`, read from `camviz gradcam --help` (which loads no model). */
async function engineOptionBuilt(repoRoot: string): Promise<boolean> {
  const { stdout } = await run(process.execPath, [join(repoRoot, 'bin', 'camviz.js'), 'gradcam', '--help'], { timeout: 60_000 });
  return /--engine\b/.test(stdout);
}

export async function engineSupport(wanted: readonly Engine[], repoRoot: string): Promise<EngineSupport> {
  const optionBuilt = await engineOptionBuilt(repoRoot);
  const ortLoads = onnxRuntimeLoads();
  const skipped = new Map<Engine, string>();
  const engines = wanted.filter((engine) => {
    if (engine === 'tfjs') return true;
    if (!optionBuilt) skipped.set(engine, `engine ${engine}: not available in this build (the CLI has no --engine)`);
    else if (!ortLoads) skipped.set(engine, `engine ${engine}: onnxruntime-node does not load here`);
    return !skipped.has(engine);
  });
  return { engines, optionBuilt, skipped };
}

/** The CLI flags that select the engine (none for tfjs in a build without the option: it is that build's only engine). */
export function engineFlags(support: EngineSupport, engine: Engine): string[] {
  return support.optionBuilt ? ['--engine', engine] : [];
}

/** A child process's environment for the engine; the rest of the environment is left as it is. */
export function engineEnv(support: EngineSupport, engine: Engine, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const copy = { ...env };
  if (support.optionBuilt) copy['CAMVIZ_ENGINE'] = engine;
  else delete copy['CAMVIZ_ENGINE'];
  return copy;
}

/** The engine a child process passes to `loadModel`: none in a build without the option. */
export function childEngine(support: EngineSupport, engine: Engine): Engine | undefined {
  return support.optionBuilt ? engine : undefined;
}

/** `loadModel`'s options for the engine (a build without the option gets none: tfjs is its only engine). */
export function engineLoadOptions(options: LoadOptions, engine: Engine | undefined): EngineLoadOptions {
  return engine === undefined ? { ...options } : { ...options, engine };
}

/** A CLI failure that means the build has no engine option: a skip of the row, with the reason. */
export function asEngineSkip(error: unknown, engine: Engine): Error {
  const text = `${(error as { stderr?: string }).stderr ?? ''}\n${(error as Error).message}`;
  return /unknown option '--engine'/.test(text) ? new EngineSkip(`engine ${engine}: not available in this build`) : (error as Error);
}

/**
 * An error in one line, for a row's reason: for a child process, the last
 * line of its stderr that is not a stack frame (camviz's `camviz: ...`,
 * Node's `Error: ...`, Python's exception), since the message itself is
 * only "Command failed" and the command line.
 */
export function reasonOf(error: unknown): string {
  const stderr = (error as { stderr?: unknown }).stderr;
  const said = typeof stderr === 'string'
    ? stderr.split('\n').map((line) => line.trim()).filter((line) => line !== '' && !/^at |^Node\.js v|^File "/.test(line)).at(-1)
    : undefined;
  return said ?? ((error as Error).message ?? String(error)).split('\n')[0]!;
}
