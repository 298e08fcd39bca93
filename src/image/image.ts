/**
 * Image loading: one decode of the file to sRGB 8-bit RGB (kept for overlays),
 * then a second sharp pipeline over those raw pixels makes the model input.
 * Resizing from the decoded pixels (not from the file) keeps JPEG
 * shrink-on-load out of the model input, so the input depends only on the
 * pixels the user sees, and the original is decoded once.
 *
 * Images longer than `maxOverlaySide` (default 4096) are decoded straight to
 * that long side, in the decoding pipeline (libvips streams the rows, and JPEG
 * shrinks on load), so that memory is bounded whatever the file's size: the
 * full-resolution pixels are never held. Such an image then behaves as if the
 * file were that smaller picture: the overlay is drawn on it and the model
 * input is made from it. Images that fit are decoded exactly as before.
 */
import { existsSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from '../util/sharp.js';
import type { Metadata, OutputInfo, Sharp } from 'sharp';

import { CamvizError, UsageError } from '../util/errors.js';
import { closeFile, openRegularFile, readFromStart } from '../util/read-whole-file.js';
import { ioReason } from '../util/atomic-file.js';
import { fileClosed, isOutOfDescriptors, retryWhileOutOfDescriptors } from '../util/fd-retry.js';
import { type Rgb, parseBackground } from './colour.js';
import { SUPPORTED_FORMATS, SUPPORTED_LIST, type SupportedFormat } from './formats.js';
import { DEFAULT_BACKGROUND, DEFAULT_MAX_OVERLAY_SIDE, DEFAULT_MAX_PIXELS, RESIZE_MODES, overlaySize } from './geometry.js';
import type { Box, ImageGeometry, ResizeMode, Size } from './geometry.js';

export interface ImageLoadOptions {
  /** Model input size. */
  size: Size;
  /** 'stretch' (default), 'crop' or 'pad'. */
  resize?: ResizeMode;
  /** Colour to flatten alpha onto and to pad with (see parseBackground); default '#ffffff'. */
  background?: string;
  /** Refuse images with more pixels than this; default 100 MP; 0 = no limit. */
  maxPixels?: number;
  /**
   * Longer images are shrunk (on decoding) so that `original`'s long side is
   * this; default 4096; 0 = keep the full resolution.
   */
  maxOverlaySide?: number;
}

export interface LoadedImage {
  path: string;
  /**
   * The picture maps are drawn on: after EXIF orientation, alpha flattened,
   * sRGB 8-bit, 3 channels, row-major HWC; shrunk to `maxOverlaySide` if longer.
   */
  original: { width: number; height: number; rgb: Uint8Array };
  /** The image's own size after EXIF orientation: `original`'s, unless that was shrunk. */
  sourceSize: Size;
  /** Model input: RGB uint8, size.height * size.width * 3, row-major HWC. */
  input: Uint8Array;
  geometry: ImageGeometry;
  /** The decoder sharp used: 'png', 'jpeg', 'webp', 'gif' or 'tiff'. */
  format: string;
}


export const RESIZE_KERNEL_DESCRIPTION =
  'bilinear (libvips "linear" triangle filter, antialiased when shrinking, close to PIL BILINEAR)';

// Truncated files must fail instead of decoding to a half-grey image; 'truncated'
// still accepts files with harmless warnings (e.g. junk after the JPEG end marker).
const FAIL_ON = 'truncated';

export async function loadImage(path: string, options: ImageLoadOptions): Promise<LoadedImage> {
  const settings = checkOptions(options);
  const file = await checkFile(path);
  let decoded: { format: SupportedFormat; sourceSize: Size; original: Original };
  try {
    decoded = await decodeFile(file, path, settings);
  } finally {
    await file.release();
  }
  const { format, sourceSize, original } = decoded;
  const geometry = computeGeometry(original, settings.size, settings.resize);
  const input = await makeModelInput(original, geometry, settings.background, path);
  return { path, original, sourceSize, input, geometry, format };
}

/**
 * The picture of an image file alone, without a model input: as
 * `loadImage` decodes its original, with the same checks (a regular file,
 * its header, the pixel limit), its long side shrunk to `maxSide` while
 * decoding. For pictures of inputs beside a run's outputs (a report's
 * thumbnails).
 */
export async function loadPicture(path: string, maxSide: number, maxPixels = DEFAULT_MAX_PIXELS): Promise<LoadedImage['original']> {
  // The model input's size is not used: no model input is made.
  const settings = checkOptions({ size: { width: 1, height: 1 }, maxOverlaySide: maxSide, maxPixels });
  const file = await checkFile(path);
  try {
    return (await decodeFile(file, path, settings)).original;
  } finally {
    await file.release();
  }
}

/** The checked file's header, checked against the pixel limit, and its pixels at the overlay's size. */
async function decodeFile(file: CheckedFile, path: string, settings: LoadSettings): Promise<{ format: SupportedFormat; sourceSize: Size; original: Original }> {
  const metadata = await readHeader(file, path);
  checkPixelLimit(metadata, settings.maxPixels, path);
  const sourceSize = { width: metadata.autoOrient.width, height: metadata.autoOrient.height };
  const original = await decodeOriginal(file, path, metadata, overlaySize(sourceSize, settings.maxOverlaySide), settings);
  return { format: metadata.format as SupportedFormat, sourceSize, original };
}

/**
 * An image already in memory (RGB, 3 bytes a pixel, row-major), prepared
 * exactly as `loadImage` prepares a decoded file.
 */
export async function imageFromRgb(rgb: Uint8Array, width: number, height: number, options: ImageLoadOptions, name = 'memory'): Promise<LoadedImage> {
  const settings = checkOptions(options);
  if (rgb.length !== width * height * 3) throw new UsageError(`${width}x${height} RGB needs ${width * height * 3} bytes, got ${rgb.length}`);
  const sourceSize = { width, height };
  const original = await shrinkRgb({ width, height, rgb }, overlaySize(sourceSize, settings.maxOverlaySide), name);
  const geometry = computeGeometry(original, settings.size, settings.resize);
  const input = await makeModelInput(original, geometry, settings.background, name);
  return { path: name, original, sourceSize, input, geometry, format: 'raw' };
}

// ---------------------------------------------------------------- options

interface LoadSettings {
  size: Size;
  resize: ResizeMode;
  background: Rgb;
  maxPixels: number;
  maxOverlaySide: number;
}

function checkOptions(options: ImageLoadOptions): LoadSettings {
  const { size } = options;
  if (!isPositiveInteger(size.width) || !isPositiveInteger(size.height)) {
    throw new UsageError(`model input size must be positive whole numbers, got ${size.width}x${size.height}`);
  }
  const resize = options.resize ?? 'stretch';
  if (!RESIZE_MODES.includes(resize)) {
    throw new UsageError(`unknown resize mode "${String(resize)}" (use ${RESIZE_MODES.join(', ')})`);
  }
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!Number.isFinite(maxPixels) || maxPixels < 0) {
    throw new UsageError(`--max-pixels must be 0 (no limit) or a positive number, got ${maxPixels}`);
  }
  const maxOverlaySide = options.maxOverlaySide ?? DEFAULT_MAX_OVERLAY_SIDE;
  if (maxOverlaySide !== 0 && !isPositiveInteger(maxOverlaySide)) {
    throw new UsageError(`--max-overlay-side must be 0 (full resolution) or a positive whole number, got ${maxOverlaySide}`);
  }
  const background = parseBackground(options.background ?? DEFAULT_BACKGROUND);
  return { size: { width: size.width, height: size.height }, resize, background, maxPixels, maxOverlaySide };
}

