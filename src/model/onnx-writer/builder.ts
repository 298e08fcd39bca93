/**
 * The ONNX graph under construction: nodes and initializers in topological
 * order, with unique value names; and the weight arithmetic the layer
 * converters share (layout transposes, BatchNorm folding), in float64 and
 * rounded once to float32.
 */
import type { OnnxAttribute, OnnxNode, OnnxTensor } from './proto-writer.js';

export class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  private readonly names = new Set<string>();

  /** `hint`, or `hint_2`, `hint_3`... when taken (a shared layer is called twice). */
  uniqueName(hint: string): string {
    let name = hint;
    for (let suffix = 2; this.names.has(name); suffix++) name = `${hint}_${suffix}`;
    this.names.add(name);
    return name;
  }

  /** Adds a node with one output, named after `outputHint`; returns the output's name. */
  op(opType: string, inputs: readonly string[], attributes: readonly OnnxAttribute[], outputHint: string): string {
    const output = this.uniqueName(outputHint);
    this.nodes.push({ name: output, opType, inputs, outputs: [output], attributes });
    return output;
  }

  floats(hint: string, dims: readonly number[], data: ArrayLike<number>): string {
    const name = this.uniqueName(hint);
    // Converters hand over arrays they made; anything else is copied.
    this.initializers.push({ name, dims, data: data instanceof Float32Array ? data : Float32Array.from(data) });
    return name;
  }

  int64s(hint: string, values: readonly number[]): string {
    const name = this.uniqueName(hint);
    this.initializers.push({ name, dims: [values.length], data: BigInt64Array.from(values, (value) => BigInt(value)) });
    return name;
  }
}

/** Per-channel y = x * scale + shift, the inference-time form of a BatchNorm. */
export interface ChannelAffine {
  readonly scale: Float64Array;
  readonly shift: Float64Array;
}

export interface BatchNormParameters {
  readonly gamma: ArrayLike<number> | undefined;
  readonly beta: ArrayLike<number> | undefined;
  readonly mean: ArrayLike<number>;
  readonly variance: ArrayLike<number>;
  readonly epsilon: number;
}

/** gamma / sqrt(variance + epsilon), and beta - mean * that (absent gamma is 1, absent beta 0). */
export function batchNormAffine(bn: BatchNormParameters): ChannelAffine {
  const channels = bn.mean.length;
  const scale = new Float64Array(channels);
  const shift = new Float64Array(channels);
  for (let c = 0; c < channels; c++) {
    scale[c] = (bn.gamma?.[c] ?? 1) / Math.sqrt(bn.variance[c]! + bn.epsilon);
    shift[c] = (bn.beta?.[c] ?? 0) - bn.mean[c]! * scale[c]!;
  }
  return { scale, shift };
}

/**
 * Folds a channel affine that follows a convolution into it: OIHW weights
 * scaled per output channel, bias b -> b * scale + shift.
 */
export function foldIntoConv(weights: Float32Array, bias: ArrayLike<number> | undefined, affine: ChannelAffine): { weights: Float32Array; bias: Float32Array } {
  const outChannels = affine.scale.length;
  const perChannel = weights.length / outChannels;
  const folded = new Float32Array(weights.length);
  for (let o = 0; o < outChannels; o++) {
    const scale = affine.scale[o]!;
    for (let i = o * perChannel; i < (o + 1) * perChannel; i++) folded[i] = weights[i]! * scale;
  }
  const foldedBias = new Float32Array(outChannels);
  for (let o = 0; o < outChannels; o++) foldedBias[o] = (bias?.[o] ?? 0) * affine.scale[o]! + affine.shift[o]!;
  return { weights: folded, bias: foldedBias };
}

function stridesOf(dims: readonly number[]): number[] {
  const strides = new Array<number>(dims.length).fill(1);
  for (let axis = dims.length - 2; axis >= 0; axis--) strides[axis] = strides[axis + 1]! * dims[axis + 1]!;
  return strides;
}

/**
 * Transposes a dense 4-D array of shape `dims` by `perm` (output axis i is
 * input axis perm[i]). The innermost loop runs along the longest input axis:
 * weights have axes of length 1 (a pointwise kernel's H and W), and a loop
 * of one element per iteration costs more than the copy.
 */
export function transpose(data: ArrayLike<number>, dims: readonly number[], perm: readonly number[]): Float32Array {
  if (dims.length !== 4 || perm.length !== 4) throw new Error(`transpose of rank ${dims.length}: only 4-D weights are transposed`);
  const inStrides = stridesOf(dims);
  const outStrides = stridesOf(perm.map((axis) => dims[axis]!));
  // Where a step along each input axis lands in the output.
  const landing = new Array<number>(4);
  perm.forEach((axis, i) => (landing[axis] = outStrides[i]!));
  const inner = dims.indexOf(Math.max(...dims));
  const [a, b, c] = [0, 1, 2, 3].filter((axis) => axis !== inner) as [number, number, number];
  const out = new Float32Array(data.length);
  const length = dims[inner]!;
  const readStep = inStrides[inner]!;
  const writeStep = landing[inner]!;
  for (let i = 0; i < dims[a]!; i++) {
    for (let j = 0; j < dims[b]!; j++) {
      for (let k = 0; k < dims[c]!; k++) {
        const read = i * inStrides[a]! + j * inStrides[b]! + k * inStrides[c]!;
        const write = i * landing[a]! + j * landing[b]! + k * landing[c]!;
        for (let step = 0; step < length; step++) out[write + step * writeStep] = data[read + step * readStep]!;
      }
    }
  }
  return out;
}

/**
 * TF's "same" padding along one axis: the output is ceil(in / stride), and
 * the padding it needs goes half before, the odd pixel after (bottom/right).
 */
export function samePadding(size: number, kernel: number, stride: number, dilation: number): [number, number] {
  const effectiveKernel = (kernel - 1) * dilation + 1;
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + effectiveKernel - size, 0);
  const before = Math.floor(total / 2);
  return [before, total - before];
}
