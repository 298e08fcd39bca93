/**
 * Cold start of an ONNX model (issue 12): its file is read once, and
 * ahead of the load on the command line. The sha256 is that of the bytes
 * parsed; ONNX Runtime's trunk reads the file only to make a session from
 * it, and refuses a file changed since the load wherever its bytes are
 * used.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { useBackend } from '../src/engine/backend.js';
import { loadModel } from '../src/model/load.js';
import { readOnnxAhead } from '../src/model/onnx/file.js';
import { graphOutputNames, onnxTrunkOf } from '../src/model/onnx/trunk.js';
import { UsageError } from '../src/util/errors.js';
import { repoRoot } from './helpers/assets.js';
import { type CliRun, cliEnv, runCli } from './helpers/cli.js';
import { onnxModelBytes } from './helpers/onnx.js';
import { tinyModel } from './helpers/tiny-onnx.js';

let workDir: string;
/** The tiny model, and the same graph under another name (other bytes, other sha256). */
let original: Uint8Array;
let renamed: Uint8Array;

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'camviz-onnx-read-once-'));
  original = onnxModelBytes(tinyModel());
  renamed = onnxModelBytes({ ...tinyModel(), graphName: 'renamed' });
  await useBackend('cpu');
});
after(() => rm(workDir, { recursive: true, force: true }));

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

async function modelFile(name: string, bytes: Uint8Array = original): Promise<string> {
  const path = join(workDir, name);
  await writeFile(path, bytes);
  return path;
}

describe("ONNX Runtime's trunk of an ONNX file", () => {
  test('is made without reading the file; withOutputs reads it, refusing it once changed or gone', async () => {
    const path = await modelFile('trunk.onnx');
    const model = await loadModel(path, { engine: 'tfjs' });
    try {
      assert.equal(model.meta.sha256, sha256(original));
      await rm(path);
      // The trunk needs no bytes (a session from the saved graph, or made ahead, needs none).
      const trunk = await onnxTrunkOf(path, model.meta.sha256, model.network().graph, model.meta.inputSize);
      assert.equal(trunk.cacheKey, `${sha256(original)}:8x8`);
      assert.throws(() => trunk.withOutputs(['relu_out']), /cannot read the ONNX file again \(ENOENT\)/);
      await writeFile(path, renamed);
      assert.throws(() => trunk.withOutputs(['relu_out']), /the ONNX file changed since it was loaded/);
      assert.throws(() => trunk.withOutputs([]), /the ONNX file changed since it was loaded/);
      await writeFile(path, original);
      // A graph output is not added twice; a new one is appended once, after the file's own bytes.
      assert.ok(Buffer.from(trunk.withOutputs(['logits'])).equals(Buffer.from(original)), 'logits is an output already: the file as it is');
      const withRelu = trunk.withOutputs(['relu_out', 'logits', 'relu_out']);
      assert.ok(Buffer.from(withRelu.subarray(0, original.length)).equals(Buffer.from(original)));
      assert.deepEqual(graphOutputNames(withRelu), ['logits', 'relu_out']);
    } finally {
      model.dispose();
    }
  });
});

