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
import { linearHeadsOf } from '../src/executor/linear-head.js';
import { Network } from '../src/executor/network.js';
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
