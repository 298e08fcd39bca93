/**
 * `camviz compare A B`: a CI gate on attention. Two output folders of
 * `camviz cam --raw` (the same images under an old and a new model, or two
 * preprocessing choices) are paired map by map, and each pair gets the
 * top-1 prediction change, the score change, the Pearson correlation of the
 * raw maps, the IoU of their top-20% regions and the shift of their peaks.
 * Thresholds turn the numbers into a verdict. Folders that cannot be
 * compared (other inputs, no pair in common, a map without its `--raw`
 * file) are usage errors, found before anything is written.
 */
import { realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { quantile } from '../metrics/quantile.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { CamvizError, UsageError } from '../util/errors.js';
import { readRegularFile } from '../util/read-whole-file.js';
import { VERSION } from '../util/version.js';
import { decodeNpy } from '../render/npy.js';
import { resizeBilinear } from '../render/resize.js';
import { finiteRange } from '../render/normalize.js';
import { pngSize } from '../util/png-size.js';
import type { CamResultRecord, InputRecord } from '../tasks/types.js';
import { type Manifest, MANIFEST_NAME, readManifest } from './manifest.js';

export const COMPARE_NAME = 'compare.json';
/** The share of cells, largest first, that make a map's "top region" for the IoU. */
export const TOP_REGION_FRACTION = 0.2;

/** How maps of A and B are paired within one input and method. */
export const PAIR_BY = ['class', 'rank'] as const;
export type PairBy = (typeof PAIR_BY)[number];

export interface CompareThresholds {
  /** Every pair's correlation must be at least this. */
  minCorr?: number;
  /** Every pair's top-region IoU must be at least this. */
  minIou?: number;
  /** Every pair's peak shift (original pixels) must be at most this. */
  maxPeakShift?: number;
  /** At most this many inputs may change their top-1 prediction. */
  maxTop1Changes?: number;
}

export interface CompareOptions {
  thresholds: CompareThresholds;
  /**
   * `class`: the maps of the same class index (the same explanation under
   * two models). `rank`: the k-th class each run explained, whatever it is
   * (two runs that explain different classes of the same images).
   */
  pairBy: PairBy;
}

/** A raw map as float32 rows. */
export interface RawMap {
  data: Float32Array;
  width: number;
  height: number;
}

export interface PointXY {
  x: number;
  y: number;
}

/** One side of a pair, as its run recorded it. */
export interface PairSide {
  class: { index: number; label: string | null };
  layer: string;
  score: number;
  /** null for targets without one (output, region, similarity). */
  probability: number | null;
  peak: PointXY;
  /** Relative to that run's folder. */
  png: string;
  npy: string;
  /** The raw map's [height, width]. */
  shape: [number, number];
}

export interface TopPrediction {
  index: number;
  label: string | null;
  /** null when the run's target has none. */
  probability: number | null;
}

export interface PairMetrics {
  /** The input's relative path (the same in both runs). */
  input: string;
  method: string;
  /** The position of this class among the input's maps of this method (0 = first). */
  rank: number;
  a: PairSide;
  b: PairSide;
  /** b.score - a.score. */
  scoreChange: number;
  /** b.probability - a.probability; null when either run's target has no probability (not a change of 0). */
  probabilityChange: number | null;
  /** The input's top-1 prediction in each run (null when the run cannot tell: it was given --class). */
  top1: { a: TopPrediction | null; b: TopPrediction | null; changed: boolean };
  /** [height, width] at which the maps were compared. */
  resolution: [number, number];
  /** Pearson correlation of the two maps at `resolution` (-1..1). */
  correlation: number;
  /** Intersection over union of the cells at or above each map's 80th percentile. */
  iou: number;
  /** Euclidean distance between the two peaks, in original image pixels. */
  peakShift: number;
  /** The thresholds this pair breaks, in words; empty when it passes. */
  failures: string[];
  /** The difference image (B - A of the normalised maps) relative to the output folder, with --report. */
  difference?: string;
}

/** A map one run has and the other has not. */
export interface UnpairedMap {
  input: string;
  /** The run that has it. */
  run: 'a' | 'b';
  method: string;
  class: { index: number; label: string | null };
}

/** An input that failed in one run or both: it cannot be compared, so the gate fails. */
export interface FailedInput {
  input: string;
  run: 'a' | 'b';
  error: string;
}

export interface Spread {
  min: number;
  mean: number;
  max: number;
}

export interface CompareSummary {
  inputs: number;
  pairs: number;
  /** Inputs whose top-1 prediction differs between the runs. */
  top1Changes: number;
  correlation: Spread;
  iou: Spread;
  peakShift: Spread;
  failedInputs: number;
  offenders: number;
  /** True when more inputs changed their top-1 prediction than --max-top1-changes allows. */
  top1Over: boolean;
  /** True when every threshold holds and no input failed. */
  passed: boolean;
}

export interface Offender {
  input: string;
  method: string;
  rank: number;
  classA: { index: number; label: string | null };
  classB: { index: number; label: string | null };
  correlation: number;
  iou: number;
  peakShift: number;
  failures: string[];
}

export interface CompareResult {
  camviz: string;
  /** The folders compared, resolved. */
  a: string;
  b: string;
  pairBy: PairBy;
  /** Only the thresholds that were given. */
  thresholds: CompareThresholds;
  summary: CompareSummary;
  /** Pairs that break a threshold, worst first. */
  offenders: Offender[];
  failedInputs: FailedInput[];
  /** Every input whose top-1 prediction changed (paired maps or not). */
  top1Changes: Top1Change[];
  unpaired: UnpairedMap[];
  /** Every pair, worst first (lowest correlation, then lowest IoU, then largest peak shift). */
  pairs: PairMetrics[];
}

// ---------------------------------------------------------------- metrics

/**
 * Pearson correlation of two equally long maps, in float64. A constant map
 * has no correlation with anything; by convention two constant maps agree
 * (1: neither looks anywhere in particular) and one constant map against a
 * varying one does not (0).
 */
export function pearson(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length || a.length === 0) throw new RangeError(`maps hold ${a.length} and ${b.length} values`);
  const n = a.length;
  let meanA = 0;
  let meanB = 0;
  for (let i = 0; i < n; i++) {
    meanA += a[i]!;
    meanB += b[i]!;
  }
  meanA /= n;
  meanB /= n;
  let covariance = 0;
  let varianceA = 0;
  let varianceB = 0;
  for (let i = 0; i < n; i++) {
    const da = a[i]! - meanA;
    const db = b[i]! - meanB;
    covariance += da * db;
    varianceA += da * da;
    varianceB += db * db;
  }
  if (varianceA === 0 && varianceB === 0) return 1;
  if (varianceA === 0 || varianceB === 0) return 0;
  // Rounding can push |r| a hair past 1.
  return Math.max(-1, Math.min(1, covariance / Math.sqrt(varianceA * varianceB)));
}

