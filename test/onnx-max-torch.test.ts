/**
 * Max pooling and max/min reductions whose maxima tie, end to end against
 * PyTorch: a tiny network with a nearest upsampling by 2 (every value four
 * times) before AdaptiveMaxPool2d(1), F.max_pool2d (overlapping and
 * dilated windows), torch.amax, torch.amin, torch.maximum and
 * torch.minimum, exported at test time to opsets 11 and 17, as exported
 * (MaxPool for the global maximum) and with GlobalMaxPool in its place.
 * camviz's logits, Grad-CAM map and input gradient are PyTorch's own, on
 * cpu and wasm, and with ONNX Runtime running the forward pass when
 * onnxruntime-node loads. tfjs' own gradients differ here: tf.max gives
 * each tie the whole gradient, and wasm's MaxPoolGrad picks a window's last
 * maximum. Skips without a Python that has torch and onnx.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useBackend } from '../src/engine/backend.js';
import { loadModel } from '../src/model/load.js';
import { TORCH_MAX_SIDE, type TorchMaxReference, makeTorchMaxModel } from './helpers/torch-max.js';
import { assertTorchGradcam, describeTorchParityOnBackends, nhwcInput, torchParity } from './helpers/torch-parity.js';

const { python, skipTorch, skipOrt } = torchParity('torch, onnx', 'python3-torch, python3-onnx');

const OPSETS = [11, 17];
const FILES = [
  { file: 'model.onnx', what: 'as exported (MaxPool over the whole map)', globalOp: 'MaxPool' },
  { file: 'global.onnx', what: 'with GlobalMaxPool', globalOp: 'GlobalMaxPool' },
] as const;

for (const opset of OPSETS) {
  describe(`a PyTorch export at opset ${opset} whose maxima tie`, { skip: skipTorch }, () => {
    let folder: string;
    let reference: TorchMaxReference;
    before(async () => {
      folder = await mkdtemp(join(tmpdir(), 'camviz-max-'));
      reference = makeTorchMaxModel(python!, folder, opset);
    });
    after(async () => {
      await rm(folder, { recursive: true, force: true });
    });

    test('the exports hold the ops under test', () => {
      for (const op of ['Resize', 'MaxPool', 'ReduceMax', 'ReduceMin', 'Max', 'Min']) assert.ok(reference.ops.model.includes(op), `${op}: ${reference.ops.model.join(' ')}`);
      assert.ok(!reference.ops.model.includes('GlobalMaxPool'));
      assert.ok(reference.ops.global.includes('GlobalMaxPool'), reference.ops.global.join(' '));
    });

    for (const { file, what } of FILES) {
      // 'block' is upstream of every max.
      describeTorchParityOnBackends((backend) => `${file}, ${what}, on ${backend}`, () => join(folder, file), () => reference, TORCH_MAX_SIDE, ['block']);
    }

    test('with ONNX Runtime running the forward pass: the same Grad-CAM maps', { skip: skipOrt }, async () => {
      await useBackend('cpu');
      const input = nhwcInput(reference.input, 2, TORCH_MAX_SIDE);
      const onOrt = await loadModel(join(folder, 'global.onnx'), { preprocess: 'none', engine: 'onnxruntime' });
      try {
        assert.equal((await onOrt.engine()).kind, 'onnxruntime');
        await assertTorchGradcam(onOrt, input, reference.classes, 'block', reference.cams.block);
      } finally {
        onOrt.dispose();
        input.dispose();
      }
    });
  });
}
