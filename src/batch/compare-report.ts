/**
 * The page of `camviz compare --report`: `compare.html` in the output
 * folder, one static page that works from file:// with no network, like the
 * run report (report.ts): the data is embedded as script-safe JSON and the
 * page's own script builds the cards with textContent only, so a hostile
 * file name shows up literally. One card per pair, worst first: A's PNG,
 * B's PNG (by relative path from the page) and the difference of the two
 * raw maps, drawn here and written beside the page.
 */
import { rename, rm, rmdir } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { temporaryName, writeFileAtomic } from '../util/atomic-file.js';
import { writeRecordedFile } from '../util/outputs-ledger.js';
import { VERSION } from '../util/version.js';
import { minMaxNormalize } from '../render/normalize.js';
import { encodePng } from '../render/png.js';
import { resizeBilinear } from '../render/resize.js';
import type { CompareResult, CompareThresholds, PairMaps, PairMetrics } from './compare.js';
import { REPORT_DIR } from './manifest.js';
import { removeStaleTemporaries } from './lock.js';
import { BASE_PAGE_STYLE, PAGE_HELPERS, staticPage } from './report.js';
import { makeFolders } from '../util/make-folders.js';

export const COMPARE_REPORT_NAME = 'compare.html';
/** The difference images, relative to the output folder (under _report/, which runs never read as inputs). */
export const DIFFERENCE_DIR = `${REPORT_DIR}/compare`;
/** Difference images are enlarged (bilinearly, like the overlays) until their longer side is at least this. */
const DIFFERENCE_MIN_SIDE = 224;

/** A pair's difference image, relative to the output folder. Numbered, so that no input name reaches the file system. */
export function differencePath(index: number): string {
  return `${DIFFERENCE_DIR}/diff-${String(index + 1).padStart(5, '0')}.png`;
}

/**
 * B - A of the two min-max normalised maps as RGB: red where B looks more,
 * blue where A looked more, white where they agree.
 */
export function differenceRgb(maps: PairMaps): { rgb: Uint8Array; width: number; height: number } {
  const a = minMaxNormalize(maps.a);
  const b = minMaxNormalize(maps.b);
  const difference = b.map((value, i) => value - a[i]!);
  const scale = Math.max(1, Math.ceil(DIFFERENCE_MIN_SIDE / Math.max(maps.width, maps.height)));
  const width = maps.width * scale;
  const height = maps.height * scale;
  const large = scale === 1 ? difference : resizeBilinear(difference, maps.width, maps.height, width, height);
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < large.length; i++) {
    const d = Math.max(-1, Math.min(1, large[i]!));
    // White fades to red (d > 0) or blue (d < 0) as |d| grows.
    const fade = Math.round(255 * (1 - Math.abs(d)));
    rgb[i * 3] = d > 0 ? 255 : fade;
    rgb[i * 3 + 1] = fade;
    rgb[i * 3 + 2] = d < 0 ? 255 : fade;
  }
  return { rgb, width, height };
}

/**
 * Writes the difference images into a temporary folder; `commit` moves it
 * to DIFFERENCE_DIR (replacing an earlier compare's), `discard` removes it,
 * so a failed compare leaves no half set of images.
 */
export class DifferenceImages {
  private readonly staging: string;

  constructor(private readonly outDir: string) {
    this.staging = temporaryName(join(outDir, DIFFERENCE_DIR));
  }

  /** Whether the staging folder was made (and the stale ones of killed compares swept). */
  private started = false;

  async write(metrics: PairMetrics, maps: PairMaps, index: number): Promise<void> {
    const { rgb, width, height } = differenceRgb(maps);
    if (!this.started) {
      this.started = true;
      // A compare stopped by a signal left its staging folder here.
      await removeStaleTemporaries(join(this.outDir, REPORT_DIR));
      await makeFolders(this.staging);
    }
    const name = differencePath(index);
    await writeFileAtomic(join(this.staging, name.slice(DIFFERENCE_DIR.length + 1)), await encodePng(rgb, width, height, { compressionLevel: 6 }));
    metrics.difference = name;
  }

