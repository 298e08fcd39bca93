/**
 * Segmentation models (SemanticSegmentationTarget): Y is the sum of class
 * c's score over a region of the image, a box or a mask given in original
 * image pixels. The region is carried to the output's resolution through
 * the image's geometry (the crop or letterbox that made the model input):
 * each output cell is weighted by the share of it the region covers
 * (sampled 4 x 4 per cell), so that a region on cell boundaries gives
 * pytorch-grad-cam's 0/1 mask. The score is the output before its
 * activation (the logits of a softmax or sigmoid head), which a 1x1
 * convolution head makes linear in the features it reads.
 */
import * as tf from '../../engine/tf.js';
import type { Executor } from '../../executor/executor.js';
import type { ForwardValues } from '../../executor/network.js';
import type { ImageGeometry, Size } from '../../image/geometry.js';
import { CamvizError, UsageError } from '../../util/errors.js';
import sharp from '../../util/sharp.js';
import type { RegionBox } from './spec.js';
import { type Target, type TargetRecord, valueShape } from './target.js';

/** A mask image: inside where `data` is not 0, row-major. */
export interface RegionMask {
  width: number;
  height: number;
  data: Uint8Array;
  /** The file it came from, for the manifest. */
  path?: string;
}

export type Region = { box: RegionBox } | { mask: RegionMask };

/** What the region needs of each image: how its original became the model input. */
export interface RegionImage {
  geometry: ImageGeometry;
  /** The image's own size (regions are given in its pixels); `geometry.original` when absent. */
  sourceSize?: Size;
}

const SAMPLES_PER_AXIS = 4;

export class RegionTarget implements Target {
  readonly kind = 'region';
  readonly layers = [];
  /** Cell weights per image, at the last output size seen. */
  private readonly weights = new Map<string, Float32Array>();

  /**
   * @param region the box or mask, in original image pixels
   * @param images each image of the request (bind them with `forImages`)
   * @param outputIndex the segmentation output among the model's outputs
   * @param outputName its name, for the manifest
   */
  constructor(
    readonly region: Region,
    private readonly images: readonly RegionImage[] = [],
    readonly outputIndex = 0,
    readonly outputName = '',
  ) {}

  /** The same region over other images (a batch's). */
  forImages(images: readonly RegionImage[]): RegionTarget {
    return new RegionTarget(this.region, images, this.outputIndex, this.outputName);
  }

  scores(values: ForwardValues, rows: readonly number[]): tf.Tensor2D {
    const map = segmentationScores(values, this.outputIndex);
    const [count, height, width] = map.shape;
    const weights = rows.slice(0, count).map((image) => this.cellWeights(image, height, width));
    const mask = tf.stack(weights.map((cells) => tf.tensor3d(cells, [height, width, 1])));
    return tf.sum(tf.mul(map, mask), [1, 2]) as tf.Tensor2D;
  }

  /** The segmentation output's classes: its last dimension [batch, h, w, classes]. */
  units(network: Executor): number | undefined {
    const key = network.graph.outputKeys[this.outputIndex];
    const shape = key === undefined ? [] : valueShape(network, key);
    return shape.length === 4 ? (shape[3] ?? undefined) : undefined;
  }

  describe(unit: number): TargetRecord {
    const where = 'box' in this.region ? { region: this.region.box } : this.region.mask.path === undefined ? {} : { mask: this.region.mask.path };
    return { kind: this.kind, class: unit, ...(this.outputName === '' ? {} : { output: this.outputName }), ...where };
  }

  /** The share of each output cell [height * width] that the region covers in image `image`. */
  cellWeights(image: number, height: number, width: number): Float32Array {
    const key = `${image}:${height}x${width}`;
    const cached = this.weights.get(key);
    if (cached !== undefined) return cached;
    const picture = this.images[image];
    if (picture === undefined) throw new Error(`the region target knows ${this.images.length} images, not image ${image + 1}: bind it with forImages`);
    const weights = regionCellWeights(this.region, picture, height, width);
    if (!weights.some((weight) => weight > 0)) {
      throw new CamvizError('the region lies outside the part of the image the model sees');
    }
    this.weights.set(key, weights);
    return weights;
  }
}