function isPositiveInteger(value: number): boolean {
  return Number.isInteger(value) && value > 0;
}


// ---------------------------------------------------------------- file checks

/**
 * Files up to this size are read into memory once, and sharp reads the
 * header and decodes from those bytes: one open and read instead of three
 * opens (the format sniff, the header, the decode), about 1.3 ms less CPU an
 * image in folder runs. Larger files are streamed by libvips from the path,
 * so that memory stays bounded whatever the file.
 */
const IN_MEMORY_FILE_BYTES = 16 * 2 ** 20;

/** What sharp reads an image from: its bytes, or a path to the file checked. */
type ImageSource = Buffer | string;

/** The image's file checked: its format by its first bytes, what sharp is to read, and what to close once sharp is done. */
interface CheckedFile {
  readonly sniffed: SupportedFormat;
  readonly source: ImageSource;
  /** The last `length` bytes of the file checked (fewer if it is shorter); undefined if they cannot be read. */
  readonly readTail: (length: number) => Promise<Buffer | undefined>;
  readonly release: () => Promise<void>;
}

/**
 * Where a process can open again the file behind one of its descriptors:
 * Linux's /proc/self/fd/N opens the same file, whatever stands at its path
 * by then. Elsewhere none (macOS' /dev/fd/N duplicates the descriptor,
 * sharing its offset with libvips' reads).
 */
