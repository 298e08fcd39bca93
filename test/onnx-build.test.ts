/**
 * The ONNX model builder on small graphs written in the test: constant
 * folding, layer names (module paths, node and value names), layouts and
 * shapes, and the refusals that come before any image.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { loadModel } from '../src/model/load.js';
import { describeLayers, resolveLayer } from '../src/executor/layers.js';
import { interpretGraph, laid, toLayout } from '../src/model/onnx/interpret.js';
import { parseOnnxModel } from '../src/model/onnx/parse.js';
import { type TestModel, imageInputValue, onnxModelBytes } from './helpers/onnx.js';

/** x -> /block/block.0/Mul (x * 2) -> /block/block.1/Relu -> /head/Add (+ 1) -> output, all 4-D. */
function scopedModel(): TestModel {
  return {
    nodes: [
      { name: '/block/block.0/Mul', opType: 'Mul', inputs: ['input', 'two'], outputs: ['/block/block.0/Mul_output_0'] },
      { name: '/block/block.1/Relu', opType: 'Relu', inputs: ['/block/block.0/Mul_output_0'], outputs: ['/block/block.1/Relu_output_0'] },
      { name: '/head/Add', opType: 'Add', inputs: ['/block/block.1/Relu_output_0', 'one'], outputs: ['output'] },
    ],
    inputs: [imageInputValue(4)],
    outputs: [{ name: 'output', shape: ['batch', 3, 4, 4] }],
    initializers: [
      { name: 'two', dims: [], values: [2] },
      { name: 'one', dims: [], values: [1] },
    ],
  };
}

