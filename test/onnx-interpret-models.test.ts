/**
 * The op library on the five shared ONNX classifiers (torch exports,
 * ../shared/assets/onnx): the interpreter, fed the image stored NHWC as
 * camviz feeds it, reproduces PyTorch's top-5 logits and the reference
 * feature map (1e-4), keeps the feature map 'nhwc', and leaves no tensor
 * behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import sharp from '../src/util/sharp.js';
import { decodeNpy } from '../src/render/npy.js';
import { interpretGraph, laid, toLayout } from '../src/model/onnx/interpret.js';
import { parseOnnxModel } from '../src/model/onnx/parse.js';
import { asset } from './helpers/assets.js';
import { forEachBackend } from './helpers/backends.js';

const onnxDir = asset('onnx');
const skipWithoutModels: string | false = existsSync(join(onnxDir, 'reference', 'index.json'))
  ? false
  : `shared ONNX assets not found at ${onnxDir}`;

interface ReferenceEntry {
  file: string;
  kind: 'cam' | 'fmap';
  model: string;
  image: string;
  onnx_tensor: string;
}

const MODELS = ['mobilenet_v1_0.75_224', 'resnet18', 'mobilenet_v2', 'efficientnet_b0', 'squeezenet1_1'];

/** both_224.png preprocessed by the model's sidecar, as NHWC [1, 224, 224, 3]. */
async function inputFor(sidecar: { input: { scale: number; mean: number[]; std: number[] } }): Promise<tf.Tensor4D> {
  const { data } = await sharp(join(onnxDir, 'images', 'both_224.png')).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const { scale, mean, std } = sidecar.input;
  return tf.tensor4d(Float32Array.from(data, (value, i) => (value * scale - mean[i % 3]!) / std[i % 3]!), [1, 224, 224, 3]);
}

forEachBackend(
  () => {
    for (const name of MODELS) {
      test(`${name}: logits and feature map match PyTorch`, { skip: skipWithoutModels }, async () => {
        const entries = (JSON.parse(readFileSync(join(onnxDir, 'reference', 'index.json'), 'utf8')) as { entries: ReferenceEntry[] }).entries;
        const fmap = entries.find((entry) => entry.kind === 'fmap' && entry.model === name)!;
        const cam = entries.find((entry) => entry.kind === 'cam' && entry.model === name && entry.image === 'both_224')!;
        const reference = JSON.parse(readFileSync(join(onnxDir, 'reference', cam.file), 'utf8')) as { logits_top5: { class: number; logit: number }[] };
        const sidecar = JSON.parse(readFileSync(join(onnxDir, `${name}.json`), 'utf8'));
        const model = parseOnnxModel(readFileSync(join(onnxDir, `${name}.onnx`)), `${name}.onnx`);
        const x = await inputFor(sidecar);
        const before = tf.memory().numTensors;
        const out = interpretGraph(model, new Map([[model.graph.inputs[0]!.name, laid(x, 'nhwc')]]), ['logits', fmap.onnx_tensor]);
        assert.equal(tf.memory().numTensors, before + 2, 'only the fetches remain');
        const logits = out.get('logits')!.tensor.dataSync();
        for (const { class: index, logit } of reference.logits_top5) {
          assert.ok(Math.abs(logits[index]! - logit) <= 1e-4, `logit ${index}: ${logits[index]} vs ${logit}`);
        }
        const value = out.get(fmap.onnx_tensor)!;
        assert.equal(value.layout, 'nhwc', 'a conv trunk stays NHWC');
        const expected = decodeNpy(readFileSync(join(onnxDir, 'reference', fmap.file)));
        const stored = toLayout(value, 'nhwc');
        assert.deepEqual(stored.shape, expected.shape);
        const got = stored.dataSync();
        let worst = 0;
        for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - expected.data[i]!));
        assert.ok(worst <= 1e-4, `feature map differs by ${worst}`);
        tf.dispose([x, ...[...out.values()].map((v) => v.tensor)]);
      });
    }
  },
  // The pure-JS cpu backend takes minutes for these five networks.
  ['wasm'],
);
