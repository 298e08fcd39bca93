/**
 * `camviz metrics <folder>`: the faithfulness metrics of a cam run, read
 * back from its manifest and summarised per method and class (mean and
 * sample standard deviation of each metric, the random baseline beside),
 * and, where the inputs come with ground truth (a `truth.json` beside them,
 * in the format of fixtures/shapes/truth.json), the pointing game per method.
 */
import { basename, dirname, join } from 'node:path';
import { type Box, type PointingTally, hitRate, tallyPointing } from '../metrics/pointing.js';
import { METRIC_KEYS, type MetricKey, type MetricValues } from '../metrics/names.js';
import type { CamResultRecord, InputRecord, ResultRecord } from '../tasks/types.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { CamvizError, UsageError } from '../util/errors.js';
import { pngSize } from '../util/png-size.js';
import { readOptionalJson } from '../util/json-file.js';
import { type Manifest, MANIFEST_NAME, inputLocation, readManifest } from './manifest.js';

export const METRICS_SUMMARY_NAME = 'metrics.json';
/** The ground truth a folder of inputs may carry. */
export const TRUTH_NAME = 'truth.json';

export interface MetricStat {
  mean: number;
  /** Sample standard deviation (n - 1); 0 for one map. */
  sd: number;
  n: number;
}

export type MetricStats = Partial<Record<MetricKey, MetricStat>>;

export interface MetricsGroup {
  method: string;
  class: { index: number; label: string | null };
  /** Maps with metrics in this group. */
  maps: number;
  /**
   * Of those, the constant maps (MetricsRecord.constantMap), left out of
   * both columns' statistics: their curves follow the pixels' reading
   * order, and would pull the mean toward an arbitrary ranking's.
   */
  constantMaps: number;
  /** Over the group's maps that are not constant, and their random maps. */
  metrics: MetricStats;
  random: MetricStats;
}

export interface PointingRow extends PointingTally {
  method: string;
  rate: number;
}

export interface MetricsSummary {
  manifest: string;
  groups: MetricsGroup[];
  /** Present when some input had ground truth. */
  pointing?: PointingRow[];
}

/** Reads and summarises a cam run folder; a folder that is not one, or has nothing to summarise, is a usage error. */
export async function summariseMetricsRun(dir: string): Promise<MetricsSummary> {
  const manifest = await readCamRun(dir);
  const results = manifest.records.filter((record) => record.status === 'ok').flatMap((record) => camResults(record).map((result) => ({ record, result })));
  const groups = groupMetrics(results.map(({ result }) => result));
  const pointing = await pointingGame(dir, manifest, results);
  if (groups.length === 0 && pointing === undefined) {
    throw new UsageError(`no map has metrics: run camviz cam with --metrics`, { file: join(dir, MANIFEST_NAME) });
  }
  return { manifest: join(dir, MANIFEST_NAME), groups, ...(pointing === undefined ? {} : { pointing }) };
}

async function readCamRun(dir: string): Promise<Manifest> {
  const path = join(dir, MANIFEST_NAME);
  let manifest: Manifest | undefined;
  try {
    manifest = await readManifest(dir);
  } catch (error) {
    throw new UsageError(error instanceof CamvizError ? error.message : String(error), { file: path });
  }
  if (manifest === undefined) throw new UsageError(`not a camviz output folder: no ${MANIFEST_NAME}`, { file: dir });
  if (manifest.command !== 'cam') throw new UsageError(`a '${manifest.command}' run: metrics are in runs of camviz cam (or gradcam) with --metrics`, { file: path });
  return manifest;
}

function camResults(record: InputRecord): CamResultRecord[] {
  return (record.results ?? []).filter((result: ResultRecord): result is CamResultRecord => 'method' in result);
}

/** Mean and sample standard deviation. */
export function stat(values: readonly number[]): MetricStat {
  const n = values.length;
  const mean = values.reduce((sum, value) => sum + value, 0) / n;
  const variance = n < 2 ? 0 : values.reduce((sum, value) => sum + (value - mean) ** 2, 0) / (n - 1);
  return { mean, sd: Math.sqrt(variance), n };
}

