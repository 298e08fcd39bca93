/**
 * Reading HDF5 files (Keras weights) through jsfive, a pure-JS reader: the
 * rest of camviz sees only this interface. jsfive was picked over h5wasm
 * (the HDF5 C library in wasm) on the shared Keras files: 3x faster to load
 * (70-150 ms against 340-470 ms, most of it h5wasm's 4 MB wasm start-up),
 * 40 MB less memory, no copy of the file into a wasm file system, and its
 * failures are JS exceptions where h5wasm prints HDF5's multi-line error
 * stack on stderr. Neither hung on truncated or corrupted files.
 *
 * A file is only trusted as far as its bytes go: it must be as long as its
 * superblock says, a dataset is read only once its declared shape fits in
 * the file (a lying shape cannot make us allocate gigabytes), and data are
 * read only inside the file. Uncompressed contiguous float32 data (what
 * Keras writes) are located in the file's bytes and handed on as they are
 * (no copy); chunked float32 data are read by ./hdf5-chunks.ts, with
 * bounds jsfive does not keep; anything else is read through jsfive.
 */
import { createRequire } from 'node:module';
import { CamvizError } from '../../util/errors.js';
import { isChunkedLayout, readChunkedFloat32 } from './hdf5-chunks.js';

/** The part of jsfive's API used here (it ships no types). */
interface JsfiveNode {
  readonly attrs: Record<string, unknown>;
}
interface JsfiveGroup extends JsfiveNode {
  readonly keys: string[];
  get(name: string): JsfiveGroup | JsfiveDataset | null;
}
interface JsfiveDataset extends JsfiveNode {
  readonly shape: number[];
  readonly dtype: unknown;
  readonly value: ArrayLike<number>;
  /** jsfive's parsed object header (internal, pinned version): for the fast path. */
  readonly _dataobjects?: {
    find_msg_type(type: number): { get(key: string): unknown }[];
    readonly filter_pipeline: unknown;
  };
}
interface Jsfive {
  File: new (buffer: ArrayBuffer, filename: string) => JsfiveGroup;
  Dataset: abstract new (...args: never[]) => JsfiveDataset;
}

const FLOAT_DTYPES: Readonly<Record<string, number>> = { '<f4': 4, '<f8': 8, '<f2': 2 };
const DATA_LAYOUT_MESSAGE = 8;
const CONTIGUOUS = 1;

let jsfive: Jsfive | undefined;
function library(): Jsfive {
  jsfive ??= createRequire(import.meta.url)('jsfive') as Jsfive;
  return jsfive;
}

export interface Hdf5Dataset {
  shape: number[];
  /**
   * Where the values sit in `Hdf5File.buffer` as little-endian float32, in
   * row-major order (a byte offset, checked to lie inside the file), or
   * undefined when they are stored otherwise (chunked, filtered, float64).
   */
  float32At(): number | undefined;
  /** The values as float32, in row-major order (a copy). */
  read(): Float32Array;
}

/** An open HDF5 file; every failure is a one-line CamvizError naming `file`. */
export class Hdf5File {
  private readonly root: JsfiveGroup;
  /** Groups and datasets by path, once looked up. */
  private readonly nodes = new Map<string, JsfiveGroup | JsfiveDataset | undefined>();

  private constructor(
    root: JsfiveGroup,
    /** The file's bytes, from its first: what jsfive reads, and where `float32At` offsets point. */
    readonly buffer: ArrayBuffer,
    private readonly bytes: Buffer,
    /** Whether addresses are file offsets (base address 0), so that data can be read straight from the bytes. */
    private readonly baseIsZero: boolean,
    readonly file: string,
  ) {
    this.root = root;
  }

  private get byteLength(): number {
    return this.bytes.length;
  }

