/**
 * The linear head's kernel (src/executor/linear-head.ts): read once from the
 * classifier, the same values bit for bit as the layer's kernel on every
 * backend, also when the kernel was built on the cpu backend and the
 * current backend is another (a loaded model's weights are), and unchanged
 * when the layer's kernel is written afterwards (tfjs gives it a new tensor).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { withWeightsBuiltOnCpu } from '../src/engine/backend.js';
import { linearHeadGradients, linearHeadsOf, walkLinearHead } from '../src/executor/linear-head.js';
import { type ForwardValues, Network, type Objective } from '../src/executor/network.js';
import { forEachBackend } from './helpers/backends.js';
import { maxAbsDifference } from './helpers/numeric.js';

const CHANNELS = 5;
const CLASSES = 7;

function headModel(): { model: tfl.LayersModel; logits: tfl.layers.Layer } {
  const input = tfl.input({ shape: [4, 4, 3] });
  const conv = tfl.layers.conv2d({ filters: CHANNELS, kernelSize: 3, padding: 'same', name: 'conv' });
  const logits = tfl.layers.dense({ units: CLASSES, name: 'logits' });
  const output = logits.apply(tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(conv.apply(input))) as tfl.SymbolicTensor;
  const model = tfl.model({ inputs: input, outputs: output });
  // Values with every bit pattern of interest: negative zero, subnormals, odd mantissas.
  const values = Float32Array.from({ length: CHANNELS * CLASSES }, (_, i) => (i === 0 ? -0 : i === 1 ? 1e-40 : Math.fround(Math.sin(i * 1.37) * 10 ** (i % 7 - 3))));
  logits.setWeights([tf.tensor2d(values, [CHANNELS, CLASSES]), tf.zeros([CLASSES])]);
  return { model, logits };
}

function bits(values: Float32Array): number[] {
  return Array.from(new Uint32Array(values.buffer, values.byteOffset, values.length));
}

forEachBackend(() => {
  for (const builtOnCpu of [false, true]) {
    test(`the head's kernel equals the classifier's bit for bit (weights built on ${builtOnCpu ? 'the cpu backend' : 'this backend'})`, async () => {
      const { model, logits } = builtOnCpu ? await withWeightsBuiltOnCpu(async () => headModel()) : headModel();
      const network = Network.of(model);
      try {
        const conv = network.graph.findNodes('conv')[0]!;
        const expected = Float32Array.from(logits.getWeights()[0]!.dataSync());
        const head = linearHeadsOf(network.graph, conv.outputs[0]!, network.score);
        assert.ok(head !== undefined, 'conv -> gap -> dense is a linear head');
        assert.equal(head.channels, CHANNELS);
        assert.equal(head.classes, CLASSES);
        assert.ok(head.kernel !== undefined, 'a classifier has a kernel');
        assert.deepEqual(bits(head.kernel), bits(expected));
        // Writing the layer's kernel gives it a new tensor: the head read before keeps its values.
        logits.setWeights([tf.ones([CHANNELS, CLASSES]), tf.zeros([CLASSES])]);
        assert.deepEqual(bits(head.kernel), bits(expected));
      } finally {
        network.graph.dispose();
        model.dispose();
      }
    });
  }
});

/** conv -> global average pooling, the scores: no classifier (a map pooled straight into its scores, as Darknet's). */
function poolHeadModel(): tfl.LayersModel {
  const input = tfl.input({ shape: [4, 4, 3] });
  const conv = tfl.layers.conv2d({ filters: CHANNELS, kernelSize: 3, padding: 'same', name: 'conv', kernelInitializer: 'glorotUniform' });
  const output = tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(conv.apply(input)) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: output });
}

