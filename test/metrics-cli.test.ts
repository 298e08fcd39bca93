/**
 * The metrics from the command line, end to end on the embedded shapes
 * model and its fixtures (which carry ground truth, fixtures/shapes/truth.json):
 * `--metrics` in --json and in the manifest, unrequested metrics absent,
 * values independent of --batch-size, `camviz metrics` with the pointing
 * game, and the usage errors.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { copyFile, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import type { MetricsSummary } from '../src/batch/metrics-summary.js';
import { METRIC_KEYS } from '../src/metrics/names.js';
import type { CamResultRecord } from '../src/tasks/types.js';
import { repoRoot } from './helpers/assets.js';
import { type CliRun, cliEnv, runCli } from './helpers/cli.js';
import { readManifest } from './helpers/files.js';

const CHROMIUM = '/usr/bin/chromium';
const skipBrowser: string | false = existsSync(CHROMIUM) ? false : `${CHROMIUM} not found (CI installs Debian's chromium)`;
const shapesDir = join(repoRoot, 'fixtures', 'shapes');
const skipWithoutShapes: string | false = existsSync(join(repoRoot, 'models', 'shapes', 'model.json')) ? false : 'models/shapes/model.json is absent';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-metrics-test-'));
after(() => rm(workDir, { recursive: true, force: true }));
const env = cliEnv(join(workDir, 'cache'));
const camviz = (args: readonly string[]): Promise<CliRun> => runCli(args, { cwd: workDir, env, timeoutMs: 600_000 });
const shapes = ['--model', 'shapes', '--jobs', '1', '--quiet'];

const camResults = async (outDir: string): Promise<CamResultRecord[]> => (await readManifest(outDir)).records.flatMap((record) => (record.results ?? []) as CamResultRecord[]);

describe('a folder run with every metric', { skip: skipWithoutShapes }, () => {
  const out = join(workDir, 'all');
  let run: CliRun;
  before(async () => {
    run = await camviz(['cam', shapesDir, ...shapes, '--metrics', '--json', '--report', '--out', out]);
  });

  test('--json and the manifest hold every metric of every map, and the random baseline\'s', async () => {
    assert.equal(run.code, 0, run.stderr);
    const printed = JSON.parse(run.stdout) as CamResultRecord[];
    assert.equal(printed.length, 8);
    for (const result of printed) {
      assert.deepEqual(Object.keys(result.metrics!), [...METRIC_KEYS, 'random'], result.input);
      assert.deepEqual(Object.keys(result.metrics!.random), [...METRIC_KEYS], result.input);
      for (const key of METRIC_KEYS) {
        assert.ok(Number.isFinite(result.metrics![key]) && Number.isFinite(result.metrics!.random[key]), `${result.input} ${key}`);
      }
      assert.ok(result.metrics!.deletionAuc! >= 0 && result.metrics!.insertionAuc! <= 1);
      assert.equal(result.metrics!.roadCombined, (result.metrics!.roadLerf! - result.metrics!.roadMorf!) / 2);
    }
    const recorded = await camResults(out);
    assert.deepEqual(
      recorded.map((result) => result.metrics),
      printed.map((result) => result.metrics),
    );
    const manifest = await readManifest(out);
    assert.deepEqual(manifest.options['metrics'], { names: ['confidence', 'deletion', 'insertion', 'road'], steps: 20 });
  });

  test('the report shows each map\'s metrics beside the random map\'s (headless Chromium)', { skip: skipBrowser }, async () => {
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run'] });
    try {
      const page = await browser.newPage();
      const problems: string[] = [];
      page.on('pageerror', (error) => problems.push(error.message));
      await page.goto(pathToFileURL(join(out, 'index.html')).href);
      await page.waitForSelector('#cards .card');
      const tables = await page.evaluate<string[][][]>(
        `[...document.querySelectorAll('.card[data-name="circle.png"] table.metrics')].map((table) => [...table.rows].map((row) => [...row.cells].map((cell) => cell.textContent)))`,
      );
      const circle = (await camResults(out)).find((result) => result.input.endsWith('circle.png'))!;
      const four = (value: number): string => String(Number(value.toPrecision(4)));
      assert.deepEqual(tables, [
        [['metric', 'map', 'random'], ...METRIC_KEYS.map((key) => [key, four(circle.metrics![key]!), four(circle.metrics!.random[key]!)])],
      ]);
      assert.deepEqual(problems, []);
    } finally {
      await browser.close();
    }
  });

  test('camviz metrics prints mean ± sd per method and class beside the random map, and the pointing game', async () => {
    const summary = await camviz(['metrics', out]);
    assert.equal(summary.code, 0, summary.stderr);
    assert.match(summary.stdout, /^gradcam, class \d+ \(\w+\): \d+ maps?$/m);
    assert.match(summary.stdout, /^ {2}deletionAuc +-?\d\.\d{4} ± \d\.\d{4} +-?\d\.\d{4} ± \d\.\d{4}$/m);
    assert.match(summary.stdout, /^pointing game \(truth\.json beside the inputs\):\n {2}gradcam: [\d.]+% \(\d+\/8\)$/m);
  });

  test('the pointing game finds truth.json from any folder: inputs given relative to the run\'s working folder are read from it', async () => {
    const runFolder = join(workDir, 'relative-run');
    await cp(shapesDir, join(runFolder, 'scenes'), { recursive: true });
    const relativeRun = await runCli(['cam', 'scenes', ...shapes, '--out', 'maps'], { cwd: runFolder, env, timeoutMs: 600_000 });
    assert.equal(relativeRun.code, 0, relativeRun.stderr);
    assert.equal((await readManifest(join(runFolder, 'maps'))).records[0]?.input.startsWith('scenes/'), true, 'inputs recorded as given');
    const elsewhere = join(workDir, 'elsewhere');
    await mkdir(elsewhere, { recursive: true });
    const summary = await runCli(['metrics', join(runFolder, 'maps')], { cwd: elsewhere, env, timeoutMs: 600_000 });
    assert.equal(summary.code, 0, summary.stderr);
    assert.match(summary.stdout, /^pointing game \(truth\.json beside the inputs\):\n {2}gradcam: [\d.]+% \(\d+\/8\)$/m);
  });

  test('a truth.json not in the expected format is one line naming it and the entry, not a TypeError, nor a pointing game changed unsaid', async () => {
    // The run's records, pointed at a copy of the inputs beside a truth.json of our own.
    const inputs = join(workDir, 'truth-inputs');
    await cp(shapesDir, inputs, { recursive: true });
    const copied = join(workDir, 'truth-run');
    await cp(out, copied, { recursive: true });
    const manifest = await readManifest(copied);
    for (const record of manifest.records) record.input = join(inputs, record.relative);
    await writeFile(join(copied, 'manifest.json'), JSON.stringify(manifest));
    const truth = JSON.parse(await readFile(join(shapesDir, 'truth.json'), 'utf8')) as { images: Record<string, unknown>[] };
    const cases: [string, (images: Record<string, unknown>[]) => unknown[], RegExp][] = [
      ['a null shape', (images) => [{ ...images[0], shapes: [null] }, ...images.slice(1)], /truth\.json: images\[0\] is not \{file, width, height, shapes/],
      ['a negative box', (images) => [{ ...images[0], shapes: [{ classIndex: 0, box: { x: 1, y: 1, width: -5, height: 3 } }] }, ...images.slice(1)], /images\[0\] is not/],
      ['a box outside the image', (images) => [...images.slice(0, 1), { ...images[1], shapes: [{ classIndex: 0, box: { x: 1e6, y: 0, width: 4, height: 4 } }] }, ...images.slice(2)], /images\[1\] is not/],
      ['an image of width 0', (images) => [{ ...images[0], width: 0 }, ...images.slice(1)], /images\[0\] is not/],
      ['a file listed twice', (images) => [...images, images[0]], /truth\.json: circle\.png is listed twice/],
    ];
    for (const [what, change, said] of cases) {
      await writeFile(join(inputs, 'truth.json'), JSON.stringify({ ...truth, images: change(truth.images) }));
      const summary = await camviz(['metrics', copied]);
      assert.equal(summary.code, 1, `${what}: ${summary.stderr}`);
      assert.match(summary.stderr, said, what);
      assert.match(summary.stderr, /truth-inputs\/truth\.json\)\n$/, `${what}: names the file`);
    }
  });

  test('camviz metrics --json writes metrics.json: the groups\' statistics are those of the manifest\'s values', async () => {
    const summary = await camviz(['metrics', out, '--json', '--quiet']);
    assert.equal(summary.code, 0, summary.stderr);
    const written = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8')) as MetricsSummary;
    assert.deepEqual(JSON.parse(summary.stdout), written);
    const results = await camResults(out);
    assert.equal(written.groups.reduce((sum, group) => sum + group.maps, 0), results.length);
    for (const group of written.groups) {
      const members = results.filter((result) => result.method === group.method && result.class.index === group.class.index);
      for (const key of METRIC_KEYS) {
        const values = members.map((member) => member.metrics![key]!);
        const mean = values.reduce((s, v) => s + v, 0) / values.length;
        const sd = values.length < 2 ? 0 : Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / (values.length - 1));
        assert.ok(Math.abs(group.metrics[key]!.mean - mean) < 1e-12 && Math.abs(group.metrics[key]!.sd - sd) < 1e-12, `${group.class.index} ${key}`);
        const randomMean = members.reduce((s, member) => s + member.metrics!.random[key]!, 0) / members.length;
        assert.ok(Math.abs(group.random[key]!.mean - randomMean) < 1e-12, `${group.class.index} random ${key}`);
      }
    }
    // Each fixture's top class is one of its shapes: 8 attempts; Grad-CAM points at the shape in the pointing-game test's >= 95% of scenes.
    assert.equal(written.pointing?.length, 1);
    const [pointing] = written.pointing!;
    assert.equal(pointing!.method, 'gradcam');
    assert.equal(pointing!.total, 8);
    assert.ok(pointing!.hits >= 7, `hits ${pointing!.hits}/8`);
  });
});

describe('requested metrics only, and reproducible values', { skip: skipWithoutShapes }, () => {
  const inputs = [join(shapesDir, 'circle.png'), join(shapesDir, 'square-cross.png')];

  test('--metrics deletion --metric-steps 5: only deletion keys; the same values at --batch-size 1 and 2 and with two worker threads', async () => {
    const runs = [];
    for (const [batchSize, jobs] of [['1', '1'], ['2', '1'], ['1', '2']] as const) {
      const out = join(workDir, `deletion-${batchSize}-${jobs}`);
      const run = await camviz(['cam', ...inputs, ...shapes, '--jobs', jobs, '--metrics', 'deletion', '--metric-steps', '5', '--batch-size', batchSize, '--json', '--out', out]);
      assert.equal(run.code, 0, run.stderr);
      const printed = JSON.parse(run.stdout) as CamResultRecord[];
      for (const result of printed) assert.deepEqual(Object.keys(result.metrics!), ['deletionAuc', 'random'], 'unrequested metrics are absent, not null');
      for (const result of printed) assert.deepEqual(Object.keys(result.metrics!.random), ['deletionAuc']);
      assert.deepEqual((await readManifest(out)).options['metrics'], { names: ['deletion'], steps: 5 });
      runs.push(printed.map((result) => result.metrics));
    }
    assert.deepEqual(runs[0], runs[1]);
    assert.deepEqual(runs[0], runs[2]);
  });
});

describe('usage errors', () => {
  const expectUsageError = (run: CliRun, pattern: RegExp): void => {
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, pattern);
    assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
  };

  test('--metrics with guided backprop alone (a gradient image: no map, no score) is refused before any image', async () => {
    const out = join(workDir, 'guided');
    const run = await camviz(['cam', join(shapesDir, 'circle.png'), ...shapes, '--method', 'guidedbackprop', '--metrics', '--out', out]);
    expectUsageError(run, /^camviz: --metrics .*guidedbackprop gives a gradient image, no map/);
    assert.equal(existsSync(out), false);
  });

  test('--metrics with a target whose Y is no class probability (similarity, output, region) is refused before any image', async () => {
    // The metrics scored the perturbed images by the probability of class 0, which a similarity map does not explain.
    const out = join(workDir, 'similarity');
    const run = await camviz(['cam', join(shapesDir, 'circle.png'), ...shapes, '--target', 'similarity', '--reference', join(shapesDir, 'star.png'), '--metrics', '--out', out]);
    expectUsageError(run, /^camviz: --metrics measures a map by its class's probability: --target similarity has no such probability/);
    assert.equal(existsSync(out), false);
  });

  test('an unknown metric, --metric-steps out of range or without --metrics', async () => {
    const circle = join(shapesDir, 'circle.png');
    expectUsageError(await camviz(['cam', circle, ...shapes, '--metrics', 'deletion,auc']), /^camviz: unknown metric 'auc': choose from confidence, deletion, insertion, road/);
    expectUsageError(await camviz(['cam', circle, ...shapes, '--metrics', '--metric-steps', '0']), /^camviz: --metric-steps '0' must be a whole number from 1 to 1000/);
    expectUsageError(await camviz(['gradcam', circle, ...shapes, '--metric-steps', '5']), /^camviz: --metric-steps needs --metrics/);
  });

  test('camviz metrics on a folder that is not a run, or a run without metrics: one line, exit 2', async () => {
    const missing = join(workDir, 'nowhere');
    expectUsageError(await camviz(['metrics', missing]), new RegExp(`^camviz: not a camviz output folder: no manifest.json \\(${missing}\\)`));
    // A cam run of an image without ground truth beside it, and without --metrics: nothing to summarise.
    const lone = join(workDir, 'lone');
    await mkdir(lone, { recursive: true });
    await copyFile(join(shapesDir, 'star.png'), join(lone, 'star.png'));
    const out = join(workDir, 'plain');
    const plain = await camviz(['cam', lone, ...shapes, '--out', out]);
    assert.equal(plain.code, 0, plain.stderr);
    expectUsageError(await camviz(['metrics', out]), /^camviz: no map has metrics: run camviz cam with --metrics \(.*manifest\.json\)/);
  });
});
