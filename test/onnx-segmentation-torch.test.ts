/**
 * The region target (pytorch-grad-cam's SemanticSegmentationTarget) end to
 * end against PyTorch on torchvision segmentation architectures with seeded
 * random weights (test/helpers/torch-segmentation.ts): LR-ASPP and
 * DeepLabV3 on MobileNet v3 and FCN on ResNet-50 (its maps to 1e-3, see
 * CASES), whose logits are upsampled to the input's size
 * by F.interpolate (Resize), and LR-ASPP's logits at 1/8 of it, where a
 * region on cell boundaries is pytorch-grad-cam's 0/1 mask and a region
 * through half cells weighs them by half. DeepLabV3's ASPP (rates 12, 24,
 * 36) and the dilated backbones are differentiated through dilated
 * convolutions (src/engine/dilated-conv.ts). The image is the
 * model input's size, so that no resize differs. camviz's target score,
 * raw Grad-CAM maps and input gradient are PyTorch's (float64), for a box
 * and for a mask of half the image's size, on tfjs and with ONNX Runtime
 * running the forward pass; and the command line writes the same map as
 * .npy. Skips without a Python that has torch, torchvision and onnx.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../src/engine/backend.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { explainBatch } from '../src/cam/explain.js';
import { camTargets } from '../src/cam/request.js';
import { type Region, RegionTarget, loadRegionMask } from '../src/cam/targets/index.js';
import { disposeValues } from '../src/executor/network.js';
import { computeGeometry } from '../src/image/image.js';
import type { FeatureMap } from '../src/render/maps.js';
import { mulberry32 } from './helpers/numeric.js';
import { runCli } from './helpers/cli.js';
import { readNpy } from './helpers/npy.js';
import {
  type TorchRegion,
  type TorchSegmentationArch,
  type TorchSegmentationOutput,
  type TorchSegmentationReference,
  makeTorchSegmentationModel,
} from './helpers/torch-segmentation.js';
import { assertCloseTo, nhwcInput, torchParity } from './helpers/torch-parity.js';

const { python, skipTorch, skipOrt } = torchParity('torch, torchvision, onnx', 'python3-torch, python3-torchvision, python3-onnx');

/** The image and model input: small, so that three networks export and run in seconds. */
const SIDE = 96;
const CLASSES = 4;
const CATEGORY = 1;
const OPSET = 13;
/** The mask PNG is half the image's size: camviz rescales it (each mask pixel covers 2 x 2 image pixels). */
const MASK_SIDE = SIDE / 2;

/** Boxes in image pixels: on the 8-pixel cells of a stride-8 output, and through half of them (at 1/1, a box like any other: left out). */
const BOXES: Record<string, [number, number, number, number]> = {
  box: [16, 24, 56, 72],
  halfCells: [20, 28, 52, 68],
};
const HALF_CELLS = 'halfCells';

interface SegmentationCase {
  arch: TorchSegmentationArch;
  output: TorchSegmentationOutput;
  /** Grad-CAM layers, as PyTorch module paths (pytorch-grad-cam's target_layers). */
  layers: string[];
  outputSide: number;
  /** The Grad-CAM maps' tolerance, relative to their largest value (1e-4 but where float32's own error is larger). */
  mapTolerance: number;
  /** Why the input gradient is not compared, where it is not. */
  skipInputGradient: string | false;
}

const CASES: SegmentationCase[] = [
  // The backbone's last block (1/16, dilated) and the head's conv-BN-ReLU.
  { arch: 'lraspp', output: 'full', layers: ['backbone.16', 'classifier.cbr'], outputSide: SIDE, mapTolerance: 1e-4, skipInputGradient: false },
  { arch: 'lraspp', output: 'stride8', layers: ['backbone.16', 'backbone.4'], outputSide: SIDE / 8, mapTolerance: 1e-4, skipInputGradient: false },
  // The head's ReLU after ASPP (whose pooling branch is upsampled from 1 x 1 by a Resize).
  { arch: 'deeplabv3', output: 'full', layers: ['backbone.16', 'classifier.3'], outputSide: SIDE, mapTolerance: 1e-4, skipInputGradient: false },
  // ResNet-50's last stage (1/8, dilated by 2 and 4) and the FCN head's ReLU. With random weights, 50 layers amplify
  // float32's rounding about 12-fold (a relative change of 1e-5 to the input moves the logits by 1.2e-4 in float64):
  // with ONNX Runtime's forward pass the maps at layer4 differ from PyTorch's float64 by 1.2e-4, as with tfjs'. Through the stem's
  // max pool and the ReLUs, the input gradient is not continuous at that scale: in float64 PyTorch, that 1e-5 change
  // of the input moves it by 4% (0.7% for 1e-6), so float32 cannot be held to it.
  {
    arch: 'fcn',
    output: 'full',
    layers: ['backbone.layer4', 'classifier.2'],
    outputSide: SIDE,
    mapTolerance: 1e-3,
    skipInputGradient: "a random-weight ResNet-50's input gradient moves 4% under a 1e-5 change of its input, in float64",
  },
];

