/**
 * Worker threads started from a process run as `node --input-type=module
 * -e '...'` (src/util/worker-args.ts): the options describing the main
 * script are not passed on, which Node would refuse for a worker started
 * from a file; the others are. Checked on the function, and end to end on
 * a folder run with two workers started from such a script.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { workerExecArgv } from '../src/util/worker-args.js';
import { repoRoot } from './helpers/assets.js';
import { cliEnv } from './helpers/cli.js';

let workDir: string;
before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'camviz-worker-args-'));
});
after(() => rm(workDir, { recursive: true, force: true }));

test('the main script\'s options are dropped, the others kept', () => {
  assert.deepEqual(workerExecArgv(['--input-type=module', '-e', 'import x', '--max-old-space-size=4096']), ['--max-old-space-size=4096']);
  assert.deepEqual(workerExecArgv(['--input-type', 'module', '--eval', 'x']), ['module']);
  assert.deepEqual(workerExecArgv(['-p', '1+1', '--no-warnings', '--print=2', '--eval=3']), ['--no-warnings']);
  // Nothing to drop: the worker inherits everything, V8 options included, which an explicit list could not pass.
  assert.equal(workerExecArgv(['--enable-source-maps', '--max-semi-space-size=16']), undefined);
  assert.equal(workerExecArgv([]), undefined);
});

test('a V8 option on the command line reaches the session made ahead and the folder workers', async () => {
  const out = join(workDir, 'v8-option');
  const cache = join(workDir, 'v8-cache');
  const model = join(repoRoot, 'models', 'shapes');
  const image = join(repoRoot, 'fixtures', 'shapes');
  const runs = [
    ['predict', image, '--model', model, '--jobs', '2', '--out', join(out, 'folder'), '--quiet'],
    // Twice: the first notes the model's first session, the second makes it ahead in a worker.
    ['gradcam', join(image, (await readdir(image)).find((name) => name.endsWith('.png'))!), '--model', model, '--out', join(out, 'one'), '--quiet'],
  ];
  for (const args of [runs[0]!, runs[1]!, runs[1]!]) {
    const result = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(process.execPath, ['--max-semi-space-size=16', join(repoRoot, 'bin', 'camviz.js'), ...args], { cwd: workDir, env: cliEnv(cache), timeout: 240_000 }, (error, _stdout, stderr) => {
        resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stderr });
      });
    });
    assert.equal(result.code, 0, result.stderr);
    assert.doesNotMatch(result.stderr, /execArgv/);
  }
});

test('a folder run with two workers works from a `node --input-type=module -e` script', async () => {
  const out = join(workDir, 'out');
  const main = pathToFileURL(join(repoRoot, 'dist', 'src', 'cli', 'main.js')).href;
  const args = ['predict', join(repoRoot, 'fixtures', 'shapes'), '--model', 'shapes', '--engine', 'tfjs', '--jobs', '2', '--out', out, '--quiet'];
  const script = `const { main } = await import(${JSON.stringify(main)}); process.exitCode = await main(['node', 'camviz', ...${JSON.stringify(args)}]);`;
  const result = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(process.execPath, ['--input-type=module', '-e', script], { cwd: workDir, env: cliEnv(join(workDir, 'cache')), timeout: 240_000 }, (error, _stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stderr });
    });
  });
  assert.equal(result.code, 0, result.stderr);
  assert.ok((await readdir(out)).includes('manifest.json'));
});
