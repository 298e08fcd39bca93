/**
 * ROAD, RemOve And Debias (Rong et al. 2022), as pytorch-grad-cam's
 * `ROADMostRelevantFirstAverage`, `ROADLeastRelevantFirstAverage` and
 * `ROADCombined` with their default percentiles 10, 20, ..., 90:
 * - MoRF at percentile p removes the pixels whose map value is at or above
 *   the map's p-th percentile (keeps `map < threshold`): the most relevant
 *   90%, 80%, ..., 10%;
 * - LeRF at percentile p removes those at or below it (keeps
 *   `map > threshold`): the least relevant 10%, ..., 90%;
 * removed pixels are filled by noisy linear imputation (imputer.ts). Each
 * is the mean over the percentiles of p(class | imputed) - p(class | input)
 * (pytorch-grad-cam's `return_diff`); `roadCombined` = (LeRF - MoRF) / 2.
 * A faithful map has a low (very negative) MoRF and a LeRF near 0.
 */
import { ROAD_NOISE, noisyLinearImputation } from './imputer.js';
import type { MetricValues } from './names.js';
import { quantiles } from './quantile.js';
import { mulberry32, seedOf } from './random.js';
import type { PreprocessedImage, Measurement } from './types.js';

export const ROAD_PERCENTILES: readonly number[] = [10, 20, 30, 40, 50, 60, 70, 80, 90];

/** numpy.percentile of each p (0..100) in `ps`, sorting once (see quantile.ts). */
export function percentiles(values: Float32Array, ps: readonly number[]): number[] {
  return quantiles(values, ps.map((p) => p / 100));
}

/** Kept pixels (1) for one ROAD order at one threshold. */
export function roadKeepMask(saliency: Float32Array, threshold: number, order: 'morf' | 'lerf'): Uint8Array {
  // A plain loop: Uint8Array.from with a callback costs as much as a tenth of an imputation.
  const keep = new Uint8Array(saliency.length);
  if (order === 'morf') for (let i = 0; i < saliency.length; i++) keep[i] = saliency[i]! < threshold ? 1 : 0;
  else for (let i = 0; i < saliency.length; i++) keep[i] = saliency[i]! > threshold ? 1 : 0;
  return keep;
}

/** `seed` names this map (its image, kind and class): each imputation draws its noise from its own stream. */
export function road(image: PreprocessedImage, saliency: Float32Array, seed: number, original: number, noise = ROAD_NOISE): Measurement {
  const thresholds = percentiles(saliency, ROAD_PERCENTILES);
  const impute = (order: 'morf' | 'lerf', index: number) => (out: Float32Array) =>
    out.set(noisyLinearImputation(image, roadKeepMask(saliency, thresholds[index]!, order), noise, mulberry32(seedOf(`${seed}:${order}:${ROAD_PERCENTILES[index]}`))));
  const count = ROAD_PERCENTILES.length;
  return {
    images: [...ROAD_PERCENTILES.map((_, i) => impute('morf', i)), ...ROAD_PERCENTILES.map((_, i) => impute('lerf', i))],
    finish: (probabilities): MetricValues => {
      const mean = (from: number): number => probabilities.slice(from, from + count).reduce((sum, p) => sum + (p - original), 0) / count;
      const roadMorf = mean(0);
      const roadLerf = mean(count);
      return { roadMorf, roadLerf, roadCombined: (roadLerf - roadMorf) / 2 };
    },
  };
}
