/**
 * The gradient of a pooled linear head in closed form, on plain arrays: the
 * ONNX Runtime executor's backward pass (linear-head.ts) and a planned run
 * (which loads no tfjs: tasks/planned-cam.ts) both take it from here.
 */

/** A classifier after global average pooling (or a 1x1 convolution pooled after it), as its closed form needs it. */
export interface PooledHead {
  /** W[k, c] at `k * channelStride + c * classStride`; undefined: the pooled channels are the scores (W is the identity). */
  readonly kernel: Float32Array | undefined;
  readonly channels: number;
  readonly classes: number;
  readonly channelStride: number;
  readonly classStride: number;
}

/**
 * Adds dY/dA_k for Y = `weight` · score[classIndex] into `perChannel`
 * (one value per channel k, the same at each of the `positions` the
 * pooling averages): weight · W[k, class] / positions.
 */
export function addChannelGradient(head: PooledHead, classIndex: number, weight: number, positions: number, perChannel: Float32Array): void {
  const scale = weight / positions;
  const { kernel, channels, channelStride, classStride } = head;
  if (kernel === undefined) {
    perChannel[classIndex] = perChannel[classIndex]! + scale;
    return;
  }
  const column = classIndex * classStride;
  for (let k = 0; k < channels; k++) perChannel[k] = perChannel[k]! + scale * kernel[k * channelStride + column]!;
}