function assertScoreClose(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= 1e-4 * Math.max(1, Math.abs(expected)), `${what}: ${actual} vs PyTorch's ${expected}`);
}

/** A seeded picture: smooth colour ramps, a bright disc and some noise, RGB row-major. */
function testPixels(): Uint8Array {
  const random = mulberry32(7);
  const pixels = new Uint8Array(SIDE * SIDE * 3);
  for (let y = 0; y < SIDE; y++) {
    for (let x = 0; x < SIDE; x++) {
      const disc = (x - 60) ** 2 + (y - 36) ** 2 < 18 ** 2 ? 90 : 0;
      const ramps = [(x * 255) / SIDE, (y * 255) / SIDE, 128 + 100 * Math.sin((x + y) / 9)];
      ramps.forEach((value, channel) => {
        pixels[(y * SIDE + x) * 3 + channel] = Math.max(0, Math.min(255, Math.round(value + disc + 30 * (random() - 0.5))));
      });
    }
  }
  return pixels;
}

/** A disc, not black inside, MASK_SIDE x MASK_SIDE: one byte a pixel. */
function maskPixels(): Uint8Array {
  const mask = new Uint8Array(MASK_SIDE * MASK_SIDE);
  for (let y = 0; y < MASK_SIDE; y++) for (let x = 0; x < MASK_SIDE; x++) mask[y * MASK_SIDE + x] = (x - 25) ** 2 + (y - 20) ** 2 < 11 ** 2 ? 255 : 0;
  return mask;
}

/** The image and mask as PNGs (for camviz) and raw bytes (for PyTorch), in `folder`. */
async function writeImages(folder: string): Promise<{ image: string; mask: string; pixels: string; maskBytes: string }> {
  const paths = { image: join(folder, 'image.png'), mask: join(folder, 'mask.png'), pixels: join(folder, 'image.rgb'), maskBytes: join(folder, 'mask.raw') };
  const pixels = testPixels();
  const mask = maskPixels();
  await sharp(pixels, { raw: { width: SIDE, height: SIDE, channels: 3 } }).png().toFile(paths.image);
  await sharp(mask, { raw: { width: MASK_SIDE, height: MASK_SIDE, channels: 1 } }).png().toFile(paths.mask);
  await writeFile(paths.pixels, pixels);
  await writeFile(paths.maskBytes, mask);
  return paths;
}

/** The image is the model input's size: the geometry maps each pixel to itself. */
const IDENTITY = computeGeometry({ width: SIDE, height: SIDE }, { width: SIDE, height: SIDE }, 'stretch');

/** The region target camviz builds for region `name`. */
async function regionTarget(name: string, maskPath: string): Promise<RegionTarget> {
  const box = BOXES[name];
  const region: Region = box !== undefined ? { box } : { mask: await loadRegionMask(maskPath) };
  return new RegionTarget(region).forImages([{ geometry: IDENTITY }]);
}

/** Grad-CAM of the region target at each of `layers` (one backward pass), as camviz computes it with `model`'s executor: the raw maps and Y. */
async function regionGradCam(model: CamvizModel, input: tf.Tensor4D, target: RegionTarget, layers: readonly string[]): Promise<{ maps: FeatureMap[]; score: number }> {
  const batch = await explainBatch(await model.executor(), {
    method: 'gradcam',
    input,
    layers: camTargets(model, layers),
    classes: { kind: 'explicit', classes: [CATEGORY] },
    target,
  });
  const explanation = batch.explanations[0]?.[0];
  assert.equal(explanation?.classIndex, CATEGORY);
  assert.equal(explanation.layerMaps?.length, layers.length, 'a map per layer');
  return { maps: explanation.layerMaps, score: explanation.score };
}

