/**
 * A TensorBoard event-file writer for images.
 *
 * The file is a TFRecord stream of `tensorflow.Event` protos: each record is
 * uint64 length, masked CRC32C of those 8 bytes, the data, masked CRC32C of
 * the data (all little-endian). The first event carries
 * file_version "brain.Event:2"; the others a Summary with one image value.
 *
 * Records are appended to the final file name as they come, each with a
 * single complete write, the way TensorFlow's own writer works, rather than
 * written to a temporary name and renamed at close: TensorBoard tails event
 * files, so a folder run of thousands of images shows up while it runs, and
 * if the process dies every complete record stays readable (TensorBoard
 * ignores a cut-off last record). The file is created exclusively, so an
 * existing file is never appended to or overwritten.
 */
import { close as closeCallback, closeSync, fsync as fsyncCallback, openSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import CRC32C from 'crc-32/crc32c.js';
import protobuf from 'protobufjs';
import { makeFolders } from '../util/make-folders.js';

const fsync = promisify(fsyncCallback);
const closeFd = promisify(closeCallback);

export const EVENT_FILE_VERSION = 'brain.Event:2';
/** Summary.Image.colorspace for RGB. */
export const COLORSPACE_RGB = 3;
const MASK_DELTA = 0xa282ead8;

/**
 * The parts of tensorflow/core/util/event.proto and
 * tensorflow/core/framework/summary.proto this writer uses, with their field numbers.
 */
function eventType(): protobuf.Type {
  const { Field, Root, Type } = protobuf;
  const image = new Type('Image')
    .add(new Field('height', 1, 'int32'))
    .add(new Field('width', 2, 'int32'))
    .add(new Field('colorspace', 3, 'int32'))
    .add(new Field('encoded_image_string', 4, 'bytes'));
  const value = new Type('Value')
    .add(new Field('tag', 1, 'string'))
    .add(new Field('simple_value', 2, 'float'))
    .add(new Field('image', 4, 'Image'));
  const summary = new Type('Summary').add(image).add(value).add(new Field('value', 1, 'Value', 'repeated'));
  const event = new Type('Event')
    .add(new Field('wall_time', 1, 'double'))
    .add(new Field('step', 2, 'int64'))
    .add(new Field('file_version', 3, 'string'))
    .add(new Field('summary', 5, 'Summary'));
  const root = new Root();
  root.define('tensorflow').add(summary).add(event);
  root.resolveAll();
  return root.lookupType('tensorflow.Event');
}

let cachedEventType: protobuf.Type | undefined;
function getEventType(): protobuf.Type {
  cachedEventType ??= eventType();
  return cachedEventType;
}

/** TFRecord's CRC mask: rotate right by 15 bits, add a constant. */
export function maskCrc(crc: number): number {
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + MASK_DELTA) >>> 0;
}

/** One TFRecord: length, masked CRC32C of the length, data, masked CRC32C of the data. */
export function frameRecord(data: Uint8Array): Buffer {
  const record = Buffer.alloc(8 + 4 + data.length + 4);
  record.writeBigUInt64LE(BigInt(data.length), 0);
  record.writeUInt32LE(maskCrc(CRC32C.buf(record.subarray(0, 8))), 8);
  record.set(data, 12);
  record.writeUInt32LE(maskCrc(CRC32C.buf(data)), 12 + data.length);
  return record;
}

interface EventFields {
  wall_time: number;
  step?: number;
  file_version?: string;
  summary?: { value: { tag: string; image: ImageFields }[] };
}

interface ImageFields {
  height: number;
  width: number;
  colorspace: number;
  encoded_image_string: Uint8Array;
}

/** The serialised Event; step 0 is left out, as proto3 encoders do. */
export function encodeEvent(fields: EventFields): Uint8Array {
  const type = getEventType();
  const { step, ...rest } = fields;
  const message = type.fromObject(step === undefined || step === 0 ? rest : { ...rest, step });
  return type.encode(message).finish();
}

export interface EventWriterOptions {
  /** Host name in the file name; default os.hostname(). */
  hostname?: string;
}

export class EventWriter {
  /** The event file being written. */
  readonly path: string;
  private fd: number | null;
  private failed: unknown = undefined;

  private constructor(path: string, fd: number) {
    this.path = path;
    this.fd = fd;
  }

  /**
   * Creates `logdir` if needed and starts a new event file in it named like
   * TensorBoard's, `events.out.tfevents.<unix seconds>.<hostname>` (with
   * `.<pid>.<n>` added if that name is taken).
   */
  static async create(logdir: string, options: EventWriterOptions = {}): Promise<EventWriter> {
    await makeFolders(logdir);
    const now = Date.now() / 1000;
    const base = `events.out.tfevents.${Math.floor(now)}.${options.hostname ?? hostname()}`;
    const { path, fd } = openExclusive(join(logdir, base));
    const writer = new EventWriter(path, fd);
    try {
      writer.writeRecord(encodeEvent({ wall_time: now, file_version: EVENT_FILE_VERSION }));
    } catch (error) {
      closeSync(fd);
      throw error;
    }
    return writer;
  }

  /** Adds a PNG (or JPEG) image under `tag` at `step`; written to the file at once. */
  addImage(tag: string, png: Uint8Array, width: number, height: number, step: number, wallTime?: number): void {
    if (tag.length === 0) throw new RangeError('image tag must not be empty');
    if (!Number.isSafeInteger(step)) throw new RangeError(`step must be a whole number, got ${step}`);
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
      throw new RangeError(`image size must be positive whole numbers, got ${width}x${height}`);
    }
    const image: ImageFields = { height, width, colorspace: COLORSPACE_RGB, encoded_image_string: png };
    const event = encodeEvent({
      wall_time: wallTime ?? Date.now() / 1000,
      step,
      summary: { value: [{ tag, image }] },
    });
    this.writeRecord(event);
  }

  /** Flushes the file to disk and closes it. Safe to call twice. */
  async close(): Promise<void> {
    const fd = this.fd;
    if (fd === null) return;
    this.fd = null;
    try {
      await fsync(fd);
    } finally {
      await closeFd(fd);
    }
  }

  private writeRecord(data: Uint8Array): void {
    if (this.failed !== undefined) {
      throw new Error(`event file ${this.path} had a write error earlier`, { cause: this.failed });
    }
    if (this.fd === null) throw new Error(`event file ${this.path} is closed`);
    const record = frameRecord(data);
    try {
      let written = 0;
      while (written < record.length) written += writeSync(this.fd, record, written, record.length - written);
    } catch (error) {
      // A partial record may now end the file; appending after it would
      // make every later record unreadable, so refuse further writes.
      this.failed = error;
      throw error;
    }
  }
}

function openExclusive(path: string): { path: string; fd: number } {
  for (let n = 0; ; n++) {
    const candidate = n === 0 ? path : `${path}.${process.pid}.${n}`;
    try {
      return { path: candidate, fd: openSync(candidate, 'wx') };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || n >= 1000) throw error;
    }
  }
}
