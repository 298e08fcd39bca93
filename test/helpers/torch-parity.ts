/**
 * What the tests against PyTorch share (test/onnx-*-torch.test.ts): the
 * Python that has the modules they need, running a script that exports a
 * network and writes PyTorch's values to `reference.json`, PyTorch's NCHW
 * input as camviz feeds it, camviz's Grad-CAM maps, and the comparison
 * within a share of the reference's largest magnitude.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { loadOnnxRuntime } from '../../src/engine/onnxruntime.js';
import { explainBatch } from '../../src/cam/explain.js';
import { camTargets } from '../../src/cam/request.js';
import { type ForwardValues, disposeValues } from '../../src/executor/network.js';
import { type BackendKind, useBackend } from '../../src/engine/backend.js';
import { type CamvizModel, loadModel } from '../../src/model/load.js';
import { PORTABLE_BACKENDS } from './backends.js';
import { maxAbsDifference } from './numeric.js';
import { findPython } from './python.js';

/** What every tiny network's reference holds, for a batch of two images (its Grad-CAM maps, per module or not, are the test's own). */
export interface TorchGradcamReference {
  /** The input, NCHW, flat. */
  input: number[];
  /** [2][5] */
  logits: number[][];
  /** The class explained for each image. */
  classes: number[];
  /** dY/dinput of each image's class logit, NCHW, flat. */
  inputGradient: number[];
}

export interface TorchParity {
  python: string | null;
  /** Why the tests skip: no such Python. */
  skipTorch: string | false;
  /** Why the ONNX Runtime tests skip: no such Python, or onnxruntime-node does not load. */
  skipOrt: string | false;
}

/** The Python that can import `modules` (e.g. 'torch, onnx'), with the skip reasons; `packages` names the Debian packages. */
export function torchParity(modules: string, packages: string): TorchParity {
  const python = findPython(modules);
  const skipTorch: string | false = python === null ? `no Python with ${modules} (${packages})` : false;
  const ort = loadOnnxRuntime();
  return { python, skipTorch, skipOrt: skipTorch || (ort.available ? false : `onnxruntime-node does not load: ${ort.reason}`) };
}

/**
 * Python a reference script starts with: its imports and arguments (the
 * output folder, the opset), and the seed its network's weights come from.
 */
export const REFERENCE_SCRIPT_HEAD_PY = String.raw`
import json, sys, warnings
import onnx, torch, torch.nn as nn, torch.nn.functional as F

out_dir, opset = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
`;

/**
 * Python that exports the script's network `Tiny` at `opset`, batch
 * dynamic, to `path` (out_dir/model.onnx), leaving `model` and `x` (two
 * random 16x16 images; the export traces the first).
 */
export const EXPORT_TINY_PY = String.raw`
model = Tiny().eval()
x = torch.randn(2, 3, 16, 16)
path = out_dir + '/model.onnx'
with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    torch.onnx.export(model, x[:1], path, input_names=['input'], output_names=['logits'],
                      opset_version=opset, dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}})
`;

/**
 * Python the reference scripts end with (they have `json`, `torch`, the
 * network `model`, its input `x` and `out_dir`): PyTorch's Grad-CAM at each
 * of `modules` (dotted paths: `model.get_submodule`) for each image's class,
 * relu(Σ_c mean(dY/dA_c) · A_c) with Y the image's class logit, A and dY/dA
 * through `reshape_transform(name, tensor)` to NCHW when given (as
 * pytorch-grad-cam's), and dY/dinput, written to reference.json with
 * `extra` (TorchGradcamReference's fields, `cams` by module).
 */
export const GRADCAM_REFERENCE_PY = String.raw`
def write_gradcam_reference(model, x, classes, modules, extra, reshape_transform=None):
    captured = {}
    for name in modules:
        model.get_submodule(name).register_forward_hook(lambda module, inputs, output, name=name: captured.__setitem__(name, output))
    x.requires_grad_(True)
    logits = model(x)
    objective = sum(logits[i, k] for i, k in enumerate(classes))
    grads = torch.autograd.grad(objective, [captured[name] for name in modules] + [x])
    # pytorch-grad-cam's ActivationsAndGradients: the activations and their gradients both through reshape_transform, to NCHW.
    nchw = (lambda name, tensor: tensor) if reshape_transform is None else reshape_transform
    cams = {name: torch.relu((nchw(name, grad).mean((2, 3), keepdim=True) * nchw(name, captured[name])).sum(1)).detach().tolist() for name, grad in zip(modules, grads)}
    json.dump({
        'input': x.detach().flatten().tolist(),
        'logits': logits.detach().tolist(),
        'classes': classes,
        'cams': cams,
        'inputGradient': grads[-1].flatten().tolist(),
        **extra,
    }, open(out_dir + '/reference.json', 'w'))
`;

