/**
 * A TF.js model's weights decoded as views of the buffers its weight files
 * were read into. tfjs' own `io.decodeWeights` copies every weight out of the
 * shards first (`CompositeArrayBuffer.slice`): for MobileNet v1 0.75 that is
 * 10 MB of fresh memory, about 50 ms of a cold start on this VM, mostly page
 * faults. The cpu backend keeps the array a tensor is made from, so a view
 * costs nothing; a weight moves to the wasm heap (a copy tfjs makes) only on
 * its first use by a wasm kernel.
 *
 * A weight is viewed when it is stored as it is used (float32, int32, bool;
 * not quantized) and lies wholly in one shard at an offset its element size
 * divides. Any other weight (quantized, complex, spanning two shards, or
 * misaligned) is copied out and decoded by tfjs as before.
 */
import type * as Core from '@tensorflow/tfjs-core';
import * as tf from './tf.js';
import { storedWeightBytes } from './weight-bytes.js';

type WeightSpec = Core.io.WeightsManifestEntry;
type DecodeWeights = (data: Core.io.WeightData, specs: WeightSpec[]) => Core.NamedTensorMap;

/** The typed array a weight stored as it is used is read as (tfjs' decodeWeight's choice). */
const VIEW_TYPES = { float32: Float32Array, int32: Int32Array, bool: Uint8Array } as const;

interface Shard {
  readonly buffer: ArrayBuffer;
  readonly start: number;
  readonly end: number;
}

function shardsOf(buffers: readonly ArrayBuffer[]): Shard[] {
  let start = 0;
  return buffers.map((buffer) => {
    const shard = { buffer, start, end: start + buffer.byteLength };
    start = shard.end;
    return shard;
  });
}

/** The bytes [start, end) of the shards, copied into one buffer of their own. */
function copyRange(shards: readonly Shard[], start: number, end: number): ArrayBuffer {
  const out = new Uint8Array(end - start);
  for (const shard of shards) {
    const from = Math.max(start, shard.start);
    const to = Math.min(end, shard.end);
    if (from < to) out.set(new Uint8Array(shard.buffer, from - shard.start, to - from), from - start);
  }
  return out.buffer;
}

/** The view of a weight stored as it is used, when it lies aligned in one shard; else undefined. */
function viewOf(spec: WeightSpec, shards: readonly Shard[], start: number, byteLength: number): Core.TypedArray | undefined {
  if (spec.quantization !== undefined || !(spec.dtype in VIEW_TYPES)) return undefined;
  const ViewType = VIEW_TYPES[spec.dtype as keyof typeof VIEW_TYPES];
  const shard = shards.find((candidate) => start >= candidate.start && start + byteLength <= candidate.end);
  const offset = start - (shard?.start ?? 0);
  if (shard === undefined || offset % ViewType.BYTES_PER_ELEMENT !== 0) return undefined;
  return new ViewType(shard.buffer, offset, byteLength / ViewType.BYTES_PER_ELEMENT);
}

/**
 * The weights of `specs`, stored one after another in `buffers` (the weight
 * files in manifest order), as tensors: views where they can be (see the file
 * comment), else what `decodeCopy` (tfjs' io.decodeWeights) makes of a copy.
 * Throws, naming the first weight that does not fit, when the buffers are
 * shorter than the specs need (readLocalModel refuses such files before).
 */
export function decodeWeightViews(buffers: readonly ArrayBuffer[], specs: readonly WeightSpec[], decodeCopy: DecodeWeights): Core.NamedTensorMap {
  // Strings have no fixed size: tfjs decodes such a model as before.
  if (specs.some((spec) => storedWeightBytes(spec) === undefined)) return decodeCopy([...buffers], [...specs]);
  const shards = shardsOf(buffers);
  const total = shards.at(-1)?.end ?? 0;
  const out: Core.NamedTensorMap = {};
  let offset = 0;
  try {
    for (const spec of specs) {
      const byteLength = storedWeightBytes(spec)!;
      if (offset + byteLength > total) throw new Error(`the weight data ends before weight '${spec.name}' (${total} bytes, it needs ${offset + byteLength})`);
      const view = viewOf(spec, shards, offset, byteLength);
      out[spec.name] = view === undefined ? decodeCopy(copyRange(shards, offset, offset + byteLength), [spec])[spec.name]! : tf.tensor(view, spec.shape, spec.dtype);
      offset += byteLength;
    }
  } catch (error) {
    tf.dispose(Object.values(out));
    throw error;
  }
  return out;
}
