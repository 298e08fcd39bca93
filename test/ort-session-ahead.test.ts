/**
 * The first ONNX Runtime session made ahead in a worker (issue 12, cold
 * start: src/executor/ort-session-ahead.ts, src/model/session-ahead.ts):
 * - a run that makes a model's first session notes it by the model file's
 *   real path; a later start made ahead from the note is taken by the
 *   executor, whose passes then equal those of a session of its own;
 * - a note that does not fit (another key), a damaged saved graph, a
 *   garbage note file: nothing is taken or started, the executor makes its
 *   own session, results are right;
 * - the command line: the second one-image run takes the session made
 *   ahead, with outputs byte-identical to the first; a usage error or a
 *   model that no longer loads after the worker started ends at once, with
 *   its one-line error and exit code.
 * Skips with a reason when onnxruntime-node does not load.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, readdir, realpath, rm, truncate, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '../src/engine/tf.js';
import { useBackend } from '../src/engine/backend.js';
import { SAVED_GRAPH_SUFFIX, cachedSessionCount, loadOnnxRuntime, releaseOrtSessions } from '../src/engine/onnxruntime.js';
import { OrtExecutor, createOrtExecutor } from '../src/executor/ort.js';
import { RemoteSession, closeSessionsAhead, sessionAheadPending, sessionsAheadTaken, startSessionAhead } from '../src/executor/ort-session-ahead.js';
import { OrtHostPool } from '../src/executor/ort-host-pool.js';
import { loadModel } from '../src/model/load.js';
import { onnxTrunkOf } from '../src/model/onnx/trunk.js';
import { FIRST_SESSIONS_NAME, startModelSessionAhead } from '../src/model/session-ahead.js';
import { main } from '../src/cli/main.js';
import { repoRoot } from './helpers/assets.js';
import { type CliRun, cliEnv, runCli } from './helpers/cli.js';
import { withEnv } from './helpers/env.js';
import { tinyClassifier } from './helpers/engine-models.js';
import { mulberry32 } from './helpers/numeric.js';

const ort = loadOnnxRuntime();
const skipOrt: string | false = ort.available ? false : `onnxruntime-node does not load: ${ort.reason}`;

let workDir: string;
let tinyOnnx: string;
let cacheDir: string;

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'camviz-session-ahead-'));
  tinyOnnx = join(workDir, 'tiny.onnx');
  await writeFile(tinyOnnx, tinyClassifier());
  await useBackend('wasm');
});
after(async () => {
  await closeSessionsAhead();
  releaseOrtSessions();
  await rm(workDir, { recursive: true, force: true });
});

const notesPath = (): string => join(cacheDir, 'onnx', FIRST_SESSIONS_NAME);

async function readNotes(): Promise<Record<string, { sessionKey: string; inputName: string; outputNames: string[]; threads: number }>> {
  return (JSON.parse(await readFile(notesPath(), 'utf8')) as { entries: Record<string, { sessionKey: string; inputName: string; outputNames: string[]; threads: number }> }).entries;
}

/** Seeded input values for the tiny model's [1, 16, 16, 3] input. */
function tinyInput(): tf.Tensor4D {
  const next = mulberry32(5);
  return tf.tensor4d(Float32Array.from({ length: 16 * 16 * 3 }, () => next() * 2 - 1), [1, 16, 16, 3]);
}

/**
 * As a new process would (no session cached in this one): loads the tiny
 * model on ONNX Runtime, runs one forward pass fetching the conv layer,
 * and says whether its first session was made ahead.
 */
async function tinyRun(): Promise<{ madeAhead: boolean; scores: number[]; conv: number[] }> {
  releaseOrtSessions();
  return withEnv('CAMVIZ_CACHE', cacheDir, async () => {
    const model = await loadModel(tinyOnnx, { engine: 'onnxruntime' });
    const input = tinyInput();
    try {
      const executor = await model.executor();
      assert.ok(executor instanceof OrtExecutor, 'runs on ONNX Runtime');
      const conv = executor.graph.nodes.find((node) => node.path === 'relu' || node.path.endsWith('relu'));
      assert.ok(conv !== undefined, 'the tiny model has its relu layer');
      const values = await executor.forward(input, { layers: [conv] });
      try {
        return {
          madeAhead: executor.firstSession?.madeAhead === true,
          scores: Array.from(values.scores.dataSync()),
          conv: Array.from(values.layers.get(conv.path)!.dataSync()),
        };
      } finally {
        tf.dispose([values.output, values.scores, values.probabilities, ...values.layers.values()]);
      }
    } finally {
      input.dispose();
      model.dispose();
    }
  });
}

