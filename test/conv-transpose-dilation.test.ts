/**
 * Dilated Conv2DTranspose layers of the models camviz loads, against
 * PyTorch (float64): tfjs-layers 4.22's Conv2DTranspose ignores its
 * dilation rate (its call hands tfjs' conv2dTranspose, which takes none,
 * the kernel as it is; its static output shape leaves the rate out), so
 * its values were silently Keras' undilated layer's. PyTorch builds the
 * same network with the same weights: its ConvTranspose2d with `dilation`
 * gives the full transposed convolution, cropped by hand as TensorFlow's
 * 'same' does (the dilated kernel's span less one, its floor half at the
 * start), Keras' kernel [kh, kw, out, in] taken as PyTorch's [in, out, kh,
 * kw]. Checked: the layer's static output shape, the logits, the input
 * gradient, Grad-CAM before and at the layer, on cpu and wasm, and through
 * ONNX Runtime (camviz writes the model as ONNX, with ConvTranspose's
 * `dilations`). A dilated layer with strides is refused at load: Keras 2
 * computes it with TensorFlow's atrous_conv2d_transpose, which takes none.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { Network } from '../src/executor/network.js';
import { backward, loadModel } from '../src/index.js';
import { forEachBackend } from './helpers/backends.js';
import { exactRandomValues } from './helpers/numeric.js';
import { saveLayersModel } from './helpers/layers-model-file.js';
import { GRADCAM_REFERENCE_PY, type TorchGradcamReference, assertCloseTo, assertTorchGradcam, assertTorchLogits, classInputGradient, runTorchScript, torchParity } from './helpers/torch-parity.js';

const { python, skipTorch, skipOrt } = torchParity('torch', 'python3-torch');

/** input [8, 8, 3] -> feat (1x1 conv) -> up (Conv2DTranspose, dilated) -> global mean -> logits (5). */
interface TransposeCase {
  readonly name: string;
  readonly kernel: [number, number];
  readonly dilations: [number, number];
  readonly padding: 'same' | 'valid';
  readonly useBias: boolean;
  readonly activation: 'linear' | 'relu';
}

const CASES: readonly TransposeCase[] = [
  { name: "kernel 3, rate 2, 'same', bias, ReLU", kernel: [3, 3], dilations: [2, 2], padding: 'same', useBias: true, activation: 'relu' },
  // Spans 4 and 5: an odd excess (3) cropped unevenly, one more at the end.
  { name: "kernel [2, 3], rate [3, 2], 'same', no bias", kernel: [2, 3], dilations: [3, 2], padding: 'same', useBias: false, activation: 'linear' },
  { name: "kernel [3, 2], rate 2, 'valid', bias, ReLU", kernel: [3, 2], dilations: [2, 2], padding: 'valid', useBias: true, activation: 'relu' },
];

const SIZE = 8;
const FEATURES = 4;
const FILTERS = 3;
const UNITS = 5;
const CLASSES = [1, 3];

interface Weights {
  featKernel: number[];
  featBias: number[];
  /** Keras' [kh, kw, filters, features]. */
  upKernel: number[];
  upBias: number[];
  logits: number[];
}

function weightsOf(c: TransposeCase): Weights {
  return {
    featKernel: exactRandomValues(3 * FEATURES, 1),
    featBias: exactRandomValues(FEATURES, 2),
    upKernel: exactRandomValues(c.kernel[0] * c.kernel[1] * FILTERS * FEATURES, 3),
    upBias: c.useBias ? exactRandomValues(FILTERS, 4) : new Array<number>(FILTERS).fill(0),
    logits: exactRandomValues(FILTERS * UNITS, 5),
  };
}

/** The case's model in tfjs-layers (whose own Conv2DTranspose computes undilated), with `weights`. */
function buildModel(c: TransposeCase, weights: Weights): tfl.LayersModel {
  const input = tfl.input({ shape: [SIZE, SIZE, 3] });
  const feat = tfl.layers.conv2d({ filters: FEATURES, kernelSize: 1, name: 'feat' });
  const up = tfl.layers.conv2dTranspose({ filters: FILTERS, kernelSize: c.kernel, dilationRate: c.dilations, padding: c.padding, useBias: c.useBias, activation: c.activation, name: 'up' });
  const logits = tfl.layers.dense({ units: UNITS, useBias: false, name: 'logits' });
  const pooled = tfl.layers.globalAveragePooling2d({}).apply(up.apply(feat.apply(input)));
  const model = tfl.model({ inputs: input, outputs: logits.apply(pooled) as tfl.SymbolicTensor });
  feat.setWeights([tf.tensor4d(weights.featKernel, [1, 1, 3, FEATURES]), tf.tensor1d(weights.featBias)]);
  const upKernel = tf.tensor4d(weights.upKernel, [c.kernel[0], c.kernel[1], FILTERS, FEATURES]);
  up.setWeights(c.useBias ? [upKernel, tf.tensor1d(weights.upBias)] : [upKernel]);
  logits.setWeights([tf.tensor2d(weights.logits, [FILTERS, UNITS])]);
  return model;
}