const DESCRIPTOR_FOLDER = process.platform === 'linux' && existsSync('/proc/self/fd') ? '/proc/self/fd' : undefined;

/**
 * The user's path of each descriptor libvips is reading through, by
 * number: libvips keeps one error buffer for the process, so one image's
 * error can carry another's descriptor path (sharpReason).
 */
const heldDescriptors = new Map<number, string>();

/** A descriptor path in libvips' text; the number whole (fd 18 is not the start of fd 183). */
const DESCRIPTOR_PATH = /\/proc\/self\/fd\/(\d+)(?!\d)/g;

/**
 * Clear errors for the cases sharp reports vaguely (it calls a missing file,
 * a folder and an empty file all "unsupported image format"); returns the
 * format the magic bytes announce, and what sharp is to read.
 */
async function checkFile(path: string): Promise<CheckedFile> {
  const { handle, stats } = await openRegularFile(path).catch((error: unknown) => {
    throw fileSystemError(error, path);
  });
  let kept = false;
  try {
    const size = Number(stats.size);
    if (size === 0) throw new CamvizError('empty file (0 bytes)', { file: path });
    // Files up to IN_MEMORY_FILE_BYTES are read whole (fewer bytes if cut meanwhile, which then decode as truncated).
    const bytes = await readFromStart(handle, size <= IN_MEMORY_FILE_BYTES ? size : 16).catch((error: unknown) => {
      throw fileSystemError(error, path);
    });
    const sniffed = sniffFormat(bytes.subarray(0, 16));
    if (sniffed === undefined) throw unsupported(path);
    if (size <= IN_MEMORY_FILE_BYTES) {
      return { sniffed, source: bytes, readTail: async (length) => bytes.subarray(Math.max(0, bytes.length - length)), release: async () => undefined };
    }
    // A file too large to hold is decoded by libvips, which opens it itself: through the checked descriptor where the
    // system names one (a FIFO swapped in at the path meanwhile is then never opened), else by its path.
    if (DESCRIPTOR_FOLDER === undefined) return { sniffed, source: path, readTail: (length) => tailOfPath(path, length), release: async () => undefined };
    kept = true;
    const fd = handle.fd;
    heldDescriptors.set(fd, path);
    const release = async (): Promise<void> => {
      heldDescriptors.delete(fd);
      await closeFile(handle);
    };
    return { sniffed, source: join(DESCRIPTOR_FOLDER, String(fd)), readTail: (length) => tailOf(handle, size, length), release };
  } finally {
    if (!kept) await closeFile(handle);
  }
}

