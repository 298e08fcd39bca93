/**
 * The overlay's per-pixel loops in WebAssembly (kernels.wat, compiled to
 * kernels.wasm by the build): resampling, normalising, blending and PNG's
 * Up filter. They compute exactly what the JavaScript loops they replaced
 * computed (kernels.wat says how), at machine speed from their first call,
 * where those loops ran in V8's interpreter until compiled: 25-35 ms of a
 * one-image run's critical path for a 224x224 map (README, Performance).
 *
 * Each call copies its inputs into the module's memory, runs, and copies
 * its outputs back into ordinary typed arrays: no view of the memory
 * leaves a call, so growing it (which detaches every view) can never pull
 * a buffer from under a caller. One instance per thread, made on first
 * use; its memory keeps the size of the largest call so far, up to 32 MiB
 * once smaller calls follow (kernelsFor).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ioReason } from '../util/atomic-file.js';
import { isOutOfDescriptors } from '../util/fd-retry.js';
import { type ColormapName, sharedLut } from './colormap.js';
import type { AxisTable } from './resize.js';

/** Written from dist/src/: the URL resolves from the bundles in dist/src/cli/ and dist/src/batch/ too (scripts/bundle-cli.ts). */
const KERNELS_URL = new URL('../render/kernels.wasm', import.meta.url);

/** The part of the WebAssembly JS API used here (TypeScript's ES2022 and Node's types do not declare it). */
interface WebAssemblyApi {
  readonly Module: new (bytes: Uint8Array) => object;
  readonly Instance: new (module: object, imports: object) => { readonly exports: unknown };
}
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmGlobal {
  readonly value: number;
}

interface KernelExports {
  readonly memory: WasmMemory;
  readonly min: WasmGlobal;
  readonly max: WasmGlobal;
  readonly peakValue: WasmGlobal;
  resample(
    src: number,
    srcWidth: number,
    xLo: number,
    xHi: number,
    xW: number,
    width: number,
    yLo: number,
    yHi: number,
    yW: number,
    height: number,
    firstRow: number,
    lastRow: number,
    rows: number,
    dst: number,
  ): void;
  normalizeWithPeak(values: number, out: number, n: number, min: number, span: number): number;
  blendTable(alpha: number, table: number): void;
  overlay(image: number, heat: number, pixels: number, blend: number, lut: number, out: number): void;
  upFilter(rgb: number, stride: number, height: number, rows: number): void;
}

/** The start of the memory: the overlay's blend table (65,536 bytes) and colormap (768), kept between overlays of the same options. */
const BLEND_TABLE_AT = 0;
const COLOURS_AT = 65536;
const TABLES_END = 65536 + 768;
/** The options the tables were made for ('' before the first overlay). */
let tablesKey = '';

/** The compiled module, and the instance in use (with its memory), per thread. */
let compiled: { readonly api: WebAssemblyApi; readonly module: object } | undefined;
let loaded: KernelExports | undefined;

/**
 * The instance for a call that needs `bytes` of memory. A memory never
 * shrinks: one grown past KEPT_MEMORY_BYTES by a large picture is dropped
 * with its instance when a call needs less than half of it, so that one
 * huge picture does not hold its size for the rest of a folder run, while
 * a run of large pictures keeps using the memory it has.
 */
function kernelsFor(bytes: number): KernelExports {
  const size = loaded?.memory.buffer.byteLength ?? 0;
  if (loaded !== undefined && size > KEPT_MEMORY_BYTES && bytes * 2 < size) {
    loaded = undefined;
    tablesKey = '';
  }
  compiled ??= compileKernels();
  loaded ??= new compiled.api.Instance(compiled.module, {}).exports as KernelExports;
  return loaded;
}