  async commit(): Promise<void> {
    const target = join(this.outDir, DIFFERENCE_DIR);
    await rm(target, { recursive: true, force: true });
    await makeFolders(this.staging);
    await rename(this.staging, target);
  }

  async discard(): Promise<void> {
    await rm(this.staging, { recursive: true, force: true });
    // The report folder the staging was made in, when nothing else is in it: a failed compare leaves nothing.
    await rmdir(join(this.outDir, REPORT_DIR)).catch(() => undefined);
  }
}

/** One card's data; short keys keep the page small. */
export interface ComparePagePair {
  /** Input (relative path). */
  n: string;
  /** Method. */
  m: string;
  /** Class of A and of B, as "index label". */
  ca: string;
  cb: string;
  /** Correlation, IoU, peak shift (px), score change. */
  r: number;
  u: number;
  s: number;
  ds: number;
  /** Top-1 of A and B when it changed. */
  t?: [string, string];
  /** Failures; absent when the pair passes. */
  f?: string[];
  /** A's and B's PNG, and the difference image, relative to the page. */
  a: string;
  b: string;
  d?: string;
}

export interface ComparePageData {
  facts: {
    a: string;
    b: string;
    pairBy: string;
    thresholds: CompareThresholds;
    passed: boolean;
    pairs: number;
    inputs: number;
    offenders: number;
    top1Changes: number;
    failedInputs: string[];
    camviz: string;
    generatedAt: string;
  };
  pairs: ComparePagePair[];
}

const label = (value: { index: number; label: string | null }): string => (value.label === null ? `${value.index}` : `${value.index} ${value.label}`);
const short = (value: number): number => Number(value.toPrecision(4));

/** A path relative to the page, with `/` separators. */
function fromPage(outDir: string, file: string): string {
  return relative(resolve(outDir), resolve(file)).split(sep).join('/');
}

export function comparePageData(result: CompareResult, outDir: string, generatedAt: Date): ComparePageData {
  const pairs = result.pairs.map((pair): ComparePagePair => {
    const entry: ComparePagePair = {
      n: pair.input,
      m: pair.method,
      ca: label(pair.a.class),
      cb: label(pair.b.class),
      r: short(pair.correlation),
      u: short(pair.iou),
      s: short(pair.peakShift),
      ds: short(pair.scoreChange),
      a: fromPage(outDir, join(result.a, pair.a.png)),
      b: fromPage(outDir, join(result.b, pair.b.png)),
    };
    if (pair.top1.changed) entry.t = [label(pair.top1.a!), label(pair.top1.b!)];
    if (pair.failures.length > 0) entry.f = pair.failures;
    if (pair.difference !== undefined) entry.d = pair.difference;
    return entry;
  });
  return {
    facts: {
      a: result.a,
      b: result.b,
      pairBy: result.pairBy,
      thresholds: result.thresholds,
      passed: result.summary.passed,
      pairs: result.summary.pairs,
      inputs: result.summary.inputs,
      offenders: result.summary.offenders,
      top1Changes: result.summary.top1Changes,
      failedInputs: result.failedInputs.map((failed) => `${failed.input} (in ${failed.run.toUpperCase()}): ${failed.error}`),
      camviz: VERSION,
      generatedAt: generatedAt.toISOString(),
    },
    pairs,
  };
}

/** Writes `<outDir>/compare.html` atomically; returns its path. */
export async function writeCompareReport(outDir: string, result: CompareResult): Promise<string> {
  const path = join(outDir, COMPARE_REPORT_NAME);
  await makeFolders(outDir);
  // Recorded where the folder has a ledger (a run's folder, compare's default), as a run's index.html is.
  await writeRecordedFile(outDir, COMPARE_REPORT_NAME, path, renderCompareHtml(comparePageData(result, outDir, new Date())));
  return path;
}