/** Starts the session the note names for the tiny model, as the command line does. */
function startAhead(): Promise<void> {
  return withEnv('CAMVIZ_CACHE', cacheDir, () => startModelSessionAhead(tinyOnnx));
}

describe('a first session made ahead', { skip: skipOrt }, () => {
  let reference: { scores: number[]; conv: number[] };

  beforeEach(async () => {
    cacheDir = await mkdtemp(join(workDir, 'cache-'));
    const first = await tinyRun();
    assert.equal(first.madeAhead, false, 'nothing was noted before the first run');
    reference = first;
  });

  test('is noted by the model file\'s real path, taken by the next executor, and gives the same values', async () => {
    const notes = await readNotes();
    const note = notes[await realpath(tinyOnnx)];
    assert.ok(note !== undefined, `noted: ${Object.keys(notes).join(', ')}`);
    assert.equal(note.inputName, 'input');
    assert.ok(note.outputNames.includes('logits'), note.outputNames.join(', '));
    const taken = sessionsAheadTaken();
    await startAhead();
    assert.ok(sessionAheadPending());
    const second = await tinyRun();
    assert.equal(second.madeAhead, true);
    assert.equal(sessionsAheadTaken(), taken + 1);
    assert.ok(!sessionAheadPending());
    assert.deepEqual(second.scores, reference.scores);
    assert.deepEqual(second.conv, reference.conv);
  });

  test('whose key does not fit is not taken: closed when the engine is chosen, the executor makes its own', async () => {
    const notes = await readNotes();
    const key = await realpath(tinyOnnx);
    await writeFile(notesPath(), JSON.stringify({ entries: { [key]: { ...notes[key]!, sessionKey: `${notes[key]!.sessionKey}x` } } }));
    await startAhead();
    assert.ok(sessionAheadPending());
    const second = await tinyRun();
    assert.equal(second.madeAhead, false);
    assert.ok(!sessionAheadPending(), 'closed once the engine was chosen');
    assert.deepEqual(second.scores, reference.scores);
    // The run noted its own key again.
    assert.equal((await readNotes())[key]!.sessionKey, notes[key]!.sessionKey);
  });

  test('whose note names another input or other outputs is not taken, nor is one from an oversized note file', async () => {
    const notes = await readNotes();
    const key = await realpath(tinyOnnx);
    const forged = [
      { ...notes[key]!, inputName: 'not_the_input' },
      { ...notes[key]!, outputNames: notes[key]!.outputNames.slice(1) },
    ];
    for (const note of forged) {
      await writeFile(notesPath(), JSON.stringify({ entries: { [key]: note } }));
      await startAhead();
      assert.ok(sessionAheadPending());
      const second = await tinyRun();
      assert.equal(second.madeAhead, false, JSON.stringify(note));
      assert.deepEqual(second.scores, reference.scores);
      assert.deepEqual(second.conv, reference.conv);
      assert.equal((await readNotes())[key]!.inputName, 'input', 'the run noted its own session again');
    }
    await writeFile(notesPath(), JSON.stringify({ entries: { [key]: notes[key]!, padding: 'x'.repeat(1024 * 1024) } }));
    await startAhead();
    assert.ok(!sessionAheadPending(), 'a note file over 1 MiB is not read');
  });

  test('from a damaged saved graph fails in its worker: the executor makes its own session', async () => {
    const saved = (await readdir(join(cacheDir, 'onnx'))).filter((name) => name.endsWith(SAVED_GRAPH_SUFFIX));
    assert.equal(saved.length, 1, saved.join(', '));
    await truncate(join(cacheDir, 'onnx', saved[0]!), 100);
    await startAhead();
    const second = await tinyRun();
    assert.equal(second.madeAhead, false);
    assert.deepEqual(second.scores, reference.scores);
    assert.deepEqual(second.conv, reference.conv);
  });

  test('is found for a folder holding model.onnx, as the load finds the model there', async () => {
    const folder = join(workDir, `tiny-folder-${Math.random().toString(36).slice(2)}`);
    await mkdir(folder);
    await cp(tinyOnnx, join(folder, 'model.onnx'));
    const notes = await readNotes();
    await writeFile(notesPath(), JSON.stringify({ entries: { [await realpath(join(folder, 'model.onnx'))]: notes[await realpath(tinyOnnx)]! } }));
    await withEnv('CAMVIZ_CACHE', cacheDir, () => startModelSessionAhead(folder));
    assert.ok(sessionAheadPending());
    await closeSessionsAhead();
  });

  test('is not started from a garbage note file or a note with bad fields', async () => {
    const key = await realpath(tinyOnnx);
    const notes = await readNotes();
    const bad: readonly unknown[] = [
      'not json',
      '[]',
      JSON.stringify({ entries: [] }),
      JSON.stringify({ entries: { [key]: { ...notes[key]!, threads: 0 } } }),
      JSON.stringify({ entries: { [key]: { ...notes[key]!, outputNames: [] } } }),
      JSON.stringify({ entries: { [key]: { ...notes[key]!, inputName: 7 } } }),
    ];
    for (const text of bad) {
      await writeFile(notesPath(), String(text));
      await startAhead();
      assert.ok(!sessionAheadPending(), String(text));
    }
    const second = await tinyRun();
    assert.deepEqual(second.scores, reference.scores);
  });
});