/**
 * The cells at or above the map's (1 - fraction) quantile. When that
 * quantile is the map's minimum (a ReLU'd map that is zero in more than
 * `1 - fraction` of its cells), the cells above the minimum: "at or above"
 * would take the whole zero floor, and two maps looking at disjoint spots
 * had an IoU of 1. A constant map is all floor: every cell.
 */
export function topRegion(map: ArrayLike<number>, fraction = TOP_REGION_FRACTION): Uint8Array {
  const threshold = quantile(map, 1 - fraction);
  const range = finiteRange(map);
  const aboveFloor = range !== null && range.max > range.min && threshold <= range.min;
  const region = new Uint8Array(map.length);
  for (let i = 0; i < map.length; i++) region[i] = (aboveFloor ? map[i]! > threshold : map[i]! >= threshold) ? 1 : 0;
  return region;
}

/** Intersection over union of two maps' top regions (cells at or above each map's 80th percentile). */
export function topRegionIou(a: ArrayLike<number>, b: ArrayLike<number>, fraction = TOP_REGION_FRACTION): number {
  if (a.length !== b.length || a.length === 0) throw new RangeError(`maps hold ${a.length} and ${b.length} values`);
  const regionA = topRegion(a, fraction);
  const regionB = topRegion(b, fraction);
  let intersection = 0;
  let union = 0;
  for (let i = 0; i < regionA.length; i++) {
    intersection += regionA[i]! & regionB[i]!;
    union += regionA[i]! | regionB[i]!;
  }
  // The maximum is always in its own region, so union > 0.
  return intersection / union;
}

export function peakShift(a: PointXY, b: PointXY): number {
  return Math.hypot(b.x - a.x, b.y - a.y);
}

/**
 * The most cells two maps are resized to for their comparison: a CAM map is
 * a layer's resolution (MobileNet's 7x7, at most the image's). Taken on each
 * axis apart, a 1x5000 map against a 5000x1 one met at 5000x5000: 63 s and
 * 1 GB for seven pairs.
 */