function stats(values: readonly MetricValues[]): MetricStats {
  const out: MetricStats = {};
  for (const key of METRIC_KEYS) {
    const present = values.map((value) => value[key]).filter((value): value is number => typeof value === 'number');
    if (present.length > 0) out[key] = stat(present);
  }
  return out;
}

/** One group per (method, class), in method then class order. */
export function groupMetrics(results: readonly CamResultRecord[]): MetricsGroup[] {
  const groups = new Map<string, CamResultRecord[]>();
  for (const result of results) {
    if (result.metrics === undefined) continue;
    const key = `${result.method}\u0000${result.class.index}`;
    groups.set(key, [...(groups.get(key) ?? []), result]);
  }
  return [...groups.values()]
    .map((members) => {
      const measured = members.filter((member) => member.metrics!.constantMap !== true);
      return {
        method: members[0]!.method,
        class: members[0]!.class,
        maps: members.length,
        constantMaps: members.length - measured.length,
        metrics: stats(measured.map((member) => member.metrics!)),
        random: stats(measured.map((member) => member.metrics!.random)),
      };
    })
    .sort((a, b) => (a.method < b.method ? -1 : a.method > b.method ? 1 : a.class.index - b.class.index));
}

/** What a truth.json says of one image. */
interface TruthImage {
  width: number;
  height: number;
  shapes: { classIndex: number; box: Box }[];
}

/** The truth.json beside each input, by folder (undefined: none, or not in the expected format). */
async function truthOf(folder: string, cache: Map<string, Map<string, TruthImage> | undefined>): Promise<Map<string, TruthImage> | undefined> {
  if (!cache.has(folder)) {
    const path = join(folder, TRUTH_NAME);
    const parsed = (await readOptionalJson(path, TRUTH_NAME, MAX_TRUTH_BYTES)) as { images?: unknown } | undefined;
    cache.set(folder, parsed === undefined ? undefined : truthImages(parsed, path));
  }
  return cache.get(folder);
}

/** The largest truth.json read (a few hundred bytes an image). */
const MAX_TRUTH_BYTES = 64 * 2 ** 20;

/**
 * The images of a truth.json, by file name; undefined when it lists none.
 * Anything else than fixtures/shapes/truth.json's format is an error naming
 * the file and the entry: nulls gave raw TypeErrors, and negative or
 * far-away boxes, sizes of 0 and duplicate files changed the pointing game
 * unsaid.
 */
function truthImages(parsed: { images?: unknown }, path: string): Map<string, TruthImage> | undefined {
  if (!Array.isArray(parsed.images)) throw new CamvizError(`${TRUTH_NAME} has no "images" list`, { file: path });
  const images = new Map<string, TruthImage>();
  parsed.images.forEach((entry: unknown, index) => {
    const image = truthImage(entry);
    if (image === undefined) {
      throw new CamvizError(`${TRUTH_NAME}: images[${index}] is not {file, width, height, shapes: [{classIndex, box: {x, y, width, height}}]} with sizes of at least 1 and boxes inside the image`, { file: path });
    }
    if (images.has(image.file)) throw new CamvizError(`${TRUTH_NAME}: ${image.file} is listed twice`, { file: path });
    images.set(image.file, image);
  });
  return images.size === 0 ? undefined : images;
}

/** The largest image side a truth.json may give. */
const MAX_TRUTH_SIDE = 1_000_000;

function truthImage(value: unknown): (TruthImage & { file: string }) | undefined {
  const entry = value as Partial<Record<'file' | 'width' | 'height' | 'shapes', unknown>> | null;
  if (typeof entry !== 'object' || entry === null || typeof entry.file !== 'string' || !Array.isArray(entry.shapes)) return undefined;
  const { width, height } = entry;
  if (!isSide(width) || !isSide(height)) return undefined;
  const shapes = entry.shapes.map((shape: unknown) => truthShape(shape, width, height));
  return shapes.every((shape) => shape !== undefined) ? { file: entry.file, width, height, shapes: shapes as TruthImage['shapes'] } : undefined;
}

function isSide(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= MAX_TRUTH_SIDE;
}

