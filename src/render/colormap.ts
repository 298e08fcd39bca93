/**
 * Colormaps as 256-entry RGB lookup tables, and mapping of 0..1 values
 * through them.
 */
import { COLORMAP_HEX } from './colormap-data.js';

export const COLORMAPS = ['jet', 'turbo', 'viridis', 'inferno', 'magma', 'plasma', 'cividis', 'gray'] as const;
export type ColormapName = (typeof COLORMAPS)[number];

/** Entries in every lookup table. */
export const COLORMAP_SIZE = 256;

export function isColormapName(name: string): name is ColormapName {
  return (COLORMAPS as readonly string[]).includes(name);
}

const lutCache = new Map<ColormapName, Uint8Array>();

/**
 * The shared lookup table (768 bytes: r, g, b per entry). Internal callers
 * only read it; the public `colormapLut` hands out copies.
 */
export function sharedLut(name: ColormapName): Uint8Array {
  let lut = lutCache.get(name);
  if (lut === undefined) {
    lut = buildLut(name);
    lutCache.set(name, lut);
  }
  return lut;
}

/** A copy of the lookup table of `name`: 768 bytes, r, g, b per entry. */
export function colormapLut(name: ColormapName): Uint8Array {
  return sharedLut(name).slice();
}

function buildLut(name: ColormapName): Uint8Array {
  if (!isColormapName(name)) throw new RangeError(`unknown colormap "${String(name)}" (use ${COLORMAPS.join(', ')})`);
  if (name === 'gray') {
    const lut = new Uint8Array(COLORMAP_SIZE * 3);
    for (let i = 0; i < COLORMAP_SIZE; i++) lut.fill(i, i * 3, i * 3 + 3);
    return lut;
  }
  const lut = Uint8Array.from(Buffer.from(COLORMAP_HEX[name], 'hex'));
  if (lut.length !== COLORMAP_SIZE * 3) throw new Error(`colormap table "${name}" is damaged`);
  return lut;
}

/**
 * The table entry for a value in 0..1: round(255 * v), the rounding torchvision's
 * save_image uses, so the gray map reproduces its bytes. (pytorch-grad-cam
 * truncates with np.uint8(255 * mask) instead; that differs by at most one entry.)
 * Out-of-range values clamp; NaN takes entry 0.
 */
export function colormapIndex(value: number): number {
  if (!(value > 0)) return 0; // also NaN
  if (value >= 1) return COLORMAP_SIZE - 1;
  // value * 255 + 0.5 is in (0.5, 255.5) here: truncation is the floor, and cheaper in per-pixel loops.
  return (value * 255 + 0.5) | 0;
}

/**
 * Colours `values` (0..1, one per pixel) with the colormap `name`.
 * Returns packed RGB, 3 bytes per value; pass `out` to reuse a buffer.
 */
export function applyColormap(values: Float32Array, name: ColormapName, out?: Uint8Array): Uint8Array {
  const n = values.length;
  const rgb = out ?? new Uint8Array(n * 3);
  if (rgb.length !== n * 3) throw new RangeError(`output holds ${rgb.length} bytes, need ${n * 3}`);
  const lut = sharedLut(name);
  // i < n and k + 2 < 768 by construction: the per-pixel typed-array reads
  // carry `!` rather than an undefined check.
  for (let i = 0, o = 0; i < n; i++, o += 3) {
    const k = colormapIndex(values[i]!) * 3;
    rgb[o] = lut[k]!;
    rgb[o + 1] = lut[k + 1]!;
    rgb[o + 2] = lut[k + 2]!;
  }
  return rgb;
}
