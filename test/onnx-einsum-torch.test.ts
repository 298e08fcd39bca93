/**
 * Einsum end to end against PyTorch: a tiny CNN with torch.einsum in it
 * (test/helpers/torch-einsum.ts: channel mixing in its own module,
 * attention over the pixels, a diagonal, an ellipsis, an implicit output)
 * exported at test time at opsets 12 and 17. camviz's logits, Grad-CAM
 * maps (at a ReLU before the einsums and at the mixing einsum's output)
 * and input gradient are PyTorch's own, on cpu and wasm, and with ONNX
 * Runtime running the forward pass when onnxruntime-node loads. Then the
 * op alone against numpy.einsum (ONNX's reference implementation) on
 * equations over the whole grammar, with 4-D operands fed as ONNX gives
 * them and stored NHWC, and against torch.einsum on the equations numpy
 * refuses (ellipsis dims the output leaves out, which PyTorch sums).
 * Skips without a Python that has torch and onnx.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../src/engine/backend.js';
import { loadModel } from '../src/model/load.js';
import { laid, runNode, toLayout, type LaidTensor } from '../src/model/onnx/interpret.js';
import { forEachBackend } from './helpers/backends.js';
import { TORCH_EINSUM_SIDE, type EinsumCase, type TorchEinsumReference, makeTorchEinsumModel, numpyEinsumCases, torchEinsumCases } from './helpers/torch-einsum.js';
import { assertCloseTo, assertTorchGradcam, assertTorchLogits, describeTorchParityOnBackends, nhwcInput, torchParity } from './helpers/torch-parity.js';

const { python, skipTorch, skipOrt } = torchParity('torch, onnx', 'python3-torch, python3-onnx');

const OPSETS = [12, 17];

/** The equations the network's torch.einsum calls export to, in its order. */
const EQUATIONS = ['bchw,dc->bdhw', 'bqc,dc->bqd', 'bqc,bkc->bqk', 'bqk,bkc->bqc', '...hw,w->...h', 'bii->bi', 'bqc,c'];

for (const opset of OPSETS) {
  describe(`a PyTorch CNN with torch.einsum exported at opset ${opset}`, { skip: skipTorch }, () => {
    let folder: string;
    let reference: TorchEinsumReference;
    before(async () => {
      folder = await mkdtemp(join(tmpdir(), 'camviz-einsum-'));
      reference = makeTorchEinsumModel(python!, folder, opset);
    });
    after(async () => {
      await rm(folder, { recursive: true, force: true });
    });

    test('the export holds the einsums under test', () => {
      assert.deepEqual(reference.equations, EQUATIONS, reference.ops.join(' '));
    });

    describeTorchParityOnBackends((backend) => `on ${backend}`, () => join(folder, 'model.onnx'), () => reference, TORCH_EINSUM_SIDE, ['block', 'mix']);

    test('with ONNX Runtime running the forward pass: the same logits and Grad-CAM maps', { skip: skipOrt }, async () => {
      await useBackend('cpu');
      const input = nhwcInput(reference.input, 2, TORCH_EINSUM_SIDE);
      const onOrt = await loadModel(join(folder, 'model.onnx'), { preprocess: 'none', engine: 'onnxruntime' });
      try {
        assert.equal((await onOrt.engine()).kind, 'onnxruntime');
        await assertTorchLogits((await onOrt.executor()), input, reference.logits);
        await assertTorchGradcam(onOrt, input, reference.classes, 'mix', reference.cams.mix);
      } finally {
        onOrt.dispose();
        input.dispose();
      }
    });
  });
}

/** The op alone against each reference, on its table of equations (test/helpers/torch-einsum.ts). */
const REFERENCES: { what: string; cases: (python: string, dir: string) => EinsumCase[]; least: number }[] = [
  { what: "numpy.einsum (ONNX's reference implementation) over the whole grammar", cases: numpyEinsumCases, least: 30 },
  { what: 'torch.einsum where numpy refuses: ellipsis dims the output leaves out, summed', cases: torchEinsumCases, least: 9 },
];

for (const reference of REFERENCES) {
  describe(`Einsum against ${reference.what}`, { skip: skipTorch }, () => {
    let folder: string;
    let cases: EinsumCase[];
    before(async () => {
      folder = await mkdtemp(join(tmpdir(), 'camviz-einsum-reference-'));
      cases = reference.cases(python!, folder);
    });
    after(async () => {
      await rm(folder, { recursive: true, force: true });
    });

    forEachBackend(() => {
      for (const layout of ['onnx', 'nhwc'] as const) {
        test(`every equation gives the reference's shape and values (4-D operands stored ${layout})`, () => {
          assert.ok(cases.length >= reference.least, `${cases.length} cases`);
          for (const { equation, operands, shape, values } of cases) {
            tf.tidy(() => {
              const fed = operands.map(({ shape: dims, values: data }): LaidTensor => {
                const operand = tf.tensor(data, dims);
                return layout === 'nhwc' && operand.rank === 4 ? laid(tf.transpose(operand, [0, 2, 3, 1]), 'nhwc') : laid(operand);
              });
              const einsum = { name: '/Einsum', opType: 'Einsum', domain: '', inputs: fed.map((_, i) => `x${i}`), outputs: ['y'], attributes: { equation: { kind: 'string' as const, value: equation } } };
              const output = toLayout(runNode(einsum, fed, 12)[0]!, 'onnx');
              assert.deepEqual(output.shape, shape, equation);
              assertCloseTo(output.dataSync(), values, 1e-5, equation);
            });
          }
        });
      }
    });
  });
}
