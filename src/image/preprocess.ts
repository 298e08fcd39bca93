/**
 * Turning RGB pixels into model input. Done in plain JS over typed arrays:
 * one pass, no intermediate tensors, and no tfjs (a planned run, which
 * loads none, prepares its input here too; model/predict.ts makes the tensor).
 */
import { UsageError } from '../util/errors.js';
import { PREPROCESS_NAMES, type PreprocessName } from './preprocess-names.js';

export { PREPROCESS_NAMES, type PreprocessName } from './preprocess-names.js';


const TORCH_MEAN = [0.485, 0.456, 0.406];
const TORCH_STD = [0.229, 0.224, 0.225];
const CAFFE_BGR_MEAN = [103.939, 116.779, 123.68];

export function parsePreprocess(value: string): PreprocessName {
  if ((PREPROCESS_NAMES as readonly string[]).includes(value)) return value as PreprocessName;
  throw new UsageError(`unknown preprocessing '${value}': choose one of ${PREPROCESS_NAMES.join(', ')}`);
}

/** Per-channel `scale * x + offset` for each preprocessing (channel order after any swap). */
function affine(name: PreprocessName): { scale: number[]; offset: number[]; bgr: boolean } {
  switch (name) {
    case 'tf':
      return { scale: [1 / 127.5, 1 / 127.5, 1 / 127.5], offset: [-1, -1, -1], bgr: false };
    case 'torch':
      return {
        scale: TORCH_STD.map((std) => 1 / (255 * std)),
        offset: TORCH_MEAN.map((mean, c) => -mean / TORCH_STD[c]!),
        bgr: false,
      };
    case 'caffe':
      return { scale: [1, 1, 1], offset: CAFFE_BGR_MEAN.map((mean) => -mean), bgr: true };
    case 'unit':
      return { scale: [1 / 255, 1 / 255, 1 / 255], offset: [0, 0, 0], bgr: false };
    case 'none':
      return { scale: [1, 1, 1], offset: [0, 0, 0], bgr: false };
  }
}

/** Writes preprocessed RGB (HWC uint8) pixels into `out` at `offset`. */
export function preprocessInto(pixels: Uint8Array, name: PreprocessName, out: Float32Array, offset = 0): void {
  const { scale, offset: shift, bgr } = affine(name);
  const [s0, s1, s2] = scale as [number, number, number];
  const [o0, o1, o2] = shift as [number, number, number];
  // The channel order is chosen once, outside the loops: a test per pixel made the pass twice as slow.
  if (bgr) {
    for (let i = 0; i < pixels.length; i += 3) {
      const j = offset + i;
      out[j] = pixels[i + 2]! * s0 + o0;
      out[j + 1] = pixels[i + 1]! * s1 + o1;
      out[j + 2] = pixels[i]! * s2 + o2;
    }
  } else {
    for (let i = 0; i < pixels.length; i += 3) {
      const j = offset + i;
      out[j] = pixels[i]! * s0 + o0;
      out[j + 1] = pixels[i + 1]! * s1 + o1;
      out[j + 2] = pixels[i + 2]! * s2 + o2;
    }
  }
}

/**
 * Grey level of RGB pixels as PIL's `convert('L')` computes it: ITU-R BT.601
 * luma (R*299 + G*587 + B*114)/1000, in PIL's 16-bit fixed point, rounded.
 */
export function lumaOf(r: number, g: number, b: number): number {
  return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
}

/** Writes the preprocessed grey level of RGB (HWC uint8) pixels into `out` at `offset`, one value per pixel. */
export function preprocessGreyInto(pixels: Uint8Array, name: PreprocessName, out: Float32Array, offset = 0): void {
  const { scale, offset: shift } = affine(name);
  // One channel has no channel order: the per-channel constants are averaged (equal for tf, unit and none).
  const s = (scale[0]! + scale[1]! + scale[2]!) / 3;
  const o = (shift[0]! + shift[1]! + shift[2]!) / 3;
  for (let i = 0, j = offset; i < pixels.length; i += 3, j += 1) {
    out[j] = lumaOf(pixels[i]!, pixels[i + 1]!, pixels[i + 2]!) * s + o;
  }
}

/**
 * The values of a [batch, height, width, channels] input from RGB images of
 * one size: 3 channels, or 1 (grey, for single-channel models such as MNIST's).
 */
export function preprocessImages(images: readonly Uint8Array[], height: number, width: number, name: PreprocessName, channels: 1 | 3 = 3): Float32Array {
  const perImage = height * width * 3;
  const perInput = height * width * channels;
  const data = new Float32Array(perInput * images.length);
  images.forEach((pixels, i) => {
    if (pixels.length !== perImage) throw new Error(`image ${i} has ${pixels.length} values, expected ${perImage}`);
    if (channels === 1) preprocessGreyInto(pixels, name, data, i * perInput);
    else preprocessInto(pixels, name, data, i * perInput);
  });
  return data;
}
