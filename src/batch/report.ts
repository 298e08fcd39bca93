/**
 * The HTML report of a run: `index.html` in the output folder, one static
 * page that works from file:// with no network. The run's data is embedded
 * as JSON (escaped so that no file name can close the script tag) and the
 * page's own script builds the cards with textContent only, so a hostile
 * file name shows up literally instead of becoming markup. Cards render in
 * pages and images load lazily, so a run of thousands stays usable; each
 * record costs a compact JSON entry, not a block of HTML.
 */
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import sharp from '../util/sharp.js';
import { type EarlierOutputs, type WrittenVersion, fileAtOutput, recordAsIs, vouchFor, writeOwnOutput, writeRecordedFile } from '../util/outputs-ledger.js';
import type { CamResultRecord, FmapResultRecord, InputRecord, ResultRecord } from '../tasks/types.js';
import { VERSION } from '../util/version.js';
import { METRIC_KEYS, type MetricsRecord } from '../metrics/names.js';
import { type Manifest, REPORT_DIR, REPORT_NAME, inputLocation } from './manifest.js';
import { makeFolders } from '../util/make-folders.js';
import { loadPicture } from '../image/image.js';
import { replaceableOutputs, runFolderOutputs } from './own-outputs.js';

export { REPORT_DIR, REPORT_NAME } from './manifest.js';
/** Longest side of the input thumbnails, in pixels. */
export const THUMBNAIL_SIZE = 320;
/** Thumbnails generated at once (sharp uses its own threads for each). */
const THUMBNAIL_CONCURRENCY = 4;

/** Where an input's thumbnail goes, relative to the output folder (always with `/`). */
export function thumbnailPath(relativeInput: string): string {
  return `${REPORT_DIR}/thumbs/${relativeInput}.jpg`;
}

/** One output picture in the embedded data; short keys keep the page small. */
export interface ReportImage {
  /** PNG path relative to the output folder. */
  f: string;
  /** CAM method. */
  m?: string;
  /** Layer. */
  l?: string;
  /** Class index (its label is in the data's label table). */
  c?: number;
  /** Score. */
  s?: number;
  /** Probability; null for targets without one (output, region, similarity). */
  p?: number | null;
  /** Feature-map shape [H, W, C]. */
  h?: number[];
  /** Faithfulness metrics (--metrics): [name, the map's value, the random map's]. */
  x?: [string, number, number | null][];
}

export interface ReportRecord {
  /** Relative input path: the card's name, and where its outputs mirror. */
  n: string;
  /** The input as given, when it differs from `n`. */
  i?: string;
  /** 1 = ok, 0 = error. */
  ok: 0 | 1;
  /** 1 when the thumbnail exists. */
  t: 0 | 1;
  /** 1 when --skip-existing kept earlier outputs. */
  r?: 1;
  e?: string;
  /** Predictions: [class index, probability (null in a cam run whose target has none)]. */
  p?: [number, number | null][];
  o?: ReportImage[];
}

export interface ReportData {
  summary: {
    command: string;
    model: Manifest['model'];
    backend: Manifest['backend'];
    camviz: string;
    reportCamviz: string;
    inputs: number;
    ok: number;
    error: number;
    startedAt: string;
    finishedAt: string | null;
    generatedAt: string;
    interrupted: boolean;
    shards: string | null;
  };
  /** Class index -> label, for every class the records mention. */
  labels: Record<string, string>;
  records: ReportRecord[];
}

/**
 * Writes `<outDir>/index.html` (atomically) for a run's manifest, making
 * missing input thumbnails under `_report/thumbs/` first. Returns the page's path.
 */
export async function writeReport(outDir: string, manifest: Manifest): Promise<string> {
  const thumbs = await ensureThumbnails(outDir, manifest, runMaxPixels(manifest));
  const data = reportData(manifest, thumbs, new Date());
  const path = join(outDir, REPORT_NAME);
  await makeFolders(outDir);
  // Recorded, so that a later run tells camviz's page from one edited or put in its place (own-outputs.ts' refuseForeignPage).
  await writeRecordedFile(outDir, REPORT_NAME, path, renderReportHtml(data));
  return path;
}

