/**
 * Synthetic "shapes" scenes for camviz's embedded model: one or two solid
 * shapes (circle, square, triangle, star, cross) on a textured background,
 * with each shape's tight bounding box as ground truth.
 *
 * Everything is integer-free float arithmetic in plain JS driven by a seeded
 * PRNG, so a seed gives the same bytes on every machine (no Math.random, no
 * SVG renderer, no sharp). Shapes are anti-aliased by supersampling.
 */

export const SHAPE_CLASSES = ['circle', 'square', 'triangle', 'star', 'cross'] as const;
export type ShapeLabel = (typeof SHAPE_CLASSES)[number];

export const BACKGROUND_KINDS = ['noise', 'stripes', 'gradient', 'checkers'] as const;
export type TexturedBackground = (typeof BACKGROUND_KINDS)[number];
/** `plain` is a single flat colour; tests use it to find shape pixels. */
export type BackgroundKind = TexturedBackground | 'plain';

/** A generator of uniform numbers in [0, 1). */
export type Rng = () => number;

export type Rgb = readonly [number, number, number];

/** A rectangle in whole pixels; x, y is the top-left pixel. */
export interface PixelBox {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface SceneShape {
  classIndex: number;
  label: ShapeLabel;
  /** Tight box of every pixel the shape covers, even partly. */
  box: PixelBox;
  color: Rgb;
  /** Centre and nominal radius (half the drawn size) in pixels, rotation in radians. */
  center: { x: number; y: number };
  radius: number;
  rotation: number;
}

export interface Scene {
  /** Row-major RGB, 3 bytes a pixel. */
  rgb: Uint8Array;
  width: number;
  height: number;
  shapes: SceneShape[];
  background: { kind: BackgroundKind; colors: readonly [Rgb, Rgb] };
}

export interface SceneOptions {
  /** Side of a square image; `width`/`height` override it. Default 64. */
  size?: number;
  width?: number;
  height?: number;
  /** Chance of a second shape of another class. Default 0.3. */
  twoShapeProbability?: number;
  /** Force the classes drawn (one or two distinct class indices). */
  classes?: readonly number[];
  /** Force the background; default a random textured one. */
  background?: BackgroundKind;
  /** Shape size as a fraction of the shorter image side. Default [0.2, 0.45]. */
  sizeRange?: readonly [number, number];
  /** Samples per pixel side for anti-aliasing. Default 4 (16 samples). */
  supersampling?: number;
}

/** Minimum RGB distance between a shape colour and any background colour. */
export const MIN_CONTRAST = 100;
/** Whole pixels kept free between the boxes of two shapes. */
export const MIN_BOX_GAP = 2;

/** mulberry32: a tiny 32-bit PRNG, good enough for data and the same everywhere (camviz's metrics seed theirs with it too). */
export { mulberry32 } from '../src/metrics/random.js';

function uniform(rng: Rng, low: number, high: number): number {
  return low + (high - low) * rng();
}

function randomInt(rng: Rng, count: number): number {
  return Math.min(count - 1, Math.floor(rng() * count));
}

function randomColor(rng: Rng): Rgb {
  return [randomInt(rng, 256), randomInt(rng, 256), randomInt(rng, 256)];
}

// ---------------------------------------------------------------- geometry

type Point = readonly [number, number];

/** A shape's outline in units of its radius, centred on the origin; `null` for the circle. */
interface Outline {
  polygon: Point[] | null;
  /** Largest distance from the centre, in units of the radius. */
  reach: number;
}

function regularPolygon(radii: readonly number[], startAngle: number): Point[] {
  return radii.map((r, i) => {
    const angle = startAngle + (2 * Math.PI * i) / radii.length;
    return [r * Math.cos(angle), r * Math.sin(angle)] as const;
  });
}

/** Per-shape proportions vary a little so the classes are not single templates. */
function outlineFor(classIndex: number, rng: Rng): Outline {
  switch (SHAPE_CLASSES[classIndex]) {
    case 'circle':
      return { polygon: null, reach: 1 };
    case 'square': {
      const h = 0.82;
      return { polygon: [[-h, -h], [h, -h], [h, h], [-h, h]], reach: h * Math.SQRT2 };
    }
    case 'triangle':
      return { polygon: regularPolygon([1.2, 1.2, 1.2], -Math.PI / 2), reach: 1.2 };
    case 'star': {
      const inner = uniform(rng, 0.42, 0.55);
      const radii = Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? 1.2 : 1.2 * inner));
      return { polygon: regularPolygon(radii, -Math.PI / 2), reach: 1.2 };
    }
    case 'cross': {
      const a = 1.05;
      const t = uniform(rng, 0.3, 0.4);
      const polygon: Point[] = [
        [t, -a], [t, -t], [a, -t], [a, t], [t, t], [t, a],
        [-t, a], [-t, t], [-a, t], [-a, -t], [-t, -t], [-t, -a],
      ];
      return { polygon, reach: Math.hypot(a, t) };
    }
    default:
      throw new RangeError(`no shape class ${classIndex}`);
  }
}