export const MAX_COMMON_CELLS = 4096 * 4096;

/** Refuses (a usage error naming B's map) a pair whose maps would meet at more than MAX_COMMON_CELLS. */
function checkCommonResolution(mapA: RawMap, mapB: RawMap, pair: PlannedPair, b: CompareRun): void {
  const { width, height } = commonResolution(mapA, mapB);
  if (width * height <= MAX_COMMON_CELLS) return;
  throw new UsageError(
    `the maps of ${describeMap(pair.input, pair.b)} (${mapA.height}x${mapA.width} and ${mapB.height}x${mapB.width}) would be compared at ${height}x${width}, more than the ${MAX_COMMON_CELLS} cells compare resizes to`,
    { file: insideRun(b, pair.b.npy!) },
  );
}

/** The resolution both maps are compared at: the finer of the two along each axis. */
export function commonResolution(a: RawMap, b: RawMap): { width: number; height: number } {
  return { width: Math.max(a.width, b.width), height: Math.max(a.height, b.height) };
}

/** The map at `width` x `height`: itself when it already is, else resized bilinearly (half-pixel centres). */
export function atResolution(map: RawMap, width: number, height: number): Float32Array {
  if (map.width === width && map.height === height) return map.data;
  return resizeBilinear(map.data, map.width, map.height, width, height);
}

export interface MapComparison {
  width: number;
  height: number;
  /** Both maps at the common resolution. */
  a: Float32Array;
  b: Float32Array;
  correlation: number;
  iou: number;
}

/** Correlation and top-region IoU of two raw maps at their common resolution. */
export function compareMaps(mapA: RawMap, mapB: RawMap): MapComparison {
  const { width, height } = commonResolution(mapA, mapB);
  const a = atResolution(mapA, width, height);
  const b = atResolution(mapB, width, height);
  return { width, height, a, b, correlation: pearson(a, b), iou: topRegionIou(a, b) };
}

// ---------------------------------------------------------------- folders

/** A cam run's folder and manifest. */
export interface CompareRun {
  /** The folder as given (for messages). */
  dir: string;
  /** 'A' or 'B', as the user named them. */
  name: 'A' | 'B';
  manifest: Manifest;
}

/** Reads a run folder's manifest; a folder without one, or not of `camviz cam`, is a usage error. */
export async function readCompareRun(dir: string, name: 'A' | 'B'): Promise<CompareRun> {
  const path = join(dir, MANIFEST_NAME);
  let manifest: Manifest | undefined;
  try {
    manifest = await readManifest(dir);
  } catch (error) {
    throw new UsageError(`${name}: ${error instanceof CamvizError ? error.message : String(error)}`, { file: path });
  }
  if (manifest === undefined) throw new UsageError(`${name} is not a camviz output folder: no ${MANIFEST_NAME}`, { file: dir });
  if (manifest.command !== 'cam') {
    throw new UsageError(`${name} is a '${manifest.command}' run: compare needs runs of camviz cam (or gradcam) with --raw`, { file: path });
  }
  // An interrupted run holds a subset of its inputs: a gate compared on
  // that subset would pass on whatever the stop happened to leave out.
  if (manifest.interrupted) {
    throw new UsageError(`${name} was interrupted before every input was done: finish it (run it again with --skip-existing) before comparing`, { file: path });
  }
  return { dir, name, manifest };
}

/** A pair of results to compare, before any map is read. */
export interface PlannedPair {
  input: string;
  method: string;
  rank: number;
  recordA: InputRecord;
  recordB: InputRecord;
  a: CamResultRecord;
  b: CamResultRecord;
}

export interface PairPlan {
  pairs: PlannedPair[];
  unpaired: UnpairedMap[];
  failedInputs: FailedInput[];
  /** Inputs in both runs. */
  inputs: number;
  /**
   * Inputs whose top-1 prediction differs between the runs, found from
   * their records, whether or not any of their maps pair: under
   * `--pair-by class` a changed top-1 is exactly what leaves an input's
   * maps unpaired.
   */
  top1Changes: Top1Change[];
}

/** An input whose top-1 prediction differs between the runs. */
export interface Top1Change {
  input: string;
  a: TopPrediction;
  b: TopPrediction;
}

