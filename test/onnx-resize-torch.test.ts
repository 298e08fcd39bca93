/**
 * Resize, Upsample and InstanceNormalization end to end against PyTorch:
 * a tiny network with F.interpolate (bilinear with and without
 * align_corners, nearest by 2 and to a size no multiple of the input,
 * bicubic) after InstanceNorm2d, exported at test time to opsets 9
 * (Upsample), 10 (Resize-10), 11, 13 and 17. camviz's logits, Grad-CAM map
 * and input gradient are PyTorch's own, on tfjs and, when onnxruntime-node
 * loads, with ONNX Runtime running the forward pass; `layers` lists the
 * Resize nodes with their ONNX shapes. Skips without a Python that has
 * torch and onnx.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../src/engine/backend.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { describeOnnxLayers } from '../src/model/onnx/load.js';
import { camTargets } from '../src/cam/request.js';
import { describeLayers } from '../src/executor/layers.js';
import { TORCH_RESIZE_SIDE, type TorchResizeReference, type TorchResizeVariant, makeTorchResizeModel } from './helpers/torch-resize.js';
import { assertTorchGradcam, assertTorchLogits, nhwcInput, torchParity, torchParityTests } from './helpers/torch-parity.js';

const { python, skipTorch, skipOrt } = torchParity('torch, onnx', 'python3-torch, python3-onnx');

const EXPORTS: { opset: number; variant: TorchResizeVariant; resizeOp: string }[] = [
  { opset: 9, variant: 'legacy', resizeOp: 'Upsample' },
  { opset: 10, variant: 'legacy', resizeOp: 'Resize' },
  { opset: 11, variant: 'interpolate', resizeOp: 'Resize' },
  { opset: 13, variant: 'interpolate', resizeOp: 'Resize' },
  { opset: 17, variant: 'interpolate', resizeOp: 'Resize' },
];

for (const { opset, variant, resizeOp } of EXPORTS) {
  describe(`a PyTorch export at opset ${opset} (${resizeOp}, InstanceNormalization)`, { skip: skipTorch }, () => {
    let folder: string;
    let reference: TorchResizeReference;
    let model: CamvizModel;
    let input: tf.Tensor4D;
    before(async () => {
      await useBackend('cpu');
      folder = await mkdtemp(join(tmpdir(), 'camviz-resize-'));
      reference = makeTorchResizeModel(python!, folder, opset, variant);
      model = await loadModel(join(folder, 'model.onnx'), { preprocess: 'none', engine: 'tfjs' });
      input = nhwcInput(reference.input, 2, TORCH_RESIZE_SIDE);
    });
    after(async () => {
      input?.dispose();
      model?.dispose();
      await rm(folder, { recursive: true, force: true });
    });

    test('the export holds the ops under test', () => {
      assert.ok(reference.ops.includes(resizeOp), reference.ops.join(' '));
      assert.ok(reference.ops.includes('InstanceNormalization'), reference.ops.join(' '));
    });

    // 'block' is upstream of every resize.
    torchParityTests(() => ({ model, input, reference }), ['block']);

    test(`layers lists the ${resizeOp} nodes with their ONNX shapes, and they resolve as target layers`, () => {
      const rows = describeOnnxLayers(model.onnx!, describeLayers(model.network(), model.meta));
      const resized = rows.filter((row) => row.className === resizeOp);
      const expected = variant === 'legacy' ? [[null, 8, 16, 16], [null, 8, 24, 16]] : [[null, 8, 16, 16], [null, 8, 16, 16], [null, 8, 13, 11], [null, 8, 11, 13], [null, 8, 16, 16]];
      assert.deepEqual(resized.map((row) => row.outputShape).sort(), expected.sort());
      // Each is a CAM target by its ONNX node name.
      for (const row of resized) assert.ok(row.camTarget && camTargets(model, [row.name]).length === 1, row.name);
      // Scales are geometry, not parameters; the affine InstanceNorm2d has a scale and a bias per channel (the other, constant ones).
      assert.deepEqual(resized.map((row) => row.params), resized.map(() => 0));
      const norms = rows.filter((row) => row.className === 'InstanceNormalization');
      assert.deepEqual(norms.map((row) => row.params), [12, 16]);
    });

    test('with ONNX Runtime running the forward pass: the same logits and Grad-CAM maps', { skip: skipOrt }, async () => {
      const onOrt = await loadModel(join(folder, 'model.onnx'), { preprocess: 'none', engine: 'onnxruntime' });
      try {
        const executor = await onOrt.executor();
        assert.equal((await onOrt.engine()).kind, 'onnxruntime');
        await assertTorchLogits(executor, input, reference.logits);
        await assertTorchGradcam(onOrt, input, reference.classes, 'block', reference.cams.block);
      } finally {
        onOrt.dispose();
      }
    });
  });
}