describe('a session made ahead beside the host workers', { skip: skipOrt }, () => {
  test('the host workers\' idle end leaves the session made ahead to the executor (no session of its own is made)', async () => {
    const folder = await mkdtemp(join(workDir, 'host-idle-'));
    const model = await loadModel(tinyOnnx, { engine: 'tfjs' });
    const input = tinyInput();
    try {
      const network = model.network();
      const trunk = await onnxTrunkOf(tinyOnnx, model.meta.sha256, network.graph, model.meta.inputSize);
      const options = { file: tinyOnnx, threads: 2, hostWorkerMinImages: 1, hostWorkerIdleMs: 50, optimizedFolder: folder };
      releaseOrtSessions();
      // A first executor saves the graph the session made ahead loads.
      const first = await createOrtExecutor(network, trunk, options);
      const spec = first.firstSession!.spec;
      await first.dispose();
      releaseOrtSessions();
      startSessionAhead({ ...spec, optimizedFolder: folder });
      const executor = await createOrtExecutor(network, trunk, options);
      try {
        assert.equal(executor.firstSession?.madeAhead, true);
        const sessions = cachedSessionCount();
        // The host workers start, run a batch, then end when idle.
        const plan = executor.hostRunPlan(4, 16, 16);
        assert.ok(plan.inFlight > 1, 'the host workers started');
        const layout = executor.hostInputLayout(16, 16)!;
        const data = executor.hostInputBuffer(16 * 16 * 3);
        tf.dispose(Object.values(await executor.forwardHost(data, layout, [1, 16, 16, 3])).filter((value): value is tf.Tensor => value instanceof tf.TensorClass));
        await new Promise((resolve) => setTimeout(resolve, 400));
        const values = await executor.forward(input);
        tf.dispose([values.output, values.scores, values.probabilities]);
        assert.equal(cachedSessionCount(), sessions, 'the pass ran on the session made ahead, not on a new session of this thread');
      } finally {
        await executor.dispose();
      }
    } finally {
      input.dispose();
      model.dispose();
      releaseOrtSessions();
    }
  });
});

describe('a remote session\'s buffers', { skip: skipOrt }, () => {
  test('runs of several sizes, each input in a buffer that came back from the worker, give what fresh buffers give; results kept stay as they were', async () => {
    const outputNames = ['logits'];
    const pool = new OrtHostPool(1, { cacheKey: 'tiny-remote-buffers', bytes: tinyClassifier(), inputName: 'input', outputNames, threads: 1 }, undefined);
    try {
      assert.ok(await pool.whenReady());
      const remote = new RemoteSession(pool, { sessionKey: 'tiny-remote-buffers', optimizedFolder: workDir, inputName: 'input', outputNames, threads: 1 });
      const values = (seed: number, batch: number): Float32Array => {
        const next = mulberry32(seed);
        return Float32Array.from({ length: batch * 3 * 16 * 16 }, () => next() * 2 - 1);
      };
      // What an input gives on the same worker, sent in a buffer of its own.
      const expected = async (seed: number, batch: number): Promise<number[]> => Array.from((await pool.run(values(seed, batch), [batch, 3, 16, 16], outputNames, false)).outputs['logits']!.data);
      const kept: { data: Float32Array; values: number[] }[] = [];
      for (const [seed, batch] of [[1, 2], [2, 2], [3, 1], [4, 2], [5, 1], [6, 3], [7, 2]] as const) {
        const feed = values(seed, batch);
        const result = (await remote.run({ input: RemoteSession.feed(feed, [batch, 3, 16, 16]) }, outputNames))['logits']!;
        const data = result.data as Float32Array;
        assert.deepEqual(Array.from(data), await expected(seed, batch), `input ${seed}, batch ${batch}`);
        assert.deepEqual(feed, values(seed, batch), 'the caller\'s input is left as it was');
        kept.push({ data, values: Array.from(data) });
      }
      for (const [i, result] of kept.entries()) assert.deepEqual(Array.from(result.data), result.values, `result ${i} kept its values`);
    } finally {
      await pool.close();
    }
  });
});

