/**
 * A reader that closes the pipe early (`camviz --help | head -1`) must not make
 * camviz die with an unhandled EPIPE trace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { camvizBin } from './helpers/cli.js';

/** Runs camviz with stdout read for its first chunk only, then closed; resolves with the exit code and stderr. */
function runWithEarlyClosedStdout(args: readonly string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [camvizBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    // Closing our end at once, as `head -c 0` would: every write of the child hits a closed pipe.
    child.stdout.destroy();
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

test('camviz --help into a closed pipe exits 0 without an EPIPE trace', async () => {
  const { code, stderr } = await runWithEarlyClosedStdout(['--help']);
  assert.doesNotMatch(stderr, /EPIPE|Unhandled/);
  assert.equal(code, 0);
});

test('a usage error still exits 2 when stdout is closed', async () => {
  const { code, stderr } = await runWithEarlyClosedStdout(['gradcam']);
  assert.doesNotMatch(stderr, /EPIPE|Unhandled/);
  assert.equal(code, 2);
});