  /** The file in `bytes`: read in place when they fill their ArrayBuffer (jsfive reads whole ArrayBuffers), else copied once. */
  static open(bytes: Uint8Array, file: string): Hdf5File {
    const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
    const buffer = (whole ? bytes.buffer : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)) as ArrayBuffer;
    const view = Buffer.from(buffer);
    const base = checkNotTruncated(view, file);
    const root = guarded(file, () => new (library().File)(buffer, file));
    return new Hdf5File(root, buffer, view, base === 0n, file);
  }

  /** An attribute of the group at `path` ('' is the root), or undefined. */
  attribute(path: string, name: string): unknown {
    const node = this.node(path);
    if (node === undefined) return undefined;
    const attrs = guarded(this.file, () => node.attrs);
    return Object.hasOwn(attrs, name) ? withoutNullPadding(attrs[name]) : undefined;
  }

  /** Names of the members of the group at `path`; [] when there is no such group. */
  members(path: string): string[] {
    const node = this.node(path);
    return node !== undefined && !isDataset(node) ? guarded(this.file, () => (node as JsfiveGroup).keys) : [];
  }

  /** The dataset at `path`, or undefined when there is none. */
  dataset(path: string): Hdf5Dataset | undefined {
    const node = this.node(path);
    if (node === undefined || !isDataset(node)) return undefined;
    const shape = guarded(this.file, () => node.shape);
    const dtype = guarded(this.file, () => node.dtype);
    const bytesPer = typeof dtype === 'string' ? FLOAT_DTYPES[dtype] : undefined;
    if (bytesPer === undefined) throw new CamvizError(`HDF5 dataset '${path}' is not little-endian float (${JSON.stringify(dtype)})`, { file: this.file });
    const count = shape.reduce((product, dim) => product * dim, 1);
    // Compressed data could legitimately exceed the file, but Keras stores weights uncompressed; a shape larger than the file lies.
    if (!shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0) || count * bytesPer > this.byteLength) {
      throw new CamvizError(`HDF5 dataset '${path}' declares shape [${shape.join(', ')}], more than the file holds`, { file: this.file });
    }
    const float32At = (): number | undefined => (dtype === '<f4' ? this.contiguousFloat32(node, path, count) : undefined);
    return {
      shape: [...shape],
      float32At,
      read: () => {
        const at = float32At();
        if (at !== undefined) {
          // A copy, aligned: the data need not sit at a multiple of 4 in the file. HDF5 '<f4' is little-endian, as are the hosts Node runs on here.
          const values = new Float32Array(count);
          new Uint8Array(values.buffer).set(this.bytes.subarray(at, at + count * 4));
          return values;
        }
        const chunked = this.chunkedFloat32(node, path, shape, dtype);
        if (chunked !== undefined) return chunked;
        const values = guarded(this.file, () => node.value);
        if (values.length !== count) throw new CamvizError(`HDF5 dataset '${path}' holds ${values.length} values, its shape says ${count}`, { file: this.file });
        return Float32Array.from(values);
      },
    };
  }

  /**
   * Where an uncompressed contiguous float32 dataset's data start in the
   * file's bytes: read from there, not through jsfive, which reads value by
   * value into a JS array, 20-40x slower (200-480 ms for MobileNet's 2.6 M
   * weights). Undefined when the dataset is stored otherwise (chunked,
   * filtered): jsfive reads it then.
   */
  private contiguousFloat32(node: JsfiveDataset, path: string, count: number): number | undefined {
    const objects = node._dataobjects;
    if (!this.baseIsZero || objects === undefined) return undefined;
    const layout = guarded(this.file, () => (objects.filter_pipeline == null ? objects.find_msg_type(DATA_LAYOUT_MESSAGE)[0]?.get('offset_to_message') : undefined));
    if (typeof layout !== 'number' || layout + 18 > this.byteLength) return undefined;
    const version = this.bytes.readUInt8(layout);
    if ((version !== 3 && version !== 4) || this.bytes.readUInt8(layout + 1) !== CONTIGUOUS) return undefined;
    const address = Number(this.bytes.readBigUInt64LE(layout + 2));
    if (address + count * 4 > this.byteLength) {
      throw new CamvizError(`HDF5 dataset '${path}' points past the end of the file (at ${address}, ${count * 4} bytes)`, { file: this.file });
    }
    return address;
  }

  /** A chunked dataset's values, read by ./hdf5-chunks.ts (bounded, where jsfive is not); undefined for other layouts. */
  private chunkedFloat32(node: JsfiveDataset, path: string, shape: readonly number[], dtype: unknown): Float32Array | undefined {
    const objects = node._dataobjects;
    if (objects === undefined) return undefined;
    const layoutAt = guarded(this.file, () => objects.find_msg_type(DATA_LAYOUT_MESSAGE)[0]?.get('offset_to_message'));
    if (typeof layoutAt !== 'number' || !isChunkedLayout(this.bytes, layoutAt)) return undefined;
    if (dtype !== '<f4' || !this.baseIsZero) throw new CamvizError(`HDF5 dataset '${path}' is chunked ${dtype === '<f4' ? 'in a file with a user block' : `as ${JSON.stringify(dtype)}`}; only chunked float32 is read`, { file: this.file });
    const pipeline = guarded(this.file, () => objects.filter_pipeline) as { get(key: string): unknown }[] | null;
    const filters = (pipeline ?? []).map((filter) => ({ id: Number(filter.get('filter_id')) }));
    return readChunkedFloat32({ bytes: this.bytes, layoutAt, shape, filters, path, file: this.file });
  }

  /** The group or dataset at a '/'-separated path, following only names that exist. */
  private node(path: string): JsfiveGroup | JsfiveDataset | undefined {
    const parts = path.split('/').filter((name) => name !== '');
    const key = parts.join('/');
    if (this.nodes.has(key)) return this.nodes.get(key);
    // jsfive parses a group's header again on every get: each group on the way is looked up once.
    const parent = parts.length === 0 ? undefined : this.node(parts.slice(0, -1).join('/'));
    let node: JsfiveGroup | JsfiveDataset | undefined = parts.length === 0 ? this.root : undefined;
    if (parent !== undefined && !isDataset(parent)) {
      const name = parts.at(-1)!;
      if (guarded(this.file, () => parent.keys).includes(name)) node = guarded(this.file, () => parent.get(name)) ?? undefined;
    }
    this.nodes.set(key, node);
    return node;
  }
}