const shapesImage = join(repoRoot, 'fixtures', 'shapes', 'circle-star.png');

/** A run of the command line with `cache` as its cache. Without plans: a planned run (tasks/cam-plan.ts) makes no session ahead, and these tests are of the runs that do. */
function camviz(args: readonly string[], cache: string): Promise<CliRun> {
  const env: NodeJS.ProcessEnv = { ...cliEnv(cache), CAMVIZ_PLANS: '0' };
  for (const name of ['CAMVIZ_ENGINE', 'CAMVIZ_ORT_THREADS', 'CAMVIZ_ORT_MODULE', 'CAMVIZ_VERBOSE']) delete env[name];
  return runCli(args, { cwd: workDir, env, timeoutMs: 120_000 });
}

describe('the command line makes the noted session ahead', { skip: skipOrt }, () => {
  test('the second one-image run takes it (in this process), with the first run\'s outputs byte for byte', async () => {
    const cache = await mkdtemp(join(workDir, 'cli-'));
    const args = (out: string): string[] => ['gradcam', shapesImage, '--model', 'shapes', '--engine', 'onnxruntime', '--out', out, '--json'];
    const first = await camviz(args(join(workDir, 'out-1')), cache);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stderr, '');
    const modelJson = await realpath(join(repoRoot, 'models', 'shapes', 'model.json'));
    assert.ok((JSON.parse(await readFile(join(cache, 'onnx', FIRST_SESSIONS_NAME), 'utf8')) as { entries: Record<string, unknown> }).entries[modelJson] !== undefined);

    // The second run in this process, so that what it took can be seen.
    releaseOrtSessions();
    const taken = sessionsAheadTaken();
    const second = await camvizHere(args(join(workDir, 'out-2')), cache);
    assert.equal(second.code, 0);
    assert.equal(sessionsAheadTaken(), taken + 1, 'the session made ahead was taken');
    assert.ok(!sessionAheadPending());
    await assertSameOutputs(cliRecords(first.stdout), second.records);
  });

  test('a folder run with --jobs 1 takes it too, and runs every batch on it, with the first run\'s outputs byte for byte', async () => {
    const cache = await mkdtemp(join(workDir, 'cli-'));
    const folder = join(workDir, 'shapes-folder');
    await mkdir(folder, { recursive: true });
    const shapes = (await readdir(join(repoRoot, 'fixtures', 'shapes'))).filter((name) => name.endsWith('.png'));
    for (const name of shapes) await cp(join(repoRoot, 'fixtures', 'shapes', name), join(folder, name));
    // --batch-size 2: several batches go through the session made ahead.
    const args = (out: string): string[] => ['gradcam', folder, '--model', 'shapes', '--engine', 'onnxruntime', '--jobs', '1', '--batch-size', '2', '--out', out, '--json'];
    const first = await camviz(args(join(workDir, 'out-folder-1')), cache);
    assert.equal(first.code, 0, first.stderr);

    releaseOrtSessions();
    const taken = sessionsAheadTaken();
    const second = await camvizHere(args(join(workDir, 'out-folder-2')), cache);
    assert.equal(second.code, 0);
    assert.equal(sessionsAheadTaken(), taken + 1, 'the session made ahead was taken');
    assert.equal(cachedSessionCount(), 0, 'no session of this thread was made: every batch ran on the one made ahead');
    const firstRecords = cliRecords(first.stdout);
    assert.equal(firstRecords.length, shapes.length);
    await assertSameOutputs(firstRecords, second.records);
  });

  test('CAMVIZ_SESSION_AHEAD=0: a run with a note makes no session ahead, and writes what one that took it writes', async () => {
    const cache = await mkdtemp(join(workDir, 'cli-'));
    const args = (out: string): string[] => ['gradcam', shapesImage, '--model', 'shapes', '--engine', 'onnxruntime', '--out', out, '--json'];
    const first = await camviz(args(join(workDir, 'out-off-1')), cache);
    assert.equal(first.code, 0, first.stderr);
    releaseOrtSessions();
    const taken = sessionsAheadTaken();
    const second = await withEnv('CAMVIZ_SESSION_AHEAD', '0', () => camvizHere(args(join(workDir, 'out-off-2')), cache));
    assert.equal(second.code, 0);
    assert.equal(sessionsAheadTaken(), taken, 'no session was made ahead, so none was taken');
    assert.ok(!sessionAheadPending());
    await assertSameOutputs(cliRecords(first.stdout), second.records);
  });

  test('a run whose first session was made ahead does not load ONNX Runtime in its main thread', async () => {
    const cache = await mkdtemp(join(workDir, 'cli-'));
    const args = ['gradcam', shapesImage, '--model', 'shapes', '--engine', 'onnxruntime', '--out', join(workDir, 'out-4'), '--quiet'];
    const noted = await camviz(args, cache);
    assert.equal(noted.code, 0, noted.stderr);
    const script = `
      import { createRequire } from 'node:module';
      const { main } = await import(${JSON.stringify(pathToFileURL(join(repoRoot, 'dist', 'src', 'cli', 'main.js')).href)});
      const { sessionsAheadTaken } = await import(${JSON.stringify(pathToFileURL(join(repoRoot, 'dist', 'src', 'executor', 'ort-session-ahead.js')).href)});
      const code = await main(['node', 'camviz', ...${JSON.stringify(args)}]);
      const loaded = Object.keys(createRequire(import.meta.url).cache).filter((path) => path.includes('onnxruntime'));
      process.stderr.write(JSON.stringify({ code, taken: sessionsAheadTaken(), loaded }));
    `;
    const env = cliEnv(cache);
    for (const name of ['CAMVIZ_ENGINE', 'CAMVIZ_ORT_THREADS', 'CAMVIZ_ORT_MODULE', 'CAMVIZ_VERBOSE']) delete env[name];
    const stderr = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['--input-type=module', '-e', script], { cwd: workDir, env, timeout: 120_000 }, (error, _stdout, output) => (error === null ? resolve(output) : reject(new Error(`${error.message}\n${output}`))));
    });
    assert.deepEqual(JSON.parse(stderr), { code: 0, taken: 1, loaded: [] });
  });

  test('a usage error, or a model that no longer loads, after the worker started ends at once with its error', async () => {
    const cache = await mkdtemp(join(workDir, 'cli-'));
    const model = join(workDir, 'shapes-copy');
    await cp(join(repoRoot, 'models', 'shapes'), model, { recursive: true });
    const run = (extra: readonly string[]): Promise<CliRun> => camviz(['gradcam', shapesImage, '--model', model, '--engine', 'onnxruntime', '--out', join(workDir, 'out-3'), '--quiet', ...extra], cache);
    const noted = await run([]);
    assert.equal(noted.code, 0, noted.stderr);
    const usage = await run(['--alpha', '7']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /^camviz: --alpha '7' must be a number from 0 to 1\n$/);
    await writeFile(join(model, 'model.json'), '{ not json');
    const broken = await run([]);
    assert.equal(broken.code, 1);
    assert.equal(broken.signal, null);
    assert.match(broken.stderr, /model\.json is not valid JSON/);
    assert.equal(broken.stderr.trim().split('\n').length, 1, broken.stderr);
  });
});

