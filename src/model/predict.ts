/**
 * Classification: top-k classes with probabilities for a batch of images.
 */
import * as tf from '../engine/tf.js';
import { CamvizError } from '../util/errors.js';
import { topClassIndices } from './top-classes.js';

export { topClassIndices } from './top-classes.js';
import type { CamvizModel } from './load.js';
import { disposeValues } from '../executor/network.js';
import { type PreprocessName, preprocessImages } from '../image/preprocess.js';

export interface Prediction {
  index: number;
  label: string | null;
  probability: number;
}

/**
 * A [batch, height, width, channels] input tensor from RGB images of one
 * size: 3 channels, or 1 (grey, for single-channel models such as MNIST's).
 */
export function toInputTensor(images: readonly Uint8Array[], height: number, width: number, name: PreprocessName, channels: 1 | 3 = 3): tf.Tensor4D {
  // Kept at hand: ONNX Runtime takes these values as they are (tf.hostValues).
  return tf.tensorOfHost(preprocessImages(images, height, width, name, channels), [images.length, height, width, channels]) as tf.Tensor4D;
}

/** Preprocessed input tensor for images already at the model's input size. */
export function inputTensor(model: CamvizModel, images: readonly Uint8Array[]): tf.Tensor4D {
  const { width, height } = model.meta.inputSize;
  return toInputTensor(images, height, width, model.meta.preprocess, inputChannels(model));
}

/** 1 for single-channel (grey) models, else 3. */
export function inputChannels(model: CamvizModel): 1 | 3 {
  const shape = model.layersModel?.inputs[0]?.shape ?? model.graphModel?.inputs[0]?.shape;
  return shape?.length === 4 && shape[3] === 1 ? 1 : 3;
}

/** Class probabilities [batch, classes] for model-size RGB images. */
export async function classProbabilities(model: CamvizModel, images: readonly Uint8Array[]): Promise<Float32Array[]> {
  const input = inputTensor(model, images);
  try {
    if (model.layersModel !== undefined) {
      const values = await (await model.executor()).forward(input);
      try {
        return outputRows(values.probabilities);
      } finally {
        disposeValues(values);
      }
    }
    const output = tf.tidy(() => {
      const raw = model.graphModel!.predict(input);
      const first = (Array.isArray(raw) ? raw[0] : raw instanceof tf.TensorClass ? raw : Object.values(raw)[0]) as tf.Tensor;
      const flat = tf.reshape(first, [images.length, -1]);
      return looksLikeProbabilities(flat) ? flat : tf.softmax(flat);
    });
    try {
      return outputRows(output as tf.Tensor2D);
    } finally {
      output.dispose();
    }
  } finally {
    input.dispose();
  }
}

/** Rows summing to 1 with no negative entry are already probabilities. */
function looksLikeProbabilities(flat: tf.Tensor): boolean {
  return tf.tidy(() => {
    const minimum = tf.min(flat).dataSync()[0]!;
    const sums = tf.sum(flat, 1).dataSync();
    return minimum >= 0 && Array.from(sums).every((sum) => Math.abs(sum - 1) < 1e-3);
  });
}

/** A [batch, classes] matrix as one Float32Array per row. */
export function rowsOf(matrix: tf.Tensor2D): Float32Array[] {
  const [batch, classes] = matrix.shape;
  const data = matrix.dataSync() as Float32Array;
  return Array.from({ length: batch }, (_, i) => data.slice(i * classes, (i + 1) * classes));
}

/**
 * The model's output rows (scores or probabilities), refused when one holds
 * NaN: damaged weights give NaN on ONNX Runtime, where tfjs may compute
 * numbers from the same file, and a ranking or a map of NaN is no result
 * (predict printed "NaN%", gradcam wrote a picture of class 0, both as
 * successes).
 */
export function outputRows(matrix: tf.Tensor2D): Float32Array[] {
  const rows = rowsOf(matrix);
  if (rows.some((row) => row.some(Number.isNaN))) throw new CamvizError("the model's output is not a number (NaN): its weights may be damaged");
  return rows;
}

/** The `k` most probable classes, most probable first. */
export function topK(probabilities: Float32Array, k: number, labels?: readonly string[]): Prediction[] {
  return topClassIndices(probabilities, k).map((index) => ({
    index,
    label: labels?.[index] ?? null,
    probability: probabilities[index]!,
  }));
}

