/**
 * The folder runner in this process: input expansion, shards, collisions,
 * the manifest, --skip-existing, --fail-fast, progress output, and flat
 * memory over hundreds of images. Expected values come from hand-written
 * lists, hashes computed here, and a second code path (the predict task).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, stat, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import fsPromises from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { Writable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';

import { expandInputs, outputCollisions } from '../src/batch/inputs.js';
import { createProgress } from '../src/batch/progress.js';
import { type BatchRunOptions, heapGrowingPercentFor, runBatch, wasmThreadsFor } from '../src/batch/runner.js';
import { loadOnnxRuntime } from '../src/engine/onnxruntime.js';
import { SHARD_ENVIRONMENTS, parseShard, selectShard } from '../src/batch/shard.js';
import { CamvizError, UsageError } from '../src/util/errors.js';
import { type TaskContext, decodeBatch } from '../src/tasks/common.js';
import { type TaskOverrides, camTaskOptions, fmapTaskOptions, predictTaskOptions } from '../src/tasks/defaults.js';
import { startTask } from '../src/tasks/index.js';
import type { CamResultRecord, CamTaskOptions, FmapTaskOptions, InputImage, PredictTaskOptions, TaskOptions } from '../src/tasks/types.js';
import { haveSharedAssets, mobilenetDir, repoRoot } from './helpers/assets.js';
import { listFiles, noise, readManifest } from './helpers/files.js';

// ------------------------------------------------------------------ model

const shapesJson = join(repoRoot, 'models', 'shapes', 'model.json');
/** The embedded shapes model (small inputs, fast), else the shared MobileNet. */
const model =
  existsSync(shapesJson)
    ? { spec: 'shapes', json: shapesJson, fmapLayer: 'conv2', classCount: 5 }
    : haveSharedAssets
      ? { spec: mobilenetDir, json: join(mobilenetDir, 'model.json'), fmapLayer: 'conv_pw_13_relu', classCount: 1000 }
      : undefined;
const skipWithoutModel: string | false = model === undefined ? 'neither models/shapes/model.json nor the shared MobileNet is present' : false;
const modelSpec = model?.spec ?? 'shapes';

// ------------------------------------------------------------------ fixtures

const workDir = await mkdtemp(join(tmpdir(), 'camviz-batch-test-'));
after(() => rm(workDir, { recursive: true, force: true }));

async function writeImage(path: string, width: number, height: number, seed: number): Promise<string> {
  await mkdir(dirname(path), { recursive: true });
  const image = sharp(noise(width, height, seed), { raw: { width, height, channels: 3 } });
  await (path.endsWith('.jpg') ? image.jpeg({ quality: 90 }) : path.endsWith('.gif') ? image.gif() : image.png()).toFile(path);
  return path;
}

/** Writes `names` (relative paths) under `folder` as small noise images. */
async function makeFolder(folder: string, names: readonly string[], size: [number, number] = [40, 30]): Promise<string> {
  for (const [i, name] of names.entries()) await writeImage(join(folder, name), size[0] + i, size[1], i + 1);
  return folder;
}

// PNG level 6 rather than the default 1: the byte-identity tests then also cover a non-default level.
const shared = { model: { model: modelSpec, backend: 'wasm' as const }, pngCompression: 6 };

function camTask(outDir: string, overrides: TaskOverrides<CamTaskOptions> = {}): CamTaskOptions {
  return camTaskOptions(outDir, { ...shared, ...overrides });
}

function fmapTask(outDir: string): FmapTaskOptions {
  return fmapTaskOptions(outDir, { ...shared, layers: [model?.fmapLayer ?? 'conv2'], tileSize: 16 });
}

function predictTask(): PredictTaskOptions {
  return predictTaskOptions(join(workDir, 'unused'), { ...shared, top: 2 });
}

function run(task: TaskOptions, inputs: string[], extra: Partial<BatchRunOptions> = {}) {
  return runBatch({ task, inputs, jobs: 1, manifest: task.command !== 'predict', quiet: true, ...extra });
}

const relatives = (images: readonly InputImage[]): string[] => images.map((image) => image.relative);

// ------------------------------------------------------------------ inputs