function compileKernels(): { api: WebAssemblyApi; module: object } {
  const api = (globalThis as { WebAssembly?: WebAssemblyApi }).WebAssembly;
  if (api === undefined) throw new Error('drawing needs WebAssembly, which this Node has not (run without --jitless)');
  let bytes: Buffer;
  try {
    bytes = readFileSync(KERNELS_URL);
  } catch (error) {
    // Read synchronously, it cannot wait for a descriptor: the next picture tries again (compiled stays unset).
    if (isOutOfDescriptors(error)) throw new Error(`cannot read camviz's drawing kernels: ${ioReason(error)}`);
    throw new Error(`camviz's drawing kernels are missing (${fileURLToPath(KERNELS_URL)}: ${(error as NodeJS.ErrnoException).code ?? 'unreadable'}): run npm run build`);
  }
  try {
    // A few kilobytes, compiled synchronously: faster than any asynchronous round trip at this size.
    return { api, module: new api.Module(bytes) };
  } catch (error) {
    throw new Error(`camviz's drawing kernels are damaged (${fileURLToPath(KERNELS_URL)}: ${(error as Error).message}): run npm run build`);
  }
}

/** The memory an instance keeps after a call that needed much less (32 MiB: the overlay of a 4.5-megapixel photo). */
const KEPT_MEMORY_BYTES = 32 << 20;

const PAGE_BYTES = 65536;

/**
 * One call's buffers in the module's memory, after the overlay's tables,
 * one after the other (16-byte aligned). `reserve` every buffer first,
 * then `ready` (which picks the instance and grows its memory), then take
 * views with `f32`/`u8`/`i32`: views taken before the memory grows would
 * be detached.
 */
class Layout {
  private end = Math.ceil(TABLES_END / 16) * 16;
  private instance: KernelExports | undefined;

  reserve(bytes: number): number {
    const at = this.end;
    this.end = at + Math.ceil(bytes / 16) * 16;
    return at;
  }

  /** The instance, its memory grown to hold everything reserved (a RangeError when it cannot). */
  ready(): KernelExports {
    const k = kernelsFor(this.end);
    const missing = this.end - k.memory.buffer.byteLength;
    if (missing > 0) k.memory.grow(Math.ceil(missing / PAGE_BYTES));
    this.instance = k;
    return k;
  }

  f32(at: number, length: number): Float32Array {
    return new Float32Array(this.memory(), at, length);
  }

  u8(at: number, length: number): Uint8Array {
    return new Uint8Array(this.memory(), at, length);
  }

  i32(at: number, length: number): Int32Array {
    return new Int32Array(this.memory(), at, length);
  }

  private memory(): ArrayBuffer {
    if (this.instance === undefined) throw new Error('Layout: views before ready()');
    return this.instance.memory.buffer;
  }
}

/**
 * Bilinear resampling of `src` (rows of `srcWidth`) at the positions of
 * `xs` and `ys`, into `dst` from (dstX, dstY) on, rows of `dstStride`:
 * each needed source row resampled horizontally once, then each output
 * row blends two of those. Returns the smallest and largest values written
 * before rounding to float32 (NaN skipped; Infinity and -Infinity when none).
 */
