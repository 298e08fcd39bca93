/**
 * torchvision classifier families as their ONNX exports are (small
 * representatives made at test time, test/helpers/torch-zoo.ts) against
 * PyTorch: the default CAM target is the layer pytorch-grad-cam's README
 * has users pick, and Grad-CAM there gives PyTorch's map (its forward hook
 * on that module), on tfjs and with ONNX Runtime running the forward pass.
 * VGG (no global pooling: its `avgpool` is an AveragePool before the
 * flatten) defaults to `features`; DenseNet, whose forward ReLUs
 * `features` in place, to that ReLU (what the hook on `features` sees);
 * Swin Transformer (Mod, ScatterND, a training-mode Dropout of ratio 0) to
 * its `permute`, the channels-last map made NCHW, and at `norm` and
 * `features`, channels-last, Grad-CAM is PyTorch's through the
 * reshape_transform of pytorch-grad-cam's swinT_example.py; a ViT (opset
 * 17's LayerNormalization, opset 13's decomposition) to its last encoder
 * layer's `ln_1`, read as the patch grid without the class token
 * (vit_example.py's reshape_transform); at its patch embedding
 * (`--layer conv_proj`) Grad-CAM is PyTorch's too, ONNX Runtime handing the
 * tfjs layers after it the int64 shape arithmetic
 * they read. Skips without a Python that has torch, torchvision and onnx.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../src/engine/backend.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { camTargets } from '../src/cam/request.js';
import { explainBatch } from '../src/cam/explain.js';
import { UsageError } from '../src/util/errors.js';
import { type TorchZooArch, type TorchZooReference, makeTorchZooModel } from './helpers/torch-zoo.js';
import { assertTorchGradcam, assertTorchLogits, nhwcInput, torchParity } from './helpers/torch-parity.js';

const { python, skipTorch, skipOrt } = torchParity('torch, torchvision, onnx', 'python3-torch, python3-torchvision, python3-onnx');

interface ZooCase {
  arch: TorchZooArch;
  side: number;
  opset: number;
  /** The PyTorch module whose hooked output the default target must be. */
  module: string;
  /** camviz's name of the default target. */
  defaultLayer: string;
  /** Modules given by --layer, checked on both engines (Swin's channels-last maps; ViT's patch embedding, a 4-D layer before shape arithmetic that the layers after it read). */
  layers?: string[];
  /** A token layer with no grid (attention's output, carried through a transpose): refused, named. */
  refused?: string;
  /** Ops the export must have, so that the case tests what it says. */
  ops: string[];
}

const CASES: ZooCase[] = [
  { arch: 'vgg', side: 32, opset: 17, module: 'features', defaultLayer: 'features', ops: ['AveragePool', 'Flatten'] },
  { arch: 'densenet', side: 32, opset: 13, module: 'features', defaultLayer: 'Relu', ops: ['GlobalAveragePool'] },
  { arch: 'swin', side: 32, opset: 13, module: 'permute', defaultLayer: 'permute', layers: ['norm', 'features'], ops: ['Mod', 'ScatterND', 'Dropout'] },
  {
    arch: 'vit',
    side: 32,
    opset: 17,
    module: 'encoder.layers.encoder_layer_1.ln_1',
    defaultLayer: 'encoder.layers.encoder_layer_1.ln_1',
    layers: ['conv_proj', 'encoder.layers.encoder_layer_0.ln_1'],
    refused: 'encoder.layers.encoder_layer_1.self_attention',
    ops: ['LayerNormalization', 'MatMul', 'Expand'],
  },
  { arch: 'vit', side: 32, opset: 13, module: 'encoder.layers.encoder_layer_1.ln_1', defaultLayer: 'encoder.layers.encoder_layer_1.ln_1', ops: ['ReduceMean', 'MatMul', 'Expand'] },
];

