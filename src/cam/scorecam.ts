/**
 * Score-CAM (Wang et al. 2020), gradient-free: each channel of the target
 * activations, upsampled to the input size and min-max normalised, masks
 * the input; the class score of each masked input, softmaxed over the
 * channels, weighs the channels. Masked inputs run in batches through the
 * fast (fused, hook-free) forward path; all classes of an image share the
 * same passes.
 */
import * as tf from '../engine/tf.js';
import { ActivationCamMethod, type CamRequest, type Evidence, activationsOf } from './base.js';
import type { Target } from './targets/index.js';
import type { Executor } from '../executor/executor.js';
import type { GraphNode } from '../executor/graph.js';
import { type ForwardValues, disposeValues } from '../executor/network.js';
import { OrtExecutor } from '../executor/ort.js';
import { softmaxRows } from '../executor/softmax.js';
import { seeStop } from '../util/see-stop.js';

export class ScoreCam extends ActivationCamMethod {
  readonly name = 'scorecam';
  /**
   * Masked inputs per forward pass (pytorch-grad-cam uses 16; ONNX Runtime's
   * host workers may ask for fewer: OrtExecutor.hostRunPlan). Measured on
   * MobileNet v1 0.75 with ONNX Runtime (1 thread, interleaved): 4 and 8
   * cost the same CPU time per image, 32 costs 10-20% more (its batch
   * outgrows the caches). Two chunks in the executor at once gained
   * nothing measurable, so one runs while the next is built.
   */
  batchSize = 8;
  /** [layer] -> per image: C x N scores of the masked inputs. */
  private readonly maskedScores = new Map<GraphNode, Float32Array[]>();

  /** Scores every masked input of every target layer, before any class is weighed: the passes are the same for all classes. */
  protected override async prepare(network: Executor, request: CamRequest, values: ForwardValues, target: Target): Promise<void> {
    for (const node of request.layers) {
      this.maskedScores.set(node, await this.scoreMaskedInputs(network, activationsOf(values, node), request.input, target, request.signal));
    }
  }

  /** softmax over the channels of the masked inputs' target scores [B, C]. */
  protected override channelWeights(evidence: Evidence): tf.Tensor2D {
    const perImage = this.maskedScores.get(evidence.node);
    if (perImage === undefined) throw new Error(`Score-CAM: layer ${evidence.node.path} was not prepared`);
    const channels = evidence.activations.shape[3];
    const rows = new Float32Array(perImage.length * channels);
    perImage.forEach((scores, image) => {
      const classes = scores.length / channels;
      const classIndex = evidence.classes[image]!;
      for (let channel = 0; channel < channels; channel++) rows[image * channels + channel] = scores[channel * classes + classIndex]!;
    });
    return tf.tensor2d(softmaxRows(rows, channels), [perImage.length, channels]);
  }

  protected override reset(): void {
    this.maskedScores.clear();
  }

  /**
   * Per image: the target's scores of its masked inputs, C x units. The
   * masked inputs are built in plain JS (one pass per chunk, no tfjs op
   * dispatch), the next chunk before the current one's result is awaited.
   * (onnxruntime-node 1.31 runs a session synchronously on the main thread,
   * in a setImmediate callback: building and running do not overlap.)
   */
  private async scoreMaskedInputs(network: Executor, activations: tf.Tensor4D, input: tf.Tensor4D, target: Target, signal: AbortSignal | undefined): Promise<Float32Array[]> {
    const [batch, height, width, channels] = activations.shape;
    const [, inputHeight, inputWidth, inputChannels] = input.shape;
    const maps = (await activations.data()) as Float32Array;
    const pictures = (await input.data()) as Float32Array;
    const upsampling = { rows: alignCornersWeights(height, inputHeight), columns: alignCornersWeights(width, inputWidth) };
    const mapSize = height * width * channels;
    const pictureSize = inputHeight * inputWidth * inputChannels;
    const results: Float32Array[] = [];
    for (let image = 0; image < batch; image++) {
      const masking: MaskingInput = {
        maps: { data: maps.subarray(image * mapSize, (image + 1) * mapSize), height, width, channels },
        picture: { data: pictures.subarray(image * pictureSize, (image + 1) * pictureSize), height: inputHeight, width: inputWidth, channels: inputChannels },
        upsampling,
      };
      results.push(await this.scoreImage(network, masking, image, target, signal));
    }
    return results;
  }