/** The output to sum [B, h, w, classes]: before its activation when that is the model's (first) output's. */
function segmentationScores(values: ForwardValues, outputIndex: number): tf.Tensor4D {
  const output = values.outputs[outputIndex];
  if (output === undefined) throw new Error(`the model has ${values.outputs.length} outputs, not ${outputIndex + 1}`);
  if (output.rank !== 4) throw new Error(`the region target needs an output [batch, h, w, classes], not [${output.shape.join(', ')}]`);
  const preActivation = outputIndex === 0 && values.scores.size === output.size;
  const [batch, height, width, classes] = (output as tf.Tensor4D).shape;
  return preActivation ? tf.reshape(values.scores, [batch, height, width, classes]) : (output as tf.Tensor4D);
}

/** The region's cover of each cell of an output grid of `height` x `width` over the model input. */
export function regionCellWeights(region: Region, image: RegionImage, height: number, width: number): Float32Array {
  const { geometry } = image;
  const source = image.sourceSize ?? geometry.original;
  const inside = regionTest(region, source);
  const { sourceBox, inputBox, input, original } = geometry;
  const weights = new Float32Array(height * width);
  for (let row = 0; row < height; row++) {
    for (let column = 0; column < width; column++) {
      let hits = 0;
      for (let sy = 0; sy < SAMPLES_PER_AXIS; sy++) {
        for (let sx = 0; sx < SAMPLES_PER_AXIS; sx++) {
          // A sample point in model input pixels, then in original (decoded) pixels, then in the image's own.
          const inputX = ((column + (sx + 0.5) / SAMPLES_PER_AXIS) * input.width) / width;
          const inputY = ((row + (sy + 0.5) / SAMPLES_PER_AXIS) * input.height) / height;
          if (inputX < inputBox.x || inputX >= inputBox.x + inputBox.width || inputY < inputBox.y || inputY >= inputBox.y + inputBox.height) continue;
          const originalX = sourceBox.x + ((inputX - inputBox.x) * sourceBox.width) / inputBox.width;
          const originalY = sourceBox.y + ((inputY - inputBox.y) * sourceBox.height) / inputBox.height;
          if (inside((originalX * source.width) / original.width, (originalY * source.height) / original.height)) hits++;
        }
      }
      weights[row * width + column] = hits / SAMPLES_PER_AXIS ** 2;
    }
  }
  return weights;
}

/** Whether a point (in the image's own pixels) is in the region; a mask of another size is rescaled to the image. */
function regionTest(region: Region, source: Size): (x: number, y: number) => boolean {
  if ('box' in region) {
    const [x0, y0, x1, y1] = region.box;
    return (x, y) => x >= x0 && x < x1 && y >= y0 && y < y1;
  }
  const { mask } = region;
  return (x, y) => {
    const mx = Math.floor((x * mask.width) / source.width);
    const my = Math.floor((y * mask.height) / source.height);
    return mx >= 0 && my >= 0 && mx < mask.width && my < mask.height && mask.data[my * mask.width + mx] !== 0;
  };
}

/** A mask PNG (or any image sharp reads): inside where it is not black (transparent counts as black). Refuses an empty mask. */
export async function loadRegionMask(path: string): Promise<RegionMask> {
  let decoded: { data: Buffer; info: { width: number; height: number } };
  try {
    decoded = await sharp(path).flatten({ background: '#000000' }).greyscale().raw().toBuffer({ resolveWithObject: true });
  } catch (error) {
    throw new UsageError(`cannot read the mask: ${error instanceof Error ? error.message : String(error)}`, { file: path });
  }
  const { data, info } = decoded;
  const mask = new Uint8Array(info.width * info.height);
  for (let i = 0; i < mask.length; i++) mask[i] = data[i]! === 0 ? 0 : 1;
  if (!mask.some((value) => value !== 0)) throw new UsageError('the mask is empty: it has no pixel that is not black', { file: path });
  return { width: info.width, height: info.height, data: mask, path };
}
