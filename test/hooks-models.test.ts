/**
 * Hooks on real models, checked against independent computations: the
 * gradient a gradient hook captures during `backward()` equals `tf.grad` of
 * the model split at that layer (the same layer objects applied by hand);
 * forward hooks on every layer equal a multi-output `tf.model`; hooked
 * passes leak no tensor and removing the hooks restores the layers exactly.
 *
 * MobileNet runs at 224x224 on wasm. On the pure-JS cpu backend a backward
 * pass through MobileNet at 224x224 takes minutes, so there the backward
 * tests run the same model on the photo resized to 64x64 (it is fully
 * convolutional up to the global pooling).
 *
 * Leaf mode computes the layers before the source with fused kernels
 * (BatchNorm folded into the convolution), so the source activation differs
 * from the unfused model's by float rounding (~1e-6 relative), and where a
 * ReLU6 downstream sits at a kink that can move the gradient by ~1e-4
 * relative. So the split-model gradient is taken at the activation the pass
 * really used (seen by a forward hook, and checked against the unfused
 * model's activation); backward to the input runs everything unfused and is
 * compared with the by-hand activation directly.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {
  backward,
  disposeValues,
  forward,
  registerForwardHook,
  registerForwardPreHook,
  registerFullBackwardHook,
  registerGradientHook,
  type HookHandle,
} from '../src/index.js';
import { forEachBackend } from './helpers/backends.js';
import { imagePath, mobilenetDir, skipWithoutSharedAssets } from './helpers/assets.js';
import { CONV_GRADIENT_KERNELS, DEPTHWISE_GRADIENT_KERNELS, allLayers, assertUnchanged, loadWithTfjs, missingGradientKernels, snapshotLayer } from './helpers/layers.js';

type Layer = tfl.layers.Layer;
type Sym = tfl.SymbolicTensor;

const CLASS = 243; // bull mastiff, the dog in both.png

// ---------------------------------------------------------------- comparisons

/** ||actual - expected|| / ||expected|| (L2 over all elements). */
function relativeL2(actual: tf.Tensor, expected: tf.Tensor): number {
  assert.deepEqual(actual.shape, expected.shape, 'shapes differ');
  const a = actual.dataSync();
  const e = expected.dataSync();
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < e.length; i++) {
    diff += (a[i]! - e[i]!) ** 2;
    norm += e[i]! ** 2;
  }
  assert.ok(norm > 0, 'expected tensor is all zeros: the comparison would prove nothing');
  return Math.sqrt(diff / norm);
}

function assertClose(actual: tf.Tensor, expected: tf.Tensor, tolerance: number, what: string): void {
  const error = relativeL2(actual, expected);
  assert.ok(error <= tolerance, `${what}: relative error ${error.toExponential(2)} > ${tolerance}`);
}

/** MobileNet's backward pass goes through plain and depthwise convolutions. */
const MOBILENET_GRADIENT_KERNELS = [...CONV_GRADIENT_KERNELS, ...DEPTHWISE_GRADIENT_KERNELS];

// ---------------------------------------------------------------- MobileNet

/** both.png as MobileNet input ([-1, 1]), at `size` x `size`. */
async function photo(size: number): Promise<tf.Tensor4D> {
  const { data, info } = await sharp(imagePath('both.png')).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return tf.tidy(() => {
    const image = tf.tensor3d(new Uint8Array(data), [info.height, info.width, 3], 'int32');
    const scaled = tf.sub(tf.div(tf.cast(image, 'float32'), 127.5), 1);
    const batch = tf.expandDims(scaled, 0) as tf.Tensor4D;
    return size === info.width && size === info.height ? batch : tf.image.resizeBilinear(batch, [size, size]);
  });
}

/**
 * MobileNet v1 is a chain: each layer's only input is the previous layer's
 * output. Checked, so that applying layers[from..to) by hand is the model.
 */