type Json = Record<string, unknown>;

/**
 * Saves the case's model as a TF.js layers folder with the 'up' layer's
 * config as Keras writes it: tfjs-layers' Conv2DTranspose drops its rate
 * from its config (it ignores it), Keras keeps it; `strides` too if given.
 */
async function saveAsKeras(c: TransposeCase, weights: Weights, folder: string, strides?: [number, number]): Promise<void> {
  const model = buildModel(c, weights);
  await saveLayersModel(model, folder);
  model.dispose();
  const path = join(folder, 'model.json');
  const modelJson = JSON.parse(await readFile(path, 'utf8')) as { modelTopology: { config: { layers: { config: Json }[] } } };
  const up = modelJson.modelTopology.config.layers.find((layer) => layer.config['name'] === 'up')!;
  up.config['dilation_rate'] = c.dilations;
  if (strides !== undefined) up.config['strides'] = strides;
  await writeFile(path, JSON.stringify(modelJson));
}

/** What PyTorch computes; `upShape` is the 'up' layer's output [N, C, H, W]. */
interface Reference extends TorchGradcamReference {
  cams: Record<'feat' | 'up', number[][][]>;
  upShape: number[];
}

const TORCH_SCRIPT = String.raw`
import json, sys
import torch
import torch.nn.functional as F
spec = json.load(open(sys.argv[1]))
out_dir = sys.argv[2]
torch.set_default_dtype(torch.float64)
t = lambda values: torch.tensor(values, dtype=torch.float64)
size, features, filters, units = spec['size'], spec['features'], spec['filters'], spec['units']
kh, kw = spec['kernel']
rates = spec['dilations']

class Feat(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = t(spec['featKernel']).reshape(1, 1, 3, features).permute(3, 2, 0, 1)
        self.bias = t(spec['featBias'])
    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias)

class Up(torch.nn.Module):
    """Keras' Conv2DTranspose, unit strides: the full dilated transposed convolution, cropped as TF's 'same' crops it."""
    def __init__(self):
        super().__init__()
        # Keras' [kh, kw, out, in] -> PyTorch's [in, out, kh, kw].
        self.weight = t(spec['upKernel']).reshape(kh, kw, filters, features).permute(3, 2, 0, 1)
        self.bias = t(spec['upBias'])
    def forward(self, x):
        full = F.conv_transpose2d(x, self.weight, dilation=tuple(rates))
        if spec['padding'] == 'same':
            # TF pads the convolution from the output back to the input by the span less one, the floor half at the start: the output is the input's size.
            top, left = [((k - 1) * r) // 2 for k, r in zip((kh, kw), rates)]
            full = full[:, :, top:top + x.shape[2], left:left + x.shape[3]]
        y = full + self.bias.view(1, -1, 1, 1)
        return torch.relu(y) if spec['activation'] == 'relu' else y

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.feat = Feat()
        self.up = Up()
        self.head = t(spec['logits']).reshape(filters, units)
    def forward(self, x):
        return self.up(self.feat(x)).mean((2, 3)) @ self.head

model = Net()
x = t(spec['x']).reshape(2, size, size, 3).permute(0, 3, 1, 2).contiguous()
up_shape = list(model.up(model.feat(x)).shape)
` + GRADCAM_REFERENCE_PY + String.raw`
write_gradcam_reference(model, x, spec['classes'], ['feat', 'up'], {'upShape': up_shape})
`;

function torchReference(c: TransposeCase, weights: Weights, x: tf.Tensor4D, dir: string): Reference {
  const specPath = join(dir, 'spec.json');
  writeFileSync(specPath, JSON.stringify({ ...c, ...weights, x: Array.from(x.dataSync()), size: SIZE, features: FEATURES, filters: FILTERS, units: UNITS, classes: CLASSES }));
  return runTorchScript<Reference>(python!, TORCH_SCRIPT, [specPath, dir], dir, 'the PyTorch reference');
}

const CLASS_NAME_OF = (layer: tfl.layers.Layer): string => (layer.constructor as unknown as { className: string }).className;