async function withModelFile<T>(model: TestModel, run: (path: string) => Promise<T>, fileName = 'm.onnx'): Promise<T> {
  const folder = await mkdtemp(join(tmpdir(), 'camviz-onnx-'));
  try {
    const path = join(folder, fileName);
    await writeFile(path, onnxModelBytes(model));
    return await run(path);
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

test('an ONNX graph runs as a layers model: NHWC in, values as ONNX computes them', async () => {
  await withModelFile(scopedModel(), async (path) => {
    const model = await loadModel(path, { preprocess: 'none' });
    try {
      assert.equal(model.meta.format, 'onnx');
      assert.deepEqual(model.meta.inputSize, { width: 4, height: 4 });
      const network = model.network();
      const input = tf.tensor4d(Array.from({ length: 2 * 4 * 4 * 3 }, (_, i) => i - 40), [2, 4, 4, 3]);
      const relu = resolveLayer(network, 'block', () => true, 'a layer');
      const values = await network.forward(input, { layers: [relu] });
      const expected = tf.add(tf.relu(tf.mul(input, 2)), 1);
      assert.deepEqual(Array.from(values.output.dataSync()), Array.from(expected.dataSync()));
      assert.deepEqual(values.output.shape, [2, 4, 4, 3]);
      tf.dispose([input, expected, values.output, values.scores, values.probabilities, ...values.layers.values()]);
    } finally {
      model.dispose();
    }
  });
});

test('layer names: module paths (their last node), ONNX node names and value names; unknown names get near candidates', async () => {
  await withModelFile(scopedModel(), async (path) => {
    const model = await loadModel(path, { preprocess: 'none' });
    try {
      const network = model.network();
      const layerOf = (name: string): string => resolveLayer(network, name, () => true, 'a layer').layer.name;
      assert.equal(layerOf('block'), 'block/block.1/Relu');
      assert.equal(layerOf('block.1'), 'block/block.1/Relu');
      assert.equal(layerOf('block.0'), 'block/block.0/Mul');
      assert.equal(layerOf('head'), 'head/Add');
      assert.equal(layerOf('/block/block.1/Relu'), 'block/block.1/Relu');
      assert.equal(layerOf('/block/block.0/Mul_output_0'), 'block/block.0/Mul');
      assert.equal(layerOf('output'), 'head/Add');
      assert.throws(() => layerOf('blok'), /layer 'blok' is not in the model; did you mean .*block/);
      // The class a Relu reports is Keras' (guided backpropagation gates it), and feature maps read NHWC.
      const relu = resolveLayer(network, 'block', () => true, 'a layer');
      assert.equal(relu.layer.getClassName(), 'ReLU');
      assert.deepEqual(relu.outputShapes[0], [null, 4, 4, 3]);
      assert.deepEqual(model.onnx?.onnxShapes.get('block/block.1/Relu'), [null, 3, 4, 4]);
    } finally {
      model.dispose();
    }
  });
});

test('an ONNX model is recognised by its content without the .onnx name, and as model.onnx in a folder', async () => {
  await withModelFile(
    scopedModel(),
    async (path) => {
      const model = await loadModel(path, { preprocess: 'none' });
      assert.equal(model.meta.format, 'onnx');
      model.dispose();
      const inFolder = await loadModel(join(path, '..'), { preprocess: 'none' });
      assert.equal(inFolder.meta.format, 'onnx');
      assert.equal(inFolder.meta.preprocess, 'none');
      inFolder.dispose();
    },
    'model.onnx',
  );
  await withModelFile(
    scopedModel(),
    async (path) => {
      const model = await loadModel(path);
      assert.equal(model.meta.format, 'onnx');
      assert.equal(model.meta.preprocess, 'torch', 'ONNX models default to torch preprocessing');
      assert.equal(model.meta.name, 'exported');
      model.dispose();
    },
    'exported',
  );
});

test('nodes that read only constants are folded at load: they are no layers and run once', async () => {
  const model: TestModel = {
    nodes: [
      { name: '/four/Mul', opType: 'Mul', inputs: ['two', 'two'], outputs: ['four'] },
      { name: '/Add', opType: 'Add', inputs: ['input', 'four'], outputs: ['output'] },
    ],
    inputs: [imageInputValue(2)],
    outputs: [{ name: 'output' }],
    initializers: [{ name: 'two', dims: [1], values: [2] }],
  };
  await withModelFile(model, async (path) => {
    const loaded = await loadModel(path, { preprocess: 'none' });
    try {
      const network = loaded.network();
      assert.deepEqual(network.graph.nodes.map((node) => node.layer.name), ['Add']);
      const input = tf.ones([1, 2, 2, 3]);
      const values = await network.forward(input);
      assert.deepEqual(Array.from(values.output.dataSync()), new Array(12).fill(5));
      tf.dispose([input, values.output, values.scores, values.probabilities]);
    } finally {
      loaded.dispose();
    }
  });
});

/** Seeded weights in [-1, 1). */
function seededValues(count: number, seed: number): number[] {
  let state = seed;
  return Array.from({ length: count }, () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 1073741824 - 1;
  });
}

/** conv: 3 -> 4 channels, 3x3, stride 2, asymmetric pads (0, 0, 1, 1), Relu; depthwise: 4 channels x 2, 3x3, pads 1, Clip(0, 6). */
function convModel(): TestModel {
  return {
    nodes: [
      { name: '/conv/Conv', opType: 'Conv', inputs: ['input', 'w1', 'b1'], outputs: ['c1'], attributes: [{ name: 'strides', ints: [2, 2] }, { name: 'pads', ints: [0, 0, 1, 1] }] },
      { name: '/relu/Relu', opType: 'Relu', inputs: ['c1'], outputs: ['r1'] },
      { name: '/dw/Conv', opType: 'Conv', inputs: ['r1', 'w2'], outputs: ['c2'], attributes: [{ name: 'group', i: 4 }, { name: 'pads', ints: [1, 1, 1, 1] }] },
      { name: '/relu6/Clip', opType: 'Clip', inputs: ['c2', 'zero', 'six'], outputs: ['output'] },
    ],
    inputs: [imageInputValue(9)],
    outputs: [{ name: 'output' }],
    initializers: [
      { name: 'w1', dims: [4, 3, 3, 3], values: seededValues(108, 1) },
      { name: 'b1', dims: [4], values: [0.1, -0.2, 0.3, 0] },
      { name: 'w2', dims: [8, 1, 3, 3], values: seededValues(72, 2).map((value) => value * 4) },
      { name: 'zero', dims: [], values: [0] },
      { name: 'six', dims: [], values: [6] },
    ],
  };
}

test('Conv + Relu and depthwise Conv + Clip(0, 6) run as fused kernels with the values of the unfused layers', async () => {
  const model = convModel();
  await withModelFile(model, async (path) => {
    const loaded = await loadModel(path, { preprocess: 'none' });
    try {
      const network = loaded.network();
      assert.deepEqual(network.graph.nodes.map((node) => node.layer.getClassName()), ['Conv2D', 'ReLU', 'DepthwiseConv2D', 'ReLU']);
      assert.equal(network.graph.fusedChains().length, 2);
      const input = tf.tensor4d(seededValues(2 * 9 * 9 * 3, 3).map((value) => value * 3), [2, 9, 9, 3]);
      const fused = await network.forward(input, { fuse: true });
      const unfused = await network.forward(input, { fuse: false });
      assert.deepEqual(fused.output.shape, [2, 4, 4, 8]);
      const difference = tf.max(tf.abs(tf.sub(fused.output, unfused.output))).dataSync()[0]!;
      assert.ok(difference <= 1e-5, `fused and unfused differ by ${difference}`);
      // Clip(0, 6) clips: some values reach 6.
      assert.equal(tf.max(unfused.output).dataSync()[0], 6);
      tf.dispose([input, fused.output, fused.scores, fused.probabilities, unfused.output, unfused.scores, unfused.probabilities]);
    } finally {
      loaded.dispose();
    }
  });
});

/**
 * Zero Pads before convolutions, as TF exports write "same" padding: Pad
 * (H 1+1, W 0+2) -> Conv 3 -> 4, 3x3 -> Relu -> Pad (bottom/right 1, TF's
 * "same" at stride 2 on 8x8) -> depthwise Conv 3x3 stride 2 -> Relu. A
 * test may give the second Pad other pads or another value.
 */
function padConvModel(secondPad: { pads: number[]; value: number } = { pads: [0, 0, 0, 0, 0, 0, 1, 1], value: 0 }): TestModel {
  return {
    nodes: [
      { name: '/pad1/Pad', opType: 'Pad', inputs: ['input', 'pads1'], outputs: ['p1'] },
      { name: '/conv/Conv', opType: 'Conv', inputs: ['p1', 'w1', 'b1'], outputs: ['c1'] },
      { name: '/relu/Relu', opType: 'Relu', inputs: ['c1'], outputs: ['r1'] },
      { name: '/pad2/Pad', opType: 'Pad', inputs: ['r1', 'pads2', 'value2'], outputs: ['p2'], attributes: [{ name: 'mode', s: 'constant' }] },
      { name: '/dw/Conv', opType: 'Conv', inputs: ['p2', 'w2', 'b2'], outputs: ['c2'], attributes: [{ name: 'group', i: 4 }, { name: 'strides', ints: [2, 2] }, { name: 'pads', ints: [0, 0, 0, 0] }] },
      { name: '/relu2/Relu', opType: 'Relu', inputs: ['c2'], outputs: ['output'] },
    ],
    inputs: [imageInputValue(8)],
    outputs: [{ name: 'output' }],
    initializers: [
      { name: 'pads1', dims: [8], dataType: 7, values: [0, 0, 1, 0, 0, 0, 1, 2] },
      { name: 'w1', dims: [4, 3, 3, 3], values: seededValues(108, 4) },
      { name: 'b1', dims: [4], values: [0.5, -0.1, 0.2, 0.3] },
      { name: 'pads2', dims: [8], dataType: 7, values: secondPad.pads },
      { name: 'value2', dims: [], values: [secondPad.value] },
      { name: 'w2', dims: [4, 1, 3, 3], values: seededValues(36, 5) },
      { name: 'b2', dims: [4], values: [-0.2, 0.1, 0, 0.4] },
    ],
  };
}

/** The model's output for `input` (NHWC) as the ONNX interpreter computes it, node by node. */
function interpretedOutput(model: TestModel, input: tf.Tensor): tf.Tensor {
  const parsed = parseOnnxModel(onnxModelBytes(model), 'm.onnx');
  const values = interpretGraph(parsed, new Map([['input', laid(input, 'nhwc')]]), ['output']);
  const output = values.get('output')!;
  const nhwc = toLayout(output, 'nhwc');
  if (nhwc !== output.tensor) output.tensor.dispose();
  return nhwc;
}

test('a zero Pad before a Conv folds into it: no Pad layer, fused kernels, the values of the unfolded graph; its names resolve to the Conv', async () => {
  const model = padConvModel();
  await withModelFile(model, async (path) => {
    const loaded = await loadModel(path, { preprocess: 'none' });
    try {
      const network = loaded.network();
      assert.deepEqual(network.graph.nodes.map((node) => node.layer.getClassName()), ['Conv2D', 'ReLU', 'DepthwiseConv2D', 'ReLU']);
      assert.deepEqual(network.graph.fusedChains().map((chain) => chain.nodes.map((node) => node.layer.getClassName())), [['Conv2D', 'ReLU'], ['DepthwiseConv2D', 'ReLU']]);
      for (const [name, layer] of [['/pad1/Pad', 'conv/Conv'], ['p1', 'conv/Conv'], ['/pad2/Pad', 'dw/Conv'], ['p2', 'dw/Conv']]) {
        assert.equal(resolveLayer(network, name!, () => true, 'a layer').layer.name, layer, name);
      }
      const input = tf.tensor4d(seededValues(2 * 8 * 8 * 3, 6).map((value) => value * 2), [2, 8, 8, 3]);
      const expected = interpretedOutput(model, input);
      for (const fuse of [true, false]) {
        const values = await network.forward(input, { fuse });
        assert.deepEqual(values.output.shape, [2, 4, 4, 4]);
        const difference = tf.max(tf.abs(tf.sub(values.output, expected))).dataSync()[0]!;
        assert.ok(difference <= 1e-5, `fuse ${fuse}: folded and interpreted differ by ${difference}`);
        tf.dispose([values.output, values.scores, values.probabilities]);
      }
      // Not vacuous: the Relu leaves values to compare.
      assert.ok(tf.max(expected).dataSync()[0]! > 0);
      tf.dispose([input, expected]);
    } finally {
      loaded.dispose();
    }
  });
});

test('a Pad that pads with a non-zero value, or a depthwise Conv with other than TF "same" padding, keeps its Pad layer, with the values of the graph', async () => {
  for (const secondPad of [{ pads: [0, 0, 0, 0, 0, 0, 1, 1], value: 0.5 }, { pads: [0, 0, 1, 1, 0, 0, 0, 0], value: 0 }]) {
    const model = padConvModel(secondPad);
    await withModelFile(model, async (path) => {
      const loaded = await loadModel(path, { preprocess: 'none' });
      try {
        const network = loaded.network();
        assert.deepEqual(network.graph.nodes.map((node) => node.layer.getClassName()), ['Conv2D', 'ReLU', 'Pad', 'DepthwiseConv2D', 'ReLU'], JSON.stringify(secondPad));
        const input = tf.tensor4d(seededValues(8 * 8 * 3, 7), [1, 8, 8, 3]);
        const expected = interpretedOutput(model, input);
        const values = await network.forward(input);
        const difference = tf.max(tf.abs(tf.sub(values.output, expected))).dataSync()[0]!;
        assert.ok(difference <= 1e-5, `${JSON.stringify(secondPad)}: built and interpreted differ by ${difference}`);
        tf.dispose([input, expected, values.output, values.scores, values.probabilities]);
      } finally {
        loaded.dispose();
      }
    });
  }
});

test('an http(s) URL of a .onnx is downloaded once into the cache with its camviz.json; a body that is not ONNX is refused and not cached', async () => {
  const folder = await mkdtemp(join(tmpdir(), 'camviz-onnx-url-'));
  const files = new Map<string, Uint8Array>([
    ['/m/net.onnx', onnxModelBytes(scopedModel())],
    ['/m/camviz.json', new TextEncoder().encode(JSON.stringify({ preprocess: 'unit', name: 'served' }))],
    ['/bad/net.onnx', new TextEncoder().encode('<html>not found</html>')],
  ]);
  let requests = 0;
  const server = createServer((request, response) => {
    requests++;
    const body = files.get(request.url ?? '');
    response.writeHead(body === undefined ? 404 : 200).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const savedCache = process.env['CAMVIZ_CACHE'];
  process.env['CAMVIZ_CACHE'] = join(folder, 'cache');
  try {
    const model = await loadModel(`${base}/m/net.onnx`);
    assert.equal(model.meta.format, 'onnx');
    assert.equal(model.meta.preprocess, 'unit');
    assert.equal(model.meta.name, 'served');
    model.dispose();
    const before = requests;
    (await loadModel(`${base}/m/net.onnx`)).dispose();
    assert.equal(requests, before, 'the second load reads the cache');
    await assert.rejects(loadModel(`${base}/bad/net.onnx`), (error: Error) => {
      assert.match(error.message, /not a valid ONNX file/);
      assert.equal((error as { file?: string }).file, `${base}/bad/net.onnx`);
      return true;
    });
    assert.deepEqual((await readdir(join(folder, 'cache', 'url'))).length, 1, 'only the good model is cached');
  } finally {
    if (savedCache === undefined) delete process.env['CAMVIZ_CACHE'];
    else process.env['CAMVIZ_CACHE'] = savedCache;
    server.close();
    await rm(folder, { recursive: true, force: true });
  }
});

test('a graph that takes one channel reads the mean of the RGB channels camviz feeds', async () => {
  const model: TestModel = {
    nodes: [{ name: '/Relu', opType: 'Relu', inputs: ['input'], outputs: ['output'] }],
    inputs: [imageInputValue(2, 1)],
    outputs: [{ name: 'output' }],
  };
  await withModelFile(model, async (path) => {
    const loaded = await loadModel(path, { preprocess: 'none' });
    try {
      const input = tf.tensor4d([3, 0, 0, -3, 0, 0, 1, 2, 3, 6, 6, -6], [1, 2, 2, 3]);
      const values = await loaded.network().forward(input);
      assert.deepEqual(values.output.shape, [1, 2, 2, 1]);
      assert.deepEqual(Array.from(values.output.dataSync()), [1, 0, 2, 2]);
      tf.dispose([input, values.output, values.scores, values.probabilities]);
    } finally {
      loaded.dispose();
    }
  });
});

test('no tensor outlives the model: load, forward, backward and dispose leave the tensor count as it was', async () => {
  await withModelFile(convModel(), async (path) => {
    const before = tf.memory().numTensors;
    const loaded = await loadModel(path, { preprocess: 'none' });
    const network = loaded.network();
    const input = tf.ones([2, 9, 9, 3]);
    for (const fuse of [true, false]) {
      const values = await network.forward(input, { fuse });
      tf.dispose([values.output, values.scores, values.probabilities]);
    }
    const [conv] = network.graph.nodes;
    const result = await network.backward(input, [(values) => tf.sum(values.scores) as tf.Scalar], { sources: [conv!] });
    tf.dispose([result.values.output, result.values.scores, result.values.probabilities, ...result.gradients.flat()]);
    input.dispose();
    loaded.dispose();
    assert.equal(tf.memory().numTensors, before);
  });
});

/** conv 3 -> 4 channels, 3x3, pads 1 -> Clip(0, mean of the conv's output): an upper bound computed at run time. */
function runtimeClipModel(): TestModel {
  return {
    nodes: [
      { name: '/conv/Conv', opType: 'Conv', inputs: ['input', 'w1', 'b1'], outputs: ['c1'], attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }] },
      { name: '/bound/ReduceMean', opType: 'ReduceMean', inputs: ['c1'], outputs: ['bound'], attributes: [{ name: 'keepdims', i: 0 }] },
      { name: '/clip/Clip', opType: 'Clip', inputs: ['c1', 'zero', 'bound'], outputs: ['output'] },
    ],
    inputs: [imageInputValue(6)],
    outputs: [{ name: 'output' }],
    initializers: [
      { name: 'w1', dims: [4, 3, 3, 3], values: seededValues(108, 5) },
      { name: 'b1', dims: [4], values: [0.5, -0.2, 0.3, 0.1] },
      { name: 'zero', dims: [], values: [0] },
    ],
  };
}

test('a Clip from 0 whose upper bound is computed at run time is no plain ReLU: not fused as one, and it clips', async () => {
  await withModelFile(runtimeClipModel(), async (path) => {
    const loaded = await loadModel(path, { preprocess: 'none' });
    try {
      const network = loaded.network();
      const clip = network.graph.nodes.find((node) => node.layer.getClassName() === 'ReLU');
      assert.ok(clip !== undefined, 'the Clip from 0 is a ReLU-like layer');
      assert.ok(Number.isNaN((clip.layer as unknown as { maxValue?: number }).maxValue), 'its bound is there, unknown');
      assert.equal(network.graph.fusedChains().length, 0, 'the Conv does not fuse it as a plain relu');
      const input = tf.tensor4d(seededValues(6 * 6 * 3, 6).map((value) => value * 3), [1, 6, 6, 3]);
      const conv = await network.forward(input, { layers: [network.graph.nodes.find((node) => node.layer.getClassName() === 'Conv2D')!] });
      const fused = await network.forward(input, { fuse: true });
      const bound = tf.mean(conv.layers.values().next().value!).dataSync()[0]!;
      const top = tf.max(fused.output).dataSync()[0]!;
      assert.ok(Math.abs(top - bound) <= 1e-5 && top < tf.max(conv.layers.values().next().value!).dataSync()[0]!, `clipped at ${top}, the bound ${bound}`);
      tf.dispose([input, ...Object.values(fused).filter((value) => value instanceof tf.Tensor), ...conv.layers.values()]);
    } finally {
      loaded.dispose();
    }
  });
});

test("camviz layers counts a Conv's weights and bias as parameters, and no Clip bound or Pad fill value (settings, as PyTorch counts none for ReLU6 or F.pad)", async () => {
  const folder = await mkdtemp(join(tmpdir(), 'camviz-onnx-params-'));
  try {
    const path = join(folder, 'params.onnx');
    const model: TestModel = {
      nodes: [
        { name: '/pad', opType: 'Pad', inputs: ['input', 'pads', 'fill'], outputs: ['padded'], attributes: [{ name: 'mode', s: 'constant' }] },
        { name: '/conv', opType: 'Conv', inputs: ['padded', 'w', 'b'], outputs: ['conv'], attributes: [{ name: 'kernel_shape', ints: [3, 3] }] },
        { name: '/clip', opType: 'Clip', inputs: ['conv', 'low', 'high'], outputs: ['output'] },
      ],
      initializers: [
        { name: 'pads', dims: [8], dataType: 7, values: [0, 0, 1, 1, 0, 0, 1, 1] },
        { name: 'fill', dims: [], values: [0.5] },
        { name: 'w', dims: [4, 3, 3, 3], values: Array.from({ length: 108 }, (_, i) => (i % 7) / 7 - 0.4) },
        { name: 'b', dims: [4], values: [0.1, -0.2, 0.3, 0] },
        { name: 'low', dims: [], values: [0] },
        { name: 'high', dims: [], values: [6] },
      ],
      inputs: [imageInputValue(8)],
      outputs: [{ name: 'output' }],
    };
    await writeFile(path, onnxModelBytes(model));
    const loaded = await loadModel(path, { preprocess: 'none' });
    try {
      const rows = describeLayers(loaded.network(), loaded.meta);
      const params = Object.fromEntries(rows.map((row) => [row.name, row.params]));
      assert.deepEqual(params, { pad: 0, conv: 4 * 3 * 3 * 3 + 4, clip: 0 });
    } finally {
      loaded.dispose();
    }
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});