test('no classifier after the pooling: the identity head (channels last), whose closed form equals tfjs\' gradient of the scores', async () => {
  const model = poolHeadModel();
  const network = Network.of(model);
  const input = tf.randomUniform([2, 4, 4, 3], -1, 1, 'float32', 7) as tf.Tensor4D;
  try {
    const conv = network.graph.findNodes('conv')[0]!;
    const head = linearHeadsOf(network.graph, conv.outputs[0]!, network.score);
    assert.ok(head !== undefined, 'conv -> gap is a linear head');
    assert.equal(head.kernel, undefined);
    assert.deepEqual([head.channels, head.classes, head.channelAxis], [CHANNELS, CHANNELS, 3]);
    const terms = [
      { image: 0, classIndex: 2, weight: 1.5 },
      { image: 1, classIndex: 4, weight: -1 },
    ];
    const objective: Objective = Object.assign((values: ForwardValues) => tf.tidy(() => tf.sum(tf.mul(values.scores, tf.tensor2d([[0, 0, 1.5, 0, 0], [0, 0, 0, 0, -1]])))) as tf.Scalar, { scoreTerms: () => terms });
    const convOut = tfl.model({ inputs: model.inputs, outputs: model.getLayer('conv').output as tfl.SymbolicTensor }).predict(input) as tf.Tensor4D;
    const gap = model.getLayer('gap');
    // Only the scores are read: the objective is a weighted sum of them.
    const valuesOf = (scores: tf.Tensor2D): ForwardValues => ({ scores }) as unknown as ForwardValues;
    const expected = tf.grad((a: tf.Tensor) => objective(valuesOf(gap.apply(a) as tf.Tensor2D)))(convOut);
    const scores = gap.apply(convOut) as tf.Tensor2D;
    const { objectives, gradients } = await linearHeadGradients(valuesOf(scores), [objective], [convOut.shape], [head]);
    const value = objective(valuesOf(scores));
    assert.ok(Math.abs(objectives[0]! - value.dataSync()[0]!) < 1e-5);
    value.dispose();
    assert.deepEqual(Array.from(gradients[0]![0]!.dataSync()).map((v) => Math.fround(v)), Array.from(expected.dataSync()).map((v) => Math.fround(v)));
    tf.dispose([convOut, expected, scores, ...gradients.flat()]);
  } finally {
    input.dispose();
    network.graph.dispose();
    model.dispose();
  }
});

type RectifiedVariant = 'relu activation' | 'ReLU layer' | 'Activation layer';

/** conv -> 1x1 conv classifier (bias) rectified by `variant` -> global average pooling, the scores (SqueezeNet's head, channels last). */
function rectifiedHeadModel(variant: RectifiedVariant): tfl.LayersModel {
  const input = tfl.input({ shape: [4, 4, 3] });
  const conv = tfl.layers.conv2d({ filters: CHANNELS, kernelSize: 3, padding: 'same', name: 'conv', kernelInitializer: 'glorotUniform' });
  // A bias of both signs, so that some outputs are rectified away and some not.
  const classifier = tfl.layers.conv2d({ filters: CLASSES, kernelSize: 1, name: 'classifier', activation: variant === 'relu activation' ? 'relu' : 'linear', kernelInitializer: 'glorotUniform', biasInitializer: tfl.initializers.randomUniform({ minval: -0.3, maxval: 0.3, seed: 3 }) });
  let output = classifier.apply(conv.apply(input)) as tfl.SymbolicTensor;
  if (variant === 'ReLU layer') output = tfl.layers.reLU({ name: 'rectifier' }).apply(output) as tfl.SymbolicTensor;
  if (variant === 'Activation layer') output = tfl.layers.activation({ activation: 'relu', name: 'rectifier' }).apply(output) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(output) as tfl.SymbolicTensor });
}