export function renderCompareHtml(data: ComparePageData): string {
  return staticPage({
    title: 'camviz compare',
    style: PAGE_STYLE,
    script: PAGE_SCRIPT,
    data,
    body: `<header><h1>camviz compare</h1><p id="verdict"></p><dl id="facts"></dl></header>
<main id="cards"></main>
<noscript><p>This page needs JavaScript to show its cards.</p></noscript>
`,
  });
}

const PAGE_STYLE = `${BASE_PAGE_STYLE}#verdict{font-weight:700;margin:0 0 8px}
#verdict.passed{color:var(--ok)}
#verdict.failed{color:var(--err)}
.card.offender{border-left-color:var(--err)}
.card h2{margin:0 0 4px;font-size:15px;overflow-wrap:anywhere}
.metrics{color:var(--muted);font-size:13px;margin:0 0 8px}
.failures{color:var(--err);font-weight:600;margin:0 0 8px;padding-left:20px}
`;

const PAGE_SCRIPT = `
(() => {
  'use strict';
  const data = JSON.parse(document.getElementById('camviz-data').textContent);
${PAGE_HELPERS}  const f = data.facts;
  const verdict = document.getElementById('verdict');
  verdict.className = f.passed ? 'passed' : 'failed';
  verdict.textContent = f.passed ? 'passed' : 'FAILED: ' + f.offenders + ' offending pair(s), ' + f.failedInputs.length + ' failed input(s)';
  const facts = document.getElementById('facts');
  const fact = (name, value) => {
    const wrap = el('div');
    wrap.append(el('dt', '', name), el('dd', '', value));
    facts.append(wrap);
  };
  fact('A', f.a);
  fact('B', f.b);
  fact('pairs', String(f.pairs));
  fact('inputs', String(f.inputs));
  fact('paired by', f.pairBy);
  fact('top-1 changes', String(f.top1Changes));
  const thresholds = Object.entries(f.thresholds).map(([name, value]) => name + ' ' + value).join(', ');
  fact('thresholds', thresholds || 'none');
  for (const failed of f.failedInputs) fact('failed', failed);
  fact('camviz', f.camviz);
  fact('written', new Date(f.generatedAt).toLocaleString());
  document.title = 'camviz compare: ' + (f.passed ? 'passed' : 'FAILED') + ', ' + f.pairs + ' pairs';

  const figure = (src, caption) => imageFigure(src, caption, caption);

  const cards = document.getElementById('cards');
  const fragment = document.createDocumentFragment();
  for (const p of data.pairs) {
    const card = el('article', p.f ? 'card offender' : 'card');
    card.dataset.name = p.n;
    const classes = p.ca === p.cb ? 'class ' + p.ca : 'class ' + p.ca + ' vs ' + p.cb;
    card.append(el('h2', 'name', p.n + ' \\u00b7 ' + p.m + ' \\u00b7 ' + classes));
    const metrics = ['correlation ' + p.r, 'IoU ' + p.u, 'peak shift ' + p.s + ' px', 'score change ' + p.ds];
    if (p.t) metrics.push('top-1 ' + p.t[0] + ' \\u2192 ' + p.t[1]);
    card.append(el('p', 'metrics', metrics.join(' \\u00b7 ')));
    if (p.f) {
      const list = el('ul', 'failures');
      for (const failure of p.f) list.append(el('li', '', failure));
      card.append(list);
    }
    const row = el('div', 'row');
    row.append(figure(p.a, 'A: class ' + p.ca), figure(p.b, 'B: class ' + p.cb));
    if (p.d) row.append(figure(p.d, 'difference: red where B looks more, blue where A did'));
    card.append(row);
    fragment.append(card);
  }
  cards.append(fragment);
})();
`;
