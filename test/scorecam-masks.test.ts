/**
 * Score-CAM's masked inputs, built in plain JS (src/cam/scorecam.ts
 * `maskedInputs`), against the tfjs formulation they replaced, computed
 * here on a small random case: each channel upsampled with aligned corners
 * (tf.image.resizeBilinear, pytorch-grad-cam's UpsamplingBilinear2d),
 * min-max normalised (a constant channel gives a zero mask), times the
 * picture. Then Score-CAM over several chunks and images: each image of a
 * batch gets its own masks, and a failing pass leaves no tensor behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { type MaskingInput, ScoreCam, alignCornersWeights, maskPasses, maskedInputs } from '../src/cam/scorecam.js';
import type { Executor } from '../src/executor/executor.js';
import { Network, disposeValues } from '../src/executor/network.js';
import { forEachBackend } from './helpers/backends.js';
import { assertAllClose, mulberry32 } from './helpers/numeric.js';

const MAP = { height: 3, width: 4, channels: 6 };
const PICTURE = { height: 11, width: 9, channels: 3 };
const CONSTANT_CHANNEL = 2;

/** Seeded values in [-1, 1). */
function randoms(count: number, seed: number): Float32Array {
  const next = mulberry32(seed);
  return Float32Array.from({ length: count }, () => next() * 2 - 1);
}

/** Random activations [h, w, C] whose channel CONSTANT_CHANNEL is constant, and a random picture. */
function randomCase(seed: number): { maps: Float32Array; picture: Float32Array } {
  const maps = randoms(MAP.height * MAP.width * MAP.channels, seed);
  for (let p = 0; p < MAP.height * MAP.width; p++) maps[p * MAP.channels + CONSTANT_CHANNEL] = 0.25;
  return { maps, picture: randoms(PICTURE.height * PICTURE.width * PICTURE.channels, seed + 1) };
}

/** Channels [first, first + count). */
function channelRange(first: number, count: number): number[] {
  return Array.from({ length: count }, (_, k) => first + k);
}

function maskingOf(maps: Float32Array, picture: Float32Array): MaskingInput {
  return {
    maps: { data: maps, ...MAP },
    picture: { data: picture, ...PICTURE },
    upsampling: { rows: alignCornersWeights(MAP.height, PICTURE.height), columns: alignCornersWeights(MAP.width, PICTURE.width) },
  };
}

/** The tfjs formulation of channels [first, first + count): [count, H, W, 3]. */
function tfjsMaskedInputs(maps: Float32Array, picture: Float32Array, first: number, count: number): Float32Array {
  return tf.tidy(() => {
    const activations = tf.tensor4d(maps, [1, MAP.height, MAP.width, MAP.channels]);
    const input = tf.tensor4d(picture, [1, PICTURE.height, PICTURE.width, PICTURE.channels]);
    const chosen = tf.slice(activations, [0, 0, 0, first], [1, MAP.height, MAP.width, count]);
    const upsampled = tf.image.resizeBilinear(chosen, [PICTURE.height, PICTURE.width], true, false);
    const min = tf.min(upsampled, [1, 2], true);
    const range = tf.sub(tf.max(upsampled, [1, 2], true), min);
    const normalised = tf.where(tf.greater(range, 0), tf.div(tf.sub(upsampled, min), tf.maximum(range, 1e-12)), tf.zerosLike(upsampled));
    return tf.mul(tf.transpose(normalised, [3, 1, 2, 0]), input).dataSync() as Float32Array;
  });
}

/** input 6x6x3 -> `conv` (3x3, stride 2, same: 3x3x5 maps) -> relu -> GAP -> dense 3. */
function tinyModel(): tfl.LayersModel {
  const input = tfl.input({ shape: [6, 6, 3] });
  const conv = tfl.layers.conv2d({ filters: 5, kernelSize: 3, strides: 2, padding: 'same', name: 'conv', kernelInitializer: tfl.initializers.randomNormal({ seed: 7 }) });
  const relu = tfl.layers.reLU({ name: 'relu' });
  const gap = tfl.layers.globalAveragePooling2d({ name: 'gap' });
  const logits = tfl.layers.dense({ units: 3, name: 'logits', kernelInitializer: tfl.initializers.randomNormal({ seed: 8 }) });
  return tfl.model({ inputs: input, outputs: logits.apply(gap.apply(relu.apply(conv.apply(input)))) as tfl.SymbolicTensor });
}

