/**
 * LayerGraph, fusion and Network on graph shapes that a plain chain does not
 * have: residual Adds, a Concatenate, a layer called twice, a model nested as
 * a layer. Every expectation comes from an independent computation:
 * `model.predict`, or the same layer objects applied by hand to concrete
 * tensors in a topology written out in this file, differentiated with
 * `tf.grad`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {
  backward,
  disposeValues,
  forward,
  registerForwardHook,
  registerFullBackwardHook,
  registerGradientHook,
} from '../src/index.js';
import { LayerGraph } from '../src/executor/graph.js';
import { Network } from '../src/executor/network.js';
import { forEachBackend } from './helpers/backends.js';
import { CONV_GRADIENT_KERNELS, allLayers, assertUnchanged, missingGradientKernels, randomizeWeights, snapshotLayer } from './helpers/layers.js';

type Layer = tfl.layers.Layer;
type Sym = tfl.SymbolicTensor;

// ---------------------------------------------------------------- helpers

/** max |actual - expected| / max |expected|. */
function relativeError(actual: tf.Tensor, expected: tf.Tensor): number {
  assert.deepEqual(actual.shape, expected.shape, 'shapes differ');
  const a = actual.dataSync();
  const e = expected.dataSync();
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < e.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - e[i]!));
    scale = Math.max(scale, Math.abs(e[i]!));
  }
  assert.ok(scale > 0, 'expected tensor is all zeros: the comparison would prove nothing');
  return diff / scale;
}

function assertClose(actual: tf.Tensor, expected: tf.Tensor, tolerance: number, what: string): void {
  const error = relativeError(actual, expected);
  assert.ok(error <= tolerance, `${what}: relative error ${error.toExponential(2)} > ${tolerance}`);
}


// ---------------------------------------------------------------- the graph-shape model

/**
 * stem (conv, bn, relu) -> block (conv, bn, relu6, conv2) + skip -> add -> relu
 * -> shared 1x1 conv applied to the block output AND to the stem output
 * -> concatenate -> nested model `inner` (conv, leaky relu) -> add with the
 * first shared call -> global average pool -> dense logits.
 */
interface GraphModel {
  model: tfl.LayersModel;
  inner: tfl.LayersModel;
  layer: Record<string, Layer>;
}

function graphModel(): GraphModel {
  const layer: Record<string, Layer> = {
    stem: tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'stem' }),
    stem_bn: tfl.layers.batchNormalization({ name: 'stem_bn' }),
    stem_relu: tfl.layers.reLU({ name: 'stem_relu' }),
    block_conv1: tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', useBias: false, name: 'block_conv1' }),
    block_bn1: tfl.layers.batchNormalization({ name: 'block_bn1' }),
    block_relu1: tfl.layers.reLU({ maxValue: 6, name: 'block_relu1' }),
    block_conv2: tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'block_conv2' }),
    block_add: tfl.layers.add({ name: 'block_add' }),
    block_out: tfl.layers.reLU({ name: 'block_out' }),
    shared: tfl.layers.conv2d({ filters: 4, kernelSize: 1, name: 'shared' }),
    cat: tfl.layers.concatenate({ name: 'cat' }),
    add2: tfl.layers.add({ name: 'add2' }),
    gap: tfl.layers.globalAveragePooling2d({ name: 'gap' }),
    logits: tfl.layers.dense({ units: 5, name: 'logits' }),
    inner_conv: tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'conv' }),
    inner_leaky: tfl.layers.leakyReLU({ alpha: 0.2, name: 'leaky' }),
  };
  const innerInput = tfl.input({ shape: [6, 6, 8], name: 'inner_in' });
  const inner = tfl.model({
    inputs: innerInput,
    outputs: layer['inner_leaky']!.apply(layer['inner_conv']!.apply(innerInput)) as Sym,
    name: 'inner',
  });
  const input = tfl.input({ shape: [6, 6, 3], name: 'image' });
  const L = (name: string, x: Sym | Sym[]): Sym => layer[name]!.apply(x) as Sym;
  const stem = L('stem_relu', L('stem_bn', L('stem', input)));
  const conv2 = L('block_conv2', L('block_relu1', L('block_bn1', L('block_conv1', stem))));
  const block = L('block_out', L('block_add', [conv2, stem]));
  const sharedA = L('shared', block);
  const sharedB = L('shared', stem);
  const nested = inner.apply(L('cat', [sharedA, sharedB])) as Sym;
  const logits = L('logits', L('gap', L('add2', [nested, sharedA])));
  const model = tfl.model({ inputs: input, outputs: logits, name: 'graph_shapes' });
  randomizeWeights(model, 11, 0.4);
  return { model, inner, layer };
}

