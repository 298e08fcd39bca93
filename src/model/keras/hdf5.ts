/**
 * Reading HDF5 files (Keras weights) through jsfive, a pure-JS reader: the
 * rest of camviz sees only this interface. jsfive was picked over h5wasm
 * (the HDF5 C library in wasm) on the shared Keras files: 3x faster to load
 * (70-150 ms against 340-470 ms, most of it h5wasm's 4 MB wasm start-up),
 * 40 MB less memory, no copy of the file into a wasm file system, and its
 * failures are JS exceptions where h5wasm prints HDF5's multi-line error
 * stack on stderr. Neither hung on truncated or corrupted files.
 *
 * A file is only trusted as far as its bytes go: a dataset is read only
 * once its declared shape fits in the file, so a lying shape cannot make
 * us allocate gigabytes.
 */
import { createRequire } from 'node:module';
import { CamvizError } from '../../util/errors.js';

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
}
interface Jsfive {
  File: new (buffer: ArrayBuffer, filename: string) => JsfiveGroup;
  Dataset: abstract new (...args: never[]) => JsfiveDataset;
}

const FLOAT_DTYPES: Readonly<Record<string, number>> = { '<f4': 4, '<f8': 8, '<f2': 2 };

let jsfive: Jsfive | undefined;
function library(): Jsfive {
  jsfive ??= createRequire(import.meta.url)('jsfive') as Jsfive;
  return jsfive;
}

export interface Hdf5Dataset {
  shape: number[];
  /** The values as float32, in row-major order. */
  read(): Float32Array;
}

/** An open HDF5 file; every failure is a one-line CamvizError naming `file`. */
export class Hdf5File {
  private readonly root: JsfiveGroup;

  private constructor(
    root: JsfiveGroup,
    private readonly byteLength: number,
    readonly file: string,
  ) {
    this.root = root;
  }

  static open(bytes: Uint8Array, file: string): Hdf5File {
    checkNotTruncated(bytes, file);
    const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    const root = guarded(file, () => new (library().File)(buffer, file));
    return new Hdf5File(root, bytes.byteLength, file);
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
    return {
      shape: [...shape],
      read: () => {
        const values = guarded(this.file, () => node.value);
        if (values.length !== count) throw new CamvizError(`HDF5 dataset '${path}' holds ${values.length} values, its shape says ${count}`, { file: this.file });
        return Float32Array.from(values);
      },
    };
  }

  /** The group or dataset at a '/'-separated path, following only names that exist. */
  private node(path: string): JsfiveGroup | JsfiveDataset | undefined {
    let node: JsfiveGroup | JsfiveDataset = this.root;
    for (const part of path.split('/').filter((name) => name !== '')) {
      if (isDataset(node)) return undefined;
      const group: JsfiveGroup = node;
      if (!guarded(this.file, () => group.keys).includes(part)) return undefined;
      const next = guarded(this.file, () => group.get(part));
      if (next === null) return undefined;
      node = next;
    }
    return node;
  }
}

/**
 * The superblock records where the file ends (its end-of-file address,
 * relative to the base address); a shorter file lost its end, even when
 * what a reader needs happens to sit before the cut. Same check as libhdf5.
 */
function checkNotTruncated(bytes: Uint8Array, file: string): void {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.length < 56) throw new CamvizError('not a readable HDF5 file: too short for a superblock', { file });
  const version = view.readUInt8(8);
  // Superblock layouts (HDF5 File Format Specification, II.A): where the base and end-of-file addresses are.
  const [baseAt, endAt] = version === 0 ? [24, 40] : version === 1 ? [28, 44] : version === 2 || version === 3 ? [12, 28] : [-1, -1];
  if (baseAt < 0) throw new CamvizError(`not a readable HDF5 file: unknown superblock version ${version}`, { file });
  const end = view.readBigUInt64LE(baseAt) + view.readBigUInt64LE(endAt);
  if (end > BigInt(view.length)) throw new CamvizError(`HDF5 file is truncated: ${view.length} bytes, its superblock says ${end}`, { file });
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