for (const variant of ['relu activation', 'ReLU layer', 'Activation layer'] as const) {
  test(`a 1x1 conv classifier rectified before the pooling (${variant}): the closed form equals tfjs' gradient of the scores, with both gates`, async () => {
    const model = rectifiedHeadModel(variant);
    const network = Network.of(model);
    const input = tf.randomUniform([2, 4, 4, 3], -1, 1, 'float32', 11) as tf.Tensor4D;
    try {
      const conv = network.graph.findNodes('conv')[0]!;
      const head = linearHeadsOf(network.graph, conv.outputs[0]!, network.score);
      assert.ok(head !== undefined, 'conv -> classifier -> relu -> gap is a rectified head');
      assert.ok(head.gate !== undefined, 'rectified');
      const gateLayer = variant === 'relu activation' ? 'classifier' : 'rectifier';
      assert.deepEqual(head.gate, { key: network.graph.findNodes(gateLayer)[0]!.outputs[0]!, classAxis: 3 });
      // CAM's walk does not take it: its weights are the classifier's only for a linear head.
      assert.equal(walkLinearHead(network.graph, conv.outputs[0]!, network.score).ok, false);
      const terms = [
        { image: 0, classIndex: 2, weight: 1.5 },
        { image: 1, classIndex: 4, weight: -1 },
        { image: 1, classIndex: 0, weight: 0.5 },
      ];
      const mask = tf.buffer([2, CLASSES]);
      for (const term of terms) mask.set(mask.get(term.image, term.classIndex) + term.weight, term.image, term.classIndex);
      const objective: Objective = Object.assign((values: ForwardValues) => tf.tidy(() => tf.sum(tf.mul(values.scores, mask.toTensor()))) as tf.Scalar, { scoreTerms: () => terms });
      const convOut = tfl.model({ inputs: model.inputs, outputs: model.getLayer('conv').output as tfl.SymbolicTensor }).predict(input) as tf.Tensor4D;
      // The layers after conv, applied in order: the head from the conv's output to the scores.
      const headLayers = model.layers.slice(model.layers.indexOf(model.getLayer('conv')) + 1);
      const head2scores = { apply: (a: tf.Tensor): tf.Tensor => headLayers.reduce((x, layer) => layer.apply(x) as tf.Tensor, a) };
      const valuesOf = (scores: tf.Tensor2D): ForwardValues => ({ scores }) as unknown as ForwardValues;
      const expected = tf.grad((a: tf.Tensor) => objective(valuesOf(head2scores.apply(a) as tf.Tensor2D)))(convOut);
      // Both gates occur: the classifier's output is positive at some positions of the classes asked for and not at others.
      const preActivation = tf.tidy(() => tf.add(tf.conv2d(convOut, model.getLayer('classifier').getWeights()[0] as tf.Tensor4D, 1, 'valid'), model.getLayer('classifier').getWeights()[1]!));
      const z = preActivation.arraySync() as number[][][][];
      const gates = terms.flatMap((term) => z[term.image]!.flat().map((channels) => channels[term.classIndex]! > 0));
      assert.ok(gates.includes(true) && gates.includes(false), 'both gates');
      const scores = head2scores.apply(convOut) as tf.Tensor2D;
      // The gate: the classifier's output rectified (the pooling's input), as the forward pass computed it.
      const gateValues = headLayers.slice(0, -1).reduce((x, layer) => layer.apply(x) as tf.Tensor, convOut as tf.Tensor);
      const { objectives, gradients } = await linearHeadGradients(valuesOf(scores), [objective], [convOut.shape], [head], [gateValues.dataSync() as Float32Array]);
      const value = objective(valuesOf(scores));
      assert.ok(Math.abs(objectives[0]! - value.dataSync()[0]!) < 1e-5);
      const difference = maxAbsDifference(gradients[0]![0]!.dataSync(), expected.dataSync());
      assert.ok(difference <= 1e-6, `closed form vs tf.grad: ${difference}`);
      tf.dispose([convOut, expected, scores, value, preActivation, gateValues, ...gradients.flat()]);
    } finally {
      input.dispose();
      network.graph.dispose();
      model.dispose();
    }
  });
}

test('no closed-form head where it would be wrong: a ReLU6, a ReLU before the classifier, a ReLU after the pooling, a strided 1x1 classifier', () => {
  const input = tfl.input({ shape: [4, 4, 3] });
  const conv = tfl.layers.conv2d({ filters: CHANNELS, kernelSize: 3, padding: 'same', name: 'conv' });
  const classifier = (): tfl.layers.Layer => tfl.layers.conv2d({ filters: CLASSES, kernelSize: 1, name: 'classifier' });
  const gap = (): tfl.layers.Layer => tfl.layers.globalAveragePooling2d({ name: 'gap' });
  const apply = (layers: tfl.layers.Layer[]): tfl.SymbolicTensor => layers.reduce((x, layer) => layer.apply(x) as tfl.SymbolicTensor, conv.apply(input) as tfl.SymbolicTensor);
  const models: [string, tfl.SymbolicTensor][] = [
    ['ReLU6', apply([classifier(), tfl.layers.reLU({ maxValue: 6 }), gap()])],
    ['ReLU before the classifier', apply([tfl.layers.reLU(), classifier(), gap()])],
    ['ReLU after the pooling', apply([classifier(), gap(), tfl.layers.reLU()])],
    // A strided 1x1 convolution reads some positions only: no gradient at the others, linear or rectified.
    ['a strided 1x1 classifier, rectified', apply([tfl.layers.conv2d({ filters: CLASSES, kernelSize: 1, strides: 2, activation: 'relu' }), gap()])],
    ['a strided 1x1 classifier, linear', apply([tfl.layers.conv2d({ filters: CLASSES, kernelSize: 1, strides: 2 }), gap()])],
  ];
  for (const [name, output] of models) {
    const model = tfl.model({ inputs: input, outputs: output });
    const network = Network.of(model);
    try {
      const source = network.graph.findNodes('conv')[0]!;
      assert.equal(linearHeadsOf(network.graph, source.outputs[0]!, network.score), undefined, name);
    } finally {
      network.graph.dispose();
      model.dispose();
    }
  }
});