describe('expanding inputs', () => {
  const tree = join(workDir, 'tree');
  const outside = join(workDir, 'outside');

  test('folders are listed recursively, images only, hidden files skipped, sorted by relative path', async () => {
    await makeFolder(tree, ['b.png', 'a.jpg', 'A2.PNG', 'sub/c.png', 'sub/deep/d.gif', 'a/e.png', '.hidden.png', 'sub/.cache/f.png']);
    await writeFile(join(tree, 'notes.txt'), 'not an image');
    await writeFile(join(tree, 'sub', 'README'), 'not an image');
    const images = await expandInputs([tree]);
    // JavaScript string order: upper case before lower case, '.' before '/'.
    assert.deepEqual(relatives(images), ['A2.PNG', 'a.jpg', 'a/e.png', 'b.png', 'sub/c.png', 'sub/deep/d.gif']);
    assert.deepEqual(
      images.map((image) => image.path),
      ['A2.PNG', 'a.jpg', 'a/e.png', 'b.png', 'sub/c.png', 'sub/deep/d.gif'].map((name) => join(tree, name)),
    );
  });

  test('the same file given twice (overlapping globs, ./x and x, a folder and a file in it) is one input', async () => {
    const root = join(workDir, 'twice');
    await makeFolder(root, ['x.png', 'y.png']);
    const x = join(root, 'x.png');
    assert.deepEqual(relatives(await expandInputs([x, join(root, '.', 'x.png'), x])), ['x.png']);
    const both = await expandInputs([root, x]);
    assert.deepEqual(relatives(both), ['twice/x.png', 'twice/y.png']);
    assert.deepEqual(outputCollisions(both).size, 0);
  });

  test('a subfolder that cannot be listed (permission denied) is one error naming it, not a raw Node message', async () => {
    const root = join(workDir, 'unlistable');
    await makeFolder(root, ['a.png', 'locked/b.png']);
    const locked = join(root, 'locked');
    // Running as root, chmod 000 would not stop readdir: the denial is made here.
    const originalReaddir = fsPromises.readdir;
    const denying = async (...args: Parameters<typeof fsPromises.readdir>): Promise<unknown> => {
      if (args[0] === locked) throw Object.assign(new Error(`EACCES: permission denied, scandir '${locked}'`), { code: 'EACCES' });
      return (originalReaddir as (...a: unknown[]) => Promise<unknown>)(...args);
    };
    fsPromises.readdir = denying as typeof fsPromises.readdir;
    syncBuiltinESMExports();
    try {
      const error = await expandInputs([root]).then(() => undefined, (caught: unknown) => caught);
      assert.ok(error instanceof CamvizError, String(error));
      assert.equal(error.describe(), `cannot list the folder: permission denied (EACCES) (${locked})`);
    } finally {
      fsPromises.readdir = originalReaddir;
      syncBuiltinESMExports();
    }
  });

  test('--glob filters on the relative path; a pattern without a slash matches names at any depth', async () => {
    assert.deepEqual(relatives(await expandInputs([tree], { glob: '**/*.png' })), ['A2.PNG', 'a/e.png', 'b.png', 'sub/c.png']);
    assert.deepEqual(relatives(await expandInputs([tree], { glob: '*.png' })), ['A2.PNG', 'a/e.png', 'b.png', 'sub/c.png']);
    assert.deepEqual(relatives(await expandInputs([tree], { glob: 'sub/**' })), ['sub/c.png', 'sub/deep/d.gif']);
    assert.deepEqual(relatives(await expandInputs([tree], { glob: 'sub/*' })), ['sub/c.png']);
    assert.deepEqual(relatives(await expandInputs([tree], { glob: '{a,b}.*' })), ['a.jpg', 'b.png']);
    await assert.rejects(expandInputs([tree], { glob: '*.bmp' }), (error: unknown) => {
      assert.ok(error instanceof CamvizError);
      assert.equal(error.file, tree);
      assert.match(error.message, /^folder holds no images matching \*\.bmp/);
      return true;
    });
  });

  test('--glob: repeated **/ match as one (200 of them hung a run in backtracking); unpaired braces and too many wildcards are usage errors', async () => {
    assert.deepEqual(relatives(await expandInputs([tree], { glob: `${'**/'.repeat(200)}*.png` })), ['A2.PNG', 'a/e.png', 'b.png', 'sub/c.png']);
    assert.deepEqual(relatives(await expandInputs([tree], { glob: 'sub/***' })), ['sub/c.png', 'sub/deep/d.gif']);
    for (const [glob, said] of [
      ['{', /--glob '\{': its braces \{ \} do not pair/],
      ['{a,b}}.png', /do not pair/],
      ['a*b*c*d*e*f*g*h*i*j*k*l*m*n*o*p*q*.png', /more than 16 wildcards/],
    ] as const) {
      await assert.rejects(expandInputs([tree], { glob }), (error: unknown) => error instanceof UsageError && said.test(error.message));
    }
  });

  test('several inputs: folders are prefixed with their name, files named by their file name, order is by that name', async () => {
    const second = await makeFolder(join(workDir, 'second'), ['b.png', 'z/y.png']);
    const single = await writeImage(join(workDir, 'loose', 'alone.png'), 20, 20, 9);
    const missing = join(workDir, 'loose', 'missing.png');
    const images = await expandInputs([second, single, tree, missing], { glob: '*.png' });
    assert.deepEqual(relatives(images), ['alone.png', 'missing.png', 'second/b.png', 'second/z/y.png', 'tree/A2.PNG', 'tree/a/e.png', 'tree/b.png', 'tree/sub/c.png']);
    // A missing path stays in the list: loading it reports the error in its place.
    assert.equal(images[1]!.path, missing);
  });

  test('names that would collide (equal file names, equally named folders) become paths from the common folder', async () => {
    const one = await makeFolder(join(workDir, 'clash', 'p1', 'imgs'), ['a.png']);
    const two = await makeFolder(join(workDir, 'clash', 'p2', 'imgs'), ['a.png', 'b.png']);
    assert.deepEqual(relatives(await expandInputs([one, two])), ['p1/imgs/a.png', 'p2/imgs/a.png', 'p2/imgs/b.png']);
    const files = [join(two, 'a.png'), join(one, 'a.png')];
    assert.deepEqual(relatives(await expandInputs(files)), ['p1/imgs/a.png', 'p2/imgs/a.png']);
    // Without a clash the short names stay.
    assert.deepEqual(relatives(await expandInputs([one, join(two, 'b.png')])), ['b.png', 'imgs/a.png']);
  });

  test('the excluded folder (a run\'s --out inside its input) is never listed', async () => {
    const folder = await makeFolder(join(workDir, 'with-out'), ['a.png', 'camviz-out/a.gradcam.1.png', 'camviz-out/deeper/b.png']);
    assert.deepEqual(relatives(await expandInputs([folder], { exclude: join(folder, 'camviz-out') })), ['a.png']);
    assert.equal((await expandInputs([folder])).length, 3);
  });

  test('a folder with no images is an error naming the folder', async () => {
    const empty = join(workDir, 'empty');
    await mkdir(join(empty, 'nested'), { recursive: true });
    await writeFile(join(empty, 'nested', 'data.csv'), 'a,b\n');
    await assert.rejects(expandInputs([empty]), (error: unknown) => {
      assert.ok(error instanceof CamvizError && !(error instanceof UsageError));
      assert.equal(error.file, empty);
      assert.match(error.describe(), /^folder holds no images \(\.png .*\) \(.*empty\)$/);
      return true;
    });
  });

  test('symbolic links are followed (to files and folders), a loop is not, a dangling image link or one to a device is kept to be reported', async () => {
    const linked = join(workDir, 'linked');
    await makeFolder(outside, ['o.png', 'inner/p.png']);
    await makeFolder(linked, ['real.png']);
    await symlink(join(outside, 'o.png'), join(linked, 'file-link.png'));
    await symlink(outside, join(linked, 'dir-link'));
    await symlink(linked, join(linked, 'loop'));
    await symlink(join(workDir, 'nowhere.png'), join(linked, 'dangling.png'));
    await symlink(join(workDir, 'nowhere.txt'), join(linked, 'dangling.txt'));
    // Named like an image and no regular file: kept, for loading to report (it was skipped unsaid).
    await symlink('/dev/zero', join(linked, 'device.png'));
    const images = await expandInputs([linked]);
    // file-link.png is dir-link/o.png (both lead to outside/o.png): one input, the first name in order.
    assert.deepEqual(relatives(images), ['dangling.png', 'device.png', 'dir-link/inner/p.png', 'dir-link/o.png', 'real.png']);
  });
});