function truthShape(value: unknown, width: number, height: number): TruthImage['shapes'][number] | undefined {
  const shape = value as { classIndex?: unknown; box?: unknown } | null;
  if (typeof shape !== 'object' || shape === null || typeof shape.classIndex !== 'number' || !Number.isInteger(shape.classIndex) || shape.classIndex < 0) return undefined;
  const box = shape.box as Partial<Record<keyof Box, unknown>> | null | undefined;
  if (typeof box !== 'object' || box === null) return undefined;
  const { x, y, width: boxWidth, height: boxHeight } = box;
  const finite = [x, y, boxWidth, boxHeight].every((number) => typeof number === 'number' && Number.isFinite(number));
  if (!finite) return undefined;
  const [left, top, w, h] = [x, y, boxWidth, boxHeight] as number[];
  if (!(w! > 0 && h! > 0 && left! >= 0 && top! >= 0 && left! + w! <= width && top! + h! <= height)) return undefined;
  return { classIndex: shape.classIndex, box: { x: left!, y: top!, width: w!, height: h! } };
}

/**
 * Per method, how often the map's peak lies in a box of its class. Peaks
 * are in the written picture's pixels: scaled to the truth's image size
 * when the picture was shrunk (--max-overlay-side).
 */
async function pointingGame(dir: string, manifest: Manifest, results: readonly { record: InputRecord; result: CamResultRecord }[]): Promise<PointingRow[] | undefined> {
  const cache = new Map<string, Map<string, TruthImage> | undefined>();
  const tallies = new Map<string, PointingTally>();
  for (const { record, result } of results) {
    const input = inputLocation(manifest, record);
    const truth = (await truthOf(dirname(input), cache))?.get(basename(input));
    const boxes = truth?.shapes.filter((shape) => shape.classIndex === result.class.index).map((shape) => shape.box) ?? [];
    if (truth === undefined || boxes.length === 0) continue;
    const size = await pngSize(join(dir, result.png));
    const peak = size === undefined ? result.peak : { x: (result.peak.x * truth.width) / size.width, y: (result.peak.y * truth.height) / size.height };
    const tally = tallies.get(result.method) ?? { hits: 0, total: 0 };
    tallyPointing(tally, peak, boxes);
    tallies.set(result.method, tally);
  }
  if (tallies.size === 0) return undefined;
  return [...tallies].sort(([a], [b]) => (a < b ? -1 : 1)).map(([method, tally]) => ({ method, ...tally, rate: hitRate(tally) }));
}

const format = (value: number): string => (Math.abs(value) >= 1e-3 || value === 0 ? value.toFixed(4) : value.toExponential(2));
const formatStat = (value: MetricStat | undefined): string => (value === undefined ? '-' : `${format(value.mean)} ± ${format(value.sd)}`);

/** The summary as text lines: per group, a metric | map | random table; then the pointing game. */
export function summaryLines(summary: MetricsSummary): string[] {
  const lines: string[] = [];
  for (const group of summary.groups) {
    const label = group.class.label === null ? `class ${group.class.index}` : `class ${group.class.index} (${group.class.label})`;
    const constant = group.constantMaps === 0 ? '' : ` (${group.constantMaps} constant, left out: they rank no pixel above another)`;
    lines.push(`${group.method}, ${label}: ${group.maps} map${group.maps === 1 ? '' : 's'}${constant}`);
    const rows = METRIC_KEYS.filter((key) => group.metrics[key] !== undefined).map((key) => [key, formatStat(group.metrics[key]), formatStat(group.random[key])]);
    if (rows.length === 0) continue;
    const table = [['metric', 'map (mean ± sd)', 'random map'], ...rows];
    const widths = [0, 1].map((column) => Math.max(...table.map((row) => row[column]!.length)));
    for (const row of table) lines.push(`  ${row[0]!.padEnd(widths[0]!)}  ${row[1]!.padEnd(widths[1]!)}  ${row[2]}`);
  }
  if (summary.pointing !== undefined) {
    lines.push(`pointing game (${TRUTH_NAME} beside the inputs):`);
    for (const row of summary.pointing) lines.push(`  ${row.method}: ${(100 * row.rate).toFixed(1)}% (${row.hits}/${row.total})`);
  }
  return lines;
}

export async function writeMetricsSummary(dir: string, summary: MetricsSummary): Promise<string> {
  const path = join(dir, METRICS_SUMMARY_NAME);
  await writeFileAtomic(path, `${JSON.stringify(summary, null, 2)}\n`);
  return path;
}