for (const { arch, output, layers, outputSide, mapTolerance, skipInputGradient } of CASES) {
  describe(`a torchvision ${arch} (${output === 'full' ? 'logits at the input size' : 'logits at 1/8'}) against PyTorch`, { skip: skipTorch }, () => {
    let folder: string;
    let files: Awaited<ReturnType<typeof writeImages>>;
    let reference: TorchSegmentationReference;
    let model: CamvizModel;
    let input: tf.Tensor4D;
    const regionNames = ['box', ...(output === 'stride8' ? [HALF_CELLS] : []), 'mask'];
    before(async () => {
      await useBackend('cpu');
      folder = await mkdtemp(join(tmpdir(), 'camviz-segmentation-'));
      files = await writeImages(folder);
      const maskRegion: TorchRegion = { mask: files.maskBytes, width: MASK_SIDE, height: MASK_SIDE };
      const regions: Record<string, TorchRegion> = Object.fromEntries(regionNames.map((name) => [name, BOXES[name] !== undefined ? { box: BOXES[name] } : maskRegion]));
      reference = makeTorchSegmentationModel(python!, folder, { arch, output, side: SIDE, classes: CLASSES, opset: OPSET, pixels: files.pixels, category: CATEGORY, layers, regions });
      model = await loadModel(join(folder, 'model.onnx'), { preprocess: 'none', engine: 'tfjs' });
      input = nhwcInput(reference.input, 1, SIDE);
    });
    after(async () => {
      input?.dispose();
      model?.dispose();
      await rm(folder, { recursive: true, force: true });
    });

    test('the logits as PyTorch computes them', async () => {
      assert.deepEqual(reference.outputShape, [1, CLASSES, outputSide, outputSide]);
      if (output === 'full') assert.ok(reference.ops.includes('Resize'), reference.ops.join(' '));
      const values = await model.network().forward(input);
      const nchw = tf.tidy(() => tf.transpose(values.output, [0, 3, 1, 2]));
      assert.deepEqual(values.output.shape, [1, outputSide, outputSide, CLASSES]);
      assertCloseTo(nchw.dataSync(), reference.output, 1e-4, 'logits');
      nchw.dispose();
      disposeValues(values);
    });

    for (const name of regionNames) {
      test(`region '${name}': the cells weigh as PyTorch's mask, and Y and the Grad-CAM maps at ${layers.join(', ')} are PyTorch's`, async () => {
        const expected = reference.regions[name]!;
        const target = await regionTarget(name, files.mask);
        assert.deepEqual(Array.from(target.cellWeights(0, outputSide, outputSide)), expected.weights, 'cell weights');
        // At 1/8, the half-cell box weighs its border cells by a half (the 4 x 4 samples of a cell are the 2 x 2 blocks the mask is made of, so its shares are exact too).
        if (name !== 'mask') assert.equal(expected.weights.some((weight) => weight > 0 && weight < 1), name === HALF_CELLS, 'cells in part');
        const { maps, score } = await regionGradCam(model, input, target, layers);
        assertScoreClose(score, expected.score, 'Y');
        layers.forEach((layer, i) => {
          const map = maps[i]!;
          assert.deepEqual([map.height, map.width], expected.camShapes[layer], `${layer}'s map shape`);
          assertCloseTo(map.data, expected.cams[layer]!, mapTolerance, `${layer}'s map`);
          assert.ok(expected.cams[layer]!.some((value) => value > 0), `${layer}'s map must not be empty`);
        });
      });
    }

    test("the gradient of the box's Y with respect to the input as PyTorch computes it", { skip: skipInputGradient }, async () => {
      const target = await regionTarget('box', files.mask);
      const objective = (values: Parameters<RegionTarget['scores']>[0]): tf.Scalar =>
        tf.tidy(() => tf.reshape(tf.slice(target.scores(values, [0]), [0, CATEGORY], [1, 1]), []) as tf.Scalar);
      const result = await model.network().backward(input, [objective], { sources: 'input', layers: [] });
      const gradient = tf.tidy(() => tf.transpose(result.gradients[0]![0]!, [0, 3, 1, 2]));
      assertCloseTo(gradient.dataSync(), reference.regions.box!.inputGradient, 1e-4, 'input gradient');
      tf.dispose([gradient, ...result.gradients.flat()]);
      disposeValues(result.values);
    });

    test('with ONNX Runtime running the forward pass: the same Y and maps for the box and the mask', { skip: skipOrt }, async () => {
      const onOrt = await loadModel(join(folder, 'model.onnx'), { preprocess: 'none', engine: 'onnxruntime' });
      try {
        assert.equal((await onOrt.engine()).kind, 'onnxruntime');
        for (const name of ['box', 'mask']) {
          const expected = reference.regions[name]!;
          const target = await regionTarget(name, files.mask);
          const { maps, score } = await regionGradCam(onOrt, input, target, layers);
          assertScoreClose(score, expected.score, `${name}: Y`);
          layers.forEach((layer, i) => assertCloseTo(maps[i]!.data, expected.cams[layer]!, mapTolerance, `${name}: ${layer}'s map`));
        }
      } finally {
        onOrt.dispose();
      }
    });

    if (arch === 'lraspp' && output === 'full') {
      test('camviz cam --target region --region --raw writes PyTorch\'s map as .npy', async () => {
        const out = join(folder, 'out');
        const [layer] = layers;
        const box = BOXES.box!;
        const args = ['cam', files.image, '--model', join(folder, 'model.onnx'), '--preprocess', 'torch', '--method', 'gradcam', '--layer', layer!];
        const run = await runCli([...args, '--target', 'region', '--region', box.join(','), '--class', String(CATEGORY), '--raw', '-q', '--out', out], { cwd: folder, timeoutMs: 120_000 });
        assert.equal(run.code, 0, run.stderr);
        const npy = readNpy(join(out, `image.gradcam.region.${CATEGORY}.npy`));
        assert.deepEqual(npy.shape, reference.regions.box!.camShapes[layer!]);
        assertCloseTo(npy.data, reference.regions.box!.cams[layer!]!, 1e-4, 'the .npy map');
      });
    }
  });
}