test('a rectified head in every layout (channels and classes first or last), several terms per image: the closed form equals the gradient by hand', async () => {
  const [batch, height, width, channels, classes] = [2, 3, 4, 5, 6];
  const positions = height * width;
  const next = ((seed: number) => () => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 2 - 1)(42);
  // W[c, k] output-major, as ONNX stores a classifier; the gate (the classifier's output) of both signs.
  const kernel = Float32Array.from({ length: classes * channels }, next);
  const gateNhwc = Float32Array.from({ length: batch * positions * classes }, next);
  const terms = [
    { image: 0, classIndex: 2, weight: 1.5 },
    { image: 1, classIndex: 4, weight: -1 },
    { image: 1, classIndex: 0, weight: 0.25 },
    { image: 0, classIndex: 2, weight: 2 },
  ];
  // By hand, channels last: d/dA[b, p, k] = Σ weight · W[c, k] · [gate[b, p, c] > 0] / positions.
  const expectedNhwc = new Float64Array(batch * positions * channels);
  for (const { image, classIndex, weight } of terms) {
    for (let p = 0; p < positions; p++) {
      if (!(gateNhwc[(image * positions + p) * classes + classIndex]! > 0)) continue;
      for (let k = 0; k < channels; k++) expectedNhwc[(image * positions + p) * channels + k]! += (weight * kernel[classIndex * channels + k]!) / positions;
    }
  }
  const toNchw = <T extends Float32Array | Float64Array>(values: T, depth: number, make: (length: number) => T): T => {
    const out = make(values.length);
    for (let b = 0; b < batch; b++) for (let p = 0; p < positions; p++) for (let k = 0; k < depth; k++) out[(b * depth + k) * positions + p] = values[(b * positions + p) * depth + k]!;
    return out;
  };
  const scores = tf.zeros([batch, classes]) as tf.Tensor2D;
  const objective: Objective = Object.assign(() => tf.scalar(0), { scoreTerms: () => terms });
  try {
    for (const channelAxis of [3, 1] as const) {
      for (const classAxis of [3, 1] as const) {
        const head = { kernel, channels, classes, channelStride: 1, classStride: channels, channelAxis, gate: { key: 'gate', classAxis } };
        const gate = classAxis === 3 ? gateNhwc : toNchw(gateNhwc, classes, (n) => new Float32Array(n));
        const shape = channelAxis === 3 ? [batch, height, width, channels] : [batch, channels, height, width];
        const expected = channelAxis === 3 ? expectedNhwc : toNchw(expectedNhwc, channels, (n) => new Float64Array(n));
        const { gradients } = await linearHeadGradients({ scores } as unknown as ForwardValues, [objective], [shape], [head], [gate]);
        assert.deepEqual(gradients[0]![0]!.shape, shape);
        const difference = maxAbsDifference(gradients[0]![0]!.dataSync(), expected);
        assert.ok(difference <= 1e-6, `channels on axis ${channelAxis}, classes on axis ${classAxis}: differs by ${difference}`);
        tf.dispose(gradients.flat());
      }
    }
    await assert.rejects(linearHeadGradients({ scores } as unknown as ForwardValues, [objective], [[batch, height, width, channels]], [{ kernel, channels, classes, channelStride: 1, classStride: channels, channelAxis: 3, gate: { key: 'gate', classAxis: 3 } }], []), /needs its gate/);
  } finally {
    scores.dispose();
  }
});
