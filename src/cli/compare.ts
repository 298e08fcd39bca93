/** `camviz compare A B`: compare the maps of two cam runs and gate on thresholds. */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type CompareResult, type CompareThresholds, PAIR_BY, type PairBy, compareRuns, offenderLines, summaryLine, writeCompareJson } from '../batch/compare.js';
import { COMPARE_REPORT_NAME, DifferenceImages, writeCompareReport } from '../batch/compare-report.js';
import { refuseForeignPage } from '../batch/own-outputs.js';
import { UsageError } from '../util/errors.js';
import { displayPath, outFolder, parseCount, printJson } from './common.js';
import { ensureWritable } from '../batch/out-dir.js';
import { type RunLock, acquireRunLock } from '../batch/lock.js';

export interface CompareCliOptions {
  minCorr?: string;
  minIou?: string;
  maxPeakShift?: string;
  maxTop1Changes?: string;
  pairBy?: string;
  out?: string;
  report?: boolean;
  json?: boolean;
  quiet?: boolean;
}

/** Exit code 0 when every threshold holds, 1 when one does not (or an input failed in a run). */
export async function runCompare(dirA: string, dirB: string, options: CompareCliOptions): Promise<number> {
  const thresholds = thresholdsFromFlags(options);
  const pairBy = options.pairBy ?? 'class';
  if (!isPairBy(pairBy)) throw new UsageError(`--pair-by ${pairBy}: choose one of ${PAIR_BY.join(', ')}`);
  const outDir = outFolder(options.out) ?? resolve(dirB);
  const log = (message: string): void => {
    if (!options.quiet) process.stderr.write(`camviz: ${message}\n`);
  };
  if (options.report === true) await refuseForeignPage(outDir, COMPARE_REPORT_NAME);
  const differences = options.report === true ? new DifferenceImages(outDir) : undefined;
  let result: CompareResult;
  let lock: RunLock;
  try {
    result = await compareRuns(dirA, dirB, { thresholds, pairBy, ...(differences && { onPair: differences.write.bind(differences) }) });
    await ensureWritable(outDir);
    // As a run's and a merge's: a run in the folder compacts its ledger under its lock, and would drop compare.html's record appended meanwhile.
    lock = await acquireRunLock(outDir, log);
  } catch (error) {
    await differences?.discard();
    throw error;
  }
  let jsonPath: string;
  let reportPath: string | undefined;
  try {
    await differences?.commit();
    jsonPath = await writeCompareJson(outDir, result);
    reportPath = options.report === true ? await writeCompareReport(outDir, result) : undefined;
  } finally {
    await lock.release();
  }
  if (!options.quiet) {
    const written = [jsonPath, reportPath].filter((path) => path !== undefined).map(displayPath);
    process.stderr.write(`camviz: ${summaryLine(result)}; ${written.join(', ')}\n`);
    for (const line of offenderLines(result)) process.stderr.write(`  ${line}\n`);
    const stalePage = options.report !== true && existsSync(join(outDir, COMPARE_REPORT_NAME)) ? stalePageNote(join(outDir, COMPARE_REPORT_NAME)) : undefined;
    for (const note of [unpairedNote(result), ungatedNote(thresholds), stalePage]) if (note !== undefined) process.stderr.write(`camviz: ${note}\n`);
  }
  if (options.json) printJson(result);
  return result.summary.passed ? 0 : 1;
}

/** Maps only one run has are not compared: worth a line, since a gate should not pass by leaving maps out. */
function unpairedNote(result: CompareResult): string | undefined {
  const { unpaired } = result;
  if (unpaired.length === 0) return undefined;
  const first = unpaired[0]!;
  const where = first.run === 'a' ? 'A' : 'B';
  return (
    `note: ${unpaired.length} map${unpaired.length === 1 ? '' : 's'} of one run only, not compared ` +
    `(e.g. ${first.input} ${first.method} class ${first.class.index} in ${where}); compare.json lists them under "unpaired"`
  );
}

/** Without a threshold only a failed input fails the run: say so, since a CI gate given none passes whatever the maps are. */
function ungatedNote(thresholds: CompareThresholds): string | undefined {
  if (Object.keys(thresholds).length > 0) return undefined;
  return 'note: no threshold given (--min-corr, --min-iou, --max-peak-shift, --max-top1-changes): the maps were measured, not gated';
}

/** A compare.html beside the new compare.json is an earlier compare's: worth a line, since a reader would take it for this one. */
function stalePageNote(page: string): string {
  return `note: ${displayPath(page)} is an earlier compare's page, not this one's (--report makes it again)`;
}

function isPairBy(value: string): value is PairBy {
  return (PAIR_BY as readonly string[]).includes(value);
}

function thresholdsFromFlags(options: CompareCliOptions): CompareThresholds {
  const thresholds: CompareThresholds = {};
  if (options.minCorr !== undefined) thresholds.minCorr = parseDecimal(options.minCorr, '--min-corr', -1, 1);
  if (options.minIou !== undefined) thresholds.minIou = parseDecimal(options.minIou, '--min-iou', 0, 1);
  if (options.maxPeakShift !== undefined) thresholds.maxPeakShift = parseDecimal(options.maxPeakShift, '--max-peak-shift', 0, Number.MAX_VALUE);
  if (options.maxTop1Changes !== undefined) thresholds.maxTop1Changes = parseCount(options.maxTop1Changes, '--max-top1-changes', 0);
  return thresholds;
}

/** A plain decimal within [minimum, maximum] (Number() would read '' as 0 and '0x1' as 1). */
function parseDecimal(value: string, flag: string, minimum: number, maximum: number): number {
  const text = value.trim();
  const number = /^-?(\d+\.?\d*|\.\d+)$/.test(text) ? Number(text) : Number.NaN;
  if (!(number >= minimum && number <= maximum)) {
    const range = maximum === Number.MAX_VALUE ? `of at least ${minimum}` : `from ${minimum} to ${maximum}`;
    throw new UsageError(`${flag} '${value}' must be a number ${range}`);
  }
  return number;
}