  /**
   * One image's masked inputs, chunk by chunk. The ONNX Runtime executor
   * takes them as plain data in its input's layout (no tfjs tensor, no
   * transpose), in buffers it hands out, and says how many chunks to keep
   * in flight and how large (its host workers, or one chunk running while
   * the next is built); each chunk's scores go to its place. Once `signal`
   * is aborted no chunk starts: the chunks in flight end, then the call
   * rejects with the signal's reason, as it does when a chunk fails after
   * the abort (a stop that released the model fails its passes).
   */
  private async scoreImage(network: Executor, masking: MaskingInput, image: number, target: Target, signal: AbortSignal | undefined): Promise<Float32Array> {
    const { height, width, channels: inputChannels } = masking.picture;
    const { masked: maskedChannels, passOf } = maskPasses(masking.maps);
    const passes = maskedChannels.length;
    const host = network instanceof OrtExecutor ? network : undefined;
    const layout = host?.hostInputLayout(height, width, target.layers);
    const plan = layout === undefined ? { inFlight: 1, batchSize: this.batchSize } : host!.hostRunPlan(passes, height, width, target.layers);
    const chunkSize = Math.min(this.batchSize, plan.batchSize);
    const chunks: Float32Array[] = [];
    // Chunk index -> its scoring, which settles with the index once chunks[index] holds the scores.
    const running = new Map<number, Promise<number>>();
    try {
      for (let first = 0, index = 0; first < passes; first += chunkSize, index++) {
        await seeStop(signal);
        const count = Math.min(chunkSize, passes - first);
        const shape = [count, height, width, inputChannels] as const;
        const buffer = layout === undefined ? undefined : host!.hostInputBuffer(count * height * width * inputChannels);
        const masked = maskedInputs(masking, maskedChannels.subarray(first, first + count), layout === 'nchw' ? 'nchw' : 'nhwc', buffer);
        // Whichever chunk ends first makes room: a worker held up (a loaded machine) does not stall the others.
        while (running.size >= plan.inFlight) running.delete(await Promise.race(running.values()));
        // The wait may have outlasted the stop: the chunk just built is not run.
        signal?.throwIfAborted();
        const scoring =
          host !== undefined && layout !== undefined
            ? scoreChunk(() => host.forwardHost(masked, layout, shape, { layers: target.layers }), count, image, target)
            : scoreTensorChunk(network, tf.tensor4d(masked, [...shape]), image, target);
        const at = index;
        running.set(
          at,
          scoring.then((scores) => {
            chunks[at] = scores;
            return at;
          }),
        );
      }
      await Promise.all(running.values());
    } catch (error) {
      // Chunks still in the executor dispose their own tensors; wait for them so that nothing outlives the call.
      await Promise.all([...running.values()].map((chunk) => chunk.catch(() => undefined)));
      signal?.throwIfAborted();
      throw error;
    }
    return scoresPerChannel(concat(chunks), passOf);
  }
}

/**
 * Which channels need a masked pass of their own. A channel whose values
 * are all equal (a dead ReLU channel: 7-35% of MobileNet v1's last layer on
 * photos) upsamples to a constant, which min-max normalising turns into a
 * zero mask: every such channel masks the picture to the same input, so
 * the first of them is run and the others take its scores. `masked`: the
 * channels to run, in order; `passOf[c]`: the pass whose scores are c's.
 */
