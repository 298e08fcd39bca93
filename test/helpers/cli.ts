/**
 * The command line as users run it: `node bin/camviz.js ...` in a child
 * process. Each test file wraps `runCli` with its own fixed arguments.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';

import { SHARD_ENVIRONMENTS } from '../../src/batch/shard.js';
import { repoRoot } from './assets.js';

export const camvizBin = join(repoRoot, 'bin', 'camviz.js');

export interface CliRun {
  /** The exit code; null when the process did not exit by itself (a signal, the timeout, too much output). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  cwd: string;
  /** Defaults to this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** The child is killed after this long, so that a hung CLI fails its test instead of the whole suite. */
  timeoutMs: number;
}

/** Folder runs with --json print a record per input: far above execFile's 1 MiB default. */
const MAX_OUTPUT_BYTES = 64 * 2 ** 20;

/** Runs `node bin/camviz.js ...args` to the end; never rejects, so that a test can check a failure's output. */
export function runCli(args: readonly string[], { cwd, env, timeoutMs }: CliOptions): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, [camvizBin, ...args], { cwd, env, timeout: timeoutMs, maxBuffer: MAX_OUTPUT_BYTES }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
      resolve({ code, signal: (error?.signal as NodeJS.Signals | undefined) ?? null, stdout, stderr });
    });
  });
}

/**
 * Variables a CI runner may have set that would change what these tests see:
 * `CI` (progress style) and every variable `--shard auto` reads, taken from
 * the list camviz itself uses so that a newly supported CI is covered too.
 */
export const CI_VARIABLES: readonly string[] = [
  'CI',
  ...SHARD_ENVIRONMENTS.flatMap(([, indexVariable, countVariable]) => (countVariable === undefined ? [indexVariable] : [indexVariable, countVariable])),
];

/**
 * This process's environment with the model cache in `cacheDir` (never the
 * user's), the wasm backend, and no CI-runner variables; `extra` is applied
 * last, so a test can put a CI variable back on purpose.
 */
export function cliEnv(cacheDir: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, CAMVIZ_CACHE: cacheDir, CAMVIZ_BACKEND: 'wasm' };
  for (const name of CI_VARIABLES) delete env[name];
  return { ...env, ...extra };
}
