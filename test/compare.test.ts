/**
 * `camviz compare A B`: the metrics computed by hand on tiny maps, then the
 * command on real runs of the embedded shapes model (`--raw`): a run
 * against itself, a circle run against a star run, folders that do not
 * match, merged shards, top-1 changes, and the --report page in headless
 * Chromium. With the shared MobileNet, also class 243 against 281 on both.png.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, cp, mkdir, mkdtemp, open, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Browser } from 'playwright-core';

import { acquireRunLock } from '../src/batch/lock.js';
import { type CompareResult, compareMaps, peakShift, pearson, topRegion, topRegionIou } from '../src/batch/compare.js';
import { quantile } from '../src/metrics/quantile.js';
import { encodeNpy } from '../src/render/npy.js';
import type { Manifest } from '../src/batch/manifest.js';
import type { CamResultRecord } from '../src/tasks/types.js';
import { imagePath, mobilenetDir, repoRoot, skipWithoutSharedAssets } from './helpers/assets.js';
import { type CliRun, cliEnv, runCli } from './helpers/cli.js';
import { listFiles, readManifest } from './helpers/files.js';

const CHROMIUM = '/usr/bin/chromium';
const skipBrowser: string | false = existsSync(CHROMIUM) ? false : `${CHROMIUM} not found (CI installs Debian's chromium)`;
const shapesDir = join(repoRoot, 'fixtures', 'shapes');
const skipWithoutShapes: string | false = existsSync(join(repoRoot, 'models', 'shapes', 'model.json')) ? false : 'models/shapes/model.json is absent';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-compare-test-'));
after(() => rm(workDir, { recursive: true, force: true }));
const env = cliEnv(join(workDir, 'cache'));
const camviz = (args: readonly string[]): Promise<CliRun> => runCli(args, { cwd: workDir, env, timeoutMs: 120_000 });

const closeTo = (actual: number, expected: number, what: string): void =>
  assert.ok(Math.abs(actual - expected) < 1e-9, `${what}: ${actual}, expected ${expected}`);

describe('metrics on maps written by hand', () => {
  test('Pearson correlation: proportional, reversed, a worked case, constant maps', () => {
    closeTo(pearson([1, 2, 3, 4], [2, 4, 6, 8]), 1, 'proportional');
    closeTo(pearson([1, 2, 3, 4], [4, 3, 2, 1]), -1, 'reversed');
    // Deviations (-1.5, -0.5, 0.5, 1.5) and (-1.5, 0.5, -0.5, 1.5): covariance 4, variances 5 and 5.
    closeTo(pearson([1, 2, 3, 4], [1, 3, 2, 4]), 0.8, 'worked case');
    assert.equal(pearson([2, 2, 2], [5, 5, 5]), 1, 'two blank maps agree');
    assert.equal(pearson([2, 2, 2], [1, 2, 3]), 0, 'a blank map against a varying one');
    assert.throws(() => pearson([1, 2], [1, 2, 3]), RangeError);
  });

  test('the 80th percentile interpolates like numpy.percentile, and the top 20% are the cells at or above it', () => {
    // Position 0.8 * (5 - 1) = 3.2 between 4 and 5.
    closeTo(quantile([5, 1, 4, 2, 3], 0.8), 4.2, 'quantile');
    assert.deepEqual([...topRegion([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])], [0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    // A blank map: every cell is at its 80th percentile.
    assert.deepEqual([...topRegion([3, 3, 3, 3])], [1, 1, 1, 1]);
  });

  test('IoU of the top-20% regions', () => {
    const a = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]; // top region: cells 8, 9
    assert.equal(topRegionIou(a, a), 1);
    assert.equal(topRegionIou(a, [...a].reverse()), 0, 'top cells 0, 1 against 8, 9');
    // Sorted: 0 0 1 2 3 4 5 6 8 9; position 7.2 gives 6.4, so the top region is cells 7 and 8: {8} of {7, 8, 9}.
    closeTo(topRegionIou(a, [0, 1, 2, 3, 4, 5, 6, 9, 8, 0]), 1 / 3, 'one of three');
  });

  test("a map that is zero in most cells: its top region is the cells above the floor, not the floor's ties", () => {
    // 7x7 ReLU'd maps, each hot in 4 cells (8%), elsewhere 0: the 80th percentile is 0.
    const hot = (cells: readonly number[]): number[] => Array.from({ length: 49 }, (_, i) => (cells.includes(i) ? 1 + i : 0));
    const left = hot([0, 1, 7, 8]);
    const right = hot([40, 41, 47, 48]);
    assert.deepEqual([...topRegion(left)].flatMap((inside, i) => (inside ? [i] : [])), [0, 1, 7, 8]);
    assert.equal(topRegionIou(left, right), 0, 'disjoint spots do not overlap (the zero floor made this 1)');
    assert.equal(topRegionIou(left, hot([0, 1, 7, 9])), 3 / 5);
    // A constant map is all floor: every cell, as before.
    assert.deepEqual([...topRegion([0, 0, 0, 0])], [1, 1, 1, 1]);
  });

  test('peak shift is the Euclidean distance in pixels', () => {
    assert.equal(peakShift({ x: 10, y: 20 }, { x: 13, y: 24 }), 5);
    assert.equal(peakShift({ x: 7, y: 7 }, { x: 7, y: 7 }), 0);
  });

  test('maps of different resolutions meet at the finer one (bilinear, half-pixel centres)', () => {
    // A 2x2 map rising left to right; at 4x4 its columns sample x = -0.25, 0.25, 0.75, 1.25, clamped at the borders: 0, 0.25, 0.75, 1.
    const coarse = { data: Float32Array.from([0, 1, 0, 1]), width: 2, height: 2 };
    const rising = Float32Array.from({ length: 16 }, (_, i) => [0, 0.25, 0.75, 1][i % 4]!);
    const same = compareMaps(coarse, { data: rising, width: 4, height: 4 });
    assert.deepEqual([same.width, same.height], [4, 4]);
    assert.deepEqual([...same.a], [...rising]);
    closeTo(same.correlation, 1, 'against itself upsampled');
    assert.equal(same.iou, 1);
    const falling = Float32Array.from(rising, (value) => 1 - value);
    const opposite = compareMaps({ data: falling, width: 4, height: 4 }, coarse);
    closeTo(opposite.correlation, -1, 'against its mirror image');
    assert.equal(opposite.iou, 0);
  });
});

describe('camviz compare on shapes runs', { skip: skipWithoutShapes }, () => {
  const inputs = join(workDir, 'inputs');
  /** A hostile but legal file name: it must reach the page as text. */
  const hostileName = `q'"<img src=x onerror=alert(1)>&amp;.png`;
  const run = (name: string): string => join(workDir, name);
  const camRun = async (out: string, ...args: string[]): Promise<void> => {
    const result = await camviz(['cam', inputs, '--model', 'shapes', '--backend', 'wasm', '--raw', '--quiet', '--out', run(out), ...args]);
    assert.equal(result.code, 0, result.stderr);
  };
  const readCompare = async (folder: string): Promise<CompareResult> => JSON.parse(await readFile(join(run(folder), 'compare.json'), 'utf8')) as CompareResult;

  before(async () => {
    await mkdir(inputs, { recursive: true });
    await copyFile(join(shapesDir, 'circle-star.png'), join(inputs, 'circle-star.png'));
    await copyFile(join(shapesDir, 'square-cross.png'), join(inputs, 'square-cross.png'));
    await copyFile(join(shapesDir, 'triangle-circle.png'), join(inputs, hostileName));
    await camRun('circle', '--class', 'circle');
    await camRun('star', '--class', 'star');
  });

  test('a copy of a run against it: correlation 1, IoU 1, no shift, exit 0', async () => {
    await cp(run('circle'), run('circle-copy'), { recursive: true });
    const result = await camviz(['compare', run('circle'), run('circle-copy'), '--min-corr', '0.999', '--min-iou', '1', '--max-peak-shift', '0', '--out', run('self')]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /^camviz: compare passed: 3 pairs over 3 inputs/);
    const compared = await readCompare('self');
    assert.equal(compared.pairs.length, 3);
    for (const pair of compared.pairs) {
      closeTo(pair.correlation, 1, `${pair.input} correlation`);
      assert.equal(pair.iou, 1);
      assert.equal(pair.peakShift, 0);
      assert.equal(pair.scoreChange, 0);
      assert.deepEqual(pair.failures, []);
    }
    assert.deepEqual(compared.thresholds, { minCorr: 0.999, minIou: 1, maxPeakShift: 0 });
    assert.equal(compared.summary.passed, true);
    assert.deepEqual(compared.offenders, []);
  });

  test('a circle run against a star run fails the gate, naming the offenders worst first', async () => {
    const result = await camviz(['compare', run('circle'), run('star'), '--pair-by', 'rank', '--min-corr', '0.8', '--out', run('circle-vs-star')]);
    assert.equal(result.code, 1, result.stderr);
    const lines = result.stderr.trimEnd().split('\n');
    assert.match(lines[0]!, /^camviz: compare FAILED \(\d offending pairs?\): 3 pairs over 3 inputs/);
    assert.match(result.stderr, /circle-star\.png gradcam class 0 circle vs 3 star: correlation -?[\d.]+ < --min-corr 0\.8/);
    const compared = await readCompare('circle-vs-star');
    assert.equal(compared.pairBy, 'rank');
    assert.equal(compared.summary.passed, false);
    const offender = compared.offenders.find((entry) => entry.input === 'circle-star.png');
    assert.ok(offender !== undefined, 'circle-star.png is an offender');
    assert.deepEqual([offender.classA.label, offender.classB.label], ['circle', 'star']);
    assert.ok(offender.correlation < 0.8);
    // Worst first: the lines after the summary and the JSON list the offenders by rising correlation.
    const correlations = compared.offenders.map((entry) => entry.correlation);
    assert.deepEqual(correlations, [...correlations].sort((x, y) => x - y));
    assert.deepEqual(lines.slice(1).map((line) => line.trim().split(' gradcam')[0]), compared.offenders.map((entry) => entry.input));
  });

  test('runs of different classes do not pair by class: exit 2 with the way out, and nothing written', async () => {
    const result = await camviz(['compare', run('circle'), run('star'), '--out', run('by-class')]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /^camviz: no map of .*circle pairs with one of .*star: nothing to compare \(.*--pair-by rank/);
    assert.equal(existsSync(run('by-class')), false);
  });

  test('folders that do not match: other inputs, no --raw map, a missing map file, not a cam run, no manifest (exit 2)', async () => {
    const edited = async (name: string, change: (manifest: Manifest) => void): Promise<string> => {
      await cp(run('circle'), run(name), { recursive: true });
      const manifest = await readManifest(run(name));
      change(manifest);
      await writeFile(join(run(name), 'manifest.json'), JSON.stringify(manifest));
      return run(name);
    };
    const fewer = await edited('fewer', (manifest) => {
      manifest.records = manifest.records.filter((record) => record.relative !== 'square-cross.png');
    });
    const noRaw = join(workDir, 'no-raw');
    assert.equal((await camviz(['cam', inputs, '--model', 'shapes', '--backend', 'wasm', '--class', 'circle', '--quiet', '--out', noRaw])).code, 0);
    await cp(run('circle'), run('lost-map'), { recursive: true });
    await rm(join(run('lost-map'), 'square-cross.gradcam.0.npy'));
    await cp(run('circle'), run('device-map'), { recursive: true });
    await rm(join(run('device-map'), 'square-cross.gradcam.0.npy'));
    await symlink('/dev/zero', join(run('device-map'), 'square-cross.gradcam.0.npy'));
    const predictRun = join(workDir, 'predict');
    assert.equal((await camviz(['predict', inputs, '--model', 'shapes', '--backend', 'wasm', '--quiet', '--out', predictRun])).code, 0);

    const cases: [string, string, RegExp][] = [
      [fewer, run('circle'), /^camviz: the runs have different inputs: 1 only in .*circle \(square-cross\.png\)\n$/],
      [run('circle'), noRaw, /^camviz: B has no --raw map for circle-star\.png gradcam class 0 circle: run camviz cam with --raw \(.*no-raw\/manifest\.json\)\n$/],
      [run('lost-map'), run('circle'), /^camviz: A's --raw map for square-cross\.png gradcam class 0 circle is missing \(.*lost-map\/square-cross\.gradcam\.0\.npy\)\n$/],
      [run('circle'), run('device-map'), /^camviz: B's --raw map for square-cross\.png gradcam class 0 circle is not a regular file \(.*device-map\/square-cross\.gradcam\.0\.npy\)\n$/],
      [run('circle'), predictRun, /^camviz: B is a 'predict' run: compare needs runs of camviz cam/],
      [run('circle'), join(workDir, 'inputs'), /^camviz: B is not a camviz output folder: no manifest\.json \(/],
    ];
    for (const [index, [a, b, expected]] of cases.entries()) {
      const out = join(workDir, `mismatch-${index}`);
      const result = await camviz(['compare', a, b, '--out', out]);
      assert.equal(result.code, 2, `${a} vs ${b}: ${result.stderr}`);
      assert.match(result.stderr, expected);
      assert.equal(existsSync(out), false, 'nothing written');
    }
  });

  test('maps that would meet at more than 4096x4096 cells (1x5000 against 5000x1) are refused, not resized for a minute', async () => {
    await cp(run('circle'), run('wide'), { recursive: true });
    await cp(run('circle'), run('tall'), { recursive: true });
    const map = 'square-cross.gradcam.0.npy';
    await writeFile(join(run('wide'), map), encodeNpy(new Float32Array(5000).fill(1), [1, 5000]));
    await writeFile(join(run('tall'), map), encodeNpy(new Float32Array(5000).fill(1), [5000, 1]));
    const out = join(workDir, 'crossed');
    const result = await camviz(['compare', run('wide'), run('tall'), '--out', out]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /^camviz: the maps of square-cross\.png gradcam class 0 circle \(1x5000 and 5000x1\) would be compared at 5000x5000, more than the 16777216 cells compare resizes to \(.*tall\/square-cross\.gradcam\.0\.npy\)\n$/);
    assert.equal(existsSync(out), false, 'nothing written');
  });

  test('the same folder as A and B is a usage error, not a pass (CI variables that name one folder)', async () => {
    await symlink(run('circle'), run('circle-link'));
    for (const b of [run('circle'), `${run('circle')}/`, run('circle-link')]) {
      const result = await camviz(['compare', run('circle'), b, '--min-corr', '0.9', '--out', run('same-folder')]);
      assert.equal(result.code, 2, `${b}: ${result.stderr}`);
      assert.match(result.stderr, /^camviz: A and B are the same folder: a run compared with itself compares nothing/);
    }
    assert.equal(existsSync(run('same-folder')), false, 'nothing written');
  });

  test('--max-top1-changes with a run given --class (which records no top-1) is a usage error, not "top-1 changes 0"', async () => {
    await cp(run('circle'), run('circle-again'), { recursive: true });
    const result = await camviz(['compare', run('circle'), run('circle-again'), '--max-top1-changes', '0', '--out', run('top1-unknown')]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /^camviz: --max-top1-changes needs the top-1 prediction of each input: A was given --class, .*\(run both with --top-k\) \(.*circle\/manifest\.json\)\n$/);
    assert.equal(existsSync(run('top1-unknown')), false, 'nothing written');
  });

  test('runs that drew their pictures at other scales (--max-overlay-side) compare peaks in A\'s pixels, not as they were written', async () => {
    await camRun('circle-small', '--class', 'circle', '--max-overlay-side', '40');
    const result = await camviz(['compare', run('circle'), run('circle-small'), '--max-peak-shift', '6', '--out', run('scaled-out')]);
    assert.equal(result.code, 0, result.stderr);
    const compared = await readCompare('scaled-out');
    for (const pair of compared.pairs) {
      assert.notDeepEqual(pair.a.peak, pair.b.peak, `${pair.input}: written at another scale`);
      // 160 px pictures against 40 px ones: a quarter-scale peak lands within a 4x4 block of A's (its centre 1.5 px from any of it), plus the map's own upsampling.
      assert.ok(pair.peakShift <= 6, `${pair.input}: peak shift ${pair.peakShift}`);
    }
  });

  test("--report where the output folder holds a compare.html of the user's own stops before any work, naming it", async () => {
    await cp(run('circle'), run('circle-page'), { recursive: true });
    const page = '<!doctype html><title>notes</title>\n';
    await writeFile(join(run('circle-page'), 'compare.html'), page);
    const result = await camviz(['compare', run('circle'), run('circle-page'), '--report']);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /^camviz: not camviz's \(it has no camviz generator tag\): .*circle-page\/compare\.html\)\n$/);
    assert.equal(await readFile(join(run('circle-page'), 'compare.html'), 'utf8'), page);
    assert.equal(existsSync(join(run('circle-page'), 'compare.json')), false, 'nothing written');
  });

  test('a compare into a folder a run holds (its .camviz.lock) is refused, naming the holder, and writes nothing', async () => {
    // The run compacts its ledger under its lock: a compare.html recorded meanwhile lost its record, and the next compare --report refused it.
    const out = run('circle-held');
    await cp(run('circle'), out, { recursive: true });
    const held = await acquireRunLock(out, () => undefined);
    try {
      const before = await listFiles(out);
      const result = await camviz(['compare', run('circle'), out, '--report']);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, /another camviz run \(PID \d+ on .*\) is writing into this folder/);
      assert.deepEqual(await listFiles(out), before);
    } finally {
      await held.release();
    }
    const free = await camviz(['compare', run('circle'), out, '--report']);
    assert.equal(free.code, 0, free.stderr);
    assert.equal(existsSync(join(out, '.camviz.lock')), false, 'released');
  });

  test('an interrupted run is a usage error (it holds a subset of its inputs), not a gate passed on that subset', async () => {
    await cp(run('circle'), run('interrupted'), { recursive: true });
    const manifestPath = join(run('interrupted'), 'manifest.json');
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as Manifest;
    await writeFile(manifestPath, JSON.stringify({ ...manifest, interrupted: true, records: manifest.records.slice(0, 1) }));
    for (const [a, b] of [[run('circle'), run('interrupted')], [run('interrupted'), run('circle')]] as const) {
      const result = await camviz(['compare', a, b, '--min-corr', '0.5', '--out', run('interrupted-out')]);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, /^camviz: [AB] was interrupted before every input was done: finish it \(run it again with --skip-existing\) before comparing \(.*interrupted\/manifest\.json\)\n$/);
    }
    assert.equal(existsSync(run('interrupted-out')), false, 'nothing written');
  });

  test('a compare without --report where an earlier compare.html lies says that page is not this one', async () => {
    await cp(run('circle'), run('circle-stale'), { recursive: true });
    const withPage = await camviz(['compare', run('circle'), run('circle-stale'), '--min-corr', '0.5', '--report']);
    assert.equal(withPage.code, 0, withPage.stderr);
    assert.doesNotMatch(withPage.stderr, /earlier compare's page/);
    const without = await camviz(['compare', run('circle'), run('circle-stale'), '--min-corr', '0.5']);
    assert.equal(without.code, 0, without.stderr);
    assert.match(without.stderr, /\ncamviz: note: .*circle-stale\/compare\.html is an earlier compare's page, not this one's \(--report makes it again\)\n/);
  });

  test('without a threshold the run passes and says that nothing was gated', async () => {
    await cp(run('circle'), run('ungated'), { recursive: true });
    const ungated = await camviz(['compare', run('circle'), run('ungated'), '--out', run('ungated-out')]);
    assert.equal(ungated.code, 0, ungated.stderr);
    assert.match(ungated.stderr, /\ncamviz: note: no threshold given \(--min-corr, --min-iou, --max-peak-shift, --max-top1-changes\): the maps were measured, not gated\n$/);
    const gated = await camviz(['compare', run('circle'), run('ungated'), '--min-iou', '0.5', '--out', run('ungated-out')]);
    assert.equal(gated.code, 0, gated.stderr);
    assert.doesNotMatch(gated.stderr, /not gated/);
  });

  test('a map file larger than any map compare can compare is refused from its size, not read (a sparse 100 MB .npy)', async () => {
    await cp(run('circle'), run('huge-map'), { recursive: true });
    const map = join(run('huge-map'), 'square-cross.gradcam.0.npy');
    // A valid 8x8 header, then 100 MB the header does not declare.
    await writeFile(map, encodeNpy(new Float32Array(64), [8, 8]));
    const handle = await open(map, 'r+');
    await handle.truncate(100 * 2 ** 20);
    await handle.close();
    const result = await camviz(['compare', run('circle'), run('huge-map'), '--out', run('huge-out')]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /^camviz: not a readable map: .* is 104857600 bytes, more than the 68157440 read \(.*huge-map\/square-cross\.gradcam\.0\.npy\)\n$/);
    assert.equal(existsSync(run('huge-out')), false, 'nothing written');
  });

  test('bad thresholds are usage errors', async () => {
    for (const [flag, value] of [['--min-corr', '1.5'], ['--min-iou', 'half'], ['--max-peak-shift', '-1'], ['--max-top1-changes', '0.5'], ['--pair-by', 'label']] as const) {
      const result = await camviz(['compare', run('circle'), run('circle'), flag, value, '--out', run('never')]);
      assert.equal(result.code, 2, `${flag} ${value}: ${result.stderr}`);
      assert.ok(result.stderr.includes(flag), result.stderr);
    }
    assert.equal(existsSync(run('never')), false);
  });

  test('shards merged first compare like one run', async () => {
    await camRun('shard-1', '--class', 'circle', '--shard', '1/2');
    await camRun('shard-2', '--class', 'circle', '--shard', '2/2');
    const merged = await camviz(['merge', run('shard-1'), run('shard-2'), '--out', run('merged'), '--quiet']);
    assert.equal(merged.code, 0, merged.stderr);

    const self = await camviz(['compare', run('merged'), run('circle'), '--min-corr', '0.999', '--max-peak-shift', '0', '--out', run('merged-vs-one')]);
    assert.equal(self.code, 0, self.stderr);
    assert.equal((await readCompare('merged-vs-one')).summary.pairs, 3);

    const oneRun = await camviz(['compare', run('circle'), run('star'), '--pair-by', 'rank', '--out', run('one-vs-star')]);
    const shardRun = await camviz(['compare', run('merged'), run('star'), '--pair-by', 'rank', '--out', run('merged-vs-star')]);
    assert.equal(oneRun.code, 0, oneRun.stderr);
    assert.equal(shardRun.code, 0, shardRun.stderr);
    const metrics = (result: CompareResult): unknown =>
      result.pairs.map((pair) => [pair.input, pair.a.class.index, pair.b.class.index, pair.correlation, pair.iou, pair.peakShift, pair.scoreChange]);
    assert.deepEqual(metrics(await readCompare('merged-vs-star')), metrics(await readCompare('one-vs-star')));

    // One shard alone does not cover the inputs: the message says to merge.
    const alone = await camviz(['compare', run('shard-1'), run('circle'), '--out', run('shard-alone')]);
    assert.equal(alone.code, 2, alone.stderr);
    assert.match(alone.stderr, /different inputs: .*shard-1 is shard 1\/2: merge the shards first \(camviz merge\)/);
  });

  test('--max-top1-changes counts inputs whose top-1 prediction changed', async () => {
    await camRun('top');
    await cp(run('top'), run('top-changed'), { recursive: true });
    const manifest = await readManifest(run('top-changed'));
    const record = manifest.records.find((entry) => entry.relative === 'circle-star.png')!;
    // Another model would rank another class first for this image.
    record.predictions = [{ index: 5, label: 'other', probability: 0.9 }, ...(record.predictions ?? [])];
    await writeFile(join(run('top-changed'), 'manifest.json'), JSON.stringify(manifest));

    const strict = await camviz(['compare', run('top'), run('top-changed'), '--max-top1-changes', '0', '--out', run('top-strict')]);
    assert.equal(strict.code, 1, strict.stderr);
    assert.match(strict.stderr, /top-1 changes 1;/);
    assert.match(strict.stderr, /\n {2}circle-star\.png gradcam class .*: top-1 changed: \d+ \S+ -> 5 other\n/);
    const lenient = await camviz(['compare', run('top'), run('top-changed'), '--max-top1-changes', '1', '--out', run('top-lenient')]);
    assert.equal(lenient.code, 0, lenient.stderr);
    const compared = await readCompare('top-lenient');
    assert.equal(compared.summary.top1Changes, 1);
    assert.deepEqual(compared.pairs.filter((pair) => pair.top1.changed).map((pair) => pair.input), ['circle-star.png']);
  });

  test('--max-top1-changes under --pair-by class: an input whose top-1 changed, and whose maps therefore do not pair, still fails the gate', async () => {
    await camRun('top');
    await cp(run('top'), run('top-moved'), { recursive: true });
    const manifest = await readManifest(run('top-moved'));
    const record = manifest.records.find((entry) => entry.relative === 'circle-star.png')!;
    // B ranked another class first and explained it: by class, its map pairs with none of A's.
    record.predictions = [{ index: 5, label: 'other', probability: 0.9 }];
    for (const result of (record.results ?? []) as CamResultRecord[]) result.class = { index: 5, label: 'other' };
    await writeFile(join(run('top-moved'), 'manifest.json'), JSON.stringify(manifest));
    const strict = await camviz(['compare', run('top'), run('top-moved'), '--max-top1-changes', '0', '--out', run('top-moved-strict')]);
    assert.equal(strict.code, 1, strict.stderr);
    assert.match(strict.stderr, /compare FAILED \(1 top-1 change over --max-top1-changes 0\)/);
    assert.match(strict.stderr, /\n {2}circle-star\.png: top-1 changed: \d+ \S+ -> 5 other \(its maps do not pair\)\n/);
    const compared = await readCompare('top-moved-strict');
    assert.deepEqual(compared.top1Changes.map((change) => [change.input, change.b.index]), [['circle-star.png', 5]]);
    assert.equal(compared.summary.passed, false);
    const lenient = await camviz(['compare', run('top'), run('top-moved'), '--max-top1-changes', '1', '--out', run('top-moved-lenient')]);
    assert.equal(lenient.code, 0, lenient.stderr);
  });

  test('a run whose target has no probability (null: output, region, similarity): the change is null, not a difference with 0', async () => {
    await camRun('with-probability');
    await cp(run('with-probability'), run('no-probability'), { recursive: true });
    const manifest = await readManifest(run('no-probability'));
    for (const record of manifest.records) {
      for (const prediction of record.predictions ?? []) prediction.probability = null;
      for (const result of (record.results ?? []) as CamResultRecord[]) result.probability = null;
    }
    await writeFile(join(run('no-probability'), 'manifest.json'), JSON.stringify(manifest));

    const result = await camviz(['compare', run('with-probability'), run('no-probability'), '--out', run('probability-compare')]);
    assert.equal(result.code, 0, result.stderr);
    const compared = await readCompare('probability-compare');
    assert.ok(compared.pairs.length > 0);
    for (const pair of compared.pairs) {
      assert.equal(typeof pair.a.probability, 'number');
      assert.equal(pair.b.probability, null);
      assert.equal(pair.probabilityChange, null);
      assert.equal(pair.scoreChange, 0);
    }
  });

  test('an input that failed in one run fails the gate (exit 1) and is named', async () => {
    await cp(run('circle'), run('one-failed'), { recursive: true });
    const manifest = await readManifest(run('one-failed'));
    const record = manifest.records.find((entry) => entry.relative === 'square-cross.png')!;
    Object.assign(record, { status: 'error', error: 'could not decode the image', outputs: [] });
    delete record.results;
    await writeFile(join(run('one-failed'), 'manifest.json'), JSON.stringify(manifest));

    const result = await camviz(['compare', run('circle'), run('one-failed'), '--out', run('failed-out')]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /^camviz: compare FAILED \(1 input failed in a run\): 2 pairs over 3 inputs/);
    assert.match(result.stderr, /\n {2}square-cross\.png: failed in .*one-failed: could not decode the image\n/);
    const compared = await readCompare('failed-out');
    assert.deepEqual(compared.failedInputs, [{ input: 'square-cross.png', run: 'b', error: 'could not decode the image' }]);
  });

  test('maps only one run has are listed as unpaired, with a note', async () => {
    await camRun('top2', '--top-k', '2');
    const result = await camviz(['compare', run('top2'), run('circle'), '--out', run('unpaired')]);
    assert.equal(result.code, 0, result.stderr);
    const compared = await readCompare('unpaired');
    const manifestTop2 = await readManifest(run('top2'));
    const top2Maps = manifestTop2.records.flatMap((record) => record.results ?? []).length;
    const onlyIn = (side: 'a' | 'b'): number => compared.unpaired.filter((entry) => entry.run === side).length;
    // Each top-2 map pairs with the circle map or is unpaired; so is each of the 3 circle maps.
    assert.equal(compared.pairs.length + onlyIn('a'), top2Maps);
    assert.equal(compared.pairs.length + onlyIn('b'), 3);
    assert.ok(compared.pairs.length > 0 && onlyIn('a') > 0);
    assert.ok(compared.pairs.every((pair) => pair.a.class.index === 0 && pair.b.class.index === 0));
    assert.ok(compared.unpaired.every((entry) => (entry.run === 'a' ? entry.class.index !== 0 : entry.class.index === 0)));
    assert.match(result.stderr, new RegExp(`\\ncamviz: note: ${compared.unpaired.length} maps of one run only, not compared \\(e\\.g\\. `));
  });

  test("--report: a killed compare's staging folder is swept by the next; a compare that fails leaves no _report folder behind", async () => {
    const out = join(workDir, 'report-sweep');
    await cp(run('circle'), out, { recursive: true });
    const dead = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
    const stale = join(out, '_report', `.compare.${dead}.0123456789ab.tmp`);
    await mkdir(stale, { recursive: true });
    await writeFile(join(stale, 'diff-00001.png'), 'half a picture');
    const swept = await camviz(['compare', run('circle'), out, '--report']);
    assert.equal(swept.code, 0, swept.stderr);
    assert.equal(existsSync(stale), false, 'the staging folder of a dead compare is gone');
    assert.ok(existsSync(join(out, '_report', 'compare')), 'the new difference images are there');

    const failing = join(workDir, 'report-failing');
    await cp(run('circle'), failing, { recursive: true });
    await rm(join(failing, '_report'), { recursive: true, force: true });
    await writeFile(join(failing, 'square-cross.gradcam.0.npy'), Buffer.from('not a map'));
    const failed = await camviz(['compare', run('circle'), failing, '--report']);
    assert.notEqual(failed.code, 0, failed.stderr);
    assert.equal(existsSync(join(failing, '_report')), false, 'no _report folder is left');
  });

  test('--report: compare.html with A | B | difference, worst first, in headless Chromium', { skip: skipBrowser }, async () => {
    const out = run('report');
    const result = await camviz(['compare', run('circle'), run('star'), '--pair-by', 'rank', '--min-corr', '0.8', '--report', '--out', out]);
    assert.equal(result.code, 1, result.stderr);
    const compared = await readCompare('report');
    assert.deepEqual(await listFiles(out), ['_report/compare/diff-00001.png', '_report/compare/diff-00002.png', '_report/compare/diff-00003.png', 'compare.html', 'compare.json']);

    const { chromium } = await import('playwright-core');
    const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
      const problems: string[] = [];
      const requests: string[] = [];
      page.on('console', (message) => {
        if (message.type() === 'error' || message.type() === 'warning') problems.push(message.text());
      });
      page.on('pageerror', (error) => problems.push(error.message));
      page.on('dialog', (dialog) => {
        problems.push(`dialog: ${dialog.message()}`);
        void dialog.dismiss();
      });
      page.on('request', (request) => {
        if (!request.url().startsWith('file://')) requests.push(request.url());
      });
      await page.goto(pathToFileURL(join(out, 'compare.html')).href);
      await page.waitForSelector('#cards .card');
      // Worst first, as in compare.json; the hostile name is text, not markup.
      const names = await page.$$eval('#cards .card', (nodes) => nodes.map((node) => (node as unknown as { dataset: { name: string } }).dataset.name));
      assert.deepEqual(names, compared.pairs.map((pair) => pair.input));
      assert.ok(names.includes(hostileName));
      assert.equal(await page.locator('#cards img[src*="onerror"]').count(), 2, 'the hostile name is a path of A and of B, escaped');
      assert.equal(await page.locator('#cards img:not([src])').count(), 0);
      assert.match(await page.textContent('#verdict') ?? '', /^FAILED: \d offending pair/);
      const images = page.locator('#cards img');
      assert.equal(await images.count(), 9, 'A, B and the difference for each of 3 pairs');
      for (let i = 0; i < 9; i++) await images.nth(i).scrollIntoViewIfNeeded();
      await page.waitForFunction(`[...document.querySelectorAll('#cards img')].every((img) => img.complete)`);
      const sizes = await page.evaluate<[string, number][]>(`[...document.querySelectorAll('#cards img')].map((img) => [img.getAttribute('src'), img.naturalWidth])`);
      for (const [src, width] of sizes) assert.ok(width > 0, `${src} did not load`);
      assert.deepEqual(sizes.filter(([src]) => src.startsWith('../circle/')).length, 3, 'A by relative path from the page');
      assert.deepEqual(sizes.filter(([src]) => src.startsWith('../star/')).length, 3, 'B by relative path from the page');
      assert.deepEqual(problems, []);
      assert.deepEqual(requests, []);
    } finally {
      await browser.close();
    }
  });

  test('the JSON lists every pair with both sides and its failures', async () => {
    const compared = await readCompare('circle-vs-star');
    const manifestA = await readManifest(run('circle'));
    const resultA = manifestA.records.find((record) => record.relative === 'circle-star.png')!.results![0] as CamResultRecord;
    const pair = compared.pairs.find((entry) => entry.input === 'circle-star.png')!;
    assert.deepEqual(pair.a.peak, resultA.peak);
    assert.equal(pair.a.png, resultA.png);
    assert.equal(pair.a.npy, resultA.npy);
    assert.equal(pair.method, 'gradcam');
    assert.equal(pair.rank, 0);
    closeTo(pair.scoreChange, pair.b.score - pair.a.score, 'score change');
    assert.equal(pair.top1.a, null, 'a --class run cannot tell the top-1');
    assert.equal(pair.top1.changed, false);
    closeTo(pair.peakShift, Math.hypot(pair.b.peak.x - pair.a.peak.x, pair.b.peak.y - pair.a.peak.y), 'peak shift');
  });
});

describe('MobileNet: class 243 against class 281 on both.png', { skip: skipWithoutSharedAssets }, () => {
  test('fails the gate', async () => {
    const runClass = async (index: string): Promise<string> => {
      const out = join(workDir, `mobilenet-${index}`);
      const result = await camviz(['cam', imagePath('both.png'), '--model', mobilenetDir, '--backend', 'wasm', '--class', index, '--raw', '--quiet', '--out', out]);
      assert.equal(result.code, 0, result.stderr);
      return out;
    };
    const dog = await runClass('243');
    const cat = await runClass('281');
    const result = await camviz(['compare', dog, cat, '--pair-by', 'rank', '--min-corr', '0.8', '--out', join(workDir, 'mobilenet-compare')]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /\n {2}both\.png gradcam class 243 bull mastiff vs 281 tabby, tabby cat: correlation -?[\d.]+ < --min-corr 0\.8/);
  });
});