/**
 * sharp's work on the checked file: when libvips opens it itself (a file too
 * large to hold, given by its path) and finds no descriptor free, it reports
 * anything but that ("unsupported image format"). Where such work fails and
 * the file cannot be opened now for want of descriptors, the failure is
 * that, and the work is tried again once files close (fd-retry.ts).
 */
async function opening<T>(file: CheckedFile, work: () => Promise<T>): Promise<T> {
  const { source } = file;
  if (typeof source !== 'string') return work();
  return retryWhileOutOfDescriptors(async () => {
    try {
      return await work();
    } catch (error) {
      throw (await openFailure(source)) ?? error;
    }
  });
}

/** Why `path` cannot be opened now when it is for want of descriptors (EMFILE, ENFILE); undefined when it opens, or fails otherwise. */
async function openFailure(path: string): Promise<unknown> {
  try {
    await (await open(path, 'r')).close();
    fileClosed();
    return undefined;
  } catch (error) {
    return isOutOfDescriptors(error) ? error : undefined;
  }
}

function fileSystemError(error: unknown, path: string): CamvizError {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const message =
    code === 'EISDIR' ? 'is a directory, not an image'
    : code === 'EINVAL' ? 'not a regular file'
    : code === 'ENOENT' ? 'file not found'
    : code === 'EACCES' || code === 'EPERM' ? 'cannot read file: permission denied'
    : code === 'ENOTDIR' ? 'file not found (a parent is not a folder)'
    // Not the image's fault: the process (or the system) holds as many files open as it may.
    : isOutOfDescriptors(error) ? `cannot read file: ${ioReason(error)}`
    : `cannot read file: ${error instanceof Error ? error.message : String(error)}`;
  return new CamvizError(message, { file: path, cause: error });
}

