/**
 * `--metrics` and `--metric-steps` of the cam commands, and `camviz metrics
 * <folder>`, which summarises a run's metrics.
 */
import { METRIC_NAMES, METRIC_STEPS, MAPLESS_METHODS, type MetricName, type MetricsOptions, isMetricName } from '../metrics/names.js';
import { summariseMetricsRun, summaryLines, writeMetricsSummary } from '../batch/metrics-summary.js';
import { UsageError } from '../util/errors.js';
import { displayPath, parseCount, printJson } from './common.js';

/**
 * The metrics options of a cam command for a canonical method name, from
 * the flags as commander gives them (`true` for a bare `--metrics`: all).
 * Usage errors: an unknown metric, steps out of range or without
 * `--metrics`, a method without a map (guided backprop).
 */
export function metricsFromFlags(metrics: string | boolean | undefined, steps: string | undefined, method: string): MetricsOptions | undefined {
  if (metrics === undefined || metrics === false) {
    if (steps !== undefined) throw new UsageError('--metric-steps needs --metrics');
    return undefined;
  }
  if (MAPLESS_METHODS.includes(method)) {
    throw new UsageError(`--metrics measures a map against its class probability: ${method} gives a gradient image, no map (use guidedgradcam or a map method)`);
  }
  return {
    names: metrics === true ? [...METRIC_NAMES] : metricNames(metrics),
    steps: steps === undefined ? METRIC_STEPS.default : parseCount(steps, '--metric-steps', METRIC_STEPS.min, METRIC_STEPS.max),
  };
}

function metricNames(value: string): MetricName[] {
  const parts = value.split(',').map((part) => part.trim().toLowerCase()).filter((part) => part !== '');
  if (parts.length === 0) throw new UsageError(`--metrics '${value}' names no metric: choose from ${METRIC_NAMES.join(', ')}`);
  const unknown = parts.find((part) => !isMetricName(part));
  if (unknown !== undefined) throw new UsageError(`unknown metric '${unknown}': choose from ${METRIC_NAMES.join(', ')}`);
  return METRIC_NAMES.filter((name) => parts.includes(name));
}

export interface MetricsCliOptions {
  json?: boolean;
  quiet?: boolean;
}

export async function runMetricsSummary(dir: string, options: MetricsCliOptions): Promise<number> {
  const summary = await summariseMetricsRun(dir);
  if (options.json) {
    const path = await writeMetricsSummary(dir, summary);
    printJson(summary);
    if (!options.quiet) process.stderr.write(`camviz: wrote ${displayPath(path)}\n`);
  } else {
    process.stdout.write(`${summaryLines(summary).join('\n')}\n`);
  }
  return 0;
}