function assertChain(model: tfl.LayersModel): void {
  model.layers.forEach((layer, i) => {
    if (i === 0) return;
    const nodes = (layer as unknown as { inboundNodes: { inboundLayers: Layer[] }[] }).inboundNodes;
    assert.equal(nodes.length, 1, `${layer.name} is called once`);
    assert.deepEqual(
      nodes[0]!.inboundLayers.map((inbound) => inbound.name),
      [model.layers[i - 1]!.name],
      `${layer.name} reads ${model.layers[i - 1]!.name}`,
    );
  });
}

/** layers[from..to) applied by hand to a concrete tensor. */
function applyRange(model: tfl.LayersModel, from: number, to: number, x: tf.Tensor): tf.Tensor {
  let value = x;
  for (let i = from; i < to; i++) value = model.layers[i]!.apply(value) as tf.Tensor;
  return value;
}

const indexOf = (model: tfl.LayersModel, name: string): number => {
  const index = model.layers.findIndex((layer) => layer.name === name);
  assert.ok(index >= 0, `${name} is in the model`);
  return index;
};

/** The class score from conv_preds' output [batch, 1, 1, 1000]. */
const classScore = (preds: tf.Tensor): tf.Scalar => tf.sum(tf.slice(tf.reshape(preds, [preds.shape[0]!, -1]), [0, CLASS], [1, 1]));
const scoreObjective = (values: { scores: tf.Tensor2D }): tf.Scalar => tf.sum(tf.slice(values.scores, [0, CLASS], [1, 1]));

interface Mobilenet {
  model: tfl.LayersModel;
  /** The photo at the size backward passes use on this backend. */
  x: tf.Tensor4D;
  /** The photo at 224x224, the size model.predict accepts. */
  x224: tf.Tensor4D;
}

// ---------------------------------------------------------------- a small graph model

/** conv/bn/relu stem, a residual block, a shared layer and a nested model; logits out. */
function smallModel(): { model: tfl.LayersModel; hooked: Layer[] } {
  const innerInput = tfl.input({ shape: [5, 5, 8] });
  const innerConv = tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'conv' });
  const inner = tfl.model({
    inputs: innerInput,
    outputs: tfl.layers.reLU({ name: 'relu' }).apply(innerConv.apply(innerInput)) as Sym,
    name: 'inner',
  });
  const input = tfl.input({ shape: [5, 5, 3] });
  const stemConv = tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'stem' });
  const stemBn = tfl.layers.batchNormalization({ name: 'stem_bn' });
  const blockConv = tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'block_conv' });
  const shared = tfl.layers.conv2d({ filters: 4, kernelSize: 1, name: 'shared' });
  const stem = tfl.layers.reLU({ name: 'stem_relu' }).apply(stemBn.apply(stemConv.apply(input))) as Sym;
  const block = tfl.layers.add({ name: 'block_add' }).apply([blockConv.apply(stem) as Sym, stem]) as Sym;
  const cat = tfl.layers.concatenate({ name: 'cat' }).apply([shared.apply(block) as Sym, shared.apply(stem) as Sym]) as Sym;
  const pooled = tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(inner.apply(cat) as Sym) as Sym;
  const model = tfl.model({ inputs: input, outputs: tfl.layers.dense({ units: 4, name: 'logits' }).apply(pooled) as Sym });
  return { model, hooked: [stemConv, stemBn, blockConv, shared, innerConv, inner] };
}

/**
 * Registers every kind of hook on `layers`; the hooks keep copies of what
 * they see and a gradient hook replaces the gradient, as user code would.
 */
function registerEveryKind(layers: readonly Layer[], kept: tf.Tensor[]): HookHandle[] {
  return layers.flatMap((layer) => [
    registerForwardPreHook(layer, (_layer, inputs) => void kept.push(tf.keep(inputs[0]!.clone()))),
    registerForwardHook(layer, (_layer, _inputs, output) => void kept.push(tf.keep((Array.isArray(output) ? output[0]! : output).clone()))),
    registerGradientHook(layer, (grad) => tf.mul(grad, 1)),
    registerFullBackwardHook(layer, (_layer, gradInputs, gradOutputs) => {
      for (const grad of [...gradInputs, ...gradOutputs]) if (grad) kept.push(tf.keep(grad.clone()));
    }),
  ]);
}