/** Runs `script` (`python -c script ...args`), which writes `dir`/reference.json, and returns what it wrote; throws with Python's stderr when it fails. */
export function runTorchScript<T>(python: string, script: string, args: readonly string[], dir: string, what: string): T {
  const run = spawnSync(python, ['-c', script, ...args], { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (run.status !== 0) throw new Error(`${what} failed: ${run.stderr}`);
  return JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as T;
}

/** Within `relative` of the reference's largest magnitude. */
export function assertCloseTo(actual: ArrayLike<number>, expected: ArrayLike<number>, relative: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const scale = Math.max(1e-6, ...Array.from(expected, Math.abs));
  const difference = maxAbsDifference(actual, expected);
  assert.ok(difference <= relative * scale, `${what}: differs by ${difference.toExponential(2)} (max |value| ${scale.toExponential(2)})`);
}

/** PyTorch's input (NCHW, flat, square images of `side` with 3 channels) as camviz feeds it: NHWC. */
export function nhwcInput(input: readonly number[], batch: number, side: number): tf.Tensor4D {
  return tf.tidy(() => tf.transpose(tf.tensor4d(input as number[], [batch, 3, side, side]), [0, 2, 3, 1]));
}

/** Grad-CAM at `module` for each image's class (`classes[i]`), as camviz computes it with `model`'s executor. */
export async function gradcamMaps(model: CamvizModel, input: tf.Tensor4D, classes: readonly number[], module: string): Promise<Float32Array[]> {
  const batch = await explainBatch(await model.executor(), {
    method: 'gradcam',
    input,
    layers: camTargets(model, [module]),
    classes: { kind: 'perImage', classes: classes.map((k) => [k]) },
  });
  return batch.explanations.map((perImage, i) => {
    const [explanation] = perImage;
    assert.equal(explanation?.classIndex, classes[i]);
    return explanation!.map!.data;
  });
}

/** dY/dinput with Y the sum of each image's class logit (`classes[i]`), as camviz's network computes it: NCHW, as PyTorch's reference holds it. */
export async function classInputGradient(model: CamvizModel, input: tf.Tensor4D, classes: readonly number[]): Promise<Float32Array> {
  const objective = (values: { output: tf.Tensor }): tf.Scalar =>
    tf.tidy(() => tf.sum(tf.stack(classes.map((k, i) => tf.reshape(tf.slice(values.output, [i, k], [1, 1]), [])))) as tf.Scalar);
  const result = await model.network().backward(input, [objective], { sources: 'input', layers: [] });
  const gradient = tf.tidy(() => tf.transpose(result.gradients[0]![0]!, [0, 3, 1, 2]));
  const values = gradient.dataSync() as Float32Array;
  tf.dispose([gradient, ...result.gradients.flat()]);
  disposeValues(result.values);
  return values;
}

/** The logits `executor` gives for `input` (a batch of two) are PyTorch's. */
export async function assertTorchLogits(executor: { forward(input: tf.Tensor4D): Promise<ForwardValues> }, input: tf.Tensor4D, logits: number[][]): Promise<void> {
  const values = await executor.forward(input);
  try {
    assert.deepEqual(values.output.shape, [logits.length, logits[0]!.length]);
    assertCloseTo(values.output.dataSync(), logits.flat(), 1e-4, 'logits');
  } finally {
    disposeValues(values);
  }
}

/** camviz's Grad-CAM at `module` for each image's class is PyTorch's `cams` (per image, a map), which must not be empty. */
export async function assertTorchGradcam(model: CamvizModel, input: tf.Tensor4D, classes: readonly number[], module: string, cams: number[][][]): Promise<void> {
  const maps = await gradcamMaps(model, input, classes, module);
  maps.forEach((map, i) => assertCloseTo(map, cams[i]!.flat(), 1e-4, `image ${i}'s map`));
  assert.ok(cams.flat(2).some((value) => value > 0), 'the maps must not be empty');
}

/** What the parity tests read once their suite's `before` has run: the model loaded on tfjs, PyTorch's input as camviz feeds it, PyTorch's values. */
export interface TorchParitySubject {
  model: CamvizModel;
  input: tf.Tensor4D;
  reference: TorchGradcamReference & { cams: Record<string, number[][][]> };
}

/**
 * The tests each tiny network's suite runs against PyTorch: the logits of
 * the batch of two, Grad-CAM at each of `modules`, and dY/dinput of the
 * class logits. `subject` is read when each test runs.
 */
export function torchParityTests(subject: () => TorchParitySubject, modules: readonly string[]): void {
  test('logits of a batch of two as PyTorch computes them', async () => {
    const { model, input, reference } = subject();
    await assertTorchLogits(model.network(), input, reference.logits);
  });
  for (const module of modules) {
    test(`Grad-CAM at module '${module}' as PyTorch computes it`, async () => {
      const { model, input, reference } = subject();
      await assertTorchGradcam(model, input, reference.classes, module, reference.cams[module]!);
    });
  }
  test('the gradient of the class logits with respect to the input as PyTorch computes it', async () => {
    const { model, input, reference } = subject();
    assertCloseTo(await classInputGradient(model, input, reference.classes), reference.inputGradient, 1e-4, 'input gradient');
  });
}

/**
 * On each portable backend, a suite (named by `name`) that loads the ONNX
 * file at `path()` on tfjs, feeds PyTorch's input (a batch of two images
 * of `side` x `side`) and runs torchParityTests at `modules`. `path` and
 * `reference` are read in the suite's `before`, once the export is made.
 */
export function describeTorchParityOnBackends(
  name: (backend: BackendKind) => string,
  path: () => string,
  reference: () => TorchParitySubject['reference'],
  side: number,
  modules: readonly string[],
): void {
  for (const backend of PORTABLE_BACKENDS as readonly BackendKind[]) {
    describe(name(backend), () => {
      let model: CamvizModel;
      let input: tf.Tensor4D;
      before(async () => {
        await useBackend(backend);
        model = await loadModel(path(), { preprocess: 'none', engine: 'tfjs' });
        input = nhwcInput(reference().input, 2, side);
      });
      after(() => {
        input?.dispose();
        model?.dispose();
      });
      torchParityTests(() => ({ model, input, reference: reference() }), modules);
    });
  }
}
