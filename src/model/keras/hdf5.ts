/**
 * Reading HDF5 files (Keras weights): the rest of camviz sees only this
 * interface. Groups and datasets are found by ./hdf5-structure.ts, which
 * reads the structures h5py writes for Keras 10-20x faster than jsfive;
 * jsfive, a pure-JS reader, reads attributes, and everything from the first
 * structure that reader leaves to it. jsfive was picked over h5wasm
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
import { oneLine } from '../../util/text.js';
import { type ChunkFilter, isChunkedLayout, readChunkedFloat32 } from './hdf5-chunks.js';
import { type Hdf5ObjectInfo, Hdf5Structure, Hdf5Unsupported } from './hdf5-structure.js';

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

/** What reading a dataset needs to know of it, from either reader. */
interface DatasetFacts {
  shape: number[];
  dtype: unknown;
  /** Offset of its Data Layout message's body in the file, when known. */
  layoutAt: number | undefined;
  /** Its filters in the order applied; null when it has no pipeline. */
  filters: readonly ChunkFilter[] | null;
  /** Its values as jsfive reads them (slow: one JS number at a time). */
  values(): ArrayLike<number>;
}

/**
 * An open HDF5 file; every failure is a one-line CamvizError naming `file`.
 * Groups and datasets are found by ./hdf5-structure.ts, or by jsfive from
 * the first thing that reader does not read; attributes by jsfive.
 */
export class Hdf5File {
  /** Undefined once the file holds something it does not read. */
  private structure: Hdf5Structure | undefined;
  private jsfiveRoot: JsfiveGroup | undefined;
  /** Groups and datasets by path, once looked up. */
  private readonly ownNodes = new Map<string, Hdf5ObjectInfo | undefined>();
  private readonly jsfiveNodes = new Map<string, JsfiveGroup | JsfiveDataset | undefined>();

  private constructor(
    /** The file's bytes, from its first: what jsfive reads, and where `float32At` offsets point. */
    readonly buffer: ArrayBuffer,
    private readonly bytes: Buffer,
    /** Whether addresses are file offsets (base address 0), so that data can be read straight from the bytes. */
    private readonly baseIsZero: boolean,
    readonly file: string,
  ) {}

  private get byteLength(): number {
    return this.bytes.length;
  }