export function maskPasses(maps: Planes): { masked: Int32Array; passOf: Int32Array } {
  const passOf = new Int32Array(maps.channels);
  const masked: number[] = [];
  let zeroMaskPass = -1;
  for (let channel = 0; channel < maps.channels; channel++) {
    if (!isConstantChannel(maps, channel)) {
      passOf[channel] = masked.push(channel) - 1;
      continue;
    }
    if (zeroMaskPass < 0) zeroMaskPass = masked.push(channel) - 1;
    passOf[channel] = zeroMaskPass;
  }
  return { masked: Int32Array.from(masked), passOf };
}

/** Whether every value of the channel is the same number (a NaN is never equal: such a channel runs as it is). */
function isConstantChannel(maps: Planes, channel: number): boolean {
  const first = maps.data[channel]!;
  const size = maps.height * maps.width;
  for (let p = 1; p < size; p++) if (maps.data[p * maps.channels + channel] !== first) return false;
  return first === first;
}

/** Per channel, the scores (units per masked input) of its pass, channels in order. */
function scoresPerChannel(perPass: Float32Array, passOf: Int32Array): Float32Array {
  const passes = passOf.reduce((most, pass) => Math.max(most, pass + 1), 0);
  if (passes === passOf.length) return perPass;
  const units = perPass.length / passes;
  const out = new Float32Array(passOf.length * units);
  for (let channel = 0; channel < passOf.length; channel++) {
    const from = passOf[channel]! * units;
    out.set(perPass.subarray(from, from + units), channel * units);
  }
  return out;
}

/** The target's scores of one chunk of masked inputs of one image, as a tensor; disposes the chunk. */
async function scoreTensorChunk(network: Executor, masked: tf.Tensor4D, image: number, target: Target): Promise<Float32Array> {
  try {
    return await scoreChunk(() => network.forward(masked, { layers: target.layers }), masked.shape[0], image, target);
  } finally {
    masked.dispose();
  }
}

/** The target's scores of the `count` masked inputs of one image that `forward` runs. */
async function scoreChunk(forward: () => Promise<ForwardValues>, count: number, image: number, target: Target): Promise<Float32Array> {
  const values = await forward();
  try {
    // Every masked input shows this image (a region target reads its geometry).
    const rows = new Array<number>(count).fill(image);
    // The tensor out of the scope, read after it: tidy walks every number of a returned array looking for tensors.
    const scores = tf.tidy(() => target.scores(values, rows));
    try {
      return scores.dataSync() as Float32Array;
    } finally {
      scores.dispose();
    }
  } finally {
    disposeValues(values);
  }
}

/** A channels-last [height, width, channels] array of one image. */
export interface Planes {
  data: Float32Array;
  height: number;
  width: number;
  channels: number;
}

/** Per output index along one axis: the two source indices and the weight of the second. */
export interface AxisWeights {
  lower: Int32Array;
  upper: Int32Array;
  fraction: Float64Array;
}

export interface MaskingInput {
  /** The target layer's activations of one image [h, w, C]. */
  maps: Planes;
  /** The preprocessed image [H, W, 3]. */
  picture: Planes;
  /** alignCornersWeights(h, H) and alignCornersWeights(w, W). */
  upsampling: { rows: AxisWeights; columns: AxisWeights };
}

/**
 * Bilinear upsampling weights from `source` to `target` samples with
 * aligned corners: pytorch-grad-cam upsamples with
 * torch.nn.UpsamplingBilinear2d, which aligns corners (the Score-CAM
 * authors' code does not). The arithmetic is tfjs's resizeBilinear with
 * alignCorners, so that the masks equal the tfjs formulation.
 */
export function alignCornersWeights(source: number, target: number): AxisWeights {
  const ratio = target > 1 ? (source - 1) / (target - 1) : source / target;
  const weights = { lower: new Int32Array(target), upper: new Int32Array(target), fraction: new Float64Array(target) };
  for (let i = 0; i < target; i++) {
    const position = ratio * i;
    const lower = Math.max(0, Math.floor(position));
    weights.lower[i] = lower;
    weights.upper[i] = Math.min(source - 1, Math.ceil(position));
    weights.fraction[i] = position - lower;
  }
  return weights;
}

