/**
 * `camviz merge`: shard folders built by hand (small PNGs, manifests),
 * merged by the library and by the CLI; the merged folder is checked file
 * by file against the shards, and every refusal leaves nothing written.
 */
import { createHash } from 'node:crypto';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import sharp from 'sharp';

import { acquireRunLock } from '../src/batch/lock.js';
import { mergeManifests, mergeRuns } from '../src/batch/merge.js';
import { writeReport } from '../src/batch/report.js';
import { createLedger } from '../src/util/outputs-ledger.js';
import type { Manifest } from '../src/batch/manifest.js';
import { CamvizError, UsageError } from '../src/util/errors.js';
import type { InputRecord } from '../src/tasks/types.js';
import { type CliRun, runCli } from './helpers/cli.js';
import { listFiles, readManifest } from './helpers/files.js';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-merge-test-'));
after(() => rm(workDir, { recursive: true, force: true }));

let fixtureCount = 0;
/** A fresh folder for one test. */
async function freshDir(name: string): Promise<string> {
  const dir = join(workDir, `${name}-${fixtureCount++}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** A small PNG whose pixels depend on `seed`, so every file's bytes differ. */
async function smallPng(path: string, seed: number): Promise<void> {
  const width = 6;
  const height = 4;
  const rgb = new Uint8Array(width * height * 3).map((_, i) => (i * 37 + seed * 101) % 256);
  await mkdir(dirname(path), { recursive: true });
  await sharp(rgb, { raw: { width, height, channels: 3 } }).png().toFile(path);
}

interface ShardSpec {
  index: number;
  count: number;
  /** Relative input paths; a name containing "bad" fails. */
  inputs: string[];
  startedAt: string;
  finishedAt: string | null;
  interrupted?: boolean;
  report?: boolean;
  /** Overrides of the manifest (model, options, command...). */
  patch?: Partial<Manifest>;
}

const OPTIONS = { method: 'gradcam', layers: [], classes: ['281'], topK: 1, alpha: 0.5, image: { resize: 'stretch', background: '#ffffff', maxPixels: 100000000 } };

function camRecordFor(relative: string): InputRecord {
  const input = `/data/photos/${relative}`;
  if (relative.includes('bad')) {
    return { input, relative, status: 'error', outputs: [], timings: {}, error: `could not decode the image (${input})` };
  }
  const png = `${relative.replace(/\.[^.]+$/, '')}.gradcam.281.png`;
  return {
    input,
    relative,
    status: 'ok',
    outputs: [png],
    predictions: [{ index: 281, label: 'tabby cat', probability: 0.5 }],
    results: [{ input, method: 'gradcam', layer: 'conv_pw_13_relu', class: { index: 281, label: 'tabby cat' }, score: 3, probability: 0.5, peak: { x: 0, y: 0 }, png }],
    timings: { total: 1 },
  };
}

/** Writes a shard folder: its output PNGs, a thumbnail per input, manifest.json and (if asked) an index.html. */
async function writeShard(dir: string, spec: ShardSpec): Promise<Manifest> {
  const records = spec.inputs.map(camRecordFor);
  let seed = spec.index * 1000;
  for (const record of records) {
    for (const output of record.outputs) await smallPng(join(dir, output), seed++);
    await smallPng(join(dir, '_report', 'thumbs', `${record.relative}.jpg`), seed++);
  }
  const errors = records.filter((record) => record.status === 'error').length;
  const manifest: Manifest = {
    camviz: '0.1.0',
    command: 'cam',
    model: { name: 'mobilenet_v1_0.75_224', source: 'zoo', sha256: 'a1'.repeat(32) },
    backend: { kind: 'cpu', package: '@tensorflow/tfjs-backend-cpu' },
    options: OPTIONS,
    shard: [{ index: spec.index, count: spec.count }],
    startedAt: spec.startedAt,
    finishedAt: spec.finishedAt,
    interrupted: spec.interrupted ?? false,
    summary: { inputs: records.length, ok: records.length - errors, error: errors },
    records,
    ...spec.patch,
  };
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
  if (spec.report) await writeFile(join(dir, 'index.html'), '<!doctype html><title>shard report</title>');
  return manifest;
}

/** The sorted inputs of the whole run, dealt out as --shard i/3 would: position % 3 === i - 1. */
const ALL_INPUTS = ['a/one.jpg', 'a/two.jpg', 'b/bad.jpg', 'b/four.png', 'c.jpg', 'd/e/f.jpg', 'zeta.jpg'];
const dealt = (index: number, count: number, inputs = ALL_INPUTS): string[] => inputs.filter((_, position) => position % count === index - 1);

async function threeShards(root: string, overrides: Partial<Record<1 | 2 | 3, Partial<ShardSpec>>> = {}): Promise<{ dirs: string[]; manifests: Manifest[] }> {
  const base: Record<1 | 2 | 3, ShardSpec> = {
    1: { index: 1, count: 3, inputs: dealt(1, 3), startedAt: '2025-03-01T10:00:05.000Z', finishedAt: '2025-03-01T10:04:00.000Z', report: true },
    2: { index: 2, count: 3, inputs: dealt(2, 3), startedAt: '2025-03-01T09:59:58.000Z', finishedAt: '2025-03-01T10:06:30.000Z' },
    3: { index: 3, count: 3, inputs: dealt(3, 3), startedAt: '2025-03-01T10:00:01.000Z', finishedAt: '2025-03-01T10:05:00.000Z', interrupted: true },
  };
  const dirs: string[] = [];
  const manifests: Manifest[] = [];
  for (const index of [1, 2, 3] as const) {
    const dir = join(root, `shard-${index}`);
    dirs.push(dir);
    manifests.push(await writeShard(dir, { ...base[index], ...overrides[index] }));
  }
  return { dirs, manifests };
}

/** The JSON a report page embeds. */
function reportRecords(html: string): string[] {
  const match = /<script type="application\/json" id="camviz-data">([^<]*)<\/script>/.exec(html);
  assert.ok(match, 'embedded data');
  return (JSON.parse(match[1]!) as { records: { n: string }[] }).records.map((record) => record.n);
}

describe('merged working folders', () => {
  test("shards run from other folders: their records' relative inputs are made absolute from their own folder, the first shard's kept as given", () => {
    const relativeRecord = (relative: string): InputRecord => ({ ...camRecordFor(relative), input: `photos/${relative}` });
    const shard = (index: number, workingDirectory: string, inputs: string[]): { dir: string; manifest: Manifest } => ({
      dir: `/runs/shard-${index}`,
      manifest: {
        camviz: '0.1.0',
        command: 'cam',
        model: { name: 'm', source: 'zoo', sha256: 'a1'.repeat(32) },
        backend: { kind: 'cpu', package: '@tensorflow/tfjs-backend-cpu' },
        options: OPTIONS,
        shard: [{ index, count: 2 }],
        startedAt: '2025-03-01T10:00:00.000Z',
        finishedAt: '2025-03-01T10:01:00.000Z',
        interrupted: false,
        workingDirectory,
        summary: { inputs: inputs.length, ok: inputs.length, error: 0 },
        records: inputs.map(relativeRecord),
      },
    });
    const merged = mergeManifests([shard(1, '/ci/one', ['a.jpg']), shard(2, '/ci/two', ['b.jpg'])]);
    assert.equal(merged.workingDirectory, '/ci/one');
    assert.deepEqual(
      merged.records.map((record) => record.input),
      ['photos/a.jpg', '/ci/two/photos/b.jpg'],
    );
  });
});

describe('mergeRuns', () => {
  test('three shards: every file copied byte for byte, records sorted, summary and times recomputed', async () => {
    const root = await freshDir('three');
    const { dirs, manifests } = await threeShards(root);
    const out = join(root, 'merged');
    const result = await mergeRuns(dirs, out);

    // Files: the union of the shards' outputs and thumbnails, same bytes.
    const expectedFiles = new Set<string>();
    for (const dir of dirs) for (const file of await listFiles(dir)) if (file !== 'manifest.json' && file !== 'index.html') expectedFiles.add(file);
    assert.equal(expectedFiles.size, 6 + 7); // 6 ok outputs + 7 thumbnails
    assert.deepEqual(await listFiles(out), [...expectedFiles, 'index.html', 'manifest.json'].sort());
    for (const dir of dirs) {
      for (const file of await listFiles(dir)) {
        if (file === 'manifest.json' || file === 'index.html') continue;
        assert.deepEqual(await readFile(join(out, file)), await readFile(join(dir, file)), file);
      }
    }
    assert.equal(result.copied, 13);

    const written = await readManifest(out);
    assert.deepEqual(written, result.manifest);
    assert.deepEqual(written.records.map((record) => record.relative), [...ALL_INPUTS].sort());
    // The records themselves are the shards' records, unchanged.
    const byRelative = new Map(manifests.flatMap((manifest) => manifest.records).map((record) => [record.relative, record]));
    for (const record of written.records) assert.deepEqual(record, byRelative.get(record.relative));
    assert.deepEqual(written.summary, { inputs: 7, ok: 6, error: 1 });
    assert.deepEqual(written.shard, [{ index: 1, count: 3 }, { index: 2, count: 3 }, { index: 3, count: 3 }]);
    assert.equal(written.startedAt, '2025-03-01T09:59:58.000Z');
    assert.equal(written.finishedAt, '2025-03-01T10:06:30.000Z');
    assert.equal(written.interrupted, true);
    assert.equal(written.command, 'cam');
    assert.deepEqual(written.options, OPTIONS);
    assert.equal(result.exitCode, 1);

    // Shard 1 had a report, so the merged folder gets one covering every input.
    assert.equal(result.reportPath, join(out, 'index.html'));
    assert.deepEqual(reportRecords(await readFile(join(out, 'index.html'), 'utf8')), [...ALL_INPUTS].sort());
  });

  test('all ok: exit code 0; no report unless a shard had one; unfinished shard leaves finishedAt null', async () => {
    const root = await freshDir('allok');
    const inputs = ['p.jpg', 'q.jpg', 'r.jpg', 's.jpg'];
    const dirs = [join(root, 's1'), join(root, 's2')];
    await writeShard(dirs[0]!, { index: 1, count: 2, inputs: dealt(1, 2, inputs), startedAt: '2025-01-01T00:00:00.000Z', finishedAt: null });
    await writeShard(dirs[1]!, { index: 2, count: 2, inputs: dealt(2, 2, inputs), startedAt: '2025-01-01T00:00:01.000Z', finishedAt: '2025-01-01T00:01:00.000Z' });
    const notes: string[] = [];
    const result = await mergeRuns(dirs, join(root, 'out'), { log: (note) => notes.push(note) });
    assert.equal(result.exitCode, 0);
    assert.equal(result.reportPath, undefined);
    assert.equal(existsSync(join(root, 'out', 'index.html')), false);
    assert.equal(result.manifest.finishedAt, null);
    assert.equal(result.manifest.interrupted, false);
    assert.deepEqual(result.manifest.summary, { inputs: 4, ok: 4, error: 0 });
    assert.deepEqual(notes, []);

    // --report asks for one anyway.
    const again = await mergeRuns(dirs, join(root, 'out2'), { report: true });
    assert.equal(again.reportPath, join(root, 'out2', 'index.html'));
  });

  test('the engine the shards ran on is kept; shards on different engines get a note', async () => {
    const root = await freshDir('engines');
    const { dirs } = await threeShards(root);
    const engines = [
      { kind: 'onnxruntime', requested: 'auto', version: '1.31.1', threads: 1 },
      { kind: 'onnxruntime', requested: 'auto', version: '1.31.1', threads: 1 },
      { kind: 'tfjs', requested: 'auto', reason: 'ONNX Runtime is unavailable: test', fallback: 'unavailable' },
    ];
    for (const [i, dir] of dirs.entries()) {
      const path = join(dir, 'manifest.json');
      const manifest = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
      await writeFile(path, JSON.stringify({ ...manifest, engine: engines[i] }));
    }
    const notes: string[] = [];
    const result = await mergeRuns(dirs, join(root, 'merged'), { log: (message) => notes.push(message) });
    assert.deepEqual(result.manifest.engine, engines[0]);
    assert.deepEqual((await readManifest(join(root, 'merged'))).engine, engines[0]);
    assert.ok(notes.some((note) => /different engines \(onnxruntime, tfjs\)/.test(note)), notes.join('\n'));
  });

  test('a missing shard is merged with a note, not refused', async () => {
    const root = await freshDir('partial');
    const { dirs } = await threeShards(root);
    const notes: string[] = [];
    const result = await mergeRuns([dirs[0]!, dirs[2]!], join(root, 'out'), { log: (note) => notes.push(note) });
    assert.deepEqual(result.manifest.records.map((record) => record.relative), [...dealt(1, 3), ...dealt(3, 3)].sort());
    assert.deepEqual(notes, ['note: shard 2/3 not merged']);
  });

  test('merging into one of the shard folders copies only the others in', async () => {
    const root = await freshDir('inplace');
    const { dirs } = await threeShards(root);
    const target = dirs[1]!;
    const before = await listFiles(target);
    const ownBytes = new Map(await Promise.all(before.map(async (file) => [file, await readFile(join(target, file))] as const)));
    const result = await mergeRuns(dirs, target);

    const others = [...(await listFiles(dirs[0]!)), ...(await listFiles(dirs[2]!))].filter((file) => file !== 'manifest.json' && file !== 'index.html');
    assert.equal(result.copied, others.length);
    assert.deepEqual(await listFiles(target), [...new Set([...before, ...others, 'index.html'])].sort());
    for (const [file, bytes] of ownBytes) if (file !== 'manifest.json') assert.deepEqual(await readFile(join(target, file)), bytes, file);
    const merged = await readManifest(target);
    assert.deepEqual(merged.records.map((record) => record.relative), [...ALL_INPUTS].sort());
    assert.equal((await readdir(target)).some((name) => name.endsWith('.tmp')), false);

    // Merging again (the target now holds the merged manifest) is refused: its inputs overlap the other shards'.
    await assert.rejects(mergeRuns(dirs, target), UsageError);
  });

  test("a shard's output or thumbnail that is a link out of its folder is refused before anything is written; a link inside it is followed", async () => {
    const root = await freshDir('links');
    const { dirs, manifests } = await threeShards(root);
    const secret = join(root, 'secret.txt');
    await writeFile(secret, 'not for the merged folder');
    const output = manifests[0]!.records.find((record) => record.outputs.length > 0)!.outputs[0]!;
    const listed = join(dirs[0]!, output);
    const kept = await readFile(listed);
    // Inside the shard: followed.
    await rename(listed, join(dirs[0]!, 'elsewhere.png'));
    await symlink(join(dirs[0]!, 'elsewhere.png'), listed);
    const out = join(root, 'out-inside');
    await mergeRuns(dirs, out);
    assert.deepEqual(await readFile(join(out, output)), kept);
    // Out of it: refused, naming the file; nothing written.
    await rm(listed);
    await symlink(secret, listed);
    const refused = join(root, 'out-outside');
    await assert.rejects(mergeRuns(dirs, refused), (error: unknown) => {
      assert.ok(error instanceof CamvizError);
      assert.match(error.describe(), /a shard's file leads out of its folder through a symbolic link: refused/);
      assert.equal(error.file, listed);
      return true;
    });
    assert.equal(existsSync(refused), false);
  });

  test("a merge replaces no file camviz did not write: a user's file of an output's name stops it before anything is copied; the merged outputs are in the folder's ledger", async () => {
    const root = await freshDir('foreign-target');
    const { dirs } = await threeShards(root);
    const out = join(root, 'merged');
    await mkdir(out, { recursive: true });
    const mine = join(out, 'a/one.gradcam.281.png');
    await mkdir(dirname(mine), { recursive: true });
    await writeFile(mine, 'my own picture');
    await assert.rejects(mergeRuns(dirs, out), (error: unknown) => {
      assert.ok(error instanceof CamvizError, String(error));
      assert.equal(error.describe(), `a file camviz did not write has this output's name: the merge replaces none (move it, or merge into another folder) (${mine})`);
      return true;
    });
    assert.equal(await readFile(mine, 'utf8'), 'my own picture');
    assert.equal(existsSync(join(out, 'manifest.json')), false, 'nothing merged');
    await rm(mine);
    const merged = await mergeRuns(dirs, out);
    const ledger = (await readFile(join(out, '.camviz-outputs'), 'utf8')).split('\n').slice(1).filter((line) => line !== '').map((line) => JSON.parse(line) as [string, string, string]);
    // The outputs, their thumbnails, and the merged report (the shards had one).
    const thumbnails = merged.manifest.records.map((record) => `_report/thumbs/${record.relative}.jpg`);
    assert.deepEqual(ledger.map(([name]) => name).sort(), [...merged.manifest.records.flatMap((record) => record.outputs), ...thumbnails, 'index.html'].sort());
    // Each recorded as the copy is in the merged folder (its own inode and time), with the sha256 of its bytes.
    for (const [name, stamp, sha256] of ledger) {
      const info = await stat(join(out, name), { bigint: true });
      assert.equal(stamp, `${info.dev}:${info.ino}:${info.size}:${info.mtimeNs}`, name);
      assert.equal(sha256, createHash('sha256').update(await readFile(join(out, name))).digest('hex'), name);
    }
    // Merged again (a re-run of the CI step): its own outputs are replaced.
    await mergeRuns(dirs, out);
    // A merged map edited since is a user's: the next merge stops before copying anything.
    const edited = join(out, 'c.gradcam.281.png');
    await writeFile(edited, 'annotated by hand');
    await assert.rejects(mergeRuns(dirs, out), (error: unknown) => error instanceof CamvizError && error.file === edited);
    assert.equal(await readFile(edited, 'utf8'), 'annotated by hand');
  });

  test("thumbnails follow the maps' rule: one edited since camviz copied it stops the next merge; those of a folder whose ledger recorded none are camviz's by name", async () => {
    const root = await freshDir('foreign-thumbnail');
    const { dirs } = await threeShards(root);
    const out = join(root, 'merged');
    await mergeRuns(dirs, out);
    const thumbnail = join(out, '_report/thumbs/c.jpg.jpg');
    await writeFile(thumbnail, 'my own picture');
    await assert.rejects(mergeRuns(dirs, out), (error: unknown) => error instanceof CamvizError && error.file === thumbnail);
    assert.equal(await readFile(thumbnail, 'utf8'), 'my own picture');
    // A folder of a camviz that recorded no thumbnails (its ledger lists the rest): they are replaced, as before, and recorded.
    const ledgerPath = join(out, '.camviz-outputs');
    const lines = (await readFile(ledgerPath, 'utf8')).split('\n');
    await writeFile(ledgerPath, lines.filter((line) => !line.includes('_report/thumbs/')).join('\n'));
    await mergeRuns(dirs, out);
    assert.notEqual(await readFile(thumbnail, 'utf8'), 'my own picture');
    assert.ok((await readFile(ledgerPath, 'utf8')).includes('"_report/thumbs/c.jpg.jpg"'));
  });

  test('a merge into a folder a run holds (its .camviz.lock) is refused, naming the holder, and writes nothing', async () => {
    const root = await freshDir('locked');
    const { dirs } = await threeShards(root);
    const out = join(root, 'out');
    await mkdir(out);
    const held = await acquireRunLock(out, () => undefined);
    try {
      await assert.rejects(mergeRuns(dirs, out), /another camviz run \(PID \d+ on .*\) is writing into this folder/);
      assert.deepEqual(await readdir(out), ['.camviz.lock']);
    } finally {
      await held.release();
    }
    await mergeRuns(dirs, out);
    assert.ok(existsSync(join(out, 'manifest.json')));
  });

  test('shards may differ in the shard option itself, and in the batch size (how images are grouped, not what is written)', async () => {
    const root = await freshDir('shardopt');
    const { dirs } = await threeShards(root, {
      1: { patch: { options: { ...OPTIONS, shard: '1/3', batchSize: 4 } } },
      2: { patch: { options: { ...OPTIONS, shard: '2/3', batchSize: 8 } } },
    });
    const result = await mergeRuns(dirs, join(root, 'out'));
    assert.equal(result.manifest.summary.inputs, 7);
  });

  describe('refusals: one clear line, nothing written', () => {
    async function refused(dirs: string[], out: string, kind: typeof UsageError | typeof CamvizError, pattern: RegExp): Promise<void> {
      await assert.rejects(mergeRuns(dirs, out), (error: unknown) => {
        assert.ok(error instanceof kind, String(error));
        assert.match((error as CamvizError).describe(), pattern);
        assert.doesNotMatch((error as CamvizError).describe(), /\n/);
        return true;
      });
      assert.equal(existsSync(out), false, 'the output folder was not created');
    }

    test('a different model sha256', async () => {
      const root = await freshDir('sha');
      const { dirs } = await threeShards(root, { 3: { patch: { model: { name: 'mobilenet_v1_0.75_224', source: 'zoo', sha256: 'b2'.repeat(32) } } } });
      await refused(dirs, join(root, 'out'), UsageError, new RegExp(`different models: .*shard-1.*a1a1a1a1a1a1.*shard-3.*b2b2b2b2b2b2`));
    });

    test('the same model file with other preprocessing, size or labels (camviz.json beside a copy)', async () => {
      const model = { name: 'mobilenet_v1_0.75_224', source: 'zoo', sha256: 'a1'.repeat(32), preprocess: 'tf', inputSize: { width: 224, height: 224 }, labels: 'c3'.repeat(32) };
      const cases: [string, Record<string, unknown>, RegExp][] = [
        ['preprocess', { preprocess: 'torch' }, /different preprocess: .*shard-1 has "tf", .*shard-3 has "torch"/],
        ['inputSize', { inputSize: { width: 192, height: 192 } }, /different inputSize: .*\{"width":224,"height":224\}.*\{"width":192,"height":192\}/],
        ['labels', { labels: null }, /different labels: .*shard-3 has null/],
      ];
      for (const [what, change, said] of cases) {
        const root = await freshDir(`model-${what}`);
        const { dirs } = await threeShards(root, { 1: { patch: { model } }, 2: { patch: { model } }, 3: { patch: { model: { ...model, ...change } } } });
        await refused(dirs, join(root, 'out'), UsageError, said);
      }
    });

    test('an --out that is a file: one line naming it, not a raw mkdir error', async () => {
      const root = await freshDir('outfile');
      const { dirs } = await threeShards(root);
      const file = join(root, 'a-file');
      await writeFile(file, 'not a folder');
      await assert.rejects(mergeRuns(dirs, file), (error: unknown) => {
        assert.ok(error instanceof CamvizError);
        assert.equal(error.describe(), `output folder is not writable (EEXIST) (${file})`);
        return true;
      });
    });

    test('the same input in two shards', async () => {
      const root = await freshDir('dup');
      const { dirs } = await threeShards(root, { 3: { inputs: [...dealt(3, 3), 'c.jpg'] } });
      await refused(dirs, join(root, 'out'), UsageError, /input c\.jpg is in two shards: .*shard-2 and .*shard-3/);
    });

    test('an input listed twice in one shard, and two inputs of one shard writing one output (manifests edited or joined by hand)', async () => {
      const root = await freshDir('dup-in-one');
      const { dirs } = await threeShards(root, { 2: { inputs: [...dealt(2, 3), 'a/two.jpg'] } });
      await refused(dirs, join(root, 'out'), UsageError, /input a\/two\.jpg is listed twice in one shard's manifest/);
      const oneShard = join(root, 'one');
      await writeShard(oneShard, { index: 1, count: 1, inputs: ['cat.jpg', 'cat.png'], startedAt: '2025-01-01T00:00:00.000Z', finishedAt: null });
      await refused([oneShard], join(root, 'out-one'), UsageError, /output cat\.gradcam\.281\.png is written by two inputs of one shard, .*one: cat\.jpg and cat\.png/);
    });

    test('the same output file from two shards (cat.jpg and cat.png)', async () => {
      const root = await freshDir('outdup');
      const dirs = [join(root, 's1'), join(root, 's2')];
      await writeShard(dirs[0]!, { index: 1, count: 2, inputs: ['cat.jpg'], startedAt: '2025-01-01T00:00:00.000Z', finishedAt: null });
      await writeShard(dirs[1]!, { index: 2, count: 2, inputs: ['cat.png'], startedAt: '2025-01-01T00:00:00.000Z', finishedAt: null });
      await refused(dirs, join(root, 'out'), UsageError, /output cat\.gradcam\.281\.png is written by two shards/);
    });

    test('different options, naming the option', async () => {
      const root = await freshDir('opts');
      const { dirs } = await threeShards(root, { 2: { patch: { options: { ...OPTIONS, image: { ...OPTIONS.image, resize: 'crop' } } } } });
      await refused(dirs, join(root, 'out'), UsageError, /different options: image\.resize: .*shard-1 has "stretch", .*shard-2 has "crop"/);
    });

    test('a different command', async () => {
      const root = await freshDir('cmd');
      const { dirs } = await threeShards(root, { 2: { patch: { command: 'fmap' } } });
      await refused(dirs, join(root, 'out'), UsageError, /different commands: .*shard-1 ran cam, .*shard-2 ran fmap/);
    });

    test('a folder without a manifest, and a folder given twice', async () => {
      const root = await freshDir('nomanifest');
      const { dirs } = await threeShards(root);
      await mkdir(join(root, 'empty'));
      await refused([dirs[0]!, join(root, 'empty')], join(root, 'out'), UsageError, /no manifest\.json in shard folder \(.*empty\)/);
      await refused([dirs[0]!, `${dirs[0]!}/`], join(root, 'out'), UsageError, /shard folder given twice/);
    });

    test('an output the manifest lists but the folder lacks', async () => {
      const root = await freshDir('missing');
      const { dirs } = await threeShards(root);
      await rm(join(dirs[1]!, 'a', 'two.gradcam.281.png'));
      await refused(dirs, join(root, 'out'), CamvizError, /output listed in manifest\.json is missing \(.*shard-2.*two\.gradcam\.281\.png\)/);
    });

    test('an output path leading out of its folder', async () => {
      const root = await freshDir('escape');
      const dir = join(root, 's1');
      const manifest = await writeShard(dir, { index: 1, count: 1, inputs: ['x.jpg'], startedAt: '2025-01-01T00:00:00.000Z', finishedAt: null });
      manifest.records[0]!.outputs = ['../../etc/passwd'];
      await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest));
      await refused([dir], join(root, 'out'), UsageError, /outside its folder: \.\.\/\.\.\/etc\/passwd/);
    });
  });
});

