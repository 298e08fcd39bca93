/**
 * 1-D and 3-D layers end to end against PyTorch: a tiny CNN whose image
 * features go through nn.Conv1d, nn.MaxPool1d, nn.ConvTranspose1d,
 * nn.AvgPool1d, nn.MaxPool3d and nn.AvgPool3d (test/helpers/torch-spatial.ts;
 * the 3-D max pool's maxima tie), exported at test time at opsets 11 and
 * 17. camviz's logits, Grad-CAM maps (at a ReLU upstream of every 1-D and
 * 3-D layer) and input gradient are PyTorch's own, on cpu and wasm.
 * Skips without a Python that has torch and onnx.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TORCH_SPATIAL_SIDE, type TorchSpatialReference, makeTorchSpatialModel } from './helpers/torch-spatial.js';
import { describeTorchParityOnBackends, torchParity } from './helpers/torch-parity.js';

const { python, skipTorch } = torchParity('torch, onnx', 'python3-torch, python3-onnx');

const OPSETS = [11, 17];

for (const opset of OPSETS) {
  describe(`a PyTorch CNN with 1-D and 3-D layers exported at opset ${opset}`, { skip: skipTorch }, () => {
    let folder: string;
    let reference: TorchSpatialReference;
    before(async () => {
      folder = await mkdtemp(join(tmpdir(), 'camviz-spatial-'));
      reference = makeTorchSpatialModel(python!, folder, opset);
    });
    after(async () => {
      await rm(folder, { recursive: true, force: true });
    });

    test('the export holds the 1-D and 3-D ops under test', () => {
      const held = reference.nodes.map(([op, rank]) => `${op} ${rank}-D`);
      for (const op of ['Conv 1-D', 'MaxPool 1-D', 'ConvTranspose 1-D', 'AveragePool 1-D', 'MaxPool 3-D', 'AveragePool 3-D']) assert.ok(held.includes(op), `${op}: ${held.join(', ')}`);
    });

    // 'block' is upstream of every 1-D and 3-D layer.
    describeTorchParityOnBackends((backend) => `on ${backend}`, () => join(folder, 'model.onnx'), () => reference, TORCH_SPATIAL_SIDE, ['block']);
  });
}