/**
 * Pairs the maps of A and B. Throws UsageError when the runs have different
 * inputs, when an input is listed twice, or when no map pairs up.
 */
export function planPairs(a: CompareRun, b: CompareRun, pairBy: PairBy): PairPlan {
  const recordsA = recordsByInput(a);
  const recordsB = recordsByInput(b);
  checkSameInputs(a, recordsA, b, recordsB);
  const plan: PairPlan = { pairs: [], unpaired: [], failedInputs: [], inputs: recordsA.size, top1Changes: [] };
  for (const [input, recordA] of recordsA) {
    const recordB = recordsB.get(input)!; // same inputs: checked above
    const failed = [failure(recordA, 'a'), failure(recordB, 'b')].filter((entry) => entry !== undefined);
    if (failed.length > 0) {
      plan.failedInputs.push(...failed);
      continue;
    }
    const [topA, topB] = [topPrediction(a, recordA), topPrediction(b, recordB)];
    if (topA !== null && topB !== null && topA.index !== topB.index) plan.top1Changes.push({ input, a: topA, b: topB });
    pairRecords(input, recordA, recordB, pairBy, plan);
  }
  if (plan.pairs.length === 0 && plan.failedInputs.length === 0) {
    const hint =
      pairBy === 'class'
        ? ' (a pair needs the same input, method and class; for runs that explain different classes, --pair-by rank pairs the k-th class of each)'
        : ' (a pair needs the same input and method)';
    throw new UsageError(`no map of ${a.dir} pairs with one of ${b.dir}: nothing to compare${hint}`);
  }
  return plan;
}

function recordsByInput(run: CompareRun): Map<string, InputRecord> {
  const records = new Map<string, InputRecord>();
  for (const record of run.manifest.records) {
    if (records.has(record.relative)) {
      throw new UsageError(`${run.name} lists input ${record.relative} twice`, { file: join(run.dir, MANIFEST_NAME) });
    }
    records.set(record.relative, record);
  }
  return records;
}

/** Listed names in a message: a few, then how many more. */
function someOf(names: readonly string[], shown = 3): string {
  const head = names.slice(0, shown).join(', ');
  return names.length > shown ? `${head} and ${names.length - shown} more` : head;
}

function checkSameInputs(a: CompareRun, inputsA: Map<string, unknown>, b: CompareRun, inputsB: Map<string, unknown>): void {
  const onlyA = [...inputsA.keys()].filter((input) => !inputsB.has(input)).sort();
  const onlyB = [...inputsB.keys()].filter((input) => !inputsA.has(input)).sort();
  if (onlyA.length === 0 && onlyB.length === 0) {
    if (inputsA.size === 0) throw new UsageError(`${a.dir} and ${b.dir} have no inputs: nothing to compare`);
    return;
  }
  const parts = [
    onlyA.length > 0 ? `${onlyA.length} only in ${a.dir} (${someOf(onlyA)})` : '',
    onlyB.length > 0 ? `${onlyB.length} only in ${b.dir} (${someOf(onlyB)})` : '',
  ].filter((part) => part !== '');
  const shards = [a, b].filter(isPartialShard).map((run) => `${run.dir} is shard ${shardNames(run)}`);
  const hint = shards.length > 0 ? `; ${shards.join(', ')}: merge the shards first (camviz merge)` : '';
  throw new UsageError(`the runs have different inputs: ${parts.join(', ')}${hint}`);
}

/** A manifest that covers some, not all, shards of a split. */
function isPartialShard(run: CompareRun): boolean {
  const shards = run.manifest.shard ?? [];
  return shards.length > 0 && shards.length < Math.max(...shards.map((shard) => shard.count));
}

function shardNames(run: CompareRun): string {
  return (run.manifest.shard ?? []).map((shard) => `${shard.index}/${shard.count}`).join(', ');
}

function failure(record: InputRecord, run: 'a' | 'b'): FailedInput | undefined {
  return record.status === 'error' ? { input: record.relative, run, error: record.error ?? 'failed (no message)' } : undefined;
}

function camResults(record: InputRecord): CamResultRecord[] {
  return (record.results ?? []).filter((result): result is CamResultRecord => 'method' in result);
}

/** The cam results of a record by method, in the order the run made them. */
function byMethod(record: InputRecord): Map<string, CamResultRecord[]> {
  const groups = new Map<string, CamResultRecord[]>();
  for (const result of camResults(record)) {
    const group = groups.get(result.method) ?? [];
    group.push(result);
    groups.set(result.method, group);
  }
  return groups;
}