/** merge loads no model: this process's environment as it is. */
function camviz(...args: string[]): Promise<CliRun> {
  return runCli(args, { cwd: workDir, timeoutMs: 60_000 });
}

describe('report thumbnails', () => {
  test("a thumbnail that is not camviz's is left as it is, even when its input is newer, and the card shows none; camviz's own is made again", async () => {
    const out = await freshDir('report-thumbnails');
    await createLedger(out);
    const manifest = await writeShard(out, { index: 1, count: 1, inputs: ['one.png', 'two.png'], startedAt: '2025-03-01T10:00:00.000Z', finishedAt: '2025-03-01T10:01:00.000Z' });
    for (const record of manifest.records) {
      record.input = join(out, 'photos', record.relative);
      await smallPng(record.input, 7);
    }
    const thumbnail = (relative: string): string => join(out, '_report/thumbs', `${relative}.jpg`);
    const thumbnails = (html: string): Record<string, number> =>
      Object.fromEntries((JSON.parse(/id="camviz-data">([^<]*)</.exec(html)![1]!) as { records: { n: string; t: number }[] }).records.map((record) => [record.n, record.t]));
    // The ledger records no thumbnail yet (a camviz before they were recorded): the run's thumbnails are camviz's by name, made again (inputs newer) and recorded.
    const inputsNewer = async () => {
      for (const record of manifest.records) await utimes(record.input, new Date(), new Date(Date.now() + 60_000));
    };
    await inputsNewer();
    await writeReport(out, manifest);
    assert.deepEqual(thumbnails(await readFile(join(out, 'index.html'), 'utf8')), { 'one.png': 1, 'two.png': 1 });
    assert.match(await readFile(join(out, '.camviz-outputs'), 'utf8'), /_report\/thumbs\/one\.png\.jpg/);
    await writeFile(thumbnail('one.png'), 'my own picture');
    await inputsNewer();
    await writeReport(out, manifest);
    assert.equal(await readFile(thumbnail('one.png'), 'utf8'), 'my own picture');
    const versions = (await readFile(join(out, '.camviz-outputs'), 'utf8')).split('\n').filter((line) => line.startsWith('["_report/thumbs/two.png.jpg"'));
    assert.equal(versions.length, 2, "camviz's thumbnail made again, and recorded again");
    assert.deepEqual(thumbnails(await readFile(join(out, 'index.html'), 'utf8')), { 'one.png': 0, 'two.png': 1 });
  });
});