async function scoreCamMaps(executor: Executor, input: tf.Tensor4D, batchSize: number, classIndex: number): Promise<Float32Array[]> {
  const method = new ScoreCam();
  method.batchSize = batchSize;
  const node = executor.graph.findNodes('conv')[0]!;
  const results = await method.compute(executor, { input, layers: [node], classes: { kind: 'explicit', classes: [classIndex] } });
  return results.map((perImage) => perImage[0]!.map.data);
}

/** tinyModel's trunk with a relu whose channels DEAD_CHANNELS are zero everywhere (their bias far below any value the conv gives). */
const DEAD_CHANNELS = [1, 3];
function modelWithDeadChannels(): tfl.LayersModel {
  const model = tinyModel();
  const conv = model.getLayer('conv');
  const [kernel, bias] = conv.getWeights();
  const biasValues = bias!.dataSync().slice();
  for (const channel of DEAD_CHANNELS) biasValues[channel] = -1e3;
  conv.setWeights([kernel!, tf.tensor1d(biasValues)]);
  return model;
}

test('maskPasses: channels of one value (dead ReLU channels) share one pass, a NaN or any difference runs alone', () => {
  const values = [
    [0.5, 0, -1, 0, Number.NaN, 0],
    [0.25, 0, 2, 0, 1, 0],
  ];
  // Channel 3 is constant at 7 on purpose: any constant gives a zero mask, not only 0.
  const data = Float32Array.from(values.flatMap((pixel) => pixel.map((value, channel) => (channel === 3 ? 7 : value))));
  const { masked, passOf } = maskPasses({ data, height: 1, width: 2, channels: 6 });
  assert.deepEqual(Array.from(masked), [0, 1, 2, 4]);
  assert.deepEqual(Array.from(passOf), [0, 1, 2, 1, 3, 1]);
});

