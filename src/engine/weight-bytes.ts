/**
 * How many bytes a TF.js weight occupies in its weight file. Free of tfjs
 * itself, so that the model file reader (src/model/io.ts), which the command
 * line loads before tfjs, can check file sizes with it.
 */
import type * as Core from '@tensorflow/tfjs-core';

/** Bytes per stored element (tfjs' DTYPE_VALUE_SIZE_MAP); strings have no fixed size. */
const STORED_BYTES: Readonly<Record<string, number>> = { float32: 4, int32: 4, bool: 1, complex64: 8, uint8: 1, uint16: 2, float16: 2 };

/** A weight's stored size in bytes (quantized: its quantized values), or undefined for strings (their size is in their bytes). */
export function storedWeightBytes(spec: Core.io.WeightsManifestEntry): number | undefined {
  const perElement = STORED_BYTES[spec.quantization?.dtype ?? spec.dtype];
  return perElement === undefined ? undefined : spec.shape.reduce((product, dim) => product * dim, 1) * perElement;
}

/**
 * The fewest bytes a weight can occupy: its stored size, or for strings 4
 * bytes an element (each is stored after its 4-byte length). A weight file
 * shorter than that for its strings was decoded element by element all the
 * same: 10 million strings declared over a few bytes took 40 s and 4 GB.
 */
export function minimumWeightBytes(spec: Core.io.WeightsManifestEntry): number {
  return storedWeightBytes(spec) ?? (spec.dtype === 'string' ? 4 * spec.shape.reduce((product, dim) => product * dim, 1) : 0);
}