describe('output collisions', () => {
  test('inputs whose outputs would coincide: same stem (any extension, any case) in the same place', () => {
    const images: InputImage[] = [
      { path: '/d/a/x.jpg', relative: 'a/x.jpg' },
      { path: '/d/a/x.png', relative: 'a/x.png' },
      { path: '/d/b/x.png', relative: 'b/x.png' },
      { path: '/d/b/X.PNG', relative: 'b/X.PNG' },
      { path: '/e/x.png', relative: 'x.png' },
      { path: '/f/x.png', relative: 'x.png' },
      { path: '/d/x.y.png', relative: 'x.y.png' },
    ];
    const collisions = outputCollisions(images);
    assert.deepEqual(
      [...collisions].map(([image, earlier]) => [image.path, earlier]),
      [
        ['/d/a/x.png', '/d/a/x.jpg'],
        ['/d/b/X.PNG', '/d/b/x.png'],
        ['/f/x.png', '/e/x.png'],
      ],
    );
  });
});

// ------------------------------------------------------------------ shards

describe('shards', () => {
  const items = Array.from({ length: 13 }, (_, i) => `item-${String(i).padStart(2, '0')}`);

  test('n shards cover the list exactly once, shard i taking positions i-1, i-1+n, ...', () => {
    for (let count = 1; count <= 5; count++) {
      const seen: string[] = [];
      for (let index = 1; index <= count; index++) {
        const part = selectShard(items, { index, count });
        const expected = items.filter((_, position) => position % count === index - 1);
        assert.deepEqual(part, expected);
        seen.push(...part);
      }
      assert.deepEqual(seen.sort(), items);
    }
    assert.deepEqual(selectShard(items, undefined), items);
  });

  test('--shard i/n parses; bad values are usage errors (exit 2)', () => {
    assert.deepEqual(parseShard('2/4', {}), { index: 2, count: 4 });
    assert.deepEqual(parseShard(' 1/1 ', {}), { index: 1, count: 1 });
    for (const bad of ['0/4', '5/4', '1/0', '2', 'a/b', '-1/3', '1.5/3', '']) {
      assert.throws(() => parseShard(bad, {}), (error: unknown) => error instanceof UsageError && error.exitCode === 2, bad);
    }
  });

  test('--shard auto reads each CI system\'s variables with its own index base', () => {
    const cases: [NodeJS.ProcessEnv, { index: number; count: number }, string][] = [
      [{ CI_NODE_INDEX: '2', CI_NODE_TOTAL: '3' }, { index: 2, count: 3 }, 'GitLab CI (parallel)'],
      [{ CIRCLE_NODE_INDEX: '0', CIRCLE_NODE_TOTAL: '4' }, { index: 1, count: 4 }, 'CircleCI'],
      [{ BUILDKITE_PARALLEL_JOB: '3', BUILDKITE_PARALLEL_JOB_COUNT: '4' }, { index: 4, count: 4 }, 'Buildkite'],
      [{ SEMAPHORE_JOB_INDEX: '1', SEMAPHORE_JOB_COUNT: '2' }, { index: 1, count: 2 }, 'Semaphore'],
      [{ CAMVIZ_SHARD_INDEX: '3', CAMVIZ_SHARD_COUNT: '3' }, { index: 3, count: 3 }, 'camviz'],
    ];
    for (const [env, expected, source] of cases) {
      assert.deepEqual(parseShard('auto', env), { ...expected, source });
    }
    // Kubernetes indexed Jobs give only a 0-based index: the count comes from --shard-count.
    assert.deepEqual(parseShard('auto', { JOB_COMPLETION_INDEX: '4' }, 5), { index: 5, count: 5, source: 'Kubernetes indexed Job' });
    assert.throws(() => parseShard('auto', { JOB_COMPLETION_INDEX: '4' }), /--shard-count/);
    assert.throws(() => parseShard('auto', { CI_NODE_INDEX: '4', CI_NODE_TOTAL: '3' }), UsageError);
    assert.throws(() => parseShard('auto', { CIRCLE_NODE_INDEX: 'x', CIRCLE_NODE_TOTAL: '3' }), UsageError);
    assert.throws(() => parseShard('auto', { CI: 'true' }), (error: unknown) => error instanceof UsageError && /no CI shard variables/.test(error.message));
    assert.equal(SHARD_ENVIRONMENTS[0]![1], 'CI_NODE_INDEX');
  });
});

// ------------------------------------------------------------------ progress