for (const { arch, side, opset, module, defaultLayer, layers = [], refused, ops } of CASES) {
  describe(`a small torchvision-style ${arch} (opset ${opset}) against PyTorch`, { skip: skipTorch }, () => {
    let folder: string;
    let reference: TorchZooReference;
    let model: CamvizModel;
    let input: tf.Tensor4D;
    before(async () => {
      await useBackend('cpu');
      folder = await mkdtemp(join(tmpdir(), `camviz-zoo-${arch}-`));
      reference = makeTorchZooModel(python!, folder, arch, side, opset, [module, ...layers]);
      model = await loadModel(join(folder, 'model.onnx'), { preprocess: 'none', engine: 'tfjs' });
      input = nhwcInput(reference.input, 2, side);
    });
    after(async () => {
      input?.dispose();
      model?.dispose();
      await rm(folder, { recursive: true, force: true });
    });

    test('the logits as PyTorch computes them', async () => {
      for (const op of ops) assert.ok(reference.ops.includes(op), `${op} in ${reference.ops.join(' ')}`);
      await assertTorchLogits(model.network(), input, reference.logits);
    });

    for (const engine of ['tfjs', 'onnxruntime'] as const) {
      for (const layer of layers) {
        test(`--layer ${layer} on ${engine}: PyTorch's Grad-CAM maps`, { skip: engine === 'onnxruntime' && skipOrt }, async () => {
          const loaded = engine === 'tfjs' ? model : await loadModel(join(folder, 'model.onnx'), { preprocess: 'none', engine });
          try {
            assert.equal((await loaded.engine()).kind, engine);
            await assertTorchGradcam(loaded, input, reference.classes, layer, reference.cams[layer]!);
          } finally {
            if (loaded !== model) loaded.dispose();
          }
        });
      }
    }

    const gridLayer = layers.find((layer) => layer !== 'conv_proj');
    if (gridLayer !== undefined) {
      test(`Grad-CAM, Grad-CAM++ and Score-CAM at ${gridLayer} (read through its grid view) leave no tensor behind`, async () => {
        const explainAt = async (method: string): Promise<void> => {
          const batch = await explainBatch(model.network(), { method, input, layers: camTargets(model, [gridLayer]), classes: { kind: 'perImage', classes: reference.classes.map((k) => [k]) } });
          assert.equal(batch.explanations.length, 2);
        };
        for (const method of ['gradcam', 'gradcam++', 'scorecam']) {
          await explainAt(method);
          const before = tf.memory().numTensors;
          for (let i = 0; i < 3; i++) await explainAt(method);
          assert.equal(tf.memory().numTensors, before, method);
        }
      });
    }

    if (refused !== undefined) {
      test(`--layer ${refused}, tokens with no grid: one line naming it (exit 2)`, () => {
        assert.throws(
          () => camTargets(model, [refused]),
          (error: unknown) => error instanceof UsageError && error.message.includes(`'${refused}'`) && /token sequence with no grid/.test(error.message) && !error.message.includes('\n'),
        );
      });
    }

    test(`the default CAM target is ${defaultLayer}, and Grad-CAM there is PyTorch's at ${module}`, async () => {
      assert.equal(model.meta.targetLayer, defaultLayer);
      const [target] = camTargets(model, []);
      assert.equal(target, camTargets(model, [defaultLayer])[0]);
      await assertTorchGradcam(model, input, reference.classes, defaultLayer, reference.cams[module]!);
    });

    test('with ONNX Runtime running the forward pass: the same maps at the default target', { skip: skipOrt }, async () => {
      const onOrt = await loadModel(join(folder, 'model.onnx'), { preprocess: 'none', engine: 'onnxruntime' });
      try {
        assert.equal((await onOrt.engine()).kind, 'onnxruntime');
        await assertTorchGradcam(onOrt, input, reference.classes, onOrt.meta.targetLayer!, reference.cams[module]!);
      } finally {
        onOrt.dispose();
      }
    });
  });
}
