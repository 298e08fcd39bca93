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
import * as tf from '@tensorflow/tfjs-core';
import { loadModel } from '../src/model/load.js';
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
async function refused(bytes: Uint8Array, expected: RegExp, code = 1, timeoutMs = 60_000): Promise<void> {
  const folder = await mkdtemp(join(tmpdir(), 'camviz-onnx-bad-'));
  try {
    const modelPath = join(folder, 'bad.onnx');
    await writeFile(modelPath, bytes);
    const out = join(folder, 'out');
    const run = await runCli(['fmap', image, '--model', modelPath, '--out', out], { cwd: folder, env: cliEnv(join(folder, 'cache')), timeoutMs });
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

test("a graph whose only input has an initializer of its name (a weight with a default) says there is no input to feed", async () => {
  const shadow = { name: 'input', dims: [1, 3, 8, 8], values: Array.from({ length: 192 }, () => 0.5) };
  await refused(onnxModelBytes(reluModel({ initializers: [shadow] })), /the graph takes no input to feed \(an input with an initializer of its name is a weight\)/);
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

/** ONNX INT64 (7): shapes, repeats and pads as exporters write them. */
const INT64 = 7;

/** input -> Relu -> output, with `extra` nodes beside it (reading the input or constants) whose values the load pass computes. */
function withExtraNodes(extra: TestModel['nodes'], initializers: TestModel['initializers']): TestModel {
  return reluModel({ nodes: [{ name: '/Relu', opType: 'Relu', inputs: ['input'], outputs: ['output'] }, ...extra], initializers });
}

// Each asks for one value beyond the 2 GiB per tensor that initializers may declare; before any allocation it is refused in one line.
const HUGE_VALUES: { what: string; model: TestModel; expected: RegExp }[] = [
  {
    what: 'an Expand of image data',
    model: withExtraNodes([{ name: '/expand/Expand', opType: 'Expand', inputs: ['input', 'shape'], outputs: ['big'] }], [{ name: 'shape', dims: [4], dataType: INT64, values: [3000000, 3, 8, 8] }]),
    expected: /node '\/expand\/Expand' \(Expand\) would make a tensor of 3000000x3x8x8 = 2\.15 GiB, above the limit of 2 GiB per tensor/,
  },
  {
    what: 'a Tile of image data',
    model: withExtraNodes([{ name: '/tile/Tile', opType: 'Tile', inputs: ['input', 'repeats'], outputs: ['big'] }], [{ name: 'repeats', dims: [4], dataType: INT64, values: [1, 1, 30000, 30000] }]),
    expected: /node '\/tile\/Tile' \(Tile\) would make a tensor of 1x3x240000x240000 = 644 GiB, above the limit of 2 GiB per tensor/,
  },
  {
    what: 'a ConstantOfShape',
    model: withExtraNodes([{ name: '/fill', opType: 'ConstantOfShape', inputs: ['shape'], outputs: ['big'] }], [{ name: 'shape', dims: [3], dataType: INT64, values: [100000, 100000, 100] }]),
    expected: /node '\/fill' \(ConstantOfShape\) would make a tensor of 100000x100000x100 = 3\.64 TiB/,
  },
  {
    what: 'a Range',
    model: withExtraNodes(
      [{ name: '/range', opType: 'Range', inputs: ['start', 'limit', 'delta'], outputs: ['big'] }],
      [
        { name: 'start', dims: [], values: [0] },
        { name: 'limit', dims: [], values: [1e12] },
        { name: 'delta', dims: [], values: [1] },
      ],
    ),
    expected: /node '\/range' \(Range\) would make a tensor of \d+ = 3\.64 TiB/,
  },
  {
    what: 'a Conv with huge pads (a stand-in in the load pass)',
    model: withExtraNodes(
      [{ name: '/conv', opType: 'Conv', inputs: ['input', 'w'], outputs: ['big'], attributes: [{ name: 'pads', ints: [40000, 40000, 40000, 40000] }] }],
      [{ name: 'w', dims: [1, 3, 1, 1], values: [1, 1, 1] }],
    ),
    expected: /node '\/conv' \(Conv\) would make a tensor of 1x1x80008x80008 = 23\.8 GiB/,
  },
  {
    what: 'a Pad of image data',
    model: withExtraNodes([{ name: '/pad', opType: 'Pad', inputs: ['input', 'pads'], outputs: ['big'] }], [{ name: 'pads', dims: [8], dataType: INT64, values: [0, 0, 50000, 50000, 0, 0, 50000, 50000] }]),
    expected: /node '\/pad' \(Pad\) would make a tensor of 1x3x100008x100008 = 112 GiB/,
  },
  {
    what: 'a MatMul of two small constants (folded at load)',
    model: withExtraNodes(
      [{ name: '/outer', opType: 'MatMul', inputs: ['column', 'row'], outputs: ['big'] }],
      [
        { name: 'column', dims: [40000, 1], raw: new Uint8Array(160000) },
        { name: 'row', dims: [1, 40000], raw: new Uint8Array(160000) },
      ],
    ),
    expected: /node '\/outer' \(MatMul\) would make a tensor of 40000x40000 = 5\.96 GiB/,
  },
  {
    what: 'an Add broadcasting two small constants',
    model: withExtraNodes(
      [{ name: '/outer_sum', opType: 'Add', inputs: ['column', 'row'], outputs: ['big'] }],
      [
        { name: 'column', dims: [40000, 1], raw: new Uint8Array(160000) },
        { name: 'row', dims: [1, 40000], raw: new Uint8Array(160000) },
      ],
    ),
    expected: /node '\/outer_sum' \(Add\) would make a tensor of 40000x40000 = 5\.96 GiB/,
  },
  {
    what: 'a Gather of many indices',
    model: withExtraNodes(
      [{ name: '/gather', opType: 'Gather', inputs: ['rows', 'indices'], outputs: ['big'] }],
      [
        { name: 'rows', dims: [2, 300000], raw: new Uint8Array(2 * 300000 * 4) },
        { name: 'indices', dims: [2000], dataType: INT64, raw: new Uint8Array(2000 * 8) },
      ],
    ),
    expected: /node '\/gather' \(Gather\) would make a tensor of 2000x300000 = 2\.24 GiB/,
  },
];

for (const { what, model, expected } of HUGE_VALUES) {
  test(`a value beyond the per-tensor limit, from ${what}, is refused at load in one line naming the node`, async () => {
    await refused(onnxModelBytes(model), expected);
  });
}

test('a huge value is refused in bounded memory, before the load pass allocates it', async () => {
  const folder = await mkdtemp(join(tmpdir(), 'camviz-onnx-bad-'));
  try {
    const path = join(folder, 'expand.onnx');
    await writeFile(path, onnxModelBytes(HUGE_VALUES[0]!.model));
    const peakBefore = process.resourceUsage().maxRSS;
    await assert.rejects(loadModel(path, { preprocess: 'none' }), HUGE_VALUES[0]!.expected);
    // The value alone would be 2.3 GB; the load pass of this tiny graph needs a few MB.
    const grownKiB = process.resourceUsage().maxRSS - peakBefore;
    assert.ok(grownKiB < 256 * 1024, `peak RSS grew by ${Math.round(grownKiB / 1024)} MiB`);
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});

test('Expand, Tile, ConstantOfShape, Range, Pad and Gather of ordinary sizes still load and run, with the values ONNX gives', async () => {
  // output = Tile(input, [1, 1, 2, 2]) + Expand(ConstantOfShape([1, 3, 1, 1], 0.5) + Reshape(Range(0, 3, 1), [1, 3, 1, 1]), [1, 3, 16, 16]),
  // then padded by one row at the bottom and gathered back to its first 16 rows.
  const nodes: TestModel['nodes'] = [
    { name: '/tile', opType: 'Tile', inputs: ['input', 'repeats'], outputs: ['tiled'] },
    { name: '/fill', opType: 'ConstantOfShape', inputs: ['fillShape'], outputs: ['half'], attributes: [{ name: 'value', t: { name: 'v', dims: [1], values: [0.5] } }] },
    { name: '/range', opType: 'Range', inputs: ['start', 'limit', 'delta'], outputs: ['steps'] },
    { name: '/reshape', opType: 'Reshape', inputs: ['steps', 'fillShape'], outputs: ['steps4'] },
    { name: '/offsets', opType: 'Add', inputs: ['half', 'steps4'], outputs: ['offsets'] },
    { name: '/expand', opType: 'Expand', inputs: ['offsets', 'bigShape'], outputs: ['grown'] },
    { name: '/add', opType: 'Add', inputs: ['tiled', 'grown'], outputs: ['sum'] },
    { name: '/pad', opType: 'Pad', inputs: ['sum', 'pads'], outputs: ['padded'] },
    { name: '/gather', opType: 'Gather', inputs: ['padded', 'rows'], outputs: ['output'], attributes: [{ name: 'axis', i: 2 }] },
  ];
  const initializers: TestModel['initializers'] = [
    { name: 'repeats', dims: [4], dataType: INT64, values: [1, 1, 2, 2] },
    { name: 'fillShape', dims: [4], dataType: INT64, values: [1, 3, 1, 1] },
    { name: 'start', dims: [], values: [0] },
    { name: 'limit', dims: [], values: [3] },
    { name: 'delta', dims: [], values: [1] },
    { name: 'bigShape', dims: [4], dataType: INT64, values: [1, 3, 16, 16] },
    { name: 'pads', dims: [8], dataType: INT64, values: [0, 0, 0, 0, 0, 0, 1, 0] },
    { name: 'rows', dims: [16], dataType: INT64, values: Array.from({ length: 16 }, (_, i) => i) },
  ];
  const folder = await mkdtemp(join(tmpdir(), 'camviz-onnx-ok-'));
  try {
    const path = join(folder, 'small.onnx');
    await writeFile(path, onnxModelBytes(reluModel({ nodes, initializers, inputs: [imageInputValue(8)] })));
    const model = await loadModel(path, { preprocess: 'none' });
    try {
      const input = tf.tensor4d(Array.from({ length: 8 * 8 * 3 }, (_, i) => i), [1, 8, 8, 3]);
      const values = await model.network().forward(input, { layers: [] });
      const nchw = tf.transpose(input, [0, 3, 1, 2]);
      const expected = tf.add(tf.tile(nchw, [1, 1, 2, 2]), tf.reshape(tf.tensor1d([0.5, 1.5, 2.5]), [1, 3, 1, 1]));
      // A 4-D image value is stored NHWC whatever op made it (the CAM methods, hooks and targets read it so).
      const expectedNhwc = tf.transpose(expected, [0, 2, 3, 1]);
      assert.deepEqual(values.output.shape, [1, 16, 16, 3]);
      assert.deepEqual(Array.from(values.output.dataSync()), Array.from(expectedNhwc.dataSync()));
      tf.dispose([input, nchw, expected, expectedNhwc, values.output, values.scores, values.probabilities, ...values.layers.values()]);
    } finally {
      model.dispose();
    }
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});