/** A stream that keeps what is written; `tty` and `columns` as a terminal would report them. */
function captureStream(tty: boolean, columns?: number): { stream: NodeJS.WriteStream; text: () => string } {
  let text = '';
  const writable = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      text += String(chunk);
      callback();
    },
  });
  // The tty.WriteStream methods ora calls, writing what a terminal would get.
  const write = (codes: string): boolean => writable.write(codes);
  Object.assign(writable, {
    isTTY: tty,
    columns,
    cursorTo: (x: number) => write(`\u001b[${x + 1}G`),
    moveCursor: (dx: number, dy: number) => write(`${dy < 0 ? `\u001b[${-dy}A` : ''}${dx > 0 ? `\u001b[${dx}C` : ''}`),
    clearLine: () => write('\u001b[2K'),
  });
  return { stream: writable as unknown as NodeJS.WriteStream, text: () => text };
}

const ESCAPE = '\u001b';

describe('progress', () => {
  test('not a terminal: plain lines, rate-limited, no escape codes, the summary at the end', async () => {
    const { stream, text } = captureStream(false);
    const progress = createProgress({ stream, env: {} });
    await progress.start(1000);
    // A thousand updates in far less than the interval: no line for them.
    for (let done = 1; done < 1000; done++) progress.update({ done, errors: 0, total: 1000 });
    progress.log('camviz: some failure (x.png)');
    progress.finish('camviz: 1000 of 1000 images');
    assert.equal(text(), 'camviz: 1000 images to process\ncamviz: some failure (x.png)\ncamviz: 1000 of 1000 images\n');
  });

  test('plain lines say count, rate, ETA and errors when the interval has passed', async () => {
    const { stream, text } = captureStream(false);
    const progress = createProgress({ stream, env: {}, intervalMs: 0 });
    await progress.start(4);
    progress.update({ done: 1, errors: 0, total: 4 });
    progress.update({ done: 2, errors: 1, total: 4 });
    progress.update({ done: 4, errors: 1, total: 4 });
    progress.finish('camviz: done');
    const lines = text().split('\n');
    assert.equal(lines[0], 'camviz: 4 images to process');
    assert.match(lines[1]!, /^camviz: 1\/4 images, [\d.]+\/s, ETA \S+$/);
    assert.match(lines[2]!, /^camviz: 2\/4 images, [\d.]+\/s, ETA \S+, 1 error$/);
    // The last update is the summary's job.
    assert.deepEqual(lines.slice(3), ['camviz: done', '']);
    assert.ok(!text().includes(ESCAPE));
  });

  test('a terminal: an ora spinner (escape codes), log lines kept, the summary persisted', async () => {
    const { stream, text } = captureStream(true, 80);
    const progress = createProgress({ stream, env: { TERM: 'xterm-256color' } });
    await progress.start(3);
    progress.update({ done: 1, errors: 0, total: 3 });
    progress.log('camviz: a failure (y.png)');
    progress.finish('camviz: 3 of 3 images');
    assert.ok(text().includes(ESCAPE), 'spinner escape codes');
    assert.ok(text().includes('camviz: a failure (y.png)\n'));
    assert.ok(text().includes('camviz: 3 of 3 images\n'));
    assert.ok(!text().includes('images to process'), 'no plain start line on a terminal');
  });

  test('plain lines on a terminal when CI is set, TERM=dumb, or the terminal has no width', async () => {
    const cases: [NodeJS.ProcessEnv, number | undefined][] = [
      [{ CI: 'true' }, 80],
      [{ CI: '1' }, 80],
      [{ TERM: 'dumb' }, 80],
      // A pty opened without a size (CI runners, `script`): ora looped forever there.
      [{}, 0],
    ];
    for (const [env, columns] of cases) {
      const { stream, text } = captureStream(true, columns);
      const progress = createProgress({ stream, env });
      await progress.start(2);
      progress.update({ done: 1, errors: 0, total: 2 });
      progress.finish('camviz: end');
      assert.equal(text(), 'camviz: 2 images to process\ncamviz: end\n', JSON.stringify({ env, columns }));
    }
    // CI=false is not CI.
    const { stream, text } = captureStream(true, 80);
    const progress = createProgress({ stream, env: { CI: 'false' } });
    await progress.start(2);
    progress.finish('camviz: end');
    assert.ok(text().includes(ESCAPE));
  });

  test('--quiet: no progress and no summary, but failures are still printed', async () => {
    const { stream, text } = captureStream(false);
    const progress = createProgress({ stream, env: {}, quiet: true, intervalMs: 0 });
    await progress.start(2);
    progress.update({ done: 1, errors: 1, total: 2 });
    progress.log('camviz: bad (z.png)');
    progress.finish('camviz: summary');
    assert.equal(text(), 'camviz: bad (z.png)\n');
  });
});

// ------------------------------------------------------------------ decoding

describe('decoding a batch', () => {
  test('images failing together each get their own reason (libvips shares one error buffer)', async () => {
    const folder = join(workDir, 'corrupt');
    const png = await sharp(noise(40, 30, 1), { raw: { width: 40, height: 30, channels: 3 } }).png().toBuffer();
    const jpeg = await sharp(noise(40, 30, 2), { raw: { width: 40, height: 30, channels: 3 } }).jpeg().toBuffer();
    await mkdir(folder, { recursive: true });
    await writeFile(join(folder, 'a.png'), png.subarray(0, Math.floor(png.length * 0.6)));
    await writeFile(join(folder, 'b.jpg'), jpeg.subarray(0, Math.floor(jpeg.length * 0.6)));
    await writeFile(join(folder, 'c.png'), png);
    await writeFile(join(folder, 'd.png'), png.subarray(0, Math.floor(png.length * 0.5)));
    const batch = await expandInputs([folder]);
    // decodeBatch needs only the model's input size.
    const context = { model: { meta: { inputSize: { width: 16, height: 16 } } } } as unknown as TaskContext;
    const reasons = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const { decoded, failed } = await decodeBatch(batch, context, predictTask());
      assert.deepEqual(decoded.map((item) => item.input.relative), ['c.png']);
      for (const record of failed) reasons.add(`${record.relative}: ${record.error!.replace(/ \(\/.*\)$/, '')}`);
    }
    assert.deepEqual([...reasons].sort(), [
      'a.png: truncated or corrupt PNG: the file ends before its IEND chunk (truncated)',
      'b.jpg: truncated or corrupt JPEG: premature end of JPEG image (no end-of-image marker)',
      'd.png: truncated or corrupt PNG: the file ends before its IEND chunk (truncated)',
    ]);
  });
});

// ------------------------------------------------------------------ runs

