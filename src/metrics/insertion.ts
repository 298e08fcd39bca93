/**
 * Insertion (Petsiuk et al. 2018, RISE's `CausalMetric` in 'ins' mode): the
 * most relevant pixels first are put back into a blurred copy of the input,
 * in `steps` steps; the score is the area under the class probability
 * curve. Higher is better.
 *
 * The blur is RISE's: `gkern(11, 5)`, a unit impulse in an 11 x 11 array
 * passed through scipy's `gaussian_filter(sigma=5)` (radius 20, mode
 * 'reflect', so the tails fold back into the array), applied per channel by
 * `conv2d(padding=5)`, i.e. with zeros beyond the border.
 */
import { causalCurve } from './curve.js';
import type { PreprocessedImage, Measurement, ReferenceProbabilities } from './types.js';

const KERNEL_SIZE = 11;
const SIGMA = 5;
/** scipy.ndimage's default `truncate`. */
const TRUNCATE = 4;

/** scipy's 'reflect' boundary (half-sample symmetric: d c b a | a b c d | d c b a) of index i in [0, n). */
function reflectIndex(i: number, n: number): number {
  const period = 2 * n;
  const folded = ((i % period) + period) % period;
  return folded < n ? folded : period - 1 - folded;
}

/** One axis of RISE's kernel: scipy's normalised Gaussian weights applied to an impulse at the centre. */
export function riseKernel1d(size = KERNEL_SIZE, sigma = SIGMA): Float64Array {
  const radius = Math.floor(TRUNCATE * sigma + 0.5);
  const weights = Array.from({ length: 2 * radius + 1 }, (_, k) => Math.exp((-0.5 * (k - radius) ** 2) / sigma ** 2));
  const total = weights.reduce((sum, weight) => sum + weight, 0);
  const centre = Math.floor(size / 2);
  const kernel = new Float64Array(size);
  for (let i = 0; i < size; i++) {
    for (let k = -radius; k <= radius; k++) if (reflectIndex(i + k, size) === centre) kernel[i]! += weights[k + radius]! / total;
  }
  return kernel;
}

/** The image convolved per channel with the separable kernel, zeros beyond the border. */
export function blurImage(image: PreprocessedImage, kernel: Float64Array = riseKernel1d()): Float32Array {
  const rows = convolveAxis(image.pixels, image, kernel, 'x');
  return Float32Array.from(convolveAxis(rows, image, kernel, 'y'));
}

/** One axis of the separable convolution, zeros beyond the border. */
function convolveAxis(values: ArrayLike<number>, { width, height, channels }: PreprocessedImage, kernel: Float64Array, axis: 'x' | 'y'): Float64Array {
  const half = Math.floor(kernel.length / 2);
  const [length, stride] = axis === 'x' ? [width, channels] : [height, width * channels];
  const out = new Float64Array(values.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const position = axis === 'x' ? x : y;
      for (let c = 0; c < channels; c++) {
        const centre = (y * width + x) * channels + c;
        let sum = 0;
        for (let k = Math.max(0, half - position); k < Math.min(kernel.length, length + half - position); k++) sum += kernel[k]! * values[centre + (k - half) * stride]!;
        out[centre] = sum;
      }
    }
  }
  return out;
}

export function insertion(image: PreprocessedImage, blurred: Float32Array, order: Int32Array, steps: number, references: ReferenceProbabilities): Measurement {
  const ends = { start: blurred, finish: image.pixels, first: references.blurred, last: references.original };
  return causalCurve(image, ends, order, steps, (auc) => ({ insertionAuc: auc }));
}