/** The NHWC shape of PyTorch's NCHW one, without the batch. */
const nhwcOf = (shape: readonly number[]): (number | null)[] => [null, shape[2]!, shape[3]!, shape[1]!];

describe('a loaded model\'s dilated Conv2DTranspose, against PyTorch', { skip: skipTorch }, () => {
  const folders: string[] = [];
  const references: Reference[] = [];
  let x: tf.Tensor4D;

  before(async () => {
    x = tf.tensor4d(exactRandomValues(2 * SIZE * SIZE * 3, 10), [2, SIZE, SIZE, 3]);
    for (const c of CASES) {
      const folder = await mkdtemp(join(tmpdir(), 'camviz-convt-dilation-'));
      const weights = weightsOf(c);
      await saveAsKeras(c, weights, folder);
      folders.push(folder);
      references.push(torchReference(c, weights, x, folder));
    }
  });
  after(async () => {
    x.dispose();
    for (const folder of folders) await rm(folder, { recursive: true, force: true });
  });

  forEachBackend(() => {
    CASES.forEach((c, i) => {
      test(`${c.name}: the static output shape, logits, input gradient and Grad-CAM before and at the layer are PyTorch's`, async () => {
        const reference = references[i]!;
        const loaded = await loadModel(folders[i]!, { engine: 'tfjs' });
        try {
          const layer = loaded.layersModel!.getLayer('up');
          assert.equal(CLASS_NAME_OF(layer), 'CamvizDilatedConv2DTranspose');
          assert.equal(layer.getClassName(), 'Conv2DTranspose');
          assert.deepEqual(layer.outputShape, nhwcOf(reference.upShape));
          const executor = await loaded.executor();
          assert.ok(executor instanceof Network, 'tfjs runs the model');
          await assertTorchLogits(executor, x, reference.logits);
          assertCloseTo(tf.tidy(() => (loaded.layersModel!.predict(x) as tf.Tensor).dataSync()), reference.logits.flat(), 1e-4, 'predict');
          assertCloseTo(await classInputGradient(loaded, x, CLASSES), reference.inputGradient, 1e-4, 'input gradient');
          for (const module of ['feat', 'up'] as const) await assertTorchGradcam(loaded, x, CLASSES, module, reference.cams[module]);
        } finally {
          loaded.dispose();
        }
      });
    });
  });

  CASES.forEach((c, i) => {
    test(`${c.name}: ONNX Runtime (camviz writes ConvTranspose with its dilations) gives PyTorch's logits and Grad-CAM maps`, { skip: skipOrt }, async () => {
      const reference = references[i]!;
      const loaded = await loadModel(folders[i]!, { engine: 'onnxruntime' });
      try {
        const executor = await loaded.executor();
        assert.ok(!(executor instanceof Network), 'ONNX Runtime runs the model');
        await assertTorchLogits(executor, x, reference.logits);
        for (const module of ['feat', 'up'] as const) await assertTorchGradcam(loaded, x, CLASSES, module, reference.cams[module]);
      } finally {
        loaded.dispose();
      }
    });
  });
});

test('a dilated Conv2DTranspose with strides is refused at load, in one line naming the file', async () => {
  const folder = await mkdtemp(join(tmpdir(), 'camviz-convt-dilation-strides-'));
  try {
    await saveAsKeras(CASES[0]!, weightsOf(CASES[0]!), folder, [2, 2]);
    await assert.rejects(loadModel(folder, { engine: 'tfjs' }), (error: Error) => {
      assert.match(error.message, /Conv2DTranspose 'up' has strides \[2,2\] and dilation rate \[2,2\]/);
      assert.ok(!error.message.includes('\n'), 'one line');
      assert.ok((error as { file?: string }).file?.endsWith('model.json'), 'names the file');
      return true;
    });
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});

test('tfjs-layers\' own dilated Conv2DTranspose (a model built in memory), which it computes undilated, is refused by the executor in one line', async () => {
  const model = buildModel(CASES[2]!, weightsOf(CASES[2]!));
  const x = tf.zeros([1, SIZE, SIZE, 3]);
  const message = "layer 'up' is tfjs-layers' own Conv2DTranspose with dilation rate [2, 2], which tfjs-layers 4.22 computes undilated: load the model with camviz's loadModel (dilated, as Keras computes it) or give the layer dilation rate 1";
  try {
    assert.throws(() => Network.of(model), { message });
    await assert.rejects(backward(model, x, (values) => tf.sum(values.scores) as tf.Scalar), { message });
  } finally {
    x.dispose();
    model.dispose();
  }
});