function pairRecords(input: string, recordA: InputRecord, recordB: InputRecord, pairBy: PairBy, plan: PairPlan): void {
  const groupsA = byMethod(recordA);
  const groupsB = byMethod(recordB);
  const methods = [...new Set([...groupsA.keys(), ...groupsB.keys()])].sort();
  for (const method of methods) {
    const resultsA = groupsA.get(method) ?? [];
    const resultsB = groupsB.get(method) ?? [];
    const partnerOf = (result: CamResultRecord, rank: number): CamResultRecord | undefined =>
      pairBy === 'rank' ? resultsB[rank] : resultsB.find((other) => other.class.index === result.class.index);
    const pairedB = new Set<CamResultRecord>();
    resultsA.forEach((a, rank) => {
      const b = partnerOf(a, rank);
      if (b === undefined) {
        plan.unpaired.push({ input, run: 'a', method, class: a.class });
        return;
      }
      pairedB.add(b);
      plan.pairs.push({ input, method, rank, recordA, recordB, a, b });
    });
    for (const b of resultsB) if (!pairedB.has(b)) plan.unpaired.push({ input, run: 'b', method, class: b.class });
  }
}

/** `folder/path` for a path a manifest lists, refusing one that leads outside the folder. */
function insideRun(run: CompareRun, path: string): string {
  const full = resolve(run.dir, path);
  const inside = relative(resolve(run.dir), full);
  if (path === '' || isAbsolute(path) || inside === '' || inside.startsWith('..') || inside.split(sep).includes('..')) {
    throw new UsageError(`${run.name}'s ${MANIFEST_NAME} lists a file outside its folder: ${path}`, { file: join(run.dir, MANIFEST_NAME) });
  }
  return full;
}

function describeMap(input: string, result: CamResultRecord): string {
  const label = result.class.label === null ? '' : ` ${result.class.label}`;
  return `${input} ${result.method} class ${result.class.index}${label}`;
}

/**
 * Every pair's `--raw` file must be listed and present; checked for all
 * pairs before any is read, so a missing map is a usage error up front.
 */
export async function checkRawMaps(plan: PairPlan, a: CompareRun, b: CompareRun): Promise<void> {
  for (const pair of plan.pairs) {
    for (const [run, result] of [
      [a, pair.a],
      [b, pair.b],
    ] as const) {
      if (result.npy === undefined) {
        throw new UsageError(`${run.name} has no --raw map for ${describeMap(pair.input, result)}: run camviz cam with --raw`, {
          file: join(run.dir, MANIFEST_NAME),
        });
      }
      const path = insideRun(run, result.npy);
      const found = await stat(path).catch(() => undefined);
      if (found === undefined) throw new UsageError(`${run.name}'s --raw map for ${describeMap(pair.input, result)} is missing`, { file: path });
      if (!found.isFile()) throw new UsageError(`${run.name}'s --raw map for ${describeMap(pair.input, result)} is not a regular file`, { file: path });
    }
  }
}

/**
 * The largest .npy file read as a map: the most cells compare resizes to,
 * as float32, and room for a header. A larger map could never be compared
 * (its own cells exceed MAX_COMMON_CELLS); a file of 2 GB was read whole,
 * and decoded into a second copy, before that was found.
 */
export const MAX_MAP_FILE_BYTES = MAX_COMMON_CELLS * 4 + 2 ** 20;

/** A [h, w] float32 map from a run's .npy file. */
export async function readRawMap(run: CompareRun, npy: string): Promise<RawMap> {
  const path = insideRun(run, npy);
  let decoded: ReturnType<typeof decodeNpy>;
  try {
    decoded = decodeNpy((await readRegularFile(path, MAX_MAP_FILE_BYTES)).bytes);
  } catch (error) {
    throw new CamvizError(`not a readable map: ${(error as Error).message}`, { file: path });
  }
  const [height, width, ...rest] = decoded.shape;
  if (height === undefined || width === undefined || rest.length > 0 || height < 1 || width < 1) {
    throw new UsageError(`expected a [h, w] map, got [${decoded.shape.join(', ')}] (guided methods' gradient images cannot be compared)`, { file: path });
  }
  // NaN would make every metric and the worst-first order meaningless.
  if (!decoded.data.every(Number.isFinite)) throw new CamvizError('the map holds non-finite values (NaN or infinity)', { file: path });
  return { data: decoded.data, width, height };
}

