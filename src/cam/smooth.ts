/**
 * pytorch-grad-cam's `aug_smooth`: test-time augmentation with ttach's
 * `Compose([HorizontalFlip(), Multiply(factors=[0.9, 1, 1.1])])` — six
 * versions of each input (unflipped and flipped, each with the input tensor
 * multiplied by 0.9, 1 and 1.1), each map min-max normalised, flipped back
 * into image coordinates, and averaged. All six run as one batch.
 */
import * as tf from '../engine/tf.js';
import type { Network } from '../executor/network.js';
import type { CamMethod, CamRequest, CamResult, FeatureMap } from './base.js';

const FLIPS = [false, true] as const;
const FACTORS = [0.9, 1, 1.1] as const;

export function augmentedCompute(method: CamMethod, network: Network, request: CamRequest): CamResult[][] {
  const batch = request.input.shape[0];
  const classes = resolveTopClasses(network, request);
  const augmentations = FLIPS.flatMap((flip) => FACTORS.map((factor) => ({ flip, factor })));
  const augmented = tf.tidy(() =>
    tf.concat(augmentations.map(({ flip, factor }) => tf.mul(flip ? tf.reverse(request.input, 2) : request.input, factor))),
  ) as tf.Tensor4D;
  let results: CamResult[][];
  try {
    results = method.compute(network, {
      ...request,
      input: augmented,
      classes: { kind: 'perImage', classes: augmentations.flatMap(() => classes) },
    });
  } finally {
    augmented.dispose();
  }
  const identity = augmentations.findIndex(({ flip, factor }) => !flip && factor === 1);
  return Array.from({ length: batch }, (_, image) =>
    classes[image]!.map((_, rank) => {
      const versions = augmentations.map((augmentation, a) => ({ ...augmentation, result: results[a * batch + image]![rank]! }));
      const base = versions[identity]!.result;
      return { ...base, image, map: averageNormalised(versions.map(({ flip, result }) => (flip ? flipMap(result.map) : result.map))) };
    }),
  );
}

/** The classes per image; a top-k request is resolved on the unaugmented input. */
function resolveTopClasses(network: Network, request: CamRequest): number[][] {
  const batch = request.input.shape[0];
  if (request.classes.kind === 'perImage') return request.classes.classes.map((classes) => [...classes]);
  if (request.classes.kind === 'explicit') {
    const explicit = [...request.classes.classes];
    return Array.from({ length: batch }, () => explicit);
  }
  const k = request.classes.k;
  const values = network.forward(request.input);
  try {
    const probabilities = values.probabilities.arraySync();
    return probabilities.map((row) =>
      Array.from(row.keys())
        .sort((a, b) => row[b]! - row[a]! || a - b)
        .slice(0, k),
    );
  } finally {
    tf.dispose([values.output, values.scores, values.probabilities]);
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
  for (const map of maps) {
    let min = Infinity;
    let max = -Infinity;
    for (const value of map.data) {
      if (value < min) min = value;
      if (value > max) max = value;
    }
    const range = max - min;
    if (!(range > 0)) continue;
    for (let i = 0; i < sum.length; i++) sum[i]! += (map.data[i]! - min) / range;
  }
  for (let i = 0; i < sum.length; i++) sum[i]! /= maps.length;
  return { width: first.width, height: first.height, data: sum };
}