/**
 * Score-CAM's masked inputs of these channels of one image: each channel
 * upsampled (separable bilinear: columns, then rows), min-max normalised
 * (a constant channel gives a zero mask), times the picture.
 * [count, H, W, C] channels-last, or [count, C, H, W] with `layout` 'nchw'
 * (the same values); into `out` when given.
 */
export function maskedInputs(
  masking: MaskingInput,
  channelsToMask: ArrayLike<number>,
  layout: 'nhwc' | 'nchw' = 'nhwc',
  out: Float32Array = new Float32Array(channelsToMask.length * masking.picture.height * masking.picture.width * masking.picture.channels),
): Float32Array {
  const count = channelsToMask.length;
  const { picture } = masking;
  const pixels = picture.height * picture.width;
  const channels = picture.channels;
  if (out.length !== count * pixels * channels) throw new Error(`maskedInputs: an output of ${out.length} values for ${count} x ${pixels} x ${channels}`);
  const mask = new Float32Array(pixels);
  const widened = new Float64Array(masking.maps.height * picture.width);
  // Where channel c of pixel p goes: p * pixelStep + c * channelStep.
  const [pixelStep, channelStep] = layout === 'nchw' ? [1, pixels] : [channels, 1];
  for (let k = 0; k < count; k++) {
    const { min, range } = upsampledMask(masking, channelsToMask[k]!, mask, widened);
    const base = k * pixels * channels;
    // Normalised and multiplied in one pass; the mask value is rounded to float32 first, as a Float32Array of the normalised mask held it.
    if (channels === 3) {
      // RGB unrolled: 0.3x less CPU than the loop over channels (MobileNet: 247 against 358 ms per image).
      const [green, blue] = [channelStep, 2 * channelStep];
      for (let p = 0, at = 0; p < pixels; p++, at += 3) {
        const weight = range === 0 ? 0 : Math.fround((mask[p]! - min) / range);
        const to = base + p * pixelStep;
        out[to] = weight * picture.data[at]!;
        out[to + green] = weight * picture.data[at + 1]!;
        out[to + blue] = weight * picture.data[at + 2]!;
      }
      continue;
    }
    for (let p = 0, at = 0; p < pixels; p++) {
      const weight = range === 0 ? 0 : Math.fround((mask[p]! - min) / range);
      const to = base + p * pixelStep;
      for (let c = 0; c < channels; c++, at++) out[to + c * channelStep] = weight * picture.data[at]!;
    }
  }
  return out;
}

/**
 * One channel upsampled to the picture's size, into `mask`, and how to
 * min-max normalise it: range 0 makes the mask zero (a constant channel,
 * or, as in the tfjs formulation, a NaN anywhere).
 */
function upsampledMask(masking: MaskingInput, channel: number, mask: Float32Array, widened: Float64Array): { min: number; range: number } {
  const { maps, picture, upsampling } = masking;
  const { rows, columns } = upsampling;
  // Columns first: each source row interpolated to the picture's width.
  for (let r = 0; r < maps.height; r++) {
    const row = r * maps.width;
    for (let x = 0; x < picture.width; x++) {
      const left = maps.data[(row + columns.lower[x]!) * maps.channels + channel]!;
      const right = maps.data[(row + columns.upper[x]!) * maps.channels + channel]!;
      widened[r * picture.width + x] = left + (right - left) * columns.fraction[x]!;
    }
  }
  let min = Infinity;
  let max = -Infinity;
  let unordered = false;
  for (let y = 0; y < picture.height; y++) {
    const top = rows.lower[y]! * picture.width;
    const bottom = rows.upper[y]! * picture.width;
    const fraction = rows.fraction[y]!;
    for (let x = 0; x < picture.width; x++) {
      const above = widened[top + x]!;
      const value = Math.fround(above + (widened[bottom + x]! - above) * fraction);
      mask[y * picture.width + x] = value;
      if (value < min) min = value;
      if (value > max) max = value;
      if (Number.isNaN(value)) unordered = true;
    }
  }
  const range = max - min;
  return { min, range: range > 0 && !unordered ? range : 0 };
}

function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
