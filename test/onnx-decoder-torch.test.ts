/**
 * ConvTranspose, DepthToSpace, SpaceToDepth, LRN, Mish and
 * GroupNormalization end to end against PyTorch: a tiny decoder-style
 * network (test/helpers/torch-decoder.ts) exported at test time, as
 * torch.onnx.export writes it at opset 13 and with the ONNX ops PyTorch
 * 1.13 cannot export (GroupNormalization, Mish, LRN, SpaceToDepth) at
 * opsets 18 (per-group scale) and 21 (per-channel). camviz's logits,
 * Grad-CAM map and input gradient are PyTorch's own, on tfjs and, when
 * onnxruntime-node loads, with ONNX Runtime running the forward pass.
 * Skips without a Python that has torch and onnx.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../src/engine/backend.js';
import { loadOnnxRuntime } from '../src/engine/onnxruntime.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { explainBatch } from '../src/cam/explain.js';
import { camTargets } from '../src/cam/request.js';
import { disposeValues } from '../src/executor/network.js';
import { findPython } from './helpers/python.js';
import { maxAbsDifference } from './helpers/numeric.js';
import { TORCH_DECODER_SIDE, type TorchDecoderReference, type TorchDecoderVariant, type CamModule, makeTorchDecoderModel } from './helpers/torch-decoder.js';

const python = findPython('torch, onnx');
const skipTorch: string | false = python === null ? 'no Python with torch and onnx (python3-torch, python3-onnx)' : false;
const ort = loadOnnxRuntime();
const skipOrt: string | false = skipTorch || (ort.available ? false : `onnxruntime-node does not load: ${ort.reason}`);

const EXPORTS: { opset: number; variant: TorchDecoderVariant; ops: string[] }[] = [
  { opset: 13, variant: 'export', ops: ['ConvTranspose', 'DepthToSpace', 'InstanceNormalization', 'Softplus'] },
  { opset: 18, variant: 'onnx-ops', ops: ['ConvTranspose', 'DepthToSpace', 'SpaceToDepth', 'LRN', 'Mish', 'GroupNormalization'] },
  { opset: 21, variant: 'onnx-ops', ops: ['ConvTranspose', 'DepthToSpace', 'SpaceToDepth', 'LRN', 'Mish', 'GroupNormalization'] },
];

/** Within `relative` of the reference's largest magnitude. */
function assertCloseTo(actual: ArrayLike<number>, expected: ArrayLike<number>, relative: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const scale = Math.max(1e-6, ...Array.from(expected, Math.abs));
  const difference = maxAbsDifference(actual, expected);
  assert.ok(difference <= relative * scale, `${what}: differs by ${difference.toExponential(2)} (max |value| ${scale.toExponential(2)})`);
}

/** The reference's input as camviz feeds it: NHWC. */
function nhwcInput(reference: TorchDecoderReference): tf.Tensor4D {
  return tf.tidy(() => tf.transpose(tf.tensor4d(reference.input, [2, 3, TORCH_DECODER_SIDE, TORCH_DECODER_SIDE]), [0, 2, 3, 1]));
}

/** Grad-CAM at `module` for each image's class, as camviz computes it with `model`'s executor. */
async function gradcamMaps(model: CamvizModel, input: tf.Tensor4D, reference: TorchDecoderReference, module: CamModule): Promise<Float32Array[]> {
  const batch = await explainBatch(await model.executor(), {
    method: 'gradcam',
    input,
    layers: camTargets(model, [module]),
    classes: { kind: 'perImage', classes: reference.classes.map((k) => [k]) },
  });
  return batch.explanations.map((perImage, i) => {
    const [explanation] = perImage;
    assert.equal(explanation?.classIndex, reference.classes[i]);
    return explanation!.map!.data;
  });
}

for (const { opset, variant, ops } of EXPORTS) {
  describe(`a PyTorch decoder at opset ${opset} (${ops.join(', ')})`, { skip: skipTorch }, () => {
    let folder: string;
    let reference: TorchDecoderReference;
    let model: CamvizModel;
    let input: tf.Tensor4D;
    before(async () => {
      await useBackend('cpu');
      folder = await mkdtemp(join(tmpdir(), 'camviz-decoder-'));
      reference = makeTorchDecoderModel(python!, folder, opset, variant);
      model = await loadModel(join(folder, 'model.onnx'), { preprocess: 'none', engine: 'tfjs' });
      input = nhwcInput(reference);
    });
    after(async () => {
      input?.dispose();
      model?.dispose();
      await rm(folder, { recursive: true, force: true });
    });

    test('the export holds the ops under test', () => {
      assert.deepEqual(ops.filter((op) => !reference.ops.includes(op)), [], reference.ops.join(' '));
    });

    test('logits of a batch of two as PyTorch computes them', async () => {
      const values = await model.network().forward(input);
      assert.deepEqual(values.output.shape, [2, 5]);
      assertCloseTo(values.output.dataSync(), reference.logits.flat(), 1e-4, 'logits');
      disposeValues(values);
    });

    for (const module of ['block', 'up'] as const) {
      // torch.onnx.export writes GroupNorm as Reshape, InstanceNormalization, Reshape below opset 18: 'block' ends on a Reshape's 4-D value, which the CAM methods read as NHWC.
      test(`Grad-CAM at module '${module}' as PyTorch computes it`, async () => {
        const maps = await gradcamMaps(model, input, reference, module);
        maps.forEach((map, i) => assertCloseTo(map, reference.cams[module][i]!.flat(), 1e-4, `image ${i}'s map`));
        assert.ok(reference.cams[module].flat(2).some((value) => value > 0), 'the maps must not be empty');
      });
    }

    test('the gradient of the class logits with respect to the input as PyTorch computes it', async () => {
      const objective = (values: { output: tf.Tensor }): tf.Scalar =>
        tf.tidy(() => tf.sum(tf.stack(reference.classes.map((k, i) => tf.reshape(tf.slice(values.output, [i, k], [1, 1]), [])))) as tf.Scalar);
      const result = await model.network().backward(input, [objective], { sources: 'input', layers: [] });
      const gradient = tf.tidy(() => tf.transpose(result.gradients[0]![0]!, [0, 3, 1, 2]));
      assertCloseTo(gradient.dataSync(), reference.inputGradient, 1e-4, 'input gradient');
      tf.dispose([gradient, ...result.gradients.flat()]);
      disposeValues(result.values);
    });

    test('with ONNX Runtime running the forward pass: the same logits and Grad-CAM maps', { skip: skipOrt }, async () => {
      const onOrt = await loadModel(join(folder, 'model.onnx'), { preprocess: 'none', engine: 'onnxruntime' });
      try {
        const executor = await onOrt.executor();
        assert.equal((await onOrt.engine()).kind, 'onnxruntime');
        const values = await executor.forward(input);
        assertCloseTo(values.output.dataSync(), reference.logits.flat(), 1e-4, 'logits');
        disposeValues(values);
        const maps = await gradcamMaps(onOrt, input, reference, 'up');
        maps.forEach((map, i) => assertCloseTo(map, reference.cams.up[i]!.flat(), 1e-4, `image ${i}'s map`));
      } finally {
        onOrt.dispose();
      }
    });
  });
}