  /** The file in `bytes`: read in place when they fill their ArrayBuffer (jsfive reads whole ArrayBuffers), else copied once. */
  static open(bytes: Uint8Array, file: string): Hdf5File {
    const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
    const buffer = (whole ? bytes.buffer : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)) as ArrayBuffer;
    const view = Buffer.from(buffer);
    const base = checkNotTruncated(view, file);
    const h5 = new Hdf5File(buffer, view, base === 0n, file);
    const structure = unlessUnsupported(() => Hdf5Structure.open(view, file));
    h5.structure = structure === UNSUPPORTED ? undefined : structure;
    // A file this reader does not read is opened by jsfive at once: its problems show here, as before.
    if (h5.structure === undefined) h5.jsfive();
    return h5;
  }

  /** An attribute of the group at `path` ('' is the root), or undefined. */
  attribute(path: string, name: string): unknown {
    const node = this.jsfiveNode(path);
    if (node === undefined) return undefined;
    const attrs = guarded(this.file, () => node.attrs);
    return Object.hasOwn(attrs, name) ? withoutNullPadding(attrs[name]) : undefined;
  }

  /** Names of the members of the group at `path`; [] when there is no such group. */
  members(path: string): string[] {
    return this.either(
      () => {
        const node = this.ownNode(path);
        return node?.kind === 'group' ? [...node.links.keys()] : [];
      },
      () => {
        const node = this.jsfiveNode(path);
        return node !== undefined && !isDataset(node) ? guarded(this.file, () => (node as JsfiveGroup).keys) : [];
      },
    );
  }

  /** The dataset at `path`, or undefined when there is none. */
  dataset(path: string): Hdf5Dataset | undefined {
    const facts = this.either(
      () => this.ownDatasetFacts(path),
      () => this.jsfiveDatasetFacts(path),
    );
    if (facts === undefined) return undefined;
    const { shape, dtype } = facts;
    const bytesPer = typeof dtype === 'string' ? FLOAT_DTYPES[dtype] : undefined;
    if (bytesPer === undefined) throw new CamvizError(`HDF5 dataset '${path}' is not little-endian float (${JSON.stringify(dtype)})`, { file: this.file });
    const count = shape.reduce((product, dim) => product * dim, 1);
    // Compressed data could legitimately exceed the file, but Keras stores weights uncompressed; a shape larger than the file lies.
    if (!shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0) || count * bytesPer > this.byteLength) {
      throw new CamvizError(`HDF5 dataset '${path}' declares shape [${shape.join(', ')}], more than the file holds`, { file: this.file });
    }
    const float32At = (): number | undefined => (dtype === '<f4' ? this.contiguousFloat32(facts, path, count) : undefined);
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
        const chunked = this.chunkedFloat32(facts, path);
        if (chunked !== undefined) return chunked;
        const values: ArrayLike<number> | undefined = facts.values();
        // jsfive gives nothing for layouts it does not read (a compact dataset, for one).
        if (values?.length !== count) throw new CamvizError(`HDF5 dataset '${path}' holds ${values?.length ?? 'no'} values, its shape says ${count}`, { file: this.file });
        return Float32Array.from(values);
      },
    };
  }

  /**
   * Where an uncompressed contiguous float32 dataset's data start in the
   * file's bytes: read from there, not through jsfive, which reads value by
   * value into a JS array, 20-40x slower (200-480 ms for MobileNet's 2.6 M
   * weights). Undefined when the dataset is stored otherwise (chunked,
   * filtered).
   */
  private contiguousFloat32(facts: DatasetFacts, path: string, count: number): number | undefined {
    const layout = facts.layoutAt;
    if (!this.baseIsZero || facts.filters !== null || layout === undefined || layout + 18 > this.byteLength) return undefined;
    const version = this.bytes.readUInt8(layout);
    if ((version !== 3 && version !== 4) || this.bytes.readUInt8(layout + 1) !== CONTIGUOUS) return undefined;
    const address = Number(this.bytes.readBigUInt64LE(layout + 2));
    if (address + count * 4 > this.byteLength) {
      throw new CamvizError(`HDF5 dataset '${path}' points past the end of the file (at ${address}, ${count * 4} bytes)`, { file: this.file });
    }
    return address;
  }

  /** A chunked dataset's values, read by ./hdf5-chunks.ts (bounded, where jsfive is not); undefined for other layouts. */
  private chunkedFloat32(facts: DatasetFacts, path: string): Float32Array | undefined {
    const { layoutAt, dtype } = facts;
    if (layoutAt === undefined || !isChunkedLayout(this.bytes, layoutAt)) return undefined;
    if (dtype !== '<f4' || !this.baseIsZero) throw new CamvizError(`HDF5 dataset '${path}' is chunked ${dtype === '<f4' ? 'in a file with a user block' : `as ${JSON.stringify(dtype)}`}; only chunked float32 is read`, { file: this.file });
    return readChunkedFloat32({ bytes: this.bytes, layoutAt, shape: facts.shape, filters: facts.filters ?? [], path, file: this.file });
  }

  /** `own()` while the structure reader reads the file, else (and from the first thing it does not read on) `fallback()`. */
  private either<T>(own: () => T, fallback: () => T): T {
    if (this.structure !== undefined) {
      const result = unlessUnsupported(own);
      if (result !== UNSUPPORTED) return result;
      this.structure = undefined;
    }
    return fallback();
  }

  private ownDatasetFacts(path: string): DatasetFacts | undefined {
    const node = this.ownNode(path);
    if (node?.kind !== 'dataset') return undefined;
    const values = (): ArrayLike<number> => {
      const facts = this.jsfiveDatasetFacts(path);
      if (facts === undefined) throw new CamvizError(`HDF5 dataset '${path}' is not one to jsfive (corrupt file?)`, { file: this.file });
      return facts.values();
    };
    return { shape: node.shape, dtype: node.dtype, layoutAt: node.layoutAt, filters: node.filters, values };
  }

  private jsfiveDatasetFacts(path: string): DatasetFacts | undefined {
    const node = this.jsfiveNode(path);
    if (node === undefined || !isDataset(node)) return undefined;
    const objects = node._dataobjects;
    const pipeline = objects === undefined ? null : (guarded(this.file, () => objects.filter_pipeline) as { get(key: string): unknown }[] | null);
    const layoutAt = objects === undefined ? undefined : guarded(this.file, () => objects.find_msg_type(DATA_LAYOUT_MESSAGE)[0]?.get('offset_to_message'));
    return {
      shape: guarded(this.file, () => node.shape),
      dtype: guarded(this.file, () => node.dtype),
      layoutAt: typeof layoutAt === 'number' ? layoutAt : undefined,
      filters: pipeline == null ? null : pipeline.map((filter) => ({ id: Number(filter.get('filter_id')) })),
      values: () => guarded(this.file, () => node.value),
    };
  }

  /** The group or dataset at a '/'-separated path, as the structure reader finds it. */
  private ownNode(path: string): Hdf5ObjectInfo | undefined {
    const structure = this.structure!;
    const parts = path.split('/').filter((name) => name !== '');
    const key = parts.join('/');
    if (this.ownNodes.has(key)) return this.ownNodes.get(key);
    const parent = parts.length === 0 ? undefined : this.ownNode(parts.slice(0, -1).join('/'));
    const address = parts.length === 0 ? structure.rootAddress : parent?.kind === 'group' ? parent.links.get(parts.at(-1)!) : undefined;
    const node = address === undefined ? undefined : structure.object(address);
    this.ownNodes.set(key, node);
    return node;
  }

  private jsfive(): JsfiveGroup {
    this.jsfiveRoot ??= guarded(this.file, () => new (library().File)(this.buffer, this.file));
    return this.jsfiveRoot;
  }

  /** The group or dataset at a '/'-separated path, as jsfive finds it, following only names that exist. */
  private jsfiveNode(path: string): JsfiveGroup | JsfiveDataset | undefined {
    const parts = path.split('/').filter((name) => name !== '');
    const key = parts.join('/');
    if (this.jsfiveNodes.has(key)) return this.jsfiveNodes.get(key);
    // jsfive parses a group's header again on every get: each group on the way is looked up once.
    const parent = parts.length === 0 ? undefined : this.jsfiveNode(parts.slice(0, -1).join('/'));
    let node: JsfiveGroup | JsfiveDataset | undefined = parts.length === 0 ? this.jsfive() : undefined;
    if (parent !== undefined && !isDataset(parent)) {
      const name = parts.at(-1)!;
      if (guarded(this.file, () => parent.keys).includes(name)) node = guarded(this.file, () => parent.get(name)) ?? undefined;
    }
    this.jsfiveNodes.set(key, node);
    return node;
  }
}

const UNSUPPORTED = Symbol('unsupported');

/** What `work` gives, or UNSUPPORTED when it meets HDF5 the structure reader does not read. */
function unlessUnsupported<T>(work: () => T): T | typeof UNSUPPORTED {
  try {
    return work();
  } catch (error) {
    if (error instanceof Hdf5Unsupported) return UNSUPPORTED;
    throw error;
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
    throw new CamvizError(`not a readable HDF5 file (truncated or corrupt?): ${oneLine(reason)}`, { file, cause: error });
  }
}
