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
  assert.deepEqual(workerExecArgv(['--enable-source-maps', '--stack-size=2000']), ['--enable-source-maps', '--stack-size=2000']);
  assert.deepEqual(workerExecArgv([]), []);
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