/** One hooked forward and backward pass; disposes everything it made. */
async function hookedPass(model: tfl.LayersModel, hooked: readonly Layer[], x: tf.Tensor, to: 'input' | string[], objective: (values: { scores: tf.Tensor2D }) => tf.Scalar): Promise<void> {
  const kept: tf.Tensor[] = [];
  const handles = registerEveryKind(hooked, kept);
  try {
    const values = await forward(model, x, { layers: typeof to === 'string' ? [] : to });
    disposeValues(values);
    const result = await backward(model, x, objective, { to });
    disposeValues(result.values);
    tf.dispose(result.gradients.flat());
    assert.ok(kept.length > 0, 'the hooks fired');
  } finally {
    handles.forEach((handle) => handle.remove());
    tf.dispose(kept);
  }
}

// ---------------------------------------------------------------- tests

forEachBackend((backend) => {
  let mobilenet: Promise<Mobilenet> | undefined;
  const getMobilenet = (): Promise<Mobilenet> => {
    mobilenet ??= (async () => {
      const model = await loadWithTfjs(mobilenetDir);
      assertChain(model);
      const x224 = await photo(224);
      return { model, x: backend === 'cpu' ? await photo(64) : x224, x224 };
    })();
    return mobilenet;
  };
  after(async () => {
    if (mobilenet === undefined) return;
    const { model, x, x224 } = await mobilenet;
    model.dispose();
    tf.dispose([x, x224]);
  });

  for (const layerName of ['conv_pw_5_relu', 'conv_pw_13_relu']) {
    test(`mobilenet on ${backend}: the gradient hook on ${layerName} equals tf.grad of the model split there`, { skip: skipWithoutSharedAssets }, async (t) => {
      const skip = missingGradientKernels(MOBILENET_GRADIENT_KERNELS);
      if (skip) return void t.skip(skip);
      const { model, x } = await getMobilenet();
      const layer = model.getLayer(layerName);
      const layerIndex = indexOf(model, layerName);
      const predsIndex = indexOf(model, 'conv_preds');
      const head = (a: tf.Tensor): tf.Scalar => classScore(applyRange(model, layerIndex + 1, predsIndex + 1, a));

      let used: tf.Tensor | undefined;
      let captured: tf.Tensor | undefined;
      const handles = [
        registerForwardHook(layer, (_layer, _inputs, output) => {
          used = tf.keep((output as tf.Tensor).clone());
        }),
        registerGradientHook(layer, (grad) => {
          captured = tf.keep(grad.clone());
        }),
      ];
      const result = await backward(model, x, scoreObjective, { to: [layerName] });
      handles.forEach((handle) => handle.remove());
      assert.ok(used && captured, 'the forward and gradient hooks fired');

      // The split model, by hand, differentiated at the activation the pass used...
      const expected = tf.grad(head)(used);
      assertClose(captured, expected, 1e-5, 'hook gradient');
      assertClose(result.gradients[0]![0]!, expected, 1e-5, 'returned gradient');
      const expectedScore = tf.tidy(() => head(used!).dataSync()[0]!);
      assert.ok(Math.abs(result.objectives[0]! - expectedScore) <= 1e-5 * Math.max(1, Math.abs(expectedScore)), 'class score');
      // ...which is the unfused model's activation up to float rounding.
      const exact = tf.tidy(() => applyRange(model, 1, layerIndex + 1, x));
      assertClose(used, exact, 1e-5, 'activation used vs the unfused model');
      const atExact = tf.grad(head)(exact);
      assertClose(captured, atExact, 1e-3, 'hook gradient vs the gradient at the unfused activation (ReLU6 kinks)');
      disposeValues(result.values);
      tf.dispose([used, captured, expected, exact, atExact, ...result.gradients.flat()]);
    });
  }

  test(`mobilenet on ${backend}: backward to the input: the hooks on a middle and the last conv layer, and the input gradient, equal tf.grad of the split model`, { skip: skipWithoutSharedAssets }, async (t) => {
    const skip = missingGradientKernels(MOBILENET_GRADIENT_KERNELS);
    if (skip) return void t.skip(skip);
    const { model, x } = await getMobilenet();
    const predsIndex = indexOf(model, 'conv_preds');
    const layers = ['conv_pw_5_relu', 'conv_pw_13_relu'];
    // Unfused end to end: the sub-model up to the layer, the rest applied to the activation as a variable.
    const expectedAtLayers = layers.map((name) => {
      const layerIndex = indexOf(model, name);
      const activation = tf.tidy(() => applyRange(model, 1, layerIndex + 1, x));
      const gradient = tf.grad((a: tf.Tensor) => classScore(applyRange(model, layerIndex + 1, predsIndex + 1, a)))(activation);
      activation.dispose();
      return gradient;
    });
    const expectedAtInput = tf.grad((input: tf.Tensor) => classScore(applyRange(model, 1, predsIndex + 1, input)))(x);

    const captured = new Map<string, tf.Tensor>();
    const handles = layers.map((name) =>
      registerGradientHook(model.getLayer(name), (grad) => {
        captured.set(name, tf.keep(grad.clone()));
      }),
    );
    const result = await backward(model, x, scoreObjective, { to: 'input' });
    handles.forEach((handle) => handle.remove());
    for (const [i, name] of layers.entries()) {
      assert.ok(captured.has(name), `the gradient hook on ${name} fired`);
      assertClose(captured.get(name)!, expectedAtLayers[i]!, 1e-5, `hook gradient at ${name}`);
    }
    assertClose(result.gradients[0]![0]!, expectedAtInput, 1e-5, 'input gradient');
    disposeValues(result.values);
    tf.dispose([...expectedAtLayers, expectedAtInput, ...captured.values(), ...result.gradients.flat()]);
  });

  test(`mobilenet on ${backend}: forward hooks on every layer equal a multi-output tf.model`, { skip: skipWithoutSharedAssets }, async () => {
    const { model, x224: x } = await getMobilenet();
    const layers = model.layers.filter((layer) => layer.getClassName() !== 'InputLayer');
    // Built from the model's own symbolic tensors: no layer is called again.
    const everyOutput = tfl.model({ inputs: model.inputs, outputs: layers.map((layer) => layer.output as Sym) });
    const expected = everyOutput.predict(x) as tf.Tensor[];
    for (const [name, run] of [
      ['predict', () => tf.dispose(model.predict(x) as tf.Tensor)],
      ['forward()', async () => disposeValues(await forward(model, x))],
    ] as const) {
      const seen = new Map<string, tf.Tensor[]>();
      const handles = layers.map((layer) =>
        registerForwardHook(layer, (hooked, _inputs, output) => {
          seen.set(hooked.name, [...(seen.get(hooked.name) ?? []), tf.keep((output as tf.Tensor).clone())]);
        }),
      );
      run();
      handles.forEach((handle) => handle.remove());
      layers.forEach((layer, i) => {
        const outputs = seen.get(layer.name) ?? [];
        assert.equal(outputs.length, 1, `${name}: the hook on ${layer.name} fires once`);
        assertClose(outputs[0]!, expected[i]!, 1e-5, `${name}: ${layer.name}`);
      });
      tf.dispose([...seen.values()].flat());
    }
    tf.dispose(expected);
  });

  test(`small graph on ${backend}: forward hooks on every layer equal a multi-output tf.model`, () => {
    const { model } = smallModel();
    const x = tf.randomNormal([2, 5, 5, 3], 0, 1, 'float32', 1);
    // The shared layer has one output per call. A nested model's node 0 is
    // its own graph (inner input to inner output), not a call in this model.
    const layers = model.layers.filter((layer) => layer.getClassName() !== 'InputLayer');
    const outputsOf = (layer: Layer): Sym[] => {
      const nodes = (layer as unknown as { inboundNodes: unknown[] }).inboundNodes.length;
      const first = layer instanceof tfl.LayersModel ? 1 : 0;
      return Array.from({ length: nodes - first }, (_, i) => layer.getOutputAt(first + i) as Sym);
    };
    const symbolic = layers.flatMap(outputsOf);
    const everyOutput = tfl.model({ inputs: model.inputs, outputs: symbolic });
    const expected = everyOutput.predict(x) as tf.Tensor[];
    for (const [name, run] of [
      ['predict', () => tf.dispose(model.predict(x) as tf.Tensor)],
      ['forward()', async () => disposeValues(await forward(model, x))],
    ] as const) {
      const seen: tf.Tensor[] = [];
      const seenBy: Layer[] = [];
      const handles = layers.map((layer) =>
        registerForwardHook(layer, (hooked, _inputs, output) => {
          seenBy.push(hooked);
          // A nested model's call returns a list, as tfjs-layers' Container.call does.
          seen.push(tf.keep((Array.isArray(output) ? output[0]! : output).clone()));
        }),
      );
      run();
      handles.forEach((handle) => handle.remove());
      assert.equal(seen.length, expected.length, `${name}: one firing per layer call`);
      for (const layer of layers) {
        // A shared layer's calls may run in any topological order: match each
        // expected output with one firing of that layer.
        const firings = seenBy.flatMap((by, i) => (by === layer ? [i] : []));
        assert.equal(firings.length, outputsOf(layer).length, `${name}: ${layer.name} fires once per call`);
        for (const [call, output] of outputsOf(layer).entries()) {
          const want = expected[symbolic.indexOf(output)]!;
          const match = firings.findIndex((i) => relativeL2(seen[i]!, want) <= 1e-5);
          assert.ok(match >= 0, `${name}: ${layer.name} call ${call} matches one firing`);
          firings.splice(match, 1);
        }
      }
      tf.dispose(seen);
    }
    tf.dispose([x, ...expected]);
  });

  test(`small graph on ${backend}: 100 hooked forward+backward passes leak no tensor; removal restores every layer`, async (t) => {
    const skip = missingGradientKernels(MOBILENET_GRADIENT_KERNELS);
    if (skip) return void t.skip(skip);
    const { model, hooked } = smallModel();
    const x = tf.randomNormal([1, 5, 5, 3], 0, 1, 'float32', 2);
    const layers = allLayers(model);
    const snapshots = layers.map(snapshotLayer);
    const objective = (values: { scores: tf.Tensor2D }): tf.Scalar => tf.sum(tf.slice(values.scores, [0, 1], [1, 1]));
    const targets: ('input' | string[])[] = ['input', ['block_conv'], ['inner/conv'], ['stem_relu', 'inner/conv']];
    // The first passes fold the BatchNorm of fused chains into cached weights.
    for (const to of targets) await hookedPass(model, hooked, x, to, objective);
    const start = tf.memory().numTensors;
    for (let pass = 0; pass < 100; pass++) await hookedPass(model, hooked, x, targets[pass % targets.length]!, objective);
    assert.equal(tf.memory().numTensors, start, 'tensors after 100 passes');
    layers.forEach((layer, i) => assertUnchanged(layer, snapshots[i]!));
    for (const layer of layers) assert.ok(!Object.prototype.hasOwnProperty.call(layer, 'call'), `${layer.name} has an own call`);
    x.dispose();
  });

  test(`mobilenet on ${backend}: 5 hooked forward+backward passes leak no tensor; removal restores every layer`, { skip: skipWithoutSharedAssets }, async (t) => {
    const skip = missingGradientKernels(MOBILENET_GRADIENT_KERNELS);
    if (skip) return void t.skip(skip);
    const { model, x } = await getMobilenet();
    const layers = model.layers;
    const snapshots = layers.map(snapshotLayer);
    const hooked = ['conv_pw_12', 'conv_pw_12_bn', 'conv_dw_13', 'conv_pw_13_relu', 'conv_preds'].map((name) => model.getLayer(name));
    await hookedPass(model, hooked, x, ['conv_pw_12_relu'], scoreObjective); // folds BatchNorm weights once
    const start = tf.memory().numTensors;
    for (let pass = 0; pass < 5; pass++) await hookedPass(model, hooked, x, ['conv_pw_12_relu'], scoreObjective);
    assert.equal(tf.memory().numTensors, start, 'tensors after 5 passes');
    layers.forEach((layer, i) => assertUnchanged(layer, snapshots[i]!));
    for (const layer of layers) assert.ok(!Object.prototype.hasOwnProperty.call(layer, 'call'), `${layer.name} has an own call`);
  });
});