describe('camviz merge (CLI)', () => {
  test('exit 1 when a merged input failed, one summary line, --json', async () => {
    const root = await freshDir('cli');
    const { dirs } = await threeShards(root);
    const run = await camviz('merge', ...dirs, '--out', join(root, 'out'), '--json');
    assert.equal(run.code, 1, run.stderr);
    assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
    assert.match(run.stderr, /^camviz: merged 3 shard folders: 7 inputs, 6 ok, 1 failed, 13 files copied; .*manifest\.json, .*index\.html; some shards were interrupted\n$/);
    const printed = JSON.parse(run.stdout) as { summary: Manifest['summary']; copied: number; manifest: string };
    assert.deepEqual(printed.summary, { inputs: 7, ok: 6, error: 1 });
    assert.equal(printed.manifest, join(root, 'out', 'manifest.json'));
  });

  test('exit 0 when all are ok; exit 2 with one line when refused', async () => {
    const root = await freshDir('cli2');
    const inputs = ['p.jpg', 'q.jpg'];
    const dirs = [join(root, 's1'), join(root, 's2')];
    await writeShard(dirs[0]!, { index: 1, count: 2, inputs: dealt(1, 2, inputs), startedAt: '2025-01-01T00:00:00.000Z', finishedAt: null });
    await writeShard(dirs[1]!, { index: 2, count: 2, inputs: dealt(2, 2, inputs), startedAt: '2025-01-01T00:00:00.000Z', finishedAt: null });
    const ok = await camviz('merge', ...dirs, '--out', join(root, 'out'), '--quiet');
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stderr, '');

    await writeShard(dirs[1]!, { index: 2, count: 2, inputs: ['p.jpg'], startedAt: '2025-01-01T00:00:00.000Z', finishedAt: null });
    const refused = await camviz('merge', ...dirs, '--out', join(root, 'out3'));
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /^camviz: cannot merge: input p\.jpg is in two shards: .*s1 and .*s2\n$/);
    assert.equal(existsSync(join(root, 'out3')), false);
  });
});
