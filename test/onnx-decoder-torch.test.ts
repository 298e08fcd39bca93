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
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { TORCH_DECODER_SIDE, type TorchDecoderReference, type TorchDecoderVariant, makeTorchDecoderModel } from './helpers/torch-decoder.js';
import { assertTorchGradcam, assertTorchLogits, nhwcInput, torchParity, torchParityTests } from './helpers/torch-parity.js';

const { python, skipTorch, skipOrt } = torchParity('torch, onnx', 'python3-torch, python3-onnx');

const EXPORTS: { opset: number; variant: TorchDecoderVariant; ops: string[] }[] = [
  { opset: 13, variant: 'export', ops: ['ConvTranspose', 'DepthToSpace', 'InstanceNormalization', 'Softplus'] },
  { opset: 18, variant: 'onnx-ops', ops: ['ConvTranspose', 'DepthToSpace', 'SpaceToDepth', 'LRN', 'Mish', 'GroupNormalization'] },
  { opset: 21, variant: 'onnx-ops', ops: ['ConvTranspose', 'DepthToSpace', 'SpaceToDepth', 'LRN', 'Mish', 'GroupNormalization'] },
];

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
      input = nhwcInput(reference.input, 2, TORCH_DECODER_SIDE);
    });
    after(async () => {
      input?.dispose();
      model?.dispose();
      await rm(folder, { recursive: true, force: true });
    });

    test('the export holds the ops under test', () => {
      assert.deepEqual(ops.filter((op) => !reference.ops.includes(op)), [], reference.ops.join(' '));
    });

    // torch.onnx.export writes GroupNorm as Reshape, InstanceNormalization, Reshape below opset 18: 'block' ends on a Reshape's 4-D value, which the CAM methods read as NHWC.
    torchParityTests(() => ({ model, input, reference }), ['block', 'up']);

    test('with ONNX Runtime running the forward pass: the same logits and Grad-CAM maps', { skip: skipOrt }, async () => {
      const onOrt = await loadModel(join(folder, 'model.onnx'), { preprocess: 'none', engine: 'onnxruntime' });
      try {
        const executor = await onOrt.executor();
        assert.equal((await onOrt.engine()).kind, 'onnxruntime');
        await assertTorchLogits(executor, input, reference.logits);
        await assertTorchGradcam(onOrt, input, reference.classes, 'up', reference.cams.up);
      } finally {
        onOrt.dispose();
      }
    });
  });
}