/** The page's data: what the script needs, nothing more. */
export function reportData(manifest: Manifest, thumbs: ReadonlySet<string>, generatedAt: Date): ReportData {
  const labels: Record<string, string> = {};
  const noteLabel = (index: number, label: string | null): void => {
    if (label !== null && label !== '') labels[String(index)] = label;
  };
  const records = manifest.records.map((record): ReportRecord => {
    const entry: ReportRecord = { n: record.relative, ok: record.status === 'ok' ? 1 : 0, t: thumbs.has(record.relative) ? 1 : 0 };
    const input = record.input.split('\\').join('/');
    if (input !== record.relative && !input.endsWith(`/${record.relative}`)) entry.i = record.input;
    if (record.resumed) entry.r = 1;
    if (record.error !== undefined) entry.e = record.error;
    if (record.predictions && record.predictions.length > 0) {
      entry.p = record.predictions.map((prediction) => {
        noteLabel(prediction.index, prediction.label);
        return [prediction.index, roundOrNull(prediction.probability)];
      });
    }
    const images = outputImages(record, noteLabel);
    if (images.length > 0) entry.o = images;
    return entry;
  });
  const shards = manifest.shard === null || manifest.shard.length === 0 ? null : manifest.shard.map((shard) => `${shard.index}/${shard.count}`).join(', ');
  return {
    summary: {
      command: manifest.command,
      model: manifest.model,
      backend: manifest.backend,
      camviz: manifest.camviz,
      reportCamviz: VERSION,
      inputs: manifest.summary.inputs,
      ok: manifest.summary.ok,
      error: manifest.summary.error,
      startedAt: manifest.startedAt,
      finishedAt: manifest.finishedAt,
      generatedAt: generatedAt.toISOString(),
      interrupted: manifest.interrupted,
      shards,
    },
    labels,
    records,
  };
}

/** Every PNG of a record: CAM overlays and fmap grids with their captions, then any other PNG it lists. */
function outputImages(record: InputRecord, noteLabel: (index: number, label: string | null) => void): ReportImage[] {
  const images: ReportImage[] = [];
  const shown = new Set<string>();
  for (const result of record.results ?? []) {
    if (shown.has(result.png)) continue;
    shown.add(result.png);
    images.push(describeResult(result, noteLabel));
  }
  for (const output of record.outputs) {
    if (output.toLowerCase().endsWith('.png') && !shown.has(output)) {
      shown.add(output);
      images.push({ f: output });
    }
  }
  return images;
}

function describeResult(result: ResultRecord, noteLabel: (index: number, label: string | null) => void): ReportImage {
  if (isCamResult(result)) {
    noteLabel(result.class.index, result.class.label);
    const image: ReportImage = { f: result.png, m: result.method, l: result.layer, c: result.class.index, s: round(result.score), p: roundOrNull(result.probability) };
    if (result.metrics !== undefined) image.x = metricRows(result.metrics);
    return image;
  }
  const fmap: FmapResultRecord = result;
  return { f: fmap.png, l: fmap.layer, h: fmap.shape };
}

/** The rows of a map's metrics table: each requested metric, the map's value beside the random map's. */
function metricRows(metrics: MetricsRecord): [string, number, number | null][] {
  return METRIC_KEYS.filter((key) => typeof metrics[key] === 'number').map((key) => {
    const random = metrics.random?.[key];
    return [key, round(metrics[key]!), typeof random === 'number' ? round(random) : null];
  });
}

function isCamResult(result: ResultRecord): result is CamResultRecord {
  return 'method' in result;
}

/** Four significant digits: enough to read and to sort, and short. */
function round(value: number): number {
  return Number.isFinite(value) ? Number(value.toPrecision(4)) : value;
}

/** A probability for the page: null stays null (the target has none). */
function roundOrNull(value: number | null): number | null {
  return value === null ? null : round(value);
}

/**
 * Makes the missing thumbnails; returns the relative input paths that have
 * one. An input that cannot be read (moved, corrupt, another machine's path
 * after a merge) simply has none: its card says so.
 */
/** The pixel limit the run decoded its inputs with (its --max-pixels, 0 for none), as its manifest records it; else the default. */
function runMaxPixels(manifest: Manifest): number | undefined {
  const image = manifest.options['image'];
  const limit = typeof image === 'object' && image !== null ? (image as { maxPixels?: unknown }).maxPixels : undefined;
  return typeof limit === 'number' && Number.isFinite(limit) && limit >= 0 ? limit : undefined;
}