/**
 * The superblock records where the file ends (its end-of-file address,
 * relative to the base address); a shorter file lost its end, even when
 * what a reader needs happens to sit before the cut. Same check as libhdf5.
 */
function checkNotTruncated(view: Buffer, file: string): bigint {
  if (view.length < 56) throw new CamvizError('not a readable HDF5 file: too short for a superblock', { file });
  const version = view.readUInt8(8);
  // Superblock layouts (HDF5 File Format Specification, II.A): where the base and end-of-file addresses are.
  const [baseAt, endAt] = version === 0 ? [24, 40] : version === 1 ? [28, 44] : version === 2 || version === 3 ? [12, 28] : [-1, -1];
  if (baseAt < 0) throw new CamvizError(`not a readable HDF5 file: unknown superblock version ${version}`, { file });
  const base = view.readBigUInt64LE(baseAt);
  const end = base + view.readBigUInt64LE(endAt);
  if (end > BigInt(view.length)) throw new CamvizError(`HDF5 file is truncated: ${view.length} bytes, its superblock says ${end}`, { file });
  return base;
}

/** Fixed-length HDF5 strings come back padded with NULs; h5py (numpy) strips them, so do we. */
function withoutNullPadding(value: unknown): unknown {
  if (typeof value === 'string') return value.replace(/\0+$/, '');
  return Array.isArray(value) ? value.map(withoutNullPadding) : value;
}

function isDataset(node: JsfiveGroup | JsfiveDataset): node is JsfiveDataset {
  return node instanceof library().Dataset;
}

/** jsfive throws RangeErrors, strings and stack overflows on broken files: one line naming the file instead. */
function guarded<T>(file: string, work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (error instanceof CamvizError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new CamvizError(`not a readable HDF5 file (truncated or corrupt?): ${reason.split('\n')[0]}`, { file, cause: error });
  }
}
