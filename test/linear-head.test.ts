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
import { linearHeadGradients, linearHeadsOf } from '../src/executor/linear-head.js';
import { type ForwardValues, Network, type Objective } from '../src/executor/network.js';
import { forEachBackend } from './helpers/backends.js';

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