describe('folder runs in this process', { skip: skipWithoutModel }, () => {
  test('the manifest: version, model sha256, backend, options, one record per input in order', async () => {
    const folder = await makeFolder(join(workDir, 'run1'), ['a/1.png', 'a/2.jpg', 'b/1.png', 'c.png']);
    await writeFile(join(folder, 'bad.png'), 'not a PNG');
    const outDir = join(workDir, 'run1-out');
    const result = await run(camTask(outDir, { topK: 2 }), [folder]);
    assert.equal(result.exitCode, 1, 'one input failed');
    assert.equal(result.interrupted, false);
    assert.equal(result.manifestPath, join(outDir, 'manifest.json'));

    const manifest = await readManifest(outDir);
    const packageJson = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    assert.equal(manifest.camviz, packageJson.version);
    assert.equal(manifest.command, 'cam');
    assert.equal(manifest.model.sha256, createHash('sha256').update(readFileSync(model!.json)).digest('hex'));
    if (model!.spec === 'shapes') assert.equal(manifest.model.name, 'shapes');
    assert.deepEqual(manifest.backend, { kind: 'wasm', package: '@tensorflow/tfjs-backend-wasm' });
    assert.equal(manifest.options['method'], 'gradcam');
    assert.equal(manifest.options['topK'], 2);
    assert.ok(!('outDir' in manifest.options), 'paths are not options');
    assert.equal(manifest.shard, null);
    assert.equal(manifest.interrupted, false);
    assert.ok(manifest.finishedAt !== null && Date.parse(manifest.finishedAt) >= Date.parse(manifest.startedAt));
    assert.deepEqual(manifest.summary, { inputs: 5, ok: 4, error: 1 });
    assert.deepEqual(
      manifest.records.map((record) => [record.relative, record.status]),
      [['a/1.png', 'ok'], ['a/2.jpg', 'ok'], ['b/1.png', 'ok'], ['bad.png', 'error'], ['c.png', 'ok']],
    );
    assert.deepEqual(manifest.records, result.records, 'the manifest holds what the run returned');

    const bad = manifest.records[3]!;
    assert.deepEqual(bad.outputs, []);
    assert.equal(bad.error, `not a supported image (PNG, JPEG, WebP, GIF, TIFF) (${join(folder, 'bad.png')})`);

    for (const record of manifest.records.filter((entry) => entry.status === 'ok')) {
      assert.equal(record.input, join(folder, record.relative));
      const results = (record.results ?? []) as { png: string; class: { index: number; label: string | null }; probability: number; peak: { x: number; y: number } }[];
      assert.equal(results.length, 2);
      assert.deepEqual(record.outputs, results.map((entry) => entry.png));
      const stem = record.relative.replace(/\.[^.]+$/, '');
      assert.deepEqual(record.outputs.sort(), results.map((entry) => `${stem}.gradcam.${entry.class.index}.png`).sort(), 'outputs mirror the input tree');
      assert.deepEqual(record.predictions?.map((entry) => entry.index), results.map((entry) => entry.class.index));
      const input = await sharp(record.input).metadata();
      for (const entry of results) {
        const png = await sharp(join(outDir, entry.png)).metadata();
        assert.deepEqual([png.format, png.width, png.height], ['png', input.width, input.height], 'the map is shown over the whole original image');
        assert.ok(entry.peak.x >= 0 && entry.peak.x < input.width! && entry.peak.y >= 0 && entry.peak.y < input.height!);
      }
      const probabilities = results.map((entry) => entry.probability);
      assert.ok(probabilities[0]! >= probabilities[1]!, 'most probable class first');
      for (const key of ['decode', 'forward', 'backward', 'render', 'encode', 'total'] as const) {
        assert.ok(typeof record.timings[key] === 'number' && record.timings[key]! >= 0, key);
      }
    }
    // Nothing but the manifest and the maps: no temporary files left.
    const files = await listFiles(outDir);
    assert.deepEqual(files, ['manifest.json', ...manifest.records.flatMap((record) => record.outputs)].sort());
  });

  test('the classes and probabilities cam reports agree with the predict task (a second code path)', async () => {
    const folder = join(workDir, 'run1');
    const cam = await readManifest(join(workDir, 'run1-out'));
    const predicted = await run(predictTask(), [folder]);
    assert.equal(predicted.exitCode, 1);
    for (const [i, record] of cam.records.entries()) {
      const other = predicted.records[i]!;
      assert.equal(other.relative, record.relative);
      assert.equal(other.status, record.status);
      if (record.status === 'error') {
        assert.equal(other.error, record.error);
        continue;
      }
      assert.deepEqual(other.predictions!.map((entry) => entry.index), record.predictions!.map((entry) => entry.index));
      other.predictions!.forEach((entry, k) => assert.ok(Math.abs((entry.probability ?? Number.NaN) - (record.predictions![k]!.probability ?? Number.NaN)) < 1e-5));
    }
  });

  test('the peak is where the map is brightest (heatmap-only, gray colormap)', async () => {
    const folder = join(workDir, 'run1', 'a');
    const outDir = join(workDir, 'peak-out');
    const result = await run(camTask(outDir, { heatmapOnly: true, colormap: 'gray' }), [folder]);
    assert.equal(result.exitCode, 0);
    for (const record of result.records) {
      const entry = record.results![0] as { png: string; peak: { x: number; y: number } };
      const { data, info } = await sharp(join(outDir, entry.png)).raw().toBuffer({ resolveWithObject: true });
      let brightest = 0;
      for (let i = 0; i < data.length; i += info.channels) {
        assert.ok(data[i] === data[i + 1] && data[i] === data[i + 2], 'gray');
        brightest = Math.max(brightest, data[i]!);
      }
      assert.equal(brightest, 255, 'min-max normalised');
      assert.equal(data[(entry.peak.y * info.width + entry.peak.x) * info.channels], 255);
    }
  });

  test('fmap writes a grid and a legend per layer, mirrored under --out', async () => {
    const folder = join(workDir, 'run1');
    const outDir = join(workDir, 'fmap-out');
    const result = await run(fmapTask(outDir), [folder], { glob: '*.png' });
    assert.equal(result.exitCode, 1);
    const manifest = await readManifest(outDir);
    assert.deepEqual(manifest.records.map((record) => record.relative), ['a/1.png', 'b/1.png', 'bad.png', 'c.png']);
    const layer = model!.fmapLayer;
    for (const record of manifest.records.filter((entry) => entry.status === 'ok')) {
      const stem = record.relative.replace(/\.png$/, '');
      assert.deepEqual(record.outputs, [`${stem}.${layer}.fmap.png`, `${stem}.${layer}.fmap.json`]);
      const legend = JSON.parse(await readFile(join(outDir, record.outputs[1]!), 'utf8')) as { layer: string; shape: number[]; input: string };
      assert.equal(legend.layer, layer);
      assert.equal(legend.input, record.input);
      const grid = await sharp(join(outDir, record.outputs[0]!)).metadata();
      assert.equal(grid.format, 'png');
    }
  });

  test('output collisions are errors, decided on the whole list even when sharded', async () => {
    const folder = join(workDir, 'collide');
    await writeImage(join(folder, 'x.jpg'), 30, 20, 1);
    await writeImage(join(folder, 'x.png'), 30, 20, 2);
    await writeImage(join(folder, 'y.png'), 30, 20, 3);
    await writeImage(join(folder, 'z.png'), 30, 20, 4);
    // Sorted: x.jpg, x.png, y.png, z.png. Shard 1/2 takes x.jpg and y.png; 2/2 x.png and z.png.
    const whole = await run(camTask(join(workDir, 'collide-out')), [folder]);
    assert.equal(whole.exitCode, 1);
    assert.deepEqual(whole.records.map((record) => record.status), ['ok', 'error', 'ok', 'ok']);
    assert.equal(whole.records[1]!.error, `two inputs would write the same outputs: this one and ${join(folder, 'x.jpg')} (${join(folder, 'x.png')})`);

    const first = await run(camTask(join(workDir, 'collide-1')), [folder], { shard: { index: 1, count: 2 } });
    const second = await run(camTask(join(workDir, 'collide-2')), [folder], { shard: { index: 2, count: 2 } });
    assert.deepEqual(first.records.map((record) => [record.relative, record.status]), [['x.jpg', 'ok'], ['y.png', 'ok']]);
    assert.deepEqual(second.records.map((record) => [record.relative, record.status]), [['x.png', 'error'], ['z.png', 'ok']]);
    assert.equal(second.exitCode, 1);
    const secondFiles = await listFiles(join(workDir, 'collide-2'));
    assert.ok(!secondFiles.some((file) => file.startsWith('x.')), 'the colliding input wrote nothing');
  });

  test('predict writes no files, so equal names do not collide', async () => {
    const a = await writeImage(join(workDir, 'same', 'a', 'x.png'), 30, 20, 5);
    const b = await writeImage(join(workDir, 'same', 'b', 'x.png'), 30, 20, 6);
    const result = await run(predictTask(), [a, b]);
    assert.equal(result.exitCode, 0);
    assert.deepEqual(result.records.map((record) => [record.input, record.status]), [[a, 'ok'], [b, 'ok']]);
  });

  test('shards: disjoint, together the whole folder, each byte-identical to the unsharded run', async () => {
    const names = ['a.png', 'b.png', 'c/d.png', 'c/e.png', 'f.png', 'g.png', 'h.png'];
    const folder = await makeFolder(join(workDir, 'sharded'), names);
    const wholeOut = join(workDir, 'sharded-all');
    await run(camTask(wholeOut), [folder]);
    const seen: string[] = [];
    for (let index = 1; index <= 3; index++) {
      const outDir = join(workDir, `sharded-${index}`);
      const result = await run(camTask(outDir), [folder], { shard: { index, count: 3 } });
      assert.equal(result.exitCode, 0);
      const expected = [...names].sort().filter((_, position) => position % 3 === index - 1);
      assert.deepEqual(result.records.map((record) => record.relative), expected);
      const manifest = await readManifest(outDir);
      assert.deepEqual(manifest.shard, [{ index, count: 3 }]);
      for (const output of result.records.flatMap((record) => record.outputs)) {
        assert.ok((await readFile(join(outDir, output))).equals(await readFile(join(wholeOut, output))), output);
      }
      seen.push(...expected);
    }
    assert.deepEqual(seen.sort(), [...names].sort());
  });

  test('top-k pictures (the last one blended over the decoded pixels) equal the same classes asked one at a time', async () => {
    const folder = await makeFolder(join(workDir, 'top-k'), ['a.png', 'b.png']);
    const together = await run(camTask(join(workDir, 'top-k-together'), { topK: 3 }), [folder]);
    assert.equal(together.exitCode, 0);
    for (const record of together.records) {
      assert.equal(record.results!.length, 3);
      for (const [rank, result] of (record.results as CamResultRecord[]).entries()) {
        const alone = join(workDir, `top-k-alone-${rank}`);
        const single = await run(camTask(alone, { classes: [String(result.class.index)] }), [join(folder, record.relative)]);
        assert.equal(single.exitCode, 0);
        const png = result.png;
        assert.ok((await readFile(join(workDir, 'top-k-together', png))).equals(await readFile(join(alone, png.split('/').pop()!))), `${png}, rank ${rank + 1}`);
      }
    }
  });

  test('--skip-existing keeps finished inputs, redoes missing and empty outputs identically', async () => {
    const folder = await makeFolder(join(workDir, 'resume'), ['a.png', 'b.png', 'c.png', 'd/e.png', 'f.png']);
    const outDir = join(workDir, 'resume-out');
    const firstRun = await run(camTask(outDir), [folder]);
    assert.equal(firstRun.exitCode, 0);
    const removed = firstRun.records[2]!.outputs[0]!;
    const removedBytes = await readFile(join(outDir, removed));
    await unlink(join(outDir, removed));
    // What a power cut can leave of an output that was not flushed to disk: the name, no bytes.
    const emptied = firstRun.records[4]!.outputs[0]!;
    const emptiedBytes = await readFile(join(outDir, emptied));
    await writeFile(join(outDir, emptied), '');
    const kept = firstRun.records[0]!.outputs[0]!;
    const keptTime = (await stat(join(outDir, kept))).mtimeMs;

    const second = await run(camTask(outDir), [folder], { skipExisting: true });
    assert.equal(second.exitCode, 0);
    assert.deepEqual(second.records.map((record) => record.resumed === true), [true, true, false, true, false]);
    assert.ok((await readFile(join(outDir, removed))).equals(removedBytes), 'redone identically');
    assert.ok((await readFile(join(outDir, emptied))).equals(emptiedBytes), 'the empty output is redone identically');
    assert.equal((await stat(join(outDir, kept))).mtimeMs, keptTime, 'kept outputs are not rewritten');
    const manifest = await readManifest(outDir);
    assert.deepEqual(manifest.summary, { inputs: 5, ok: 5, error: 0 });
    const strip = (records: typeof firstRun.records) => records.map(({ timings: _timings, resumed: _resumed, ...rest }) => rest);
    assert.deepEqual(strip(manifest.records), strip(firstRun.records));
  });

  test('--skip-existing redoes an input changed since the run it would keep, and does not vouch for an output outside the folder', async () => {
    const folder = await makeFolder(join(workDir, 'resume-changed'), ['a.png', 'b.png', 'c.png']);
    const outDir = join(workDir, 'resume-changed-out');
    const first = await run(camTask(outDir), [folder]);
    assert.equal(first.exitCode, 0);
    // b.png replaced by another picture after that run: its kept map would show the old one.
    await makeFolder(join(workDir, 'resume-changed-new'), ['b.png']);
    await cp(join(workDir, 'resume-changed-new', 'b.png'), join(folder, 'b.png'));
    const later = new Date(Date.now() + 60_000);
    await utimes(join(folder, 'b.png'), later, later);
    // c's record hand-edited to claim a file outside the output folder, which exists.
    const manifest = await readManifest(outDir);
    const outside = join(workDir, 'outside-output.png');
    await writeFile(outside, 'not an output of this run');
    manifest.records[2]!.outputs = [relative(outDir, outside)];
    await writeFile(join(outDir, 'manifest.json'), JSON.stringify(manifest));
    const second = await run(camTask(outDir), [folder], { skipExisting: true });
    assert.equal(second.exitCode, 0);
    assert.deepEqual(second.records.map((record) => [record.relative, record.resumed === true]), [['a.png', true], ['b.png', false], ['c.png', false]]);
    assert.ok((await readManifest(outDir)).records.every((record) => record.outputs.every((path) => !path.startsWith('..'))));
  });

  test('--skip-existing does not keep outputs of other options (another --class)', async () => {
    const folder = join(workDir, 'resume');
    const outDir = join(workDir, 'resume-out');
    const result = await run(camTask(outDir, { classes: ['1'] }), [folder], { skipExisting: true });
    assert.equal(result.exitCode, 0);
    for (const record of result.records) {
      assert.equal(record.resumed, undefined, record.relative);
      assert.deepEqual(record.predictions!.map((entry) => entry.index), [1]);
      assert.ok(existsSync(join(outDir, record.outputs[0]!)));
    }
    const manifest = await readManifest(outDir);
    assert.deepEqual(manifest.options['classes'], ['1']);
  });

  test('--skip-existing does not keep outputs of another model (model.json differs)', async () => {
    const folder = join(workDir, 'resume');
    const outDir = join(workDir, 'resume-out');
    const copy = join(workDir, 'model-copy');
    await cp(dirname(model!.json), copy, { recursive: true });
    // The same network, another model.json: a different sha256.
    await writeFile(join(copy, 'model.json'), `${(await readFile(model!.json, 'utf8')).trimEnd()}\n\n`);
    const task = camTask(outDir, { classes: ['1'] });
    const sameModel = await run(task, [folder], { skipExisting: true });
    assert.ok(sameModel.records.every((record) => record.resumed === true), 'same options and model: all kept');
    const other = await run({ ...task, model: { ...task.model, model: copy } }, [folder], { skipExisting: true });
    assert.equal(other.exitCode, 0);
    assert.ok(other.records.every((record) => record.resumed === undefined));
    const manifest = await readManifest(outDir);
    assert.equal(manifest.model.sha256, createHash('sha256').update(await readFile(join(copy, 'model.json'))).digest('hex'));
  });

  test('--fail-fast stops starting batches after the first failure; the manifest says so', async () => {
    const folder = await makeFolder(join(workDir, 'failfast'), Array.from({ length: 10 }, (_, i) => `${i}.png`));
    await writeFile(join(folder, '1.png'), '');
    const outDir = join(workDir, 'failfast-out');
    const result = await run({ ...camTask(outDir), batchSize: 1 }, [folder], { failFast: true });
    assert.equal(result.exitCode, 1);
    assert.equal(result.interrupted, true);
    const manifest = await readManifest(outDir);
    assert.equal(manifest.interrupted, true);
    // Three batches are in flight at a time; once 1.png fails, the ones not yet computing are dropped.
    assert.ok(manifest.records.length <= 3, `stopped early (${manifest.records.length} records)`);
    const failed = manifest.records.find((record) => record.relative === '1.png');
    assert.deepEqual(failed, { ...failed, status: 'error', error: `empty file (0 bytes) (${join(folder, '1.png')})` });
    // Without --fail-fast every input is done.
    const all = await run({ ...camTask(join(workDir, 'failfast-all')), batchSize: 1 }, [folder]);
    assert.equal(all.records.length, 10);
    assert.equal(all.records.filter((record) => record.status === 'ok').length, 9);
  });

  test('a SIGTERM while the manifest is written neither ends the process nor tears the manifest; it lost no input, so the run is not interrupted', async () => {
    const folder = await makeFolder(join(workDir, 'late-signal'), ['0.png', '1.png']);
    const outDir = join(workDir, 'late-signal-out');
    const originalRename = fsPromises.rename;
    let listenersDuringWrite: number | undefined;
    // The manifest's atomic write ends in a rename onto manifest.json: the signal comes then, as a CI runner's timeout might.
    fsPromises.rename = async (from, to) => {
      if (String(to).endsWith('manifest.json') && listenersDuringWrite === undefined) {
        listenersDuringWrite = process.listenerCount('SIGTERM');
        process.emit('SIGTERM', 'SIGTERM');
      }
      return originalRename(from, to);
    };
    syncBuiltinESMExports();
    try {
      const result = await run(camTask(outDir), [folder], { jobs: 1 });
      // With no listener, a real SIGTERM would have ended the process here, before the manifest.
      assert.ok(listenersDuringWrite !== undefined && listenersDuringWrite > 0, `SIGTERM listeners while the manifest was written: ${listenersDuringWrite}`);
      assert.equal(result.exitCode, 143, 'the process was asked to stop: 128 + 15, as a shell expects');
      assert.equal(result.records.length, 2);
      const manifest = await readManifest(outDir);
      assert.equal(manifest.interrupted, false);
      assert.deepEqual(manifest.summary, { inputs: 2, ok: 2, error: 0 });
      assert.equal(process.listenerCount('SIGTERM'), 0, 'the run removes its listeners');
    } finally {
      fsPromises.rename = originalRename;
      syncBuiltinESMExports();
    }
  });
});