async function ensureThumbnails(outDir: string, manifest: Manifest, maxPixels: number | undefined): Promise<Set<string>> {
  const { records } = manifest;
  const own = await replaceableOutputs(outDir, withUnrecordedThumbnails((await runFolderOutputs(outDir)).files, records));
  const have = new Set<string>();
  let next = 0;
  const lanes = Array.from({ length: Math.min(THUMBNAIL_CONCURRENCY, records.length) }, async () => {
    while (next < records.length) {
      const record = records[next++]!;
      if (await ensureThumbnail(outDir, inputLocation(manifest, record), record, maxPixels, own)) have.add(record.relative);
    }
  });
  await Promise.all(lanes);
  return have;
}

/** Whether a thumbnail exists and is newer than its input (kept as it is when the input cannot be found: a merged run's, from another machine). */
async function upToDate(thumbnail: string, input: string): Promise<boolean> {
  const made = await stat(thumbnail).catch(() => undefined);
  if (made?.isFile() !== true || made.size === 0) return false;
  const source = await stat(input).catch(() => undefined);
  return source === undefined || source.mtimeMs <= made.mtimeMs;
}

/**
 * The files camviz wrote in a folder (`files`, as its ledger and manifest
 * list them), with the thumbnails of `records` vouched for by name when the
 * ledger records no thumbnail at all: a folder of a camviz that did not
 * record them (or of none), whose thumbnails are camviz's as its maps
 * listed by name alone are. Once thumbnails are recorded there, one of
 * them not recorded is not camviz's.
 */
export function withUnrecordedThumbnails(files: ReadonlyMap<string, readonly WrittenVersion[]>, records: readonly InputRecord[]): ReadonlyMap<string, readonly WrittenVersion[]> {
  const thumbs = thumbnailPath('');
  const prefix = thumbs.slice(0, thumbs.lastIndexOf('/') + 1);
  if ([...files.keys()].some((name) => name.startsWith(prefix))) return files;
  const vouched = new Map(files);
  for (const record of records) if (!vouched.has(thumbnailPath(record.relative))) vouched.set(thumbnailPath(record.relative), []);
  return vouched;
}

/**
 * Whether the input has a thumbnail, made now unless camviz's is there and
 * newer than the input. A file camviz did not write at its name (a user's,
 * or camviz's edited since: fileAtOutput) is left as it is and not shown
 * as the input's; a thumbnail vouched for by its name alone is recorded as
 * it is, so that it stays camviz's once thumbnails are recorded there.
 */
async function ensureThumbnail(outDir: string, input: string, record: InputRecord, maxPixels: number | undefined, own: (start: string) => EarlierOutputs): Promise<boolean> {
  const name = thumbnailPath(record.relative);
  const target = resolve(outDir, name);
  // A manifest is data: a relative path must not lead the writer out of the report folder.
  const inside = relative(resolve(outDir, REPORT_DIR), target);
  if (inside === '' || inside.startsWith('..') || isAbsolute(inside) || inside.split(sep).includes('..')) return false;
  const earlier = own(name);
  const there = await fileAtOutput(target, name, earlier);
  if (there === 'foreign') return false;
  if (there === "camviz's" && (await upToDate(target, input))) {
    if (vouchFor(earlier, name) === 'name') await recordAsIs(outDir, name, target).catch(() => undefined);
    return true;
  }
  try {
    // Decoded as the run decoded its inputs: a regular file only (a FIFO would block the thread that opens it, for good),
    // the run's pixel limit from its header, shrunk while decoding.
    const picture = await loadPicture(input, THUMBNAIL_SIZE, maxPixels);
    const jpeg = await sharp(picture.rgb, { raw: { width: picture.width, height: picture.height, channels: 3 } })
      .jpeg({ quality: 80 })
      .toBuffer();
    await makeFolders(dirname(target));
    return (await writeOwnOutput(outDir, name, target, jpeg, earlier)) === 'written';
  } catch {
    return false;
  }
}