/** What a --json run printed: its records' PNGs and scores. */
type CliRecords = { png: string; score: number }[];

function cliRecords(stdout: string): CliRecords {
  return JSON.parse(stdout) as CliRecords;
}

/** A --json run of the command line in this process (so that what it took can be seen), with `cache` as its cache and the engine its arguments give. */
async function camvizHere(args: readonly string[], cache: string): Promise<{ code: number; records: CliRecords }> {
  const written: string[] = [];
  // Without plans, as camviz() above.
  const code = await withEnv('CAMVIZ_CACHE', cache, () => withEnv('CAMVIZ_PLANS', '0', () => withEnv('CAMVIZ_ENGINE', undefined, () => captureStdout(written, () => main(['node', 'camviz', ...args])))));
  return { code, records: cliRecords(written.join('')) };
}

/** The second run's records have the first's scores, and its PNGs the same bytes. */
async function assertSameOutputs(first: CliRecords, second: CliRecords): Promise<void> {
  assert.deepEqual(second.map((record) => record.score), first.map((record) => record.score));
  for (const [i, record] of first.entries()) assert.deepEqual(await readFile(record.png), await readFile(second[i]!.png), record.png);
}

async function captureStdout<T>(written: string[], run: () => Promise<T>): Promise<T> {
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array): boolean => {
    written.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  }) as typeof process.stdout.write;
  try {
    return await run();
  } finally {
    process.stdout.write = write;
  }
}
