/**
 * Sharding a run across CI jobs: `--shard i/n` takes every n-th input of the
 * sorted list, starting at the i-th (1-based, like jest and Playwright), so
 * that n jobs cover a folder exactly once. `--shard auto` reads the job's
 * index and count from the environment of common CI systems.
 */
import { UsageError } from '../util/errors.js';

export interface Shard {
  /** 1-based. */
  index: number;
  count: number;
  /** Where `auto` found it. */
  source?: string;
}

/** Environment variables of CI systems: [name, index variable, count variable, index base]. */
export const SHARD_ENVIRONMENTS: readonly (readonly [string, string, string | undefined, 0 | 1])[] = [
  ['GitLab CI (parallel)', 'CI_NODE_INDEX', 'CI_NODE_TOTAL', 1],
  ['CircleCI', 'CIRCLE_NODE_INDEX', 'CIRCLE_NODE_TOTAL', 0],
  ['Buildkite', 'BUILDKITE_PARALLEL_JOB', 'BUILDKITE_PARALLEL_JOB_COUNT', 0],
  ['Semaphore', 'SEMAPHORE_JOB_INDEX', 'SEMAPHORE_JOB_COUNT', 1],
  ['Kubernetes indexed Job', 'JOB_COMPLETION_INDEX', undefined, 0],
  ['camviz', 'CAMVIZ_SHARD_INDEX', 'CAMVIZ_SHARD_COUNT', 1],
];

/**
 * Parses `--shard`. `auto` needs `count` (from `--shard-count`) when the
 * environment gives only an index (Kubernetes indexed Jobs).
 */
export function parseShard(value: string, env: NodeJS.ProcessEnv = process.env, countOption?: number): Shard {
  if (value === 'auto') return shardFromEnvironment(env, countOption);
  const match = /^(\d+)\/(\d+)$/.exec(value.trim());
  if (!match) throw new UsageError(`--shard '${value}' is not i/n (e.g. 2/4) or auto`);
  return checked(Number(match[1]), Number(match[2]), `--shard ${value}`);
}

function shardFromEnvironment(env: NodeJS.ProcessEnv, countOption?: number): Shard {
  for (const [name, indexVariable, countVariable, base] of SHARD_ENVIRONMENTS) {
    const rawIndex = env[indexVariable];
    if (rawIndex === undefined || rawIndex === '') continue;
    const rawCount = countVariable === undefined ? undefined : env[countVariable];
    const count = rawCount !== undefined && rawCount !== '' ? Number(rawCount) : countOption;
    if (count === undefined) {
      throw new UsageError(`--shard auto found ${indexVariable} (${name}) but no job count: add --shard-count N`);
    }
    const index = Number(rawIndex) + (base === 0 ? 1 : 0);
    return { ...checked(index, count, `${name}: ${indexVariable}=${rawIndex}`), source: name };
  }
  const known = SHARD_ENVIRONMENTS.map(([, indexVariable]) => indexVariable).join(', ');
  throw new UsageError(`--shard auto found no CI shard variables (${known})`);
}

function checked(index: number, count: number, what: string): Shard {
  if (!Number.isInteger(index) || !Number.isInteger(count) || count < 1 || index < 1 || index > count) {
    throw new UsageError(`${what}: shard ${index} of ${count} is out of range (1..${count})`);
  }
  return { index, count };
}

/** This shard's items of a sorted list. */
export function selectShard<T>(items: readonly T[], shard: Shard | undefined): T[] {
  if (shard === undefined) return [...items];
  return items.filter((_, position) => position % shard.count === shard.index - 1);
}