function sideOf(result: CamResultRecord, map: RawMap): PairSide {
  return {
    class: result.class,
    layer: result.layer,
    score: result.score,
    probability: result.probability,
    peak: result.peak,
    png: result.png,
    npy: result.npy ?? '',
    shape: [map.height, map.width],
  };
}

/**
 * The input's top-1 prediction. A cam record's predictions are the classes
 * it explained, so they give the top-1 only in a run that chose its classes
 * by probability (--top-k), not in one given --class.
 */
function topPrediction(run: CompareRun, record: InputRecord): TopPrediction | null {
  const classes = run.manifest.options['classes'];
  if (Array.isArray(classes) && classes.length > 0) return null;
  const first = record.predictions?.[0];
  return first === undefined ? null : { index: first.index, label: first.label, probability: first.probability };
}

/** Both maps at their common resolution, for pictures of the difference. */
export interface PairMaps {
  width: number;
  height: number;
  a: Float32Array;
  b: Float32Array;
}

/** The metrics of one pair (failures are filled in by judge()). */
export async function measurePair(pair: PlannedPair, a: CompareRun, b: CompareRun): Promise<{ metrics: PairMetrics; maps: PairMaps }> {
  const mapA = await readRawMap(a, pair.a.npy!);
  const mapB = await readRawMap(b, pair.b.npy!);
  checkCommonResolution(mapA, mapB, pair, b);
  const compared = compareMaps(mapA, mapB);
  const top1A = topPrediction(a, pair.recordA);
  const top1B = topPrediction(b, pair.recordB);
  const metrics: PairMetrics = {
    input: pair.input,
    method: pair.method,
    rank: pair.rank,
    a: sideOf(pair.a, mapA),
    b: sideOf(pair.b, mapB),
    scoreChange: pair.b.score - pair.a.score,
    probabilityChange: pair.a.probability === null || pair.b.probability === null ? null : pair.b.probability - pair.a.probability,
    top1: { a: top1A, b: top1B, changed: top1A !== null && top1B !== null && top1A.index !== top1B.index },
    resolution: [compared.height, compared.width],
    correlation: compared.correlation,
    iou: compared.iou,
    peakShift: peakShift(pair.a.peak, await peakInPictureOf(pair, a, b)),
    failures: [],
  };
  return { metrics, maps: { width: compared.width, height: compared.height, a: compared.a, b: compared.b } };
}

/**
 * B's peak in A's picture pixels. Peaks are in each run's written picture,
 * which a run shrinks to its --max-overlay-side: runs with other limits
 * drew the same photo at other scales, and their peaks, taken as they are,
 * differed by the scale. Pictures of one size (or unreadable) leave it.
 */
async function peakInPictureOf(pair: PlannedPair, a: CompareRun, b: CompareRun): Promise<PointXY> {
  const [sizeA, sizeB] = await Promise.all([pngSize(insideRun(a, pair.a.png)), pngSize(insideRun(b, pair.b.png))]);
  const { peak } = pair.b;
  if (sizeA === undefined || sizeB === undefined || (sizeA.width === sizeB.width && sizeA.height === sizeB.height)) return peak;
  // Pixel centres map to pixel centres.
  return { x: ((peak.x + 0.5) * sizeA.width) / sizeB.width - 0.5, y: ((peak.y + 0.5) * sizeA.height) / sizeB.height - 0.5 };
}

// ---------------------------------------------------------------- verdict

/** Worst first: lowest correlation, then lowest IoU, then largest peak shift; then by input. */
export function worstFirst(x: PairMetrics, y: PairMetrics): number {
  return (
    x.correlation - y.correlation ||
    x.iou - y.iou ||
    y.peakShift - x.peakShift ||
    (x.input < y.input ? -1 : x.input > y.input ? 1 : 0) ||
    (x.method < y.method ? -1 : x.method > y.method ? 1 : 0) ||
    x.rank - y.rank
  );
}

const round = (value: number): string => String(Number(value.toPrecision(3)));

function classChange(pair: PairMetrics): string {
  const name = (prediction: TopPrediction): string => (prediction.label === null ? `${prediction.index}` : `${prediction.index} ${prediction.label}`);
  return `top-1 changed: ${name(pair.top1.a!)} -> ${name(pair.top1.b!)}`;
}

