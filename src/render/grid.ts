/**
 * A grid of feature-map channels, laid out like torchvision's
 * `make_grid(t, nrow, padding=2, normalize=True, scale_each=True, pad_value=0)`
 * followed by `save_image`'s byte conversion, with each tile enlarged by an
 * integer nearest-neighbour factor so that small maps (7x7) stay visible.
 */
import { type ColormapName, colormapIndex, sharedLut } from './colormap.js';

/** An activation without its batch axis, stored [height, width, channels] (NHWC). */
export interface ActivationShape {
  height: number;
  width: number;
  channels: number;
}

export interface FeatureGridOptions {
  /** Tiles per row; default ceil(sqrt(channels shown)). */
  nrow?: number;
  /** Pixels of padding between tiles and around the grid; default 2. */
  padding?: number;
  /** Gray level 0..1 of the padding; default 0 (black). */
  padValue?: number;
  /** Enlarge tiles by a whole factor until both sides are at least this many pixels; default 64. */
  tileSize?: number;
  /** Show only the first this many channels; default all. */
  maxChannels?: number;
  /** Colormap for the normalised values; default 'gray'. */
  colormap?: ColormapName;
}

export interface GridTile {
  channel: number;
  /** Top-left corner of the tile in the grid image, in pixels. */
  x: number;
  y: number;
}

export interface GridLayout {
  columns: number;
  rows: number;
  /** The nearest-neighbour enlargement factor of every tile. */
  scale: number;
  tileWidth: number;
  tileHeight: number;
  padding: number;
  tiles: GridTile[];
}

export interface FeatureGrid {
  width: number;
  height: number;
  /** Packed RGB, 3 bytes a pixel, row-major. */
  rgb: Uint8Array;
  layout: GridLayout;
}

/** make_grid's floor on the value range, so near-constant channels stay near 0. */
const MIN_RANGE = 1e-5;

export function makeFeatureGrid(
  activation: Float32Array,
  shape: ActivationShape,
  options: FeatureGridOptions = {},
): FeatureGrid {
  const { height, width, channels } = shape;
  checkWhole({ height, width, channels }, 1);
  if (activation.length !== height * width * channels) {
    throw new RangeError(
      `activation has ${activation.length} values, expected ${height}x${width}x${channels} = ${height * width * channels}`,
    );
  }
  const maxChannels = options.maxChannels ?? channels;
  const shown = Math.min(channels, maxChannels);
  const nrow = options.nrow ?? Math.ceil(Math.sqrt(shown));
  const tileSize = options.tileSize ?? 64;
  checkWhole({ maxChannels, nrow, tileSize }, 1);
  checkWhole({ padding: options.padding ?? 2 }, 0);
  // make_grid returns a lone image as it is, without padding.
  const padding = shown === 1 ? 0 : (options.padding ?? 2);
  const padGray = grayByte(options.padValue ?? 0);

  const scale = Math.max(1, Math.ceil(tileSize / Math.min(height, width)));
  const tileWidth = width * scale;
  const tileHeight = height * scale;
  const layout = gridLayout(shown, nrow, tileWidth, tileHeight, padding, scale);
  const gridWidth = layout.columns * (tileWidth + padding) + padding;
  const gridHeight = layout.rows * (tileHeight + padding) + padding;

  const rgb = new Uint8Array(gridWidth * gridHeight * 3);
  if (padGray !== 0) rgb.fill(padGray);
  const lut = sharedLut(options.colormap ?? 'gray');
  const indices = new Uint8Array(height * width);
  for (const tile of layout.tiles) {
    channelIndices(activation, channels, tile.channel, indices);
    drawTile(rgb, gridWidth, tile, indices, width, height, scale, lut);
  }
  return { width: gridWidth, height: gridHeight, rgb, layout };
}

function gridLayout(
  count: number,
  nrow: number,
  tileWidth: number,
  tileHeight: number,
  padding: number,
  scale: number,
): GridLayout {
  const columns = Math.min(nrow, count);
  const rows = Math.ceil(count / columns);
  const tiles: GridTile[] = [];
  for (let k = 0; k < count; k++) {
    const column = k % columns;
    const row = Math.floor(k / columns);
    tiles.push({ channel: k, x: column * (tileWidth + padding) + padding, y: row * (tileHeight + padding) + padding });
  }
  return { columns, rows, scale, tileWidth, tileHeight, padding, tiles };
}

/**
 * make_grid's per-image normalisation: clamp to [min, max], subtract min,
 * divide by max(max - min, 1e-5); then save_image's round(255 * v).
 * Non-finite values are left out of the range; NaN shows as 0.
 */
function channelIndices(activation: Float32Array, channels: number, channel: number, out: Uint8Array): void {
  const count = out.length;
  let min = Infinity;
  let max = -Infinity;
  // j = channel + i * channels < height * width * channels = activation.length
  // (checked by makeFeatureGrid), so the reads carry `!` rather than a check per value.
  for (let i = 0, j = channel; i < count; i++, j += channels) {
    const v = activation[j]!;
    if (!Number.isFinite(v)) continue;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (!(min <= max)) {
    out.fill(0);
    return;
  }
  const span = Math.max(max - min, MIN_RANGE);
  for (let i = 0, j = channel; i < count; i++, j += channels) {
    const v = activation[j]!;
    out[i] = v >= min ? colormapIndex((Math.min(v, max) - min) / span) : 0;
  }
}

function drawTile(
  rgb: Uint8Array,
  gridWidth: number,
  tile: GridTile,
  indices: Uint8Array,
  width: number,
  height: number,
  scale: number,
  lut: Uint8Array,
): void {
  const rowBytes = width * scale * 3;
  for (let y = 0; y < height; y++) {
    const first = ((tile.y + y * scale) * gridWidth + tile.x) * 3;
    let o = first;
    for (let x = 0; x < width; x++) {
      // In range by construction (y * width + x < indices.length, k + 2 < 768):
      // `!` rather than a check per pixel.
      const k = indices[y * width + x]! * 3;
      const r = lut[k]!;
      const g = lut[k + 1]!;
      const b = lut[k + 2]!;
      for (let s = 0; s < scale; s++, o += 3) {
        rgb[o] = r;
        rgb[o + 1] = g;
        rgb[o + 2] = b;
      }
    }
    // The other rows of this enlarged source row are copies of the first.
    for (let s = 1; s < scale; s++) {
      const target = first + s * gridWidth * 3;
      rgb.copyWithin(target, first, first + rowBytes);
    }
  }
}

function grayByte(level: number): number {
  if (!Number.isFinite(level) || level < 0 || level > 1) throw new RangeError(`padValue must be in 0..1, got ${level}`);
  return Math.floor(level * 255 + 0.5);
}

function checkWhole(values: Record<string, number>, least: number): void {
  for (const [name, value] of Object.entries(values)) {
    if (!Number.isInteger(value) || value < least) {
      throw new RangeError(`${name} must be a whole number >= ${least}, got ${value}`);
    }
  }
}