forEachBackend((backend) => {
  test(`${backend}: Score-CAM with dead channels runs them as one pass and equals the map of one pass per channel`, async () => {
    const model = modelWithDeadChannels();
    const network = Network.of(model);
    const input = tf.tensor4d(randoms(6 * 6 * 3, 43), [1, 6, 6, 3]);
    let maskedImages = 0;
    const counting: Executor = Object.assign(Object.create(network) as Network, {
      forward: async (...args: Parameters<Network['forward']>) => {
        const batch = args[0] as tf.Tensor;
        // The first pass is the image itself; every later one holds masked inputs.
        if (maskedImages >= 0) maskedImages += batch.shape[0]!;
        return network.forward(...args);
      },
    });
    try {
      const node = network.graph.findNodes('relu')[0]!;
      const classIndex = 2;
      // One pass per channel, computed here: each channel's masked input, its class score, the softmax, the weighted channel sum, ReLU.
      const activations = await network.forward(input, { layers: [node] });
      const maps = activations.layers.get('relu')!.dataSync() as Float32Array;
      disposeValues(activations);
      const channels = 5;
      const masking: MaskingInput = {
        maps: { data: maps, height: 3, width: 3, channels },
        picture: { data: input.dataSync() as Float32Array, height: 6, width: 6, channels: 3 },
        upsampling: { rows: alignCornersWeights(3, 6), columns: alignCornersWeights(3, 6) },
      };
      assert.ok(DEAD_CHANNELS.every((channel) => maps.filter((_, i) => i % channels === channel).every((value) => value === 0)), 'the dead channels are zero');
      const scores: number[] = [];
      for (let channel = 0; channel < channels; channel++) {
        const maskedInput = tf.tensor4d(maskedInputs(masking, [channel]), [1, 6, 6, 3]);
        const out = await network.forward(maskedInput);
        scores.push(out.scores.dataSync()[classIndex]!);
        disposeValues(out);
        maskedInput.dispose();
      }
      const largest = Math.max(...scores);
      const weights = scores.map((score) => Math.exp(score - largest));
      const total = weights.reduce((sum, weight) => sum + weight, 0);
      const expected = Array.from({ length: 9 }, (_, p) => Math.max(0, weights.reduce((sum, weight, channel) => sum + (weight / total) * maps[p * channels + channel]!, 0)));

      maskedImages = 0;
      const method = new ScoreCam();
      const [result] = await method.compute(counting, { input, layers: [node], classes: { kind: 'explicit', classes: [classIndex] } });
      assert.equal(maskedImages - 1, channels - DEAD_CHANNELS.length + 1, 'one masked input per live channel, one for the dead ones');
      assertAllClose(result![0]!.map.data, Float32Array.from(expected), 1e-5, 'Score-CAM');
    } finally {
      input.dispose();
      model.dispose();
    }
  });

  test(`${backend}: the JS masked inputs equal the tfjs formulation (upsampling with aligned corners, min-max, times the picture)`, () => {
    const { maps, picture } = randomCase(11);
    const masking = maskingOf(maps, picture);
    for (const [first, count] of [
      [0, MAP.channels],
      [1, 4],
      [5, 1],
    ] as const) {
      const expected = tfjsMaskedInputs(maps, picture, first, count);
      assertAllClose(maskedInputs(masking, channelRange(first, count)), expected, 1e-6, `channels ${first}..${first + count - 1}`);
    }
  });

  test(`${backend}: the masked inputs as NCHW are the NHWC ones transposed, bit for bit, and fill the buffer given`, () => {
    const { maps, picture } = randomCase(17);
    const masking = maskingOf(maps, picture);
    const [first, count] = [1, 5];
    const pixels = PICTURE.height * PICTURE.width;
    const nhwc = maskedInputs(masking, channelRange(first, count));
    const buffer = new Float32Array(count * pixels * PICTURE.channels).fill(Number.NaN);
    const nchw = maskedInputs(masking, channelRange(first, count), 'nchw', buffer);
    assert.equal(nchw, buffer);
    for (let k = 0; k < count; k++) {
      for (let p = 0; p < pixels; p++) {
        for (let c = 0; c < PICTURE.channels; c++) {
          const [planar, interleaved] = [nchw[(k * PICTURE.channels + c) * pixels + p]!, nhwc[(k * pixels + p) * PICTURE.channels + c]!];
          assert.ok(Object.is(planar, interleaved), `mask ${k}, pixel ${p}, channel ${c}: ${planar} vs ${interleaved}`);
        }
      }
    }
    assert.deepEqual(Array.from(maskedInputs(masking, channelRange(first, count), 'nhwc', buffer)), Array.from(nhwc), 'NHWC into the buffer');
    assert.throws(() => maskedInputs(masking, channelRange(first, count), 'nchw', buffer.subarray(1)), /maskedInputs: an output of/);
  });

  test(`${backend}: pictures of 1 and 2 channels (the general loop) give the masks of the same planes of an RGB picture (the unrolled one), bit for bit`, () => {
    const { maps, picture } = randomCase(19);
    const pixels = PICTURE.height * PICTURE.width;
    const rgb = maskingOf(maps, picture);
    for (const layout of ['nhwc', 'nchw'] as const) {
      const fromRgb = maskedInputs(rgb, channelRange(0, MAP.channels), layout);
      for (const channels of [1, 2]) {
        const planes = Float32Array.from({ length: pixels * channels }, (_, i) => picture[Math.floor(i / channels) * 3 + (i % channels)]!);
        const fewer = maskedInputs({ ...rgb, picture: { ...rgb.picture, data: planes, channels } }, channelRange(0, MAP.channels), layout);
        const at = (k: number, p: number, c: number, of: number): number => (layout === 'nchw' ? (k * of + c) * pixels + p : (k * pixels + p) * of + c);
        for (let k = 0; k < MAP.channels; k++) {
          for (let p = 0; p < pixels; p++) {
            for (let c = 0; c < channels; c++) {
              assert.ok(Object.is(fewer[at(k, p, c, channels)], fromRgb[at(k, p, c, 3)]), `${layout}, ${channels} channel(s): mask ${k}, pixel ${p}, channel ${c}`);
            }
          }
        }
      }
    }
  });

  test(`${backend}: a constant channel (range 0) gives a zero mask, in both formulations`, () => {
    const { maps, picture } = randomCase(23);
    const size = PICTURE.height * PICTURE.width * PICTURE.channels;
    const masked = maskedInputs(maskingOf(maps, picture), channelRange(0, MAP.channels));
    assert.ok(masked.subarray(CONSTANT_CHANNEL * size, (CONSTANT_CHANNEL + 1) * size).every((value) => value === 0));
    assert.ok(tfjsMaskedInputs(maps, picture, CONSTANT_CHANNEL, 1).every((value) => value === 0));
    // The other channels do mask the picture.
    assert.ok(masked.subarray(0, size).some((value) => value !== 0));
  });

  test(`${backend}: a channel with a NaN gives a zero mask, as in the tfjs formulation`, () => {
    const { maps, picture } = randomCase(29);
    const channel = 4;
    maps[(1 * MAP.width + 2) * MAP.channels + channel] = Number.NaN;
    const expected = tfjsMaskedInputs(maps, picture, channel, 1);
    assert.ok(expected.every((value) => value === 0), 'the tfjs formulation gives zeros');
    assert.deepEqual(Array.from(maskedInputs(maskingOf(maps, picture), [channel])), Array.from(expected));
  });

  test(`${backend}: Score-CAM over several chunks gives each image of a batch its own masks, and leaves no tensor behind`, async () => {
    const model = tinyModel();
    const network = Network.of(model);
    const pictures = [randoms(6 * 6 * 3, 31), randoms(6 * 6 * 3, 37)];
    const batch = tf.tensor4d([...pictures[0]!, ...pictures[1]!], [2, 6, 6, 3]);
    const alone = pictures.map((picture) => tf.tensor4d(picture, [1, 6, 6, 3]));
    try {
      await scoreCamMaps(network, alone[0]!, 5, 1); // the network's first pass keeps what it caches
      const tensorsBefore = tf.memory().numTensors;
      // Chunks of 2 of 5 channels: three passes per image, the last one short.
      const together = await scoreCamMaps(network, batch, 2, 1);
      assert.equal(tf.memory().numTensors, tensorsBefore);
      for (const [image, input] of alone.entries()) {
        const [single] = await scoreCamMaps(network, input, 5, 1);
        assertAllClose(together[image]!, single!, 1e-5, `image ${image}`);
      }
      assert.ok(together[0]!.some((value, i) => Math.abs(value - together[1]![i]!) > 1e-3), 'the two images give different maps');
    } finally {
      tf.dispose([batch, ...alone]);
      model.dispose();
    }
  });

  test(`${backend}: a masked pass that fails rejects Score-CAM and leaves no tensor behind`, async () => {
    const model = tinyModel();
    const network = Network.of(model);
    const input = tf.tensor4d(randoms(6 * 6 * 3, 41), [1, 6, 6, 3]);
    let passes = 0;
    // The first pass (the activations) and the first chunk run; the second chunk fails.
    const failing: Executor = Object.assign(Object.create(network) as Network, {
      forward: async (...args: Parameters<Network['forward']>) => {
        passes += 1;
        if (passes === 3) throw new Error('the executor failed');
        return network.forward(...args);
      },
    });
    try {
      await scoreCamMaps(network, input, 5, 0); // the network's first pass keeps what it caches
      passes = 0;
      const tensorsBefore = tf.memory().numTensors;
      await assert.rejects(scoreCamMaps(failing, input, 2, 0), /the executor failed/);
      assert.equal(tf.memory().numTensors, tensorsBefore);
    } finally {
      input.dispose();
      model.dispose();
    }
  });
});