/** The thresholds one pair breaks, in words. */
function pairFailures(pair: PairMetrics, thresholds: CompareThresholds, top1Over: boolean): string[] {
  const failures: string[] = [];
  const { minCorr, minIou, maxPeakShift } = thresholds;
  if (minCorr !== undefined && !(pair.correlation >= minCorr)) failures.push(`correlation ${round(pair.correlation)} < --min-corr ${minCorr}`);
  if (minIou !== undefined && !(pair.iou >= minIou)) failures.push(`IoU ${round(pair.iou)} < --min-iou ${minIou}`);
  if (maxPeakShift !== undefined && !(pair.peakShift <= maxPeakShift)) {
    failures.push(`peak shift ${round(pair.peakShift)} px > --max-peak-shift ${maxPeakShift}`);
  }
  if (top1Over && pair.top1.changed) failures.push(classChange(pair));
  return failures;
}

function spread(values: readonly number[]): Spread {
  if (values.length === 0) return { min: 0, mean: 0, max: 0 };
  const sum = values.reduce((total, value) => total + value, 0);
  return { min: Math.min(...values), mean: sum / values.length, max: Math.max(...values) };
}

/** Applies the thresholds: fills each pair's failures, sorts worst first, and sums up. */
export function judge(
  pairs: PairMetrics[],
  plan: Pick<PairPlan, 'inputs' | 'failedInputs' | 'top1Changes'>,
  thresholds: CompareThresholds,
): { summary: CompareSummary; offenders: Offender[]; pairs: PairMetrics[] } {
  const changedInputs = new Set(plan.top1Changes.map((change) => change.input));
  const top1Over = thresholds.maxTop1Changes !== undefined && changedInputs.size > thresholds.maxTop1Changes;
  for (const pair of pairs) pair.failures = pairFailures(pair, thresholds, top1Over);
  const sorted = [...pairs].sort(worstFirst);
  const offenders = sorted
    .filter((pair) => pair.failures.length > 0)
    .map((pair): Offender => ({
      input: pair.input,
      method: pair.method,
      rank: pair.rank,
      classA: pair.a.class,
      classB: pair.b.class,
      correlation: pair.correlation,
      iou: pair.iou,
      peakShift: pair.peakShift,
      failures: pair.failures,
    }));
  const failedInputs = new Set(plan.failedInputs.map((failed) => failed.input)).size;
  const summary: CompareSummary = {
    inputs: plan.inputs,
    pairs: pairs.length,
    top1Changes: changedInputs.size,
    correlation: spread(pairs.map((pair) => pair.correlation)),
    iou: spread(pairs.map((pair) => pair.iou)),
    peakShift: spread(pairs.map((pair) => pair.peakShift)),
    failedInputs,
    offenders: offenders.length,
    top1Over,
    passed: offenders.length === 0 && failedInputs === 0 && !top1Over,
  };
  return { summary, offenders, pairs: sorted };
}

/** One line: what was compared, the extremes, and the verdict. */
export function summaryLine(result: CompareResult): string {
  const { summary } = result;
  const numbers =
    `${summary.pairs} pair${summary.pairs === 1 ? '' : 's'} over ${summary.inputs} input${summary.inputs === 1 ? '' : 's'}: ` +
    `correlation min ${round(summary.correlation.min)} (mean ${round(summary.correlation.mean)}), ` +
    `IoU min ${round(summary.iou.min)}, peak shift max ${round(summary.peakShift.max)} px, top-1 changes ${summary.top1Changes}`;
  if (summary.passed) return `compare passed: ${numbers}`;
  const reasons = [
    summary.offenders > 0 ? `${summary.offenders} offending pair${summary.offenders === 1 ? '' : 's'}` : '',
    summary.top1Over ? `${summary.top1Changes} top-1 change${summary.top1Changes === 1 ? '' : 's'} over --max-top1-changes ${result.thresholds.maxTop1Changes}` : '',
    summary.failedInputs > 0 ? `${summary.failedInputs} input${summary.failedInputs === 1 ? '' : 's'} failed in a run` : '',
  ].filter((reason) => reason !== '');
  return `compare FAILED (${reasons.join(', ')}): ${numbers}`;
}