/**
 * The graph model evaluated by hand, layer by layer on concrete tensors.
 * `replace` substitutes the output of block_conv2, inner/conv or the nested
 * model (to differentiate with respect to it).
 */
function graphByHand(
  g: GraphModel,
  x: tf.Tensor,
  replace: { conv2?: tf.Tensor; innerConv?: tf.Tensor; nested?: tf.Tensor } = {},
): { logits: tf.Tensor; conv2: tf.Tensor; innerConv: tf.Tensor; nested: tf.Tensor; sharedA: tf.Tensor; sharedB: tf.Tensor } {
  const L = (name: string, value: tf.Tensor | tf.Tensor[]): tf.Tensor => g.layer[name]!.apply(value) as tf.Tensor;
  const stem = L('stem_relu', L('stem_bn', L('stem', x)));
  const conv2 = replace.conv2 ?? L('block_conv2', L('block_relu1', L('block_bn1', L('block_conv1', stem))));
  const block = L('block_out', L('block_add', [conv2, stem]));
  const sharedA = L('shared', block);
  const sharedB = L('shared', stem);
  const innerConv = replace.innerConv ?? L('inner_conv', L('cat', [sharedA, sharedB]));
  const nested = replace.nested ?? L('inner_leaky', innerConv);
  const logits = L('logits', L('gap', L('add2', [nested, sharedA])));
  return { logits, conv2, innerConv, nested, sharedA, sharedB };
}

// ---------------------------------------------------------------- the fusion model

/**
 * Every fusable chain kind in sequence (strides, paddings and a depth
 * multiplier of 2 included), each followed by a layer that is not part of a
 * chain so that the chains stay separate.
 */
function fusionModel(): { model: tfl.LayersModel; bn: Layer; expectedChains: number } {
  const input = tfl.input({ shape: [11, 11, 3], name: 'image' });
  let x: Sym = input;
  const apply = (l: Layer): void => {
    x = l.apply(x) as Sym;
  };
  const firstBn = tfl.layers.batchNormalization({ name: 'bn_a' });
  // Conv -> BN -> ReLU
  apply(tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', useBias: false, name: 'conv_a' }));
  apply(firstBn);
  apply(tfl.layers.reLU({ name: 'relu_a' }));
  // Conv (stride 2, valid) -> BN -> Activation('relu6')
  apply(tfl.layers.conv2d({ filters: 6, kernelSize: 3, strides: 2, padding: 'valid', useBias: false, name: 'conv_b' }));
  apply(tfl.layers.batchNormalization({ name: 'bn_b' }));
  apply(tfl.layers.activation({ activation: 'relu6', name: 'relu6_b' }));
  // DepthwiseConv -> BN -> ReLU(maxValue 6)
  apply(tfl.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', useBias: false, name: 'dw_c' }));
  apply(tfl.layers.batchNormalization({ name: 'bn_c' }));
  apply(tfl.layers.reLU({ maxValue: 6, name: 'relu6_c' }));
  // Conv -> BN -> LeakyReLU
  apply(tfl.layers.conv2d({ filters: 5, kernelSize: 1, useBias: false, name: 'conv_d' }));
  apply(tfl.layers.batchNormalization({ name: 'bn_d' }));
  apply(tfl.layers.leakyReLU({ alpha: 0.15, name: 'leaky_d' }));
  // Conv with bias -> BN (no activation)
  apply(tfl.layers.conv2d({ filters: 5, kernelSize: 3, padding: 'same', useBias: true, name: 'conv_e' }));
  apply(tfl.layers.batchNormalization({ name: 'bn_e' }));
  apply(tfl.layers.maxPooling2d({ poolSize: 1, name: 'pool_e' }));
  // DepthwiseConv with depth multiplier 2, stride 2, bias -> BN -> ReLU
  apply(tfl.layers.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, strides: 2, padding: 'same', useBias: true, name: 'dw_f' }));
  apply(tfl.layers.batchNormalization({ name: 'bn_f' }));
  apply(tfl.layers.reLU({ name: 'relu_f' }));
  apply(tfl.layers.globalAveragePooling2d({ name: 'gap' }));
  apply(tfl.layers.dense({ units: 3, name: 'logits' }));
  const model = tfl.model({ inputs: input, outputs: x, name: 'fusion' });
  randomizeWeights(model, 101, 0.4);
  return { model, bn: firstBn, expectedChains: 6 };
}