/** JSON that is safe inside a <script> element: no `<`, `>`, `&` or JS line separators survive literally. */
export function scriptSafeJson(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * A static page: its head (a content-security policy under which only the
 * page's own script may run and nothing may be fetched but local images),
 * the body given, then the page's data and script. Both static pages (the
 * run report, the compare page) are made here.
 */
export function staticPage(page: { title: string; style: string; script: string; body: string; data: unknown }): string {
  const scriptHash = createHash('sha256').update(page.script).digest('base64');
  const policy = `default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; script-src 'sha256-${scriptHash}'; base-uri 'none'; form-action 'none'`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${policy}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="camviz ${VERSION.replace(/[^0-9A-Za-z.+-]/g, '')}">
<title>${page.title}</title>
<style>${page.style}</style>
</head>
<body>
${page.body}<script type="application/json" id="camviz-data">${scriptSafeJson(page.data)}</script>
<script>${page.script}</script>
</body>
</html>
`;
}

export function renderReportHtml(data: ReportData): string {
  return staticPage({
    title: 'camviz report',
    style: PAGE_STYLE,
    script: PAGE_SCRIPT,
    data,
    body: `<header id="summary"><h1>camviz report</h1><dl id="facts"></dl></header>
<nav id="controls">
<label>Filter <input id="filter" type="search" placeholder="file name, class label or index" autocomplete="off"></label>
<label>Min score <input id="minscore" type="number" step="any" placeholder="any" inputmode="decimal"></label>
<label>Status <select id="status"><option value="all">all</option><option value="ok">ok</option><option value="error">error</option></select></label>
<label>Sort <select id="sort"><option value="path">input path</option><option value="probability">top probability</option><option value="score">top score</option><option value="class">class</option><option value="status">status (errors first)</option></select></label>
<span id="count" aria-live="polite"></span>
</nav>
<main id="cards"></main>
<p id="more-wrap"><button id="more" type="button" hidden></button></p>
<noscript><p>This report needs JavaScript to show its cards.</p></noscript>
`,
  });
}

/** The look both static pages (the run report, the compare page) share; each adds its own rules. */
export const BASE_PAGE_STYLE = `
:root{color-scheme:light dark;--bg:#f6f7f9;--card:#fff;--fg:#1d2330;--muted:#5d6677;--line:#d9dde4;--ok:#16794a;--err:#b3261e}
@media (prefers-color-scheme:dark){:root{--bg:#15181d;--card:#1f242c;--fg:#e7eaf0;--muted:#9aa3b2;--line:#353c47;--ok:#5fd39a;--err:#ff8a80}}
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;background:var(--bg);color:var(--fg)}
header{padding:16px 20px 8px}
h1{margin:0 0 8px;font-size:20px}
dl{display:flex;flex-wrap:wrap;gap:4px 20px;margin:0}
dl div{display:flex;gap:6px}
dt{color:var(--muted)}
dd{margin:0;font-weight:600;overflow-wrap:anywhere}
main{display:flex;flex-direction:column;gap:12px;padding:12px 20px}
.card{background:var(--card);border:1px solid var(--line);border-left:4px solid var(--ok);border-radius:6px;padding:10px 12px}
.row{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
figure{margin:0;width:240px}
figure img{display:block;max-width:240px;max-height:240px;width:auto;height:auto;border:1px solid var(--line);background:var(--bg)}
figcaption{font-size:12px;color:var(--muted);margin-top:3px;overflow-wrap:anywhere}
.missing{display:flex;align-items:center;justify-content:center;width:160px;height:120px;border:1px dashed var(--line);color:var(--muted);font-size:12px;text-align:center;padding:6px}
`;

const PAGE_STYLE = `${BASE_PAGE_STYLE}nav{position:sticky;top:0;z-index:1;display:flex;flex-wrap:wrap;gap:12px;align-items:center;padding:10px 20px;background:var(--bg);border-bottom:1px solid var(--line)}
nav input[type=search]{width:18em}
#count{color:var(--muted)}
.card.error{border-left-color:var(--err)}
.card h2{display:flex;gap:10px;align-items:baseline;margin:0 0 8px;font-size:15px;overflow-wrap:anywhere}
.badge{font-size:12px;font-weight:700;padding:1px 7px;border-radius:9px;color:#fff;background:var(--ok);white-space:nowrap}
.error .badge{background:var(--err)}
.input{color:var(--muted);font-size:12px;overflow-wrap:anywhere}
.message{color:var(--err);font-weight:600;white-space:pre-wrap;overflow-wrap:anywhere;margin:4px 0 8px}
ol.predictions{margin:0;padding-left:22px;font-size:13px}
table.metrics{border-collapse:collapse;font-size:11px;margin-top:3px;font-variant-numeric:tabular-nums}
table.metrics th,table.metrics td{padding:0 6px 0 0;text-align:right}
table.metrics th:first-child,table.metrics td:first-child{text-align:left;color:var(--muted);font-weight:400}
#more-wrap{text-align:center;margin:0 0 24px}
`;

/**
 * What both report pages' scripts use (the run report and the compare
 * report): elements, file links (each path segment encoded), and a figure
 * of an image linked to itself, with a note in its place when it is missing.
 */
export const PAGE_HELPERS = `  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const href = (path) => path.split('/').map(encodeURIComponent).join('/');
  const imageFigure = (src, caption, alt) => {
    const fig = el('figure');
    const link = el('a');
    link.href = href(src);
    const img = el('img');
    img.loading = 'lazy';
    img.decoding = 'async';
    img.alt = alt;
    img.src = href(src);
    img.addEventListener('error', () => link.replaceWith(el('div', 'missing', 'image missing: ' + src)));
    link.append(img);
    fig.append(link, el('figcaption', '', caption));
    return fig;
  };
`;

const PAGE_SCRIPT = `
(() => {
  'use strict';
  const PAGE = 200;
  const data = JSON.parse(document.getElementById('camviz-data').textContent);
  const labels = data.labels;
${PAGE_HELPERS}  const percent = (p) => (p * 100).toFixed(p >= 0.995 || p < 0.001 ? 1 : 2).replace(/\\.?0+$/, '') + '%';
  const className = (index) => labels[index] === undefined ? 'class ' + index : 'class ' + index + ' ' + labels[index];
  const date = (iso) => { const d = new Date(iso); return isNaN(d.getTime()) ? iso : d.toLocaleString(); };

  const s = data.summary;
  const facts = document.getElementById('facts');
  const fact = (name, value) => {
    const wrap = el('div');
    wrap.append(el('dt', '', name), el('dd', '', value));
    facts.append(wrap);
  };
  fact('command', s.command);
  fact('model', s.model.name + (s.model.sha256 ? ' (sha256 ' + s.model.sha256.slice(0, 12) + ')' : ''));
  fact('backend', s.backend.kind + (s.backend.package ? ' (' + s.backend.package + ')' : ''));
  fact('camviz', s.camviz);
  fact('inputs', String(s.inputs));
  fact('ok', String(s.ok));
  fact('error', String(s.error));
  fact('started', date(s.startedAt));
  fact('finished', s.finishedAt ? date(s.finishedAt) : 'not finished');
  if (s.interrupted) fact('interrupted', 'yes: not every input was processed');
  if (s.shards) fact('shards', s.shards);
  fact('report written', date(s.generatedAt));
  document.title = 'camviz report: ' + s.command + ', ' + s.model.name + ', ' + s.ok + ' ok, ' + s.error + ' error';

  // Sort keys and search text, computed once per record.
  const items = data.records.map((r, order) => {
    let probability = -Infinity;
    let score = -Infinity;
    const words = [r.n, r.i || ''];
    for (const [index, p] of r.p || []) {
      // null: the target has no probability (the card sorts last, not as 0).
      if (typeof p === 'number') probability = Math.max(probability, p);
      words.push('#' + index, String(index), labels[index] || '');
    }
    for (const o of r.o || []) {
      if (typeof o.p === 'number') probability = Math.max(probability, o.p);
      if (typeof o.s === 'number') score = Math.max(score, o.s);
      if (typeof o.c === 'number') words.push('#' + o.c, String(o.c), labels[o.c] || '');
    }
    // The class a card is about: its first map's, else its top prediction.
    const topClass = (r.o || []).find((o) => typeof o.c === 'number')?.c ?? (r.p && r.p.length > 0 ? r.p[0][0] : undefined);
    const classKey = topClass === undefined ? '\\uffff' : (labels[topClass] || '#' + topClass).toLowerCase();
    return { r, order, probability, score, classKey, text: words.join('\\n').toLowerCase() };
  });

  const byPath = (a, b) => (a.r.n < b.r.n ? -1 : a.r.n > b.r.n ? 1 : a.order - b.order);
  const sorters = {
    path: byPath,
    probability: (a, b) => b.probability - a.probability || byPath(a, b),
    score: (a, b) => b.score - a.score || byPath(a, b),
    status: (a, b) => a.r.ok - b.r.ok || byPath(a, b),
    class: (a, b) => (a.classKey < b.classKey ? -1 : a.classKey > b.classKey ? 1 : byPath(a, b)),
  };

  // A map's faithfulness metrics beside the random map's.
  const metricsTable = (rows) => {
    const table = el('table', 'metrics');
    const head = el('tr');
    head.append(el('th', '', 'metric'), el('th', '', 'map'), el('th', '', 'random'));
    table.append(head);
    for (const [name, value, random] of rows) {
      const tr = el('tr');
      tr.append(el('td', '', name), el('td', '', String(value)), el('td', '', random === null ? '-' : String(random)));
      table.append(tr);
    }
    return table;
  };

  const figure = (src, caption, alt, metrics) => {
    const fig = imageFigure(src, caption, alt);
    if (metrics) fig.append(metricsTable(metrics));
    return fig;
  };

  const caption = (o) => {
    if (o.h) return o.l + ' \\u00b7 ' + o.h.join('\\u00d7');
    if (o.m === undefined) return o.f.split('/').pop();
    const parts = [o.m, o.l, className(o.c)];
    if (typeof o.s === 'number') parts.push('score ' + o.s);
    if (typeof o.p === 'number') parts.push('p ' + percent(o.p));
    return parts.join(' \\u00b7 ');
  };

  const card = (r) => {
    const node = el('article', r.ok ? 'card ok' : 'card error');
    node.dataset.name = r.n;
    node.dataset.status = r.ok ? 'ok' : 'error';
    const title = el('h2');
    title.append(el('span', 'badge', r.ok ? 'ok' : 'error'), el('span', 'name', r.n));
    if (r.r) title.append(el('span', 'input', 'kept from an earlier run'));
    node.append(title);
    if (r.i) node.append(el('div', 'input', r.i));
    if (!r.ok) node.append(el('p', 'message', r.e || 'failed (no message)'));
    const row = el('div', 'row');
    if (r.t) row.append(figure('${REPORT_DIR}/thumbs/' + r.n + '.jpg', 'input', 'input ' + r.n));
    else row.append(el('div', 'missing original', 'original image not readable'));
    for (const o of r.o || []) row.append(figure(o.f, caption(o), caption(o), o.x));
    node.append(row);
    if (r.p && r.p.length > 0) {
      const list = el('ol', 'predictions');
      for (const [index, p] of r.p) list.append(el('li', '', className(index) + (typeof p === 'number' ? ': ' + percent(p) : '')));
      node.append(list);
    }
    return node;
  };

  const filterInput = document.getElementById('filter');
  const statusSelect = document.getElementById('status');
  const minScoreInput = document.getElementById('minscore');
  const sortSelect = document.getElementById('sort');
  const cards = document.getElementById('cards');
  const more = document.getElementById('more');
  const count = document.getElementById('count');
  let view = [];
  let shown = 0;

  const showMore = () => {
    const end = Math.min(view.length, shown + PAGE);
    const fragment = document.createDocumentFragment();
    for (; shown < end; shown++) fragment.append(card(view[shown].r));
    cards.append(fragment);
    const rest = view.length - shown;
    more.hidden = rest === 0;
    more.textContent = 'show ' + Math.min(PAGE, rest) + ' more of ' + rest;
    count.textContent = 'showing ' + shown + ' of ' + view.length + (view.length === items.length ? '' : ' (' + items.length + ' in all)');
  };

  const update = () => {
    const words = filterInput.value.toLowerCase().split(/\\s+/).filter(Boolean);
    const status = statusSelect.value;
    const minScore = minScoreInput.value.trim() === '' ? -Infinity : Number(minScoreInput.value);
    view = items.filter((item) =>
      (status === 'all' || (status === 'ok') === (item.r.ok === 1)) &&
      (Number.isNaN(minScore) || item.score >= minScore) &&
      words.every((word) => item.text.includes(word)));
    view.sort(sorters[sortSelect.value] || byPath);
    cards.replaceChildren();
    shown = 0;
    showMore();
  };

  filterInput.addEventListener('input', update);
  statusSelect.addEventListener('change', update);
  minScoreInput.addEventListener('input', update);
  sortSelect.addEventListener('change', update);
  more.addEventListener('click', showMore);
  update();
})();
`;