/** One line per offender (worst first), then per failed input. */
export function offenderLines(result: CompareResult): string[] {
  const className = (value: { index: number; label: string | null }): string => (value.label === null ? `${value.index}` : `${value.index} ${value.label}`);
  const classes = (offender: Offender): string =>
    offender.classA.index === offender.classB.index ? `class ${className(offender.classA)}` : `class ${className(offender.classA)} vs ${className(offender.classB)}`;
  // A changed top-1 whose input has no offending pair (its maps did not pair) is named on its own.
  const named = new Set(result.offenders.map((offender) => offender.input));
  const unpairedChanges = result.summary.top1Over ? result.top1Changes.filter((change) => !named.has(change.input)) : [];
  return [
    ...result.offenders.map((offender) => `${offender.input} ${offender.method} ${classes(offender)}: ${offender.failures.join('; ')}`),
    ...unpairedChanges.map((change) => `${change.input}: top-1 changed: ${className(change.a)} -> ${className(change.b)} (its maps do not pair)`),
    ...result.failedInputs.map((failed) => `${failed.input}: failed in ${failed.run === 'a' ? result.a : result.b}: ${failed.error}`),
  ];
}

// ---------------------------------------------------------------- the run

export interface CompareRunOptions extends CompareOptions {
  /** Called for each pair with its maps at the common resolution (the report draws the difference). */
  onPair?: (metrics: PairMetrics, maps: PairMaps, index: number) => Promise<void>;
}

/**
 * Compares two run folders. Throws UsageError (before reading any map)
 * when they cannot be compared.
 */
export async function compareRuns(dirA: string, dirB: string, options: CompareRunOptions): Promise<CompareResult> {
  await refuseSameFolder(dirA, dirB);
  const a = await readCompareRun(dirA, 'A');
  const b = await readCompareRun(dirB, 'B');
  if (options.thresholds.maxTop1Changes !== undefined) for (const run of [a, b]) refuseUnknownTop1(run);
  const plan = planPairs(a, b, options.pairBy);
  await checkRawMaps(plan, a, b);
  const measured: PairMetrics[] = [];
  // One pair's maps at a time: memory stays bounded by the largest pair.
  for (const [index, pair] of plan.pairs.entries()) {
    const { metrics, maps } = await measurePair(pair, a, b);
    if (options.onPair !== undefined) await options.onPair(metrics, maps, index);
    measured.push(metrics);
  }
  const verdict = judge(measured, plan, options.thresholds);
  return {
    camviz: VERSION,
    a: resolve(dirA),
    b: resolve(dirB),
    pairBy: options.pairBy,
    thresholds: definedOnly(options.thresholds),
    summary: verdict.summary,
    offenders: verdict.offenders,
    failedInputs: plan.failedInputs,
    top1Changes: plan.top1Changes,
    unpaired: plan.unpaired,
    pairs: verdict.pairs,
  };
}

/**
 * A folder compared with itself passes every threshold whatever its maps
 * are: in CI, two variables that name the same folder. Refused, not passed.
 */
async function refuseSameFolder(dirA: string, dirB: string): Promise<void> {
  const [realA, realB] = await Promise.all([dirA, dirB].map((dir) => realpath(dir).catch(() => resolve(dir))));
  if (realA === realB) throw new UsageError(`A and B are the same folder: a run compared with itself compares nothing (give the other run's folder)`, { file: dirB });
}

/**
 * --max-top1-changes counts inputs whose top-1 changed; a run that cannot
 * tell its top-1 (given --class, or records without predictions) counted
 * none, and the gate passed with "top-1 changes 0". Refused instead.
 */
function refuseUnknownTop1(run: CompareRun): void {
  const classes = run.manifest.options['classes'];
  const why =
    Array.isArray(classes) && classes.length > 0
      ? 'was given --class, so its records hold the requested classes, not its top-1'
      : run.manifest.records.some((record) => record.status === 'ok' && (record.predictions ?? []).length === 0)
        ? 'has records without predictions'
        : undefined;
  if (why === undefined) return;
  throw new UsageError(`--max-top1-changes needs the top-1 prediction of each input: ${run.name} ${why} (run both with --top-k)`, { file: join(run.dir, MANIFEST_NAME) });
}

function definedOnly(thresholds: CompareThresholds): CompareThresholds {
  return Object.fromEntries(Object.entries(thresholds).filter(([, value]) => value !== undefined)) as CompareThresholds;
}

/** Writes `<outDir>/compare.json` atomically; returns its path. */
export async function writeCompareJson(outDir: string, result: CompareResult): Promise<string> {
  const path = join(outDir, COMPARE_NAME);
  await writeFileAtomic(path, `${JSON.stringify(result, null, 2)}\n`);
  return path;
}
