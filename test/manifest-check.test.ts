/**
 * A manifest read back (src/batch/manifest-check.ts, through readManifest)
 * has the fields camviz writes, with their types: anything else is one
 * error naming manifest.json and the field, not a TypeError later in
 * compare, merge or metrics, nor a value taken at its word.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readManifest } from '../src/batch/manifest.js';
import { CamvizError } from '../src/util/errors.js';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-manifest-check-'));
after(() => rm(workDir, { recursive: true, force: true }));

/** A manifest as a cam run writes it: one ok record with one result, one failed record. */
function camManifest(): Record<string, unknown> {
  const result = { input: '/in/a.png', method: 'gradcam', layer: 'conv2', class: { index: 0, label: 'circle' }, score: 3.5, probability: 0.9, peak: { x: 4, y: 5 }, png: 'a.gradcam.0.png', npy: 'a.gradcam.0.npy' };
  return {
    camviz: '0.1.0',
    command: 'cam',
    model: { name: 'shapes', source: 'embedded', sha256: 'ab'.repeat(32) },
    backend: { kind: 'wasm', package: '@tensorflow/tfjs-backend-wasm' },
    options: { method: 'gradcam' },
    shard: null,
    startedAt: '2026-12-06T00:00:00.000Z',
    finishedAt: '2026-12-06T00:00:01.000Z',
    interrupted: false,
    summary: { inputs: 2, ok: 1, error: 1 },
    records: [
      { input: '/in/a.png', relative: 'a.png', status: 'ok', outputs: ['a.gradcam.0.png', 'a.gradcam.0.npy'], predictions: [{ index: 0, label: 'circle', probability: 0.9 }], results: [result], timings: {} },
      { input: '/in/b.png', relative: 'b.png', status: 'error', outputs: [], timings: {}, error: 'not an image' },
    ],
  };
}

async function readBack(manifest: unknown): Promise<unknown> {
  const folder = await mkdtemp(join(workDir, 'run-'));
  await writeFile(join(folder, 'manifest.json'), JSON.stringify(manifest));
  return readManifest(folder);
}

test('a manifest as camviz writes it reads back as it is', async () => {
  assert.deepEqual(await readBack(camManifest()), camManifest());
});

test('fields that are not what camviz writes are one error naming manifest.json and the field', async () => {
  type Manifest = ReturnType<typeof camManifest> & { records: Record<string, unknown>[] };
  const firstResult = (manifest: Manifest): Record<string, unknown> => (manifest.records[0]!['results'] as Record<string, unknown>[])[0]!;
  const cases: [string, (manifest: Manifest) => void, RegExp][] = [
    ['records: [null]', (m) => void (m.records = [null as unknown as Record<string, unknown>]), /records\[0\] is not an object/],
    ['options: null', (m) => void (m['options'] = null), /'options' is not an object/],
    ['model: null', (m) => void (m['model'] = null), /'model' is not an object/],
    ['shard: "x"', (m) => void (m['shard'] = 'x'), /'shard' is not a list/],
    ['shard 5 of 2', (m) => void (m['shard'] = [{ index: 5, count: 2 }]), /'shard' is not a list of \{index, count\}/],
    ['outputs: a string', (m) => void (m.records[0]!['outputs'] = 'a.gradcam.0.png'), /records\[0\] has 'outputs' that are not a list of file names/],
    ['status: weird', (m) => void (m.records[0]!['status'] = 'weird'), /records\[0\] has a 'status' other than ok or error/],
    ['predictions: "x"', (m) => void (m.records[0]!['predictions'] = 'x'), /'predictions' that are not a list/],
    ['results: {}', (m) => void (m.records[0]!['results'] = {}), /'results' that are not a list/],
    ['class: null', (m) => void (firstResult(m)['class'] = null), /records\[0\] results\[0\] has a 'class' that is not \{index, label\}/],
    ['npy: 5', (m) => void (firstResult(m)['npy'] = 5), /results\[0\] has no 'png' file name \(or an 'npy' that is not one\)/],
    ['peak: null', (m) => void (firstResult(m)['peak'] = null), /results\[0\] has a 'peak' that is not \{x, y\}/],
    ['score: "abc"', (m) => void (firstResult(m)['score'] = 'abc'), /results\[0\] has a 'score' or 'probability' that is not a number/],
    // compare took a result with a method for a cam result and read its class: a TypeError naming no file.
    ['a method without a class', (m) => void delete firstResult(m)['class'], /results\[0\] has a 'class' that is not \{index, label\}/],
    ['a class without a layer', (m) => void delete firstResult(m)['layer'], /results\[0\] has no 'method' and 'layer'/],
    // metrics read metrics.random of every measured map.
    ['metrics without the random map', (m) => void (firstResult(m)['metrics'] = { deletionAuc: 0.5 }), /results\[0\] has 'metrics' that are not an object with the random map's/],
  ];
  for (const [what, change, said] of cases) {
    const manifest = camManifest() as Manifest;
    change(manifest);
    await assert.rejects(readBack(manifest), (error: unknown) => {
      assert.ok(error instanceof CamvizError, what);
      assert.match(error.message, /^not a camviz manifest: /, what);
      assert.match(error.message, said, what);
      assert.ok(error.file?.endsWith('manifest.json'), what);
      return true;
    });
  }
  await assert.rejects(readBack(null), /not a camviz manifest: it is not a JSON object/);
});

test('a manifest.json larger than camviz reads is an error naming it, found from its size (a sparse 600 MB file: not read)', async () => {
  const folder = join(workDir, 'huge');
  await mkdir(folder);
  const handle = await open(join(folder, 'manifest.json'), 'w');
  await handle.truncate(600 * 1024 * 1024);
  await handle.close();
  const error = await readManifest(folder).then(() => undefined, (caught: unknown) => caught);
  assert.ok(error instanceof CamvizError, `not treated as absent: ${String(error)}`);
  assert.equal(error.describe(), `manifest.json is larger than the 268435456 bytes camviz reads of it (${join(folder, 'manifest.json')})`);
});