/** Runs the whole graph; returns the single output. */
function runGraph(graph: LayerGraph, x: tf.Tensor, fuse: boolean): tf.Tensor {
  const result = graph.run(new Map([[graph.inputKeys[0]!, x]]), graph.outputKeys, { fuse });
  return result.get(graph.outputKeys[0]!)!;
}

/** The kernels a function runs, one entry per kernel call (tf.profile sees every kernel). */
async function kernelsRun(fn: () => tf.Tensor): Promise<string[]> {
  let output: tf.Tensor | undefined;
  const info = await tf.profile(() => {
    output = fn();
    return output;
  });
  output?.dispose();
  return info.kernels.map((kernel) => kernel.name);
}

const count = (items: readonly string[], name: string): number => items.filter((item) => item === name).length;

// ---------------------------------------------------------------- tests

forEachBackend((backend) => {
  test(`graph on ${backend}: LayerGraph.run equals model.predict (residuals, concat, shared layer, nested model)`, () => {
    const g = graphModel();
    const x = tf.randomNormal([2, 6, 6, 3], 0, 1, 'float32', 1);
    const expected = g.model.predict(x) as tf.Tensor;
    const graph = LayerGraph.fromModel(g.model);
    assert.deepEqual(
      graph.nodes.map((node) => node.path).sort(),
      ['stem', 'stem_bn', 'stem_relu', 'block_conv1', 'block_bn1', 'block_relu1', 'block_conv2', 'block_add', 'block_out', 'shared', 'shared', 'cat', 'inner/conv', 'inner/leaky', 'add2', 'gap', 'logits'].sort(),
      'every layer call is a node',
    );
    for (const fuse of [false, true]) {
      const output = runGraph(graph, x, fuse);
      assertClose(output, expected, fuse ? 1e-4 : 1e-6, `run (fuse ${fuse}) vs predict`);
      output.dispose();
    }
    // By hand, without tfjs-layers' executor.
    const byHand = tf.tidy(() => graphByHand(g, x).logits);
    assertClose(byHand, expected, 1e-6, 'by hand vs predict');
    graph.dispose();
    tf.dispose([x, expected, byHand]);
  });

  test(`graph on ${backend}: a shared layer's hook fires once per call, with each call's output`, async () => {
    const g = graphModel();
    const x = tf.randomNormal([1, 6, 6, 3], 0, 1, 'float32', 2);
    const reference = tf.tidy(() => {
      const byHand = graphByHand(g, x);
      return [byHand.sharedA, byHand.sharedB];
    });
    const seen: tf.Tensor[] = [];
    const handle = registerForwardHook(g.layer['shared']!, (_layer, _inputs, output) => {
      seen.push(tf.keep((output as tf.Tensor).clone()));
    });
    const runs: [string, () => void | Promise<void>][] = [
      ['predict', () => tf.dispose(g.model.predict(x) as tf.Tensor)],
      ['LayerGraph.run', () => tf.dispose(runGraph(LayerGraph.fromModel(g.model), x, true))],
      ['forward()', async () => disposeValues(await forward(g.model, x))],
    ];
    for (const [name, run] of runs) {
      seen.length = 0;
      await run();
      assert.equal(seen.length, 2, `${name}: the shared layer's hook fires once per call`);
      assertClose(seen[0]!, reference[0]!, 1e-5, `${name}: first call`);
      assertClose(seen[1]!, reference[1]!, 1e-5, `${name}: second call`);
      tf.dispose(seen);
    }
    handle.remove();
    tf.dispose([x, ...reference]);
  });

  test(`graph on ${backend}: hooks inside and on a nested model fire; Network finds 'inner/conv'`, async () => {
    const g = graphModel();
    const x = tf.randomNormal([1, 6, 6, 3], 0, 1, 'float32', 3);
    const reference = tf.tidy(() => graphByHand(g, x).innerConv);
    const fired = new Map<string, number>();
    const captured: tf.Tensor[] = [];
    const handles = [
      registerForwardHook(g.layer['inner_conv']!, (_layer, _inputs, output) => {
        fired.set('inner/conv', (fired.get('inner/conv') ?? 0) + 1);
        captured.push(tf.keep((output as tf.Tensor).clone()));
      }),
      registerForwardHook(g.inner, () => {
        fired.set('inner', (fired.get('inner') ?? 0) + 1);
      }),
    ];
    const runs: [string, () => void | Promise<void>][] = [
      ['predict', () => tf.dispose(g.model.predict(x) as tf.Tensor)],
      ['LayerGraph.run unfused', () => tf.dispose(runGraph(LayerGraph.fromModel(g.model), x, false))],
      ['LayerGraph.run fused', () => tf.dispose(runGraph(LayerGraph.fromModel(g.model), x, true))],
      ['forward()', async () => disposeValues(await forward(g.model, x))],
    ];
    for (const [name, run] of runs) {
      fired.clear();
      await run();
      assert.equal(fired.get('inner/conv'), 1, `${name}: the hook on the layer inside the nested model`);
      assert.equal(fired.get('inner'), 1, `${name}: the hook on the nested model itself`);
      assertClose(captured.pop()!, reference, 1e-5, `${name}: inner/conv output`);
    }
    handles.forEach((handle) => handle.remove());
    tf.dispose(captured);

    const network = Network.of(g.model);
    assert.equal(network.graph.findNodes('inner/conv').length, 1);
    const values = await forward(g.model, x, { layers: ['inner/conv'] });
    assertClose(values.layers.get('inner/conv')!, reference, 1e-5, "forward({layers: ['inner/conv']})");
    disposeValues(values);
    tf.dispose([x, reference]);
  });

  test(`graph on ${backend}: fused chains equal unfused and model.predict, with real BatchNorm statistics`, async () => {
    const { model, bn, expectedChains } = fusionModel();
    const x = tf.randomNormal([2, 11, 11, 3], 0, 1, 'float32', 4);
    const expected = model.predict(x) as tf.Tensor;
    const graph = LayerGraph.fromModel(model);
    assert.equal(graph.fusedChains().length, expectedChains, 'every chain kind is found');
    assert.deepEqual(
      graph.fusedChains().map((chain) => chain.nodes.map((node) => node.path).join('>')),
      ['conv_a>bn_a>relu_a', 'conv_b>bn_b>relu6_b', 'dw_c>bn_c>relu6_c', 'conv_d>bn_d>leaky_d', 'conv_e>bn_e', 'dw_f>bn_f>relu_f'],
    );
    const unfused = runGraph(graph, x, false);
    const fused = runGraph(graph, x, true);
    assertClose(unfused, expected, 1e-5, 'unfused vs predict');
    assertClose(fused, expected, 1e-4, 'fused vs predict');
    assertClose(fused, unfused, 1e-4, 'fused vs unfused');

    // Fusion really happens: no BatchNorm kernel runs when fused; all six do unfused.
    assert.equal(count(await kernelsRun(() => runGraph(graph, x, false)), 'FusedBatchNorm'), 6);
    assert.equal(count(await kernelsRun(() => runGraph(graph, x, true)), 'FusedBatchNorm'), 0);

    // A hook on a BatchNorm layer splits its chain, and only that chain.
    let hookCalls = 0;
    const handle = registerForwardHook(bn, () => {
      hookCalls++;
    });
    assert.equal(count(await kernelsRun(() => runGraph(graph, x, true)), 'FusedBatchNorm'), 1);
    const hooked = runGraph(graph, x, true);
    handle.remove();
    assert.equal(hookCalls, 2);
    assertClose(hooked, expected, 1e-4, 'fused with a hooked BatchNorm vs predict');

    // Fetching a chain's intermediate output also splits it, and gives that output.
    const bnKey = graph.findNodes('bn_a')[0]!.outputs[0]!;
    const partial = graph.run(new Map([[graph.inputKeys[0]!, x]]), [bnKey, graph.outputKeys[0]!], { fuse: true });
    assertClose(partial.get(graph.outputKeys[0]!)!, expected, 1e-4, 'fused output next to a fetched intermediate');
    const bnByHand = tf.tidy(() => model.getLayer('bn_a').apply(model.getLayer('conv_a').apply(x)) as tf.Tensor);
    assertClose(partial.get(bnKey)!, bnByHand, 1e-5, 'fetched BatchNorm output');

    graph.dispose();
    tf.dispose([x, expected, unfused, fused, hooked, bnByHand, ...partial.values()]);
  });

  test(`graph on ${backend}: backward to a conv inside a residual block equals the split-model gradient`, async (t) => {
    const skip = missingGradientKernels(CONV_GRADIENT_KERNELS);
    if (skip) return void t.skip(skip);
    const g = graphModel();
    const x = tf.randomNormal([1, 6, 6, 3], 0, 1, 'float32', 5);
    const classIndex = 3;
    const objective = (logits: tf.Tensor): tf.Scalar => tf.sum(tf.slice(logits, [0, classIndex], [1, 1]));
    // Split by hand: f(conv2) = the rest of the network, with the skip and the
    // second shared call computed from the input as constants.
    const conv2 = tf.tidy(() => graphByHand(g, x).conv2);
    const expected = tf.grad((c: tf.Tensor) => objective(graphByHand(g, x, { conv2: c }).logits))(conv2);

    let hookGradient: tf.Tensor | undefined;
    const handle = registerGradientHook(g.layer['block_conv2']!, (grad) => {
      hookGradient = tf.keep(grad.clone());
    });
    const result = await backward(g.model, x, (values) => objective(values.scores), { to: ['block_conv2'] });
    handle.remove();
    assert.ok(hookGradient, 'the gradient hook fired');
    assertClose(hookGradient, expected, 1e-5, 'gradient hook');
    assertClose(result.gradients[0]![0]!, expected, 1e-5, 'returned gradient');
    const expectedScore = tf.tidy(() => objective(graphByHand(g, x).logits).dataSync()[0]!);
    assert.ok(Math.abs(result.objectives[0]! - expectedScore) <= 1e-5 * Math.max(1, Math.abs(expectedScore)));
    disposeValues(result.values);
    tf.dispose([x, conv2, expected, hookGradient, ...result.gradients.flat()]);
  });

  test(`graph on ${backend}: backward to a layer inside the nested model and to two nested sources`, async (t) => {
    const skip = missingGradientKernels(CONV_GRADIENT_KERNELS);
    if (skip) return void t.skip(skip);
    const g = graphModel();
    const x = tf.randomNormal([1, 6, 6, 3], 0, 1, 'float32', 6);
    const objective = (logits: tf.Tensor): tf.Scalar => tf.sum(tf.mul(logits, tf.tensor1d([1, -2, 0.5, 3, -1])));
    const byHand = tf.tidy(() => {
      const values = graphByHand(g, x);
      return [values.conv2, values.innerConv];
    });
    const expectedConv2 = tf.grad((c: tf.Tensor) => objective(graphByHand(g, x, { conv2: c }).logits))(byHand[0]!);
    const expectedInner = tf.grad((c: tf.Tensor) => objective(graphByHand(g, x, { innerConv: c }).logits))(byHand[1]!);

    const single = await backward(g.model, x, (values) => objective(values.scores), { to: ['inner/conv'] });
    assertClose(single.gradients[0]![0]!, expectedInner, 1e-5, "to: ['inner/conv']");
    disposeValues(single.values);

    // inner/conv is downstream of block_conv2: both gradients are still returned, in order.
    const both = await backward(g.model, x, (values) => objective(values.scores), { to: ['block_conv2', 'inner/conv'] });
    assert.equal(both.gradients[0]!.length, 2, 'one gradient per requested layer');
    assertClose(both.gradients[0]![0]!, expectedConv2, 1e-5, 'block_conv2 next to inner/conv');
    assertClose(both.gradients[0]![1]!, expectedInner, 1e-5, 'inner/conv next to block_conv2');
    const reversed = await backward(g.model, x, (values) => objective(values.scores), { to: ['inner/conv', 'block_conv2'] });
    assertClose(reversed.gradients[0]![0]!, expectedInner, 1e-5, 'reversed order: inner/conv');
    assertClose(reversed.gradients[0]![1]!, expectedConv2, 1e-5, 'reversed order: block_conv2');
    disposeValues(both.values);
    disposeValues(reversed.values);
    tf.dispose([x, ...byHand, expectedConv2, expectedInner, ...single.gradients.flat(), ...both.gradients.flat(), ...reversed.gradients.flat()]);
  });

  test(`graph on ${backend}: backward to the input equals tf.grad of the model applied by hand`, async (t) => {
    const skip = missingGradientKernels(CONV_GRADIENT_KERNELS);
    if (skip) return void t.skip(skip);
    const g = graphModel();
    const x = tf.randomNormal([1, 6, 6, 3], 0, 1, 'float32', 7);
    const objective = (logits: tf.Tensor): tf.Scalar => tf.sum(tf.slice(logits, [0, 1], [1, 1]));
    const expected = tf.grad((input: tf.Tensor) => objective(graphByHand(g, input).logits))(x);
    const nested = tf.tidy(() => graphByHand(g, x).nested);
    const expectedAtNested = tf.grad((n: tf.Tensor) => objective(graphByHand(g, x, { nested: n }).logits))(nested);
    let innerGradients = 0;
    let nestedGradOutput: tf.Tensor | undefined;
    let nestedGradient: tf.Tensor | undefined;
    const handles = [
      registerFullBackwardHook(g.layer['inner_conv']!, () => {
        innerGradients++;
      }),
      // Hooks on the nested model itself, which LayerGraph flattens.
      registerFullBackwardHook(g.inner, (_layer, _gradInputs, gradOutputs) => {
        nestedGradOutput = tf.keep(gradOutputs[0]!.clone());
      }),
      registerGradientHook(g.inner, (grad) => {
        nestedGradient = tf.keep(grad.clone());
      }),
    ];
    const result = await backward(g.model, x, (values) => objective(values.scores));
    handles.forEach((handle) => handle.remove());
    assert.equal(innerGradients, 1, 'the full backward hook inside the nested model fired');
    assert.ok(nestedGradOutput && nestedGradient, 'the hooks on the nested model fired');
    assertClose(nestedGradient, expectedAtNested, 1e-5, 'gradient hook on the nested model');
    assertClose(nestedGradOutput, expectedAtNested, 1e-5, 'grad_output of the nested model');
    assertClose(result.gradients[0]![0]!, expected, 1e-5, 'input gradient');
    disposeValues(result.values);
    tf.dispose([x, expected, nested, expectedAtNested, nestedGradOutput, nestedGradient, ...result.gradients.flat()]);
  });

  test(`graph on ${backend}: a Dense softmax classifier exposes its logits to forward() and backward()`, async () => {
    const input = tfl.input({ shape: [7] });
    const hidden = tfl.layers.dense({ units: 6, activation: 'relu', name: 'hidden' });
    const head = tfl.layers.dense({ units: 4, activation: 'softmax', name: 'head' });
    const model = tfl.model({ inputs: input, outputs: head.apply(hidden.apply(input)) as Sym });
    randomizeWeights(model, 21, 0.4);
    const x = tf.randomNormal([3, 7], 0, 1, 'float32', 8);
    const [kernel, bias] = head.getWeights();
    const logitsByHand = (h: tf.Tensor): tf.Tensor => tf.add(tf.matMul(h, kernel!), bias!);
    const hiddenValue = hidden.apply(x) as tf.Tensor;
    const expectedLogits = logitsByHand(hiddenValue);
    const expectedProbabilities = model.predict(x) as tf.Tensor;

    // A forward hook on the split layer sees the layer's real output, as under predict.
    const hookOutputs: tf.Tensor[] = [];
    const handle = registerForwardHook(head, (_layer, _inputs, output) => {
      hookOutputs.push(tf.keep((output as tf.Tensor).clone()));
    });
    const values = await forward(model, x);
    handle.remove();
    assertClose(values.scores, expectedLogits, 1e-5, 'scores are the logits');
    assertClose(values.probabilities, expectedProbabilities, 1e-5, 'probabilities');
    assertClose(values.output, expectedProbabilities, 1e-5, 'output');
    assert.equal(hookOutputs.length, 1);
    assertClose(hookOutputs[0]!, expectedProbabilities, 1e-5, 'the hook sees the probabilities');
    disposeValues(values);

    const expectedGradient = tf.grad((h: tf.Tensor) => tf.sum(tf.slice(logitsByHand(h), [0, 2], [3, 1])))(hiddenValue);
    const result = await backward(model, x, (v) => tf.sum(tf.slice(v.scores, [0, 2], [3, 1])), { to: ['hidden'] });
    assertClose(result.gradients[0]![0]!, expectedGradient, 1e-5, 'gradient of a logit at the hidden layer');
    disposeValues(result.values);
    tf.dispose([x, hiddenValue, expectedLogits, expectedProbabilities, expectedGradient, ...hookOutputs, ...result.gradients.flat()]);
  });

  test(`graph on ${backend}: without hooks, predict is untouched and building the graph changes no layer`, async () => {
    const g = graphModel();
    const fusion = fusionModel();
    const x = tf.randomNormal([1, 6, 6, 3], 0, 1, 'float32', 9);
    const before = g.model.predict(x) as tf.Tensor;
    const layers = [...allLayers(g.model), ...allLayers(fusion.model)];
    const snapshots = layers.map(snapshotLayer);
    for (const layer of layers) assert.ok(!Object.prototype.hasOwnProperty.call(layer, 'call'), `${layer.name} has an own call`);

    const graph = LayerGraph.fromModel(g.model);
    const fusionGraph = LayerGraph.fromModel(fusion.model);
    layers.forEach((layer, i) => assertUnchanged(layer, snapshots[i]!));
    Network.of(g.model);
    Network.of(fusion.model);
    layers.forEach((layer, i) => assertUnchanged(layer, snapshots[i]!));

    // Running the executors (fused and not) and hooking then unhooking leaves them as they were too.
    tf.dispose([runGraph(graph, x, true), runGraph(graph, x, false)]);
    disposeValues(await forward(g.model, x));
    const handles = layers.map((layer) => registerForwardHook(layer, () => undefined));
    tf.dispose(g.model.predict(x) as tf.Tensor);
    handles.forEach((handle) => handle.remove());
    layers.forEach((layer, i) => assertUnchanged(layer, snapshots[i]!));

    const after = g.model.predict(x) as tf.Tensor;
    assert.deepEqual(Array.from(after.dataSync()), Array.from(before.dataSync()), 'predict gives the same output, bit for bit');
    graph.dispose();
    fusionGraph.dispose();
    tf.dispose([x, before, after]);
  });

  test(`graph on ${backend}: runs free every intermediate tensor`, () => {
    const g = graphModel();
    const fusion = fusionModel();
    const x = tf.randomNormal([1, 6, 6, 3], 0, 1, 'float32', 10);
    const fx = tf.randomNormal([1, 11, 11, 3], 0, 1, 'float32', 10);
    const graph = LayerGraph.fromModel(g.model);
    const fusionGraph = LayerGraph.fromModel(fusion.model);
    const once = (): void => {
      tf.dispose([runGraph(graph, x, false), runGraph(graph, x, true), runGraph(fusionGraph, fx, true)]);
      const conv2Key = graph.findNodes('block_conv2')[0]!.outputs[0]!;
      tf.dispose([...graph.run(new Map([[graph.inputKeys[0]!, x]]), [conv2Key, conv2Key, graph.inputKeys[0]!, ...graph.outputKeys], { fuse: true }).values()]);
    };
    once(); // folds the BatchNorm weights once (a cache freed by dispose())
    const start = tf.memory().numTensors;
    for (let i = 0; i < 10; i++) once();
    assert.equal(tf.memory().numTensors, start);
    fusionGraph.dispose();
    assert.equal(tf.memory().numTensors, start - 2 * fusionGraph.fusedChains().length, 'dispose() frees the folded weights');
    graph.dispose();
    tf.dispose([x, fx]);
  });
});