describe('an ONNX file read ahead of its load', () => {
  test('the load takes the bytes read ahead, once: the model and its sha256 are those of the bytes read', async () => {
    const path = await modelFile('ahead.onnx');
    await readOnnxAhead(path);
    // Changed on disk after the read: the load parses and identifies what was read.
    await writeFile(path, renamed);
    const ahead = await loadModel(path, { engine: 'tfjs' });
    ahead.dispose();
    assert.equal(ahead.meta.sha256, sha256(original));
    const again = await loadModel(path, { engine: 'tfjs' });
    again.dispose();
    assert.equal(again.meta.sha256, sha256(renamed), 'the second load reads the file');
  });

  test('a folder with model.onnx is read ahead as its model.onnx', async () => {
    const folder = join(workDir, 'folder');
    await mkdir(folder);
    await writeFile(join(folder, 'model.onnx'), original);
    await readOnnxAhead(folder);
    await writeFile(join(folder, 'model.onnx'), renamed);
    // Taken by the load of the folder or of its model.onnx: the same file.
    const model = await loadModel(join(folder, 'model.onnx'), { engine: 'tfjs' });
    model.dispose();
    assert.equal(model.meta.sha256, sha256(original));
    const again = await loadModel(folder, { engine: 'tfjs' });
    again.dispose();
    assert.equal(again.meta.sha256, sha256(renamed));
  });

  test('what is not an ONNX file is left to the load, which reports it as without the read ahead', async () => {
    const missing = join(workDir, 'missing.onnx');
    await readOnnxAhead(missing);
    await assert.rejects(loadModel(missing, { engine: 'tfjs' }), /neither a zoo name/);
    // Read ahead while missing: nothing was read, so the load reads the file.
    const later = join(workDir, 'later.onnx');
    await readOnnxAhead(later);
    await writeFile(later, original);
    const model = await loadModel(later, { engine: 'tfjs' });
    model.dispose();
    assert.equal(model.meta.sha256, sha256(original));
    const broken = await modelFile('broken.onnx', original.subarray(0, original.length - 7));
    const direct = await loadModel(broken, { engine: 'tfjs' }).then(() => undefined, (error: Error) => error);
    assert.ok(direct !== undefined, 'a truncated file is refused');
    await readOnnxAhead(broken);
    await assert.rejects(loadModel(broken, { engine: 'tfjs' }), { name: direct.name, message: direct.message });
  });

  test('a path that cannot be looked at (through a file: ENOTDIR; a loop of links: ELOOP) is neither read ahead nor thrown: the load says what a missing path gets, or that the link leads nowhere', async () => {
    const file = await modelFile('plain.onnx');
    const loopA = join(workDir, 'loop-a');
    const loopB = join(workDir, 'loop-b');
    await symlink(loopB, loopA);
    await symlink(loopA, loopB);
    for (const [path, said] of [
      [join(file, 'inside.onnx'), /neither a zoo name/],
      [loopA, /^the model is a symbolic link that leads nowhere \(its target is missing, or links loop\)$/],
    ] as const) {
      // The read ahead settles (never throws, never rejects), as the command line calls it unawaited.
      await readOnnxAhead(path);
      await assert.rejects(loadModel(path, { engine: 'tfjs' }), (error: Error) => error instanceof UsageError && said.test(error.message) && (path !== loopA || error.file === loopA));
    }
    // A folder named like an ONNX file, with neither model: the message names both files it looked for.
    const folder = join(workDir, 'folder.onnx');
    await mkdir(folder);
    await assert.rejects(loadModel(folder, { engine: 'tfjs' }), /model folder has neither model\.json \(TF\.js\) nor model\.onnx/);
  });

  test('the reader loads neither tfjs nor protobufjs, so that the command line starts it before they load', async () => {
    const file = pathToFileURL(join(repoRoot, 'dist', 'src', 'model', 'onnx', 'file.js')).href;
    const script = `await import(${JSON.stringify(file)}); const { createRequire } = await import('node:module'); process.stdout.write(JSON.stringify(Object.keys(createRequire(import.meta.url).cache)));`;
    const loaded = await new Promise<string[]>((done, fail) =>
      execFile(process.execPath, ['--input-type=module', '-e', script], { timeout: 60_000 }, (error, stdout, stderr) => (error === null ? done(JSON.parse(stdout) as string[]) : fail(new Error(`${error.message}\n${stderr}`)))),
    );
    assert.deepEqual(loaded.filter((path) => path.includes('@tensorflow') || path.includes('protobufjs')), []);
  });
});

describe('the command line', () => {
  const image = join(repoRoot, 'fixtures', 'shapes', 'circle-star.png');
  const camviz = (args: readonly string[]): Promise<CliRun> => runCli(args, { cwd: workDir, env: cliEnv(join(workDir, 'cli-cache')), timeoutMs: 240_000 });

  test('one image with an ONNX --model (read ahead) writes the map and scores a two-image run (no read ahead) writes', async () => {
    const path = await modelFile('cli.onnx');
    const runs: { map: Buffer; json: unknown }[] = [];
    for (const inputs of [[image], [image, join(repoRoot, 'fixtures', 'shapes', 'circle.png')]]) {
      const out = join(workDir, `cli-${inputs.length}`);
      const run = await camviz(['cam', ...inputs, '--model', path, '--method', 'gradcam', '--class', '1', '--engine', 'tfjs', '--jobs', '1', '--raw', '--json', '--out', out]);
      assert.equal(run.code, 0, run.stderr);
      const first = (JSON.parse(run.stdout) as { npy: string; score: number; probability: number }[])[0]!;
      runs.push({ map: await readFile(first.npy), json: [first.score, first.probability] });
    }
    assert.ok(runs[0]!.map.equals(runs[1]!.map));
    assert.deepEqual(runs[0]!.json, runs[1]!.json);
  });
});
