/**
 * Every failure is one printable line: a foreign error's lines are joined
 * (ONNX Runtime puts the useful part on its second line), control
 * characters from a model or a file name are escaped, and the layer table
 * prints a model's node names escaped.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CamvizError, describeError } from '../src/util/errors.js';
import { oneLine, printable } from '../src/util/text.js';
import { cliEnv, runCli } from './helpers/cli.js';
import { onnxModelBytes } from './helpers/onnx.js';
import { tinyModel } from './helpers/tiny-onnx.js';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-error-lines-'));
after(() => rm(workDir, { recursive: true, force: true }));

test('printable escapes control characters and keeps other text', () => {
  assert.equal(printable('a\nb\tc\r\u001b[31mred\u0000é✓'), 'a\\nb\\tc\\r\\x1b[31mred\\x00é✓');
});

test("oneLine joins a message's lines and cuts a long one", () => {
  const ort = 'Got invalid dimensions for input: input for the following indices\n index: 2 Got: 64 Expected: 32\n Please fix either the inputs/outputs or the model.';
  assert.equal(oneLine(ort), 'Got invalid dimensions for input: input for the following indices index: 2 Got: 64 Expected: 32 Please fix either the inputs/outputs or the model.');
  assert.equal(oneLine('x'.repeat(600), 10), `${'x'.repeat(9)}…`);
});

test('describeError gives one line for foreign errors and for camviz errors naming hostile text', () => {
  assert.equal(describeError(new Error('first\n\n  second  \n')), 'first second');
  // A name's newline stays visible: 'a\nb' and 'a b' are two names.
  assert.equal(describeError(new CamvizError("node 'a\n\u001b[31mb' fails", { file: 'dir/x\ny.onnx' })), "node 'a\\n\\x1b[31mb' fails (dir/x\\ny.onnx)");
});

test('camviz layers prints node names with newlines and escape sequences escaped, one row each', async () => {
  const model = tinyModel();
  const hostile = 'conv\n\u001b[31mRED';
  model.nodes = model.nodes.map((node) => (node.name === 'conv' ? { ...node, name: hostile } : node));
  const path = join(workDir, 'hostile-names.onnx');
  await writeFile(path, onnxModelBytes(model));
  const run = await runCli(['layers', '--model', path], { cwd: workDir, env: cliEnv(join(workDir, 'cache')), timeoutMs: 120_000 });
  assert.equal(run.code, 0, run.stderr);
  assert.doesNotMatch(run.stdout, /\u001b/);
  const rows = run.stdout.split('\n').filter((line) => line.startsWith('conv'));
  assert.equal(rows.length, 1, run.stdout);
  assert.match(rows[0]!, /^conv\\n\\x1b\[31mRED /);
});