describe('V8 heap growth of a folder run', () => {
  test('runs of 8 images or more let the heap grow 4x after a full collection; shorter runs keep V8\'s choice', () => {
    assert.equal(heapGrowingPercentFor(200, ''), 300);
    assert.equal(heapGrowingPercentFor(8, '--enable-source-maps'), 300);
    assert.equal(heapGrowingPercentFor(7, ''), undefined);
  });

  test('a growth the user chose (node flag or NODE_OPTIONS, either spelling) is left alone', () => {
    assert.equal(heapGrowingPercentFor(200, '--heap-growing-percent=50'), undefined);
    assert.equal(heapGrowingPercentFor(200, '--max-old-space-size=512 --heap_growing_percent=20'), undefined);
  });
});

describe('WebAssembly threads of a run in this process', () => {
  const task = (engine: 'auto' | 'tfjs' | 'onnxruntime'): CamTaskOptions => camTaskOptions(join(workDir, 'threads'), { model: { engine } });
  const cores = availableParallelism();

  test('tfjs runs the passes: the cores from 8 images on, one thread below', async () => {
    assert.equal(await wasmThreadsFor(task('tfjs'), 200), cores);
    assert.equal(await wasmThreadsFor(task('tfjs'), 7), 1);
  });

  test('ONNX Runtime runs the passes (--engine onnxruntime, auto where it loads): no threads to start', async () => {
    assert.equal(await wasmThreadsFor(task('onnxruntime'), 200), 1);
    assert.equal(await wasmThreadsFor(task('auto'), 200), loadOnnxRuntime().available ? 1 : cores);
  });

  test('a task that runs wholly on tfjs (guided backprop) gets the cores under every engine', async () => {
    for (const engine of ['auto', 'onnxruntime'] as const) {
      const guided = task(engine);
      assert.equal(await wasmThreadsFor({ ...guided, model: { ...guided.model, tfjsOnly: 'guided backprop' } }, 200), cores);
    }
  });
});