export function resampleInto(
  src: Float32Array,
  srcWidth: number,
  xs: AxisTable,
  ys: AxisTable,
  dst: Float32Array,
  dstStride: number,
  dstX: number,
  dstY: number,
): { min: number; max: number } {
  const width = xs.lo.length;
  const height = ys.lo.length;
  const firstRow = ys.lo[0];
  const lastRow = ys.hi[height - 1];
  if (firstRow === undefined || lastRow === undefined || width === 0) return { min: Infinity, max: -Infinity };
  const layout = new Layout();
  const at = {
    src: layout.reserve(src.byteLength),
    xLo: layout.reserve(width * 4),
    xHi: layout.reserve(width * 4),
    xW: layout.reserve(width * 4),
    yLo: layout.reserve(height * 4),
    yHi: layout.reserve(height * 4),
    yW: layout.reserve(height * 4),
    rows: layout.reserve((lastRow - firstRow + 1) * width * 4),
    dst: layout.reserve(width * height * 4),
  };
  const k = layout.ready();
  layout.f32(at.src, src.length).set(src);
  layout.i32(at.xLo, width).set(xs.lo);
  layout.i32(at.xHi, width).set(xs.hi);
  layout.f32(at.xW, width).set(xs.weight);
  layout.i32(at.yLo, height).set(ys.lo);
  layout.i32(at.yHi, height).set(ys.hi);
  layout.f32(at.yW, height).set(ys.weight);
  k.resample(at.src, srcWidth, at.xLo, at.xHi, at.xW, width, at.yLo, at.yHi, at.yW, height, firstRow, lastRow, at.rows, at.dst);
  const written = layout.f32(at.dst, width * height);
  if (dstX === 0 && width === dstStride) dst.set(written, dstY * dstStride);
  else for (let j = 0; j < height; j++) dst.set(written.subarray(j * width, (j + 1) * width), (dstY + j) * dstStride + dstX);
  return { min: k.min.value, max: k.max.value };
}

/**
 * `values` scaled to 0..1 by `min` and `span` into `out` (which may be
 * `values`), each rounded to float32 (NaN and -Infinity 0, +Infinity 1),
 * and the first index of the largest result with its value.
 */
export function normalizeWithPeakInto(values: Float32Array, out: Float32Array, min: number, span: number): { index: number; value: number } {
  const layout = new Layout();
  const at = layout.reserve(values.byteLength);
  const k = layout.ready();
  const inMemory = layout.f32(at, values.length);
  inMemory.set(values);
  const index = k.normalizeWithPeak(at, at, values.length, min, span);
  out.set(inMemory);
  return { index, value: k.peakValue.value };
}

/**
 * `heat` (one value in 0..1 a pixel) coloured through `colormap`
 * and blended with weight `alpha` over the packed RGB `image`, into `out`
 * (which may be `image`): per channel, Math.floor((1 - alpha) * byte +
 * alpha * colour + 0.5 + 1e-9), read from a table of all 65,536 pairs.
 */
export function overlayInto(image: Uint8Array, heat: Float32Array, alpha: number, colormap: ColormapName, out: Uint8Array): void {
  const layout = new Layout();
  const pixels = heat.length;
  const at = { image: layout.reserve(pixels * 3), heat: layout.reserve(pixels * 4) };
  const k = layout.ready();
  const key = `${alpha} ${colormap}`;
  if (key !== tablesKey) {
    k.blendTable(alpha, BLEND_TABLE_AT);
    layout.u8(COLOURS_AT, 768).set(sharedLut(colormap));
    tablesKey = key;
  }
  layout.u8(at.image, pixels * 3).set(image.subarray(0, pixels * 3));
  layout.f32(at.heat, pixels).set(heat);
  k.overlay(at.image, at.heat, pixels, BLEND_TABLE_AT, COLOURS_AT, at.image);
  out.set(layout.u8(at.image, pixels * 3));
}

/**
 * The rows of packed RGB `rgb` (`height` rows of `stride` bytes) as PNG
 * stores them, into `rows` ((stride + 1) * height bytes), which it
 * returns: a filter byte (Up), then each byte minus the one above it (mod
 * 256; the first row's "above" is zeros, so it is stored as is).
 */
export function upFilterInto(rgb: Uint8Array, stride: number, height: number, rows: Uint8Array): Uint8Array {
  const layout = new Layout();
  const at = { rgb: layout.reserve(stride * height), rows: layout.reserve((stride + 1) * height) };
  const k = layout.ready();
  layout.u8(at.rgb, stride * height).set(rgb.subarray(0, stride * height));
  k.upFilter(at.rgb, stride, height, at.rows);
  rows.set(layout.u8(at.rows, (stride + 1) * height));
  return rows;
}