/** A shape placed in image coordinates, ready to rasterise. */
interface PlacedShape {
  classIndex: number;
  cx: number;
  cy: number;
  radius: number;
  rotation: number;
  /** Polygon vertices in image pixels, or null for a circle. */
  vertices: Point[] | null;
  /** Continuous extent: min x, min y, max x, max y. */
  extent: readonly [number, number, number, number];
}

function place(outline: Outline, classIndex: number, cx: number, cy: number, radius: number, rotation: number): PlacedShape {
  if (outline.polygon === null) {
    return {
      classIndex, cx, cy, radius, rotation: 0, vertices: null,
      extent: [cx - radius, cy - radius, cx + radius, cy + radius],
    };
  }
  const cos = Math.cos(rotation);
  const sin = Math.sin(rotation);
  const vertices = outline.polygon.map(([u, v]) => [cx + radius * (u * cos - v * sin), cy + radius * (u * sin + v * cos)] as const);
  const xs = vertices.map((p) => p[0]);
  const ys = vertices.map((p) => p[1]);
  return {
    classIndex, cx, cy, radius, rotation, vertices,
    extent: [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)],
  };
}

/** Even-odd rule, so the non-convex star works too. */
function insidePolygon(vertices: readonly Point[], x: number, y: number): boolean {
  let inside = false;
  for (let i = 0, j = vertices.length - 1; i < vertices.length; j = i++) {
    const [xi, yi] = vertices[i]!;
    const [xj, yj] = vertices[j]!;
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

function insideShape(shape: PlacedShape, x: number, y: number): boolean {
  if (shape.vertices === null) {
    const dx = x - shape.cx;
    const dy = y - shape.cy;
    return dx * dx + dy * dy <= shape.radius * shape.radius;
  }
  return insidePolygon(shape.vertices, x, y);
}

/** Pixel grid span [first, last] that the continuous extent can touch. */
function pixelSpan(low: number, high: number, limit: number): [number, number] {
  return [Math.max(0, Math.floor(low)), Math.min(limit - 1, Math.floor(high))];
}

interface Coverage {
  /** Fraction of samples inside the shape, for the pixels of `region`. */
  values: Float32Array;
  region: PixelBox;
  /** Tight box of the pixels with any coverage. */
  box: PixelBox;
}

function rasterise(shape: PlacedShape, width: number, height: number, samples: number): Coverage {
  const [x0, x1] = pixelSpan(shape.extent[0], shape.extent[2], width);
  const [y0, y1] = pixelSpan(shape.extent[1], shape.extent[3], height);
  const region = { x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1 };
  const values = new Float32Array(region.width * region.height);
  let minX = Infinity;
  let minY = Infinity;
  let maxX = -Infinity;
  let maxY = -Infinity;
  const perPixel = samples * samples;
  for (let py = y0; py <= y1; py++) {
    for (let px = x0; px <= x1; px++) {
      let hits = 0;
      for (let sy = 0; sy < samples; sy++) {
        const y = py + (sy + 0.5) / samples;
        for (let sx = 0; sx < samples; sx++) {
          if (insideShape(shape, px + (sx + 0.5) / samples, y)) hits++;
        }
      }
      if (hits === 0) continue;
      values[(py - y0) * region.width + (px - x0)] = hits / perPixel;
      minX = Math.min(minX, px);
      maxX = Math.max(maxX, px);
      minY = Math.min(minY, py);
      maxY = Math.max(maxY, py);
    }
  }
  if (minX === Infinity) throw new Error('shape covers no pixel');
  return { values, region, box: { x: minX, y: minY, width: maxX - minX + 1, height: maxY - minY + 1 } };
}

/** Whether two continuous extents, grown to whole pixels, keep `gap` pixels apart on some axis. */
function extentsApart(a: PlacedShape['extent'], b: PlacedShape['extent'], gap: number): boolean {
  const apartX = Math.floor(a[2]) + gap < Math.floor(b[0]) || Math.floor(b[2]) + gap < Math.floor(a[0]);
  const apartY = Math.floor(a[3]) + gap < Math.floor(b[1]) || Math.floor(b[3]) + gap < Math.floor(a[1]);
  return apartX || apartY;
}

// ---------------------------------------------------------------- colour

/** Distance from colour p to the RGB segment between a and b. */
function distanceToSegment(p: Rgb, a: Rgb, b: Rgb): number {
  const ab = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
  const ap = [p[0] - a[0], p[1] - a[1], p[2] - a[2]];
  const lengthSquared = ab[0]! ** 2 + ab[1]! ** 2 + ab[2]! ** 2;
  const t = lengthSquared === 0 ? 0 : Math.min(1, Math.max(0, (ap[0]! * ab[0]! + ap[1]! * ab[1]! + ap[2]! * ab[2]!) / lengthSquared));
  return Math.hypot(ap[0]! - t * ab[0]!, ap[1]! - t * ab[1]!, ap[2]! - t * ab[2]!);
}

/**
 * A shape colour far from every colour the background can take (all
 * backgrounds mix their two colours, plus pixel noise of `noise`).
 */
function contrastingColor(rng: Rng, background: readonly [Rgb, Rgb], noise: number): Rgb {
  const needed = MIN_CONTRAST + noise * Math.sqrt(3);
  let best: Rgb = [0, 0, 0];
  let bestDistance = -1;
  for (let attempt = 0; attempt < 64; attempt++) {
    const candidate = randomColor(rng);
    const distance = distanceToSegment(candidate, background[0], background[1]);
    if (distance >= needed) return candidate;
    if (distance > bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  // Rare: fall back to the cube corner farthest from the background.
  for (let corner = 0; corner < 8; corner++) {
    const candidate: Rgb = [corner & 1 ? 255 : 0, corner & 2 ? 255 : 0, corner & 4 ? 255 : 0];
    const distance = distanceToSegment(candidate, background[0], background[1]);
    if (distance > bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

// ---------------------------------------------------------------- backgrounds

interface Background {
  kind: BackgroundKind;
  colors: readonly [Rgb, Rgb];
  /** Amplitude of uniform per-pixel noise, per channel. */
  noise: number;
  /** Mix between colors[0] (0) and colors[1] (1) at a pixel centre. */
  mix: (x: number, y: number) => number;
}

function smoothstep(t: number): number {
  return t * t * (3 - 2 * t);
}

/** Value noise: random values on a coarse grid, smoothly interpolated. */
function valueNoise(rng: Rng, width: number, height: number, cell: number): (x: number, y: number) => number {
  const columns = Math.ceil(width / cell) + 2;
  const rows = Math.ceil(height / cell) + 2;
  const grid = Float32Array.from({ length: columns * rows }, () => rng());
  return (x, y) => {
    const gx = x / cell;
    const gy = y / cell;
    const ix = Math.floor(gx);
    const iy = Math.floor(gy);
    const fx = smoothstep(gx - ix);
    const fy = smoothstep(gy - iy);
    const at = (cx: number, cy: number): number => grid[cy * columns + cx]!;
    const top = at(ix, iy) * (1 - fx) + at(ix + 1, iy) * fx;
    const bottom = at(ix, iy + 1) * (1 - fx) + at(ix + 1, iy + 1) * fx;
    return top * (1 - fy) + bottom * fy;
  };
}

/** How far the second background colour may lie from the first, per channel. */
export const MAX_TEXTURE_CONTRAST = 90;

/**
 * A random colour and a second one near it: texture edges stay weaker than
 * shape edges, as in most photos, so the shapes are what stands out.
 */
function backgroundColors(rng: Rng): [Rgb, Rgb] {
  const first = randomColor(rng);
  const channel = (c: number): number => Math.min(255, Math.max(0, first[c]! + Math.round(uniform(rng, -MAX_TEXTURE_CONTRAST, MAX_TEXTURE_CONTRAST))));
  return [first, [channel(0), channel(1), channel(2)]];
}

/** Texture scales are fractions of the shorter side, so a scene looks the same at any size. */
function makeBackground(rng: Rng, kind: BackgroundKind, width: number, height: number): Background {
  const side = Math.min(width, height);
  const colors = backgroundColors(rng);
  switch (kind) {
    case 'plain':
      return { kind, colors: [colors[0], colors[0]], noise: 0, mix: () => 0 };
    case 'noise': {
      const field = valueNoise(rng, width, height, side * uniform(rng, 0.04, 0.2));
      return { kind, colors, noise: uniform(rng, 0, 24), mix: field };
    }
    case 'stripes': {
      const angle = uniform(rng, 0, Math.PI);
      const period = side * uniform(rng, 0.08, 0.3);
      const phase = uniform(rng, 0, 2 * Math.PI);
      const hard = rng() < 0.5;
      const dx = Math.cos(angle);
      const dy = Math.sin(angle);
      return {
        kind, colors, noise: uniform(rng, 0, 12),
        mix: (x, y) => {
          const wave = Math.sin((2 * Math.PI * (x * dx + y * dy)) / period + phase);
          return hard ? (wave > 0 ? 1 : 0) : 0.5 + 0.5 * wave;
        },
      };
    }
    case 'gradient': {
      const angle = uniform(rng, 0, 2 * Math.PI);
      const dx = Math.cos(angle);
      const dy = Math.sin(angle);
      const corners = [0, width * dx, height * dy, width * dx + height * dy];
      const low = Math.min(...corners);
      const span = Math.max(...corners) - low || 1;
      return { kind, colors, noise: uniform(rng, 0, 12), mix: (x, y) => (x * dx + y * dy - low) / span };
    }
    case 'checkers': {
      const angle = uniform(rng, 0, Math.PI / 2);
      const cell = side * uniform(rng, 0.08, 0.25);
      const cos = Math.cos(angle);
      const sin = Math.sin(angle);
      return {
        kind, colors, noise: uniform(rng, 0, 12),
        mix: (x, y) => {
          const u = Math.floor((x * cos + y * sin) / cell);
          const v = Math.floor((-x * sin + y * cos) / cell);
          return (u + v) & 1;
        },
      };
    }
  }
}

function paintBackground(rng: Rng, background: Background, width: number, height: number): Float32Array {
  const pixels = new Float32Array(width * height * 3);
  const [a, b] = background.colors;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const t = background.mix(x + 0.5, y + 0.5);
      const offset = (y * width + x) * 3;
      for (let c = 0; c < 3; c++) {
        const jitter = background.noise === 0 ? 0 : uniform(rng, -background.noise, background.noise);
        pixels[offset + c] = a[c]! * (1 - t) + b[c]! * t + jitter;
      }
    }
  }
  return pixels;
}

// ---------------------------------------------------------------- scenes

function chooseClasses(rng: Rng, options: SceneOptions): number[] {
  if (options.classes !== undefined) {
    const classes = [...options.classes];
    const valid = classes.every((c) => Number.isInteger(c) && c >= 0 && c < SHAPE_CLASSES.length);
    if (classes.length < 1 || classes.length > 2 || !valid || new Set(classes).size !== classes.length) {
      throw new RangeError(`classes must be one or two distinct indices below ${SHAPE_CLASSES.length}`);
    }
    return classes;
  }
  const first = randomInt(rng, SHAPE_CLASSES.length);
  if (rng() >= (options.twoShapeProbability ?? 0.3)) return [first];
  const second = (first + 1 + randomInt(rng, SHAPE_CLASSES.length - 1)) % SHAPE_CLASSES.length;
  return [first, second];
}

/**
 * Places the shapes so that they lie fully inside the image and, for two,
 * their boxes keep MIN_BOX_GAP pixels apart; shrinks them when they do not fit.
 */
function placeShapes(rng: Rng, classes: readonly number[], width: number, height: number, sizeRange: readonly [number, number]): PlacedShape[] {
  const side = Math.min(width, height);
  const outlines = classes.map((c) => outlineFor(c, rng));
  const radii = outlines.map(() => (side * uniform(rng, sizeRange[0], sizeRange[1])) / 2);
  const rotations = classes.map((c) => (SHAPE_CLASSES[c] === 'circle' ? 0 : uniform(rng, 0, 2 * Math.PI)));
  for (let round = 0; ; round++) {
    const placed: PlacedShape[] = [];
    for (let attempt = 0; attempt < 40 && placed.length < classes.length; attempt++) {
      const i = placed.length;
      const outline = outlines[i]!;
      const reach = outline.reach * radii[i]! + 2;
      if (2 * reach > Math.min(width, height)) break;
      const candidate = place(outline, classes[i]!, uniform(rng, reach, width - reach), uniform(rng, reach, height - reach), radii[i]!, rotations[i]!);
      if (placed.every((other) => extentsApart(other.extent, candidate.extent, MIN_BOX_GAP))) placed.push(candidate);
    }
    if (placed.length === classes.length) return placed;
    if (round > 200) throw new Error('could not place the shapes');
    for (let i = 0; i < radii.length; i++) radii[i] = radii[i]! * 0.92;
  }
}

function composite(pixels: Float32Array, width: number, coverage: Coverage, color: Rgb): void {
  const { region, values } = coverage;
  for (let y = 0; y < region.height; y++) {
    for (let x = 0; x < region.width; x++) {
      const alpha = values[y * region.width + x]!;
      if (alpha === 0) continue;
      const offset = ((region.y + y) * width + region.x + x) * 3;
      for (let c = 0; c < 3; c++) pixels[offset + c] = pixels[offset + c]! * (1 - alpha) + color[c]! * alpha;
    }
  }
}

function toBytes(pixels: Float32Array): Uint8Array {
  const bytes = new Uint8Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) bytes[i] = Math.min(255, Math.max(0, Math.round(pixels[i]!)));
  return bytes;
}

/** One scene; the same rng state and options always give the same bytes. */
export function generateScene(rng: Rng, options: SceneOptions = {}): Scene {
  const width = options.width ?? options.size ?? 64;
  const height = options.height ?? options.size ?? 64;
  if (!(Number.isInteger(width) && Number.isInteger(height) && width >= 16 && height >= 16)) {
    throw new RangeError(`image size must be whole pixels, at least 16 (got ${width}x${height})`);
  }
  const samples = options.supersampling ?? 4;
  const classes = chooseClasses(rng, options);
  const kind = options.background ?? BACKGROUND_KINDS[randomInt(rng, BACKGROUND_KINDS.length)]!;
  const background = makeBackground(rng, kind, width, height);
  const pixels = paintBackground(rng, background, width, height);
  const placed = placeShapes(rng, classes, width, height, options.sizeRange ?? [0.2, 0.45]);
  const shapes = placed.map((shape): SceneShape => {
    const coverage = rasterise(shape, width, height, samples);
    const color = contrastingColor(rng, background.colors, background.noise);
    composite(pixels, width, coverage, color);
    return {
      classIndex: shape.classIndex,
      label: SHAPE_CLASSES[shape.classIndex]!,
      box: coverage.box,
      color,
      center: { x: shape.cx, y: shape.cy },
      radius: shape.radius,
      rotation: shape.rotation,
    };
  });
  return { rgb: toBytes(pixels), width, height, shapes, background: { kind, colors: background.colors } };
}

/** Soft targets: the probability mass shared equally by the classes present. */
export function sceneTargets(scene: Scene): Float32Array {
  const targets = new Float32Array(SHAPE_CLASSES.length);
  for (const shape of scene.shapes) targets[shape.classIndex] = 1 / scene.shapes.length;
  return targets;
}

/** RGB bytes to floats in [0, 1] (camviz's 'unit' preprocessing), written at `offset`. */
export function writeUnitPixels(rgb: Uint8Array, into: Float32Array, offset = 0): void {
  for (let i = 0; i < rgb.length; i++) into[offset + i] = rgb[i]! / 255;
}

export interface Batch {
  /** NHWC floats in [0, 1], `count` images of height x width x 3. */
  pixels: Float32Array;
  /** `count` x SHAPE_CLASSES.length soft targets. */
  targets: Float32Array;
  scenes: Scene[];
}

/** `count` scenes of one size, as model-ready arrays. */
export function generateBatch(rng: Rng, count: number, options: SceneOptions = {}): Batch {
  const scenes = Array.from({ length: count }, () => generateScene(rng, options));
  const first = scenes[0];
  const imageLength = first === undefined ? 0 : first.width * first.height * 3;
  const pixels = new Float32Array(count * imageLength);
  const targets = new Float32Array(count * SHAPE_CLASSES.length);
  scenes.forEach((scene, i) => {
    writeUnitPixels(scene.rgb, pixels, i * imageLength);
    targets.set(sceneTargets(scene), i * SHAPE_CLASSES.length);
  });
  return { pixels, targets, scenes };
}