/** The supported format the first bytes announce, if any. */
function sniffFormat(head: Uint8Array): SupportedFormat | undefined {
  const startsWith = (bytes: readonly number[], offset = 0): boolean =>
    bytes.every((byte, i) => head[offset + i] === byte);
  const ascii = (text: string): number[] => Array.from(text, (char) => char.charCodeAt(0));

  if (startsWith([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'png';
  if (startsWith([0xff, 0xd8, 0xff])) return 'jpeg';
  if (startsWith(ascii('GIF87a')) || startsWith(ascii('GIF89a'))) return 'gif';
  if (startsWith(ascii('RIFF')) && startsWith(ascii('WEBP'), 8)) return 'webp';
  // Classic TIFF (42) and BigTIFF (43), either byte order.
  if (startsWith([0x49, 0x49, 0x2a, 0x00]) || startsWith([0x4d, 0x4d, 0x00, 0x2a])) return 'tiff';
  if (startsWith([0x49, 0x49, 0x2b, 0x00]) || startsWith([0x4d, 0x4d, 0x00, 0x2b])) return 'tiff';
  return undefined;
}

function unsupported(path: string): CamvizError {
  return new CamvizError(`not a supported image (${SUPPORTED_LIST})`, { file: path });
}

// ---------------------------------------------------------------- header and limit

/** Reads the header only (no pixel decoding). */
async function readHeader(file: CheckedFile, path: string): Promise<Metadata> {
  let metadata: Metadata;
  try {
    // Reading the header decodes no pixels, so libvips' own pixel limit (268 MP by
    // default) is lifted here: camviz's limit decides, with its own message.
    metadata = await opening(file, () => sharp(file.source, { failOn: FAIL_ON, limitInputPixels: false }).metadata());
  } catch (error) {
    if (isOutOfDescriptors(error)) throw fileSystemError(error, path);
    const message = error instanceof Error ? error.message : String(error);
    if (/unsupported image format/i.test(message)) throw unsupported(path);
    const reason = (await truncation(file, file.sniffed)) ?? sharpReason(error);
    const name = SUPPORTED_FORMATS[file.sniffed];
    throw new CamvizError(`truncated or corrupt ${name} header${reason === '' ? '' : `: ${reason}`}`, {
      file: path,
      cause: error,
    });
  }
  if (!(metadata.format in SUPPORTED_FORMATS)) throw unsupported(path);
  return metadata;
}

/** Uses the header's size, so an oversized image is refused before any decoding. */
function checkPixelLimit(header: Size, maxPixels: number, path: string): void {
  if (maxPixels === 0 || header.width * header.height <= maxPixels) return;
  throw pixelLimitError(header, maxPixels, path);
}

function pixelLimitError(size: Size, maxPixels: number, path: string): CamvizError {
  const pixels = size.width * size.height;
  return new CamvizError(
    `image is ${size.width}x${size.height} = ${formatMegapixels(pixels)} megapixels, ` +
      `above the limit of ${formatLimit(maxPixels)} megapixels (--max-pixels)`,
    { file: path },
  );
}

/** '108.0' for big images; enough significant digits that small limits do not print as 0.0. */
function formatMegapixels(pixels: number): string {
  const megapixels = pixels / 1e6;
  if (megapixels >= 0.1) return megapixels.toFixed(1);
  return String(Number(megapixels.toPrecision(2)));
}

/** The limit as the user would write it: '100', '2.5', '0.001'. */
function formatLimit(pixels: number): string {
  return String(Number((pixels / 1e6).toPrecision(6)));
}

// ---------------------------------------------------------------- decoding

type Original = LoadedImage['original'];

/** Decodes the file to `size` (its oriented size, or smaller: shrunk while decoding). */
async function decodeOriginal(file: CheckedFile, path: string, metadata: Metadata, size: Size, settings: LoadSettings): Promise<Original> {
  const pipeline = sharp(file.source, {
    failOn: FAIL_ON,
    // sharp wants a whole number; our own check above already used the exact limit.
    limitInputPixels: settings.maxPixels === 0 ? false : Math.max(1, Math.floor(settings.maxPixels)),
    autoOrient: true,
    page: 0,
    pages: 1,
  })
    .flatten({ background: settings.background })
    .toColourspace('srgb');
  fixSixteenBitProfile(pipeline, metadata);
  const shrinks = size.width !== metadata.autoOrient.width || size.height !== metadata.autoOrient.height;
  if (shrinks) {
    // In the decoding pipeline, so the full-resolution pixels are never held.
    // fastShrinkOnLoad off: JPEG shrink-on-load leaves a factor of two or more
    // to the resize kernel, which avoids its moiré.
    pipeline.resize(size.width, size.height, { fit: 'fill', kernel: 'linear', fastShrinkOnLoad: false });
  }

  let result: { data: Buffer; info: OutputInfo };
  try {
    result = await opening(file, () => pipeline.raw().toBuffer({ resolveWithObject: true }));
  } catch (error) {
    if (isOutOfDescriptors(error)) throw fileSystemError(error, path);
    throw await decodeError(error, metadata, settings.maxPixels, file, path);
  }
  return checkedRgb(result, path, shrinks ? size : undefined);
}

/** The decoded pixels, checked to be 8-bit RGB (and of the size asked for, if any). */
function checkedRgb({ data, info }: { data: Buffer; info: OutputInfo }, path: string, size?: Size): Original {
  if (info.channels !== 3 || data.length !== info.width * info.height * 3) {
    throw new CamvizError(
      `decoded to ${info.channels} channels (${data.length} bytes for ${info.width}x${info.height}), expected 8-bit RGB`,
      { file: path },
    );
  }
  if (size !== undefined && (info.width !== size.width || info.height !== size.height)) {
    throw new CamvizError(`decoded to ${info.width}x${info.height}, expected ${size.width}x${size.height}`, { file: path });
  }
  return { width: info.width, height: info.height, rgb: asUint8Array(data) };
}

/** RGB pixels already in memory shrunk to `size` as `decodeOriginal` shrinks a file; unchanged if they fit. */
async function shrinkRgb(original: Original, size: Size, name: string): Promise<Original> {
  if (size.width === original.width && size.height === original.height) return original;
  const result = await sharp(original.rgb, {
    raw: { width: original.width, height: original.height, channels: 3 },
    limitInputPixels: false,
  })
    .resize(size.width, size.height, { fit: 'fill', kernel: 'linear' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return checkedRgb(result, name, size);
}

/**
 * sharp converts 16-bit RGB images that carry an ICC profile into a P3
 * working space and, without an output profile, leaves the pixels P3-encoded
 * when casting to 8-bit sRGB (colours off by tens of levels). Dropping to
 * 8-bit sRGB first makes sharp transform from the embedded profile straight
 * to sRGB, as it does for 8-bit images.
 */
function fixSixteenBitProfile(pipeline: Sharp, metadata: Metadata): void {
  if (metadata.space === 'rgb16' && metadata.hasProfile) pipeline.pipelineColourspace('srgb');
}

async function decodeError(error: unknown, metadata: Metadata, maxPixels: number, file: CheckedFile, path: string): Promise<CamvizError> {
  const libvipsReason = sharpReason(error);
  if (/exceeds pixel limit/i.test(libvipsReason)) return pixelLimitError(metadata, maxPixels, path);
  const format = metadata.format as SupportedFormat;
  const reason = (await truncation(file, format)) ?? libvipsReason;
  return new CamvizError(`truncated or corrupt ${SUPPORTED_FORMATS[format]}: ${reason}`, { file: path, cause: error });
}

/** The last `length` bytes of an open file of `size` bytes; undefined if they cannot be read. */
async function tailOf(handle: FileHandle, size: number, length: number): Promise<Buffer | undefined> {
  const tail = Buffer.alloc(Math.min(size, length));
  try {
    const { bytesRead } = await handle.read(tail, 0, tail.length, size - tail.length);
    return tail.subarray(0, bytesRead);
  } catch {
    return undefined;
  }
}

/** As tailOf, for a file read by its path (where no descriptor path exists): opened and checked again. */
async function tailOfPath(path: string, length: number): Promise<Buffer | undefined> {
  const opened = await openRegularFile(path).catch(() => undefined);
  if (opened === undefined) return undefined;
  try {
    return await tailOf(opened.handle, Number(opened.stats.size), length);
  } finally {
    await opened.handle.close();
  }
}

/**
 * Our own diagnosis of a cut-off PNG or JPEG (no IEND chunk, no end-of-image
 * marker). libvips keeps one error buffer per process, so the reason it
 * gives for a failing image can be another image's when several decode at
 * once; a diagnosis from the file itself is the same on every run.
 */
async function truncation(file: CheckedFile, format: SupportedFormat): Promise<string | undefined> {
  if (format !== 'png' && format !== 'jpeg') return undefined;
  const tail = await file.readTail(16);
  if (tail === undefined) return undefined;
  if (format === 'png') return tail.includes('IEND') ? undefined : 'the file ends before its IEND chunk (truncated)';
  // Encoders may pad after the end-of-image marker with zeros.
  let end = tail.length;
  while (end > 0 && tail[end - 1] === 0) end--;
  return end >= 2 && tail[end - 2] === 0xff && tail[end - 1] === 0xd9 ? undefined : 'premature end of JPEG image (no end-of-image marker)';
}

/**
 * sharp's reason without libvips' wrappers, loader prefixes and repeats;
 * libvips can repeat a decoder's complaints over many lines, the first is the cause.
 */
function sharpReason(error: unknown): string {
  const text = withUserPaths(error instanceof Error ? error.message : String(error));
  const reasons = text
    .split('\n')
    .map((line) =>
      line
        .replace(/^Input (?:file|buffer) has corrupt header:?\s*/i, '')
        .replace(/^(Vips\w*|vips\w*|lib\w+):\s*/, '')
        .trim(),
    )
    .filter((line) => line !== '');
  return reasons[0] ?? '';
}

/**
 * libvips names the files it opened: each descriptor path becomes the
 * user's path of that descriptor, or "another image" for one no longer
 * held (libvips' one error buffer may carry an earlier image's text).
 */
function withUserPaths(text: string): string {
  if (DESCRIPTOR_FOLDER === undefined) return text;
  return text.replace(DESCRIPTOR_PATH, (_match, fd: string) => heldDescriptors.get(Number(fd)) ?? 'another image');
}

function asUint8Array(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

// ---------------------------------------------------------------- geometry and resizing

/**
 * Where the original lands in the model input. Boxes are whole pixels so
 * that they describe exactly what sharp's extract / resize / extend produce.
 */
export function computeGeometry(original: Size, input: Size, mode: ResizeMode): ImageGeometry {
  const whole: Box = { x: 0, y: 0, width: original.width, height: original.height };
  const fullInput: Box = { x: 0, y: 0, width: input.width, height: input.height };
  const base = {
    mode,
    original: { width: original.width, height: original.height },
    input: { width: input.width, height: input.height },
  };

  switch (mode) {
    case 'stretch':
      return { ...base, sourceBox: whole, inputBox: fullInput };
    case 'crop':
      return { ...base, sourceBox: centreCropBox(original, input), inputBox: fullInput };
    case 'pad':
      return { ...base, sourceBox: whole, inputBox: padBox(original, input) };
  }
}

/** The largest centred box of the original with the input's aspect ratio. */
function centreCropBox(original: Size, input: Size): Box {
  const inputAspect = input.width / input.height;
  let width = original.width;
  let height = original.height;
  if (original.width / original.height > inputAspect) {
    width = clamp(Math.round(original.height * inputAspect), 1, original.width);
  } else {
    height = clamp(Math.round(original.width / inputAspect), 1, original.height);
  }
  const x = Math.floor((original.width - width) / 2);
  const y = Math.floor((original.height - height) / 2);
  return { x, y, width, height };
}

/** The original scaled to fit inside the input, rounded to whole pixels, centred. */
function padBox(original: Size, input: Size): Box {
  const scale = Math.min(input.width / original.width, input.height / original.height);
  const width = clamp(Math.round(original.width * scale), 1, input.width);
  const height = clamp(Math.round(original.height * scale), 1, input.height);
  const x = Math.floor((input.width - width) / 2);
  const y = Math.floor((input.height - height) / 2);
  return { x, y, width, height };
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(high, Math.max(low, value));
}

async function makeModelInput(
  original: Original,
  geometry: ImageGeometry,
  background: Rgb,
  path: string,
): Promise<Uint8Array> {
  const { sourceBox, inputBox, input } = geometry;
  // The pixel limit was enforced on the file; the raw copy needs no second check.
  let pipeline = sharp(original.rgb, {
    raw: { width: original.width, height: original.height, channels: 3 },
    limitInputPixels: false,
  });
  if (geometry.mode === 'crop') {
    pipeline = pipeline.extract({
      left: sourceBox.x,
      top: sourceBox.y,
      width: sourceBox.width,
      height: sourceBox.height,
    });
  }
  pipeline = pipeline.resize(inputBox.width, inputBox.height, { fit: 'fill', kernel: 'linear' });
  if (geometry.mode === 'pad') {
    pipeline = pipeline.extend({
      left: inputBox.x,
      top: inputBox.y,
      right: input.width - inputBox.x - inputBox.width,
      bottom: input.height - inputBox.y - inputBox.height,
      background: { ...background, alpha: 1 },
    });
  }
  const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
  if (info.width !== input.width || info.height !== input.height || info.channels !== 3) {
    throw new CamvizError(
      `resizing produced ${info.width}x${info.height}x${info.channels}, expected ${input.width}x${input.height}x3`,
      { file: path },
    );
  }
  return asUint8Array(data);
}
