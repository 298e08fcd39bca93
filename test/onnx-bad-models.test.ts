/**
 * ONNX models camviz refuses: each gives one line naming the file, exit 1
 * (2 for usage errors), before any image is read and with no output
 * written. The models are written by the test (test/helpers/onnx.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliEnv, runCli } from './helpers/cli.js';
import { listFiles } from './helpers/files.js';
import { repoRoot } from './helpers/assets.js';
import { type TestModel, imageInputValue, onnxModelBytes } from './helpers/onnx.js';

const image = join(repoRoot, 'fixtures', 'shapes', 'circle.png');

function reluModel(overrides: Partial<TestModel> = {}): TestModel {
  return {
    nodes: [{ name: '/Relu', opType: 'Relu', inputs: ['input'], outputs: ['output'] }],
    inputs: [imageInputValue(8)],
    outputs: [{ name: 'output' }],
    ...overrides,
  };
}

/** Runs `camviz fmap` on a model file made of `bytes`; checks the one-line failure and that nothing was written. */
async function refused(bytes: Uint8Array, expected: RegExp, code = 1): Promise<void> {
  const folder = await mkdtemp(join(tmpdir(), 'camviz-onnx-bad-'));
  try {
    const modelPath = join(folder, 'bad.onnx');
    await writeFile(modelPath, bytes);
    const out = join(folder, 'out');
    const run = await runCli(['fmap', image, '--model', modelPath, '--out', out], { cwd: folder, env: cliEnv(join(folder, 'cache')), timeoutMs: 60_000 });
    const lines = run.stderr.trim().split('\n');
    assert.equal(run.code, code, run.stderr);
    assert.equal(lines.length, 1, run.stderr);
    assert.match(lines[0]!, /^camviz: /);
    assert.match(lines[0]!, expected);
    assert.ok(lines[0]!.includes(modelPath), `names the file: ${lines[0]}`);
    assert.deepEqual(await listFiles(out, { missingAsEmpty: true }), []);
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

test('an opset newer than camviz supports is refused', async () => {
  await refused(onnxModelBytes(reluModel({ opset: 99 })), /opset 99 is newer than camviz supports/);
});

test('an unsupported op is refused, naming the op type, the node and the opset', async () => {
  await refused(
    onnxModelBytes(reluModel({ nodes: [{ name: '/odd/Frobnicate', opType: 'Frobnicate', inputs: ['input'], outputs: ['output'] }] })),
    /unsupported ONNX op Frobnicate \(node '\/odd\/Frobnicate', opset 13\)/,
  );
});

test('an op of another domain is refused', async () => {
  await refused(
    onnxModelBytes(reluModel({ opsets: { 'com.example': 1 }, nodes: [{ name: 'n', opType: 'Relu', domain: 'com.example', inputs: ['input'], outputs: ['output'] }] })),
    /com\.example\.Relu \(node 'n'\) is not supported/,
  );
});

test('a graph cycle is refused', async () => {
  const nodes = [
    { name: 'a', opType: 'Add', inputs: ['input', 'b_out'], outputs: ['a_out'] },
    { name: 'b', opType: 'Relu', inputs: ['a_out'], outputs: ['b_out'] },
    { name: 'c', opType: 'Relu', inputs: ['b_out'], outputs: ['output'] },
  ];
  await refused(onnxModelBytes(reluModel({ nodes })), /the graph has a cycle through nodes 'a' and 'b'/);
});

test('a value read before the node that writes it is refused, and one nothing writes', async () => {
  const late = [
    { name: 'reader', opType: 'Relu', inputs: ['early'], outputs: ['output'] },
    { name: 'writer', opType: 'Relu', inputs: ['input'], outputs: ['early'] },
  ];
  await refused(onnxModelBytes(reluModel({ nodes: late })), /node 'reader' reads 'early' before node 'writer' writes it/);
  const missing = [{ name: 'reader', opType: 'Add', inputs: ['input', 'nowhere'], outputs: ['output'] }];
  await refused(onnxModelBytes(reluModel({ nodes: missing })), /node 'reader' reads 'nowhere', which no node writes/);
});

test('a graph without outputs, or whose output does not depend on the input, is refused', async () => {
  await refused(onnxModelBytes(reluModel({ outputs: [] })), /the graph has no outputs/);
  const constant = [{ name: 'c', opType: 'Relu', inputs: ['k'], outputs: ['output'] }];
  await refused(onnxModelBytes(reluModel({ nodes: constant, initializers: [{ name: 'k', dims: [2], values: [1, 2] }] })), /graph output 'output' does not depend on the input/);
});

test('an input that is not an image tensor is refused', async () => {
  await refused(onnxModelBytes(reluModel({ inputs: [{ name: 'input', shape: ['batch', 10] }] })), /input 'input' \[batch, 10\] is not an image tensor/);
  await refused(onnxModelBytes(reluModel({ inputs: [{ name: 'input', shape: [1, 2, 8, 8] }] })), /with 1 or 3 channels/);
  await refused(onnxModelBytes(reluModel({ inputs: [{ name: 'input', elemType: 7, shape: [1, 3, 8, 8] }] })), /is int64, not an image tensor/);
  // ONNX Runtime refused every image of these, one by one.
  await refused(onnxModelBytes(reluModel({ inputs: [{ name: 'input', shape: [100000, 3, 8, 8] }] })), /input 'input' \[100000, 3, 8, 8\] takes a fixed batch of 100000: camviz needs batch 1 or a dynamic batch/);
  await refused(onnxModelBytes(reluModel({ inputs: [{ name: 'input', shape: ['N', 3, 0, 0] }] })), /input 'input' \[N, 3, 0, 0\] declares an image side of 0/);
  await refused(
    onnxModelBytes(reluModel({ inputs: [imageInputValue(8), { name: 'mask', shape: [1, 1, 8, 8] }] })),
    /the graph takes 2 inputs \(input, mask\)/,
  );
});

test('a truncated .onnx and a file that is not protobuf are refused', async () => {
  const bytes = onnxModelBytes(reluModel());
  await refused(bytes.subarray(0, bytes.length - 7), /not a valid ONNX file: truncated or not protobuf/);
  await refused(new TextEncoder().encode('this is not an ONNX model, just text\n'), /not a valid ONNX file/);
});

test('an initializer shorter than its dims declare is refused', async () => {
  const nodes = [{ name: 'add', opType: 'Add', inputs: ['input', 'bias'], outputs: ['output'] }];
  const bias = { name: 'bias', dims: [1, 3, 1, 1], raw: new Uint8Array(8) };
  await refused(onnxModelBytes(reluModel({ nodes, initializers: [bias] })), /tensor 'bias' has 8 bytes of raw_data, but its dims \[1, 3, 1, 1\] of float32 need 12/);
});

test('dims declaring terabytes are refused before anything is allocated', async () => {
  const nodes = [{ name: 'add', opType: 'Add', inputs: ['input', 'huge'], outputs: ['output'] }];
  const huge = { name: 'huge', dims: [1024, 1024, 1024, 1024], raw: new Uint8Array(16) };
  await refused(onnxModelBytes(reluModel({ nodes, initializers: [huge] })), /tensor 'huge' declares 1024x1024x1024x1024 float32 \(4 TiB\)/);
});

test('external data that leaves the model folder is refused', async () => {
  const nodes = [{ name: 'add', opType: 'Add', inputs: ['input', 'bias'], outputs: ['output'] }];
  const bias = { name: 'bias', dims: [1, 3, 1, 1], external: { location: '../outside.bin', offset: '0', length: '12' } };
  await refused(onnxModelBytes(reluModel({ nodes, initializers: [bias] })), /tensor 'bias' has external data at '\.\.\/outside\.bin', outside the model folder: refused/);
});

test('a node that cannot run at the input size is refused at load, naming the node and its input shapes', async () => {
  const nodes = [{ name: 'mismatch', opType: 'Add', inputs: ['input', 'five'], outputs: ['output'] }];
  const five = { name: 'five', dims: [5], values: [1, 2, 3, 4, 5] };
  await refused(onnxModelBytes(reluModel({ nodes, initializers: [five] })), /node 'mismatch' \(Add\) fails at load on inputs of shapes \[1, 3, 8, 8\], \[5\]/);
});

test('an input declaring a million pixels a side is refused before the load pass allocates it', async () => {
  await refused(onnxModelBytes(reluModel({ inputs: [{ name: 'input', shape: ['batch', 3, 1000000, 1000000] }] })), /input size 1000000x1000000 is larger than camviz runs \(4096 pixels a side\)/);
});

test('a node naming more outputs than its op gives is refused at load', async () => {
  const nodes = [{ name: 'r', opType: 'Relu', inputs: ['input'], outputs: ['output', 'extra'] }];
  await refused(onnxModelBytes(reluModel({ nodes })), /node 'r' \(Relu\) gives 1 outputs; the graph names 2/);
});

test('a graph too deep for tfjs-layers to build (a chain of 6,000 nodes) is refused with one line naming it, not a bare stack overflow', async () => {
  const nodes = Array.from({ length: 6000 }, (_, i) => ({ name: `/Relu_${i}`, opType: 'Relu', inputs: [i === 0 ? 'input' : `v${i - 1}`], outputs: [i === 5999 ? 'output' : `v${i}`] }));
  await refused(onnxModelBytes(reluModel({ nodes })), /the graph is too deep for tfjs-layers to build: 6\d{3} layers/);
});