// ------------------------------------------------------------------ memory

/** The garbage collector, without a command-line flag. */
function collector(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

describe('memory stays flat', { skip: skipWithoutModel }, () => {
  test('tasks: the tensor count after 50 batches equals that after the first; the model frees its weights', async () => {
    const images = join(workDir, 'tiny-tasks');
    const names = Array.from({ length: 8 }, (_, i) => `t${i}.png`);
    await makeFolder(images, names, [12, 10]);
    const inputs = await expandInputs([images]);
    for (const options of [camTask(join(workDir, 'tasks-cam')), fmapTask(join(workDir, 'tasks-fmap')), predictTask()] as TaskOptions[]) {
      const before = tf.memory().numTensors;
      const { context, task } = await startTask(options);
      await task.process(inputs.slice(0, 4));
      const afterFirst = tf.memory().numTensors;
      for (let i = 0; i < 50; i++) {
        const outcome = await task.process(i % 2 === 0 ? inputs.slice(0, 4) : inputs.slice(4));
        assert.ok(outcome.records.every((record) => record.status === 'ok'));
      }
      assert.equal(tf.memory().numTensors, afterFirst, `${options.command}: no tensors leak per batch`);
      context.model.dispose();
      assert.equal(tf.memory().numTensors, before, `${options.command}: disposing the model frees everything`);
    }
  });

  test('runBatch over 300 tiny images: no tensors left, RSS does not climb from run to run', async () => {
    const gc = collector();
    const folder = join(workDir, 'tiny');
    await mkdir(folder, { recursive: true });
    for (let i = 0; i < 300; i++) {
      await sharp(noise(12, 10, i + 1), { raw: { width: 12, height: 10, channels: 3 } }).png().toFile(join(folder, `i${String(i).padStart(3, '0')}.png`));
    }
    const once = async (name: string): Promise<{ tensors: number; rss: number }> => {
      const result = await run(camTask(join(workDir, name)), [folder]);
      assert.equal(result.exitCode, 0);
      assert.equal(result.records.length, 300);
      gc();
      return { tensors: tf.memory().numTensors, rss: process.memoryUsage().rss };
    };
    const baseline = tf.memory().numTensors;
    await once('tiny-warm-up'); // wasm heap, sharp and V8 settle
    const first = await once('tiny-1');
    const second = await once('tiny-2');
    assert.equal(first.tensors, baseline);
    assert.equal(second.tensors, baseline);
    const growth = (second.rss - first.rss) / 2 ** 20;
    assert.ok(growth < 8, `RSS grew ${growth.toFixed(1)} MB from one 300-image run to the next`);
  });
});
