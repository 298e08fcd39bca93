/**
 * pytorch-grad-cam's `aug_smooth`: test-time augmentation with ttach's
 * `Compose([HorizontalFlip(), Multiply(factors=[0.9, 1, 1.1])])` — six
 * versions of each input (unflipped and flipped, each with the input tensor
 * multiplied by 0.9, 1 and 1.1), each map min-max normalised, flipped back
 * into image coordinates, and averaged. Each version is a pass of its own
 * over the batch, so that a stop (`request.signal`) is seen between them:
 * as one batch of six, an image's passes ran to their end once started.
 */
import * as tf from '../engine/tf.js';
import type { Executor } from '../executor/executor.js';
import { disposeValues } from '../executor/network.js';
import type { FeatureMap } from '../render/maps.js';
import { minMaxNormalize } from '../render/normalize.js';
import { seeStop } from '../util/see-stop.js';
import { type CamMethod, type CamRequest, type CamResult, type Evidence, requestTarget } from './base.js';
import { ClassChooser } from './classes.js';

const FLIPS = [false, true] as const;
const FACTORS = [0.9, 1, 1.1] as const;

interface Augmentation {
  flip: boolean;
  factor: number;
}

export async function augmentedCompute<E extends Evidence>(method: CamMethod<E>, network: Executor, request: CamRequest): Promise<CamResult[][]> {
  const batch = request.input.shape[0];
  const classes = await resolveTopClasses(network, request);
  const augmentations: Augmentation[] = FLIPS.flatMap((flip) => FACTORS.map((factor) => ({ flip, factor })));
  // [augmentation][image][rank]
  const results: CamResult[][][] = [];
  for (const augmentation of augmentations) {
    await seeStop(request.signal);
    results.push(await augmentedPass(method, network, request, augmentation, classes));
  }
  const identity = augmentations.findIndex(({ flip, factor }) => !flip && factor === 1);
  return Array.from({ length: batch }, (_, image) =>
    classes[image]!.map((_, rank) => {
      const versions = augmentations.map((augmentation, a) => ({ ...augmentation, result: results[a]![image]![rank]! }));
      const base = versions[identity]!.result;
      return { ...base, image, map: averageNormalised(versions.map(({ flip, result }) => (flip ? flipMap(result.map) : result.map))) };
    }),
  );
}

/** The maps of one version of the batch: [image][rank]. */
async function augmentedPass<E extends Evidence>(method: CamMethod<E>, network: Executor, request: CamRequest, { flip, factor }: Augmentation, classes: number[][]): Promise<CamResult[][]> {
  const augmented = tf.tidy(() => tf.mul(flip ? tf.reverse(request.input, 2) : request.input, factor)) as tf.Tensor4D;
  try {
    return await method.compute(network, { ...request, input: augmented, classes: { kind: 'perImage', classes } });
  } finally {
    augmented.dispose();
  }
}

/** The classes per image; a top-k request is resolved on the unaugmented input. */
async function resolveTopClasses(network: Executor, request: CamRequest): Promise<number[][]> {
  const chooser = new ClassChooser(request.classes, request.input.shape[0], requestTarget(request).units?.(network));
  if (chooser.known) return chooser.perImage();
  const values = await network.forward(request.input);
  try {
    return chooser.perImage(values.probabilities);
  } finally {
    disposeValues(values);
  }
}

function flipMap(map: FeatureMap): FeatureMap {
  const data = new Float32Array(map.data.length);
  for (let y = 0; y < map.height; y++) {
    for (let x = 0; x < map.width; x++) data[y * map.width + x] = map.data[y * map.width + map.width - 1 - x]!;
  }
  return { ...map, data };
}

function averageNormalised(maps: readonly FeatureMap[]): FeatureMap {
  const first = maps[0]!;
  const sum = new Float32Array(first.data.length);
  const normalised = new Float32Array(first.data.length);
  for (const map of maps) {
    minMaxNormalize(map.data, normalised);
    for (let i = 0; i < sum.length; i++) sum[i]! += normalised[i]!;
  }
  for (let i = 0; i < sum.length; i++) sum[i]! /= maps.length;
  return { width: first.width, height: first.height, data: sum };
}
