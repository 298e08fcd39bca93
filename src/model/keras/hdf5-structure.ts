/**
 * The structure of an HDF5 file, read from its bytes: which groups hold
 * which objects, and each dataset's shape, element type and storage. It
 * reads what h5py writes for Keras weights (HDF5 File Format Specification
 * 3.0): superblocks version 0 to 3 with 8-byte addresses and lengths,
 * object headers version 1 and 2 with their continuation blocks, groups as
 * symbol tables (version-1 B-tree, symbol nodes, local heap) or as compact
 * links, and the Dataspace, Datatype, Data Layout and Filter Pipeline
 * messages of datasets. jsfive walks the same structures 10-20x slower
 * (MobileNet's 150 datasets: 5-6 ms of a 35 ms load), most of it in its
 * generic struct unpacking.
 *
 * Anything else a valid file may hold (dense link storage, soft links,
 * shared messages, a user block, non-float data) is `Hdf5Unsupported`: the
 * caller then reads the file with jsfive. A file that breaks the format
 * (addresses past its end, a signature missing, an index that loops, a
 * name without its end) is a one-line CamvizError. Every read is checked
 * against the file's length, every index node and header block is visited
 * once, so that the work is bounded by the file's size.
 */
import { CamvizError } from '../../util/errors.js';
import type { ChunkFilter } from './hdf5-chunks.js';

/** Valid HDF5 that this reader does not read (jsfive does). */
export class Hdf5Unsupported extends Error {}

export interface Hdf5GroupInfo {
  kind: 'group';
  /** Member name to the address of its object header, in the file's order. */
  links: ReadonlyMap<string, number>;
}

export interface Hdf5DatasetInfo {
  kind: 'dataset';
  shape: number[];
  /** jsfive's (numpy's) name of the element type: '<f4', '>f8'... */
  dtype: string;
  /** Offset of the Data Layout message's body. */
  layoutAt: number;
  /** The filters, in the order they were applied; null when the dataset has no pipeline. */
  filters: ChunkFilter[] | null;
}

export type Hdf5ObjectInfo = Hdf5GroupInfo | Hdf5DatasetInfo;

const UNDEFINED_ADDRESS = 2 ** 64 - 1;
const MESSAGE = { dataspace: 0x1, linkInfo: 0x2, datatype: 0x3, link: 0x6, layout: 0x8, filters: 0xb, continuation: 0x10, symbolTable: 0x11 } as const;
const SHARED_MESSAGE_FLAG = 0x2;
const INTEGER_CLASS = 0;
const FLOAT_CLASS = 1;
/** HDF5's own limit on a dataspace's rank. */
const MAX_RANK = 32;
/** More messages than this in one object header is no header h5py writes: a loop of continuation blocks, or a lie. */
const MAX_MESSAGES = 65536;
/** Deeper group B-trees would index more names than any file holds. */
const MAX_BTREE_LEVEL = 64;
/** Longer member names are read by jsfive: looking for their end must not scan the file once per name. */
const MAX_NAME_LENGTH = 4096;

interface Message {
  type: number;
  /** Offset of the body. */
  at: number;
  size: number;
  flags: number;
}

export class Hdf5Structure {
  private readonly objects = new Map<number, Hdf5ObjectInfo>();

  private constructor(
    private readonly bytes: Buffer,
    readonly file: string,
    /** The root group's object header. */
    readonly rootAddress: number,
  ) {}

  /** The structure of the HDF5 file in `bytes` (from its signature on; its length checked by the caller against its superblock). */
  static open(bytes: Buffer, file: string): Hdf5Structure {
    const reader = new Hdf5Structure(bytes, file, 0);
    const version = reader.u8(8);
    const [sizesAt, baseAt, rootAt] = version === 0 ? [13, 24, 64] : version === 1 ? [13, 28, 68] : version === 2 || version === 3 ? [9, 12, 36] : [-1, -1, -1];
    if (sizesAt < 0) throw new Hdf5Unsupported(`superblock version ${version}`);
    if (reader.u8(sizesAt) !== 8 || reader.u8(sizesAt + 1) !== 8) throw new Hdf5Unsupported('addresses or lengths not of 8 bytes');
    if (reader.u64(baseAt) !== 0) throw new Hdf5Unsupported('a user block (base address not 0)');
    return new Hdf5Structure(bytes, file, reader.u64(rootAt));
  }

  /** The group or dataset whose object header is at `address`. */
  object(address: number): Hdf5ObjectInfo {
    let info = this.objects.get(address);
    if (info === undefined) {
      info = this.objectOf(this.messages(address), address);
      this.objects.set(address, info);
    }
    return info;
  }

  private objectOf(messages: readonly Message[], address: number): Hdf5ObjectInfo {
    const find = (type: number): Message | undefined => {
      const found = messages.find((message) => message.type === type);
      if (found !== undefined && (found.flags & SHARED_MESSAGE_FLAG) !== 0) throw new Hdf5Unsupported(`a shared message of type ${type}`);
      return found;
    };
    const layout = find(MESSAGE.layout);
    if (layout !== undefined) {
      const [dataspace, datatype] = [find(MESSAGE.dataspace), find(MESSAGE.datatype)];
      if (dataspace === undefined || datatype === undefined) this.fail(`the dataset at ${address} has no dataspace or datatype`);
      const filters = find(MESSAGE.filters);
      return { kind: 'dataset', shape: this.shape(dataspace.at), dtype: this.dtype(datatype.at), layoutAt: this.layout(layout.at), filters: filters === undefined ? null : this.filters(filters.at) };
    }
    const symbolTable = find(MESSAGE.symbolTable);
    if (symbolTable !== undefined) return { kind: 'group', links: this.symbolTableLinks(this.u64(symbolTable.at), this.u64(symbolTable.at + 8)) };
    const linkInfo = find(MESSAGE.linkInfo);
    if (linkInfo !== undefined) this.checkCompactLinks(linkInfo.at);
    const links = new Map<string, number>();
    for (const message of messages) {
      if (message.type !== MESSAGE.link) continue;
      const [name, target] = this.link(message.at);
      links.set(name, target);
    }
    if (linkInfo === undefined && links.size === 0) throw new Hdf5Unsupported(`the object at ${address} is neither a group nor a dataset`);
    return { kind: 'group', links };
  }

  /** The messages of the object header at `address`, its continuation blocks included, each block read once. */
  private messages(address: number): Message[] {
    const messages: Message[] = [];
    const seen = new Set<number>();
    const isV2 = this.bytes.toString('latin1', address, address + 4) === 'OHDR';
    const blocks: { start: number; end: number }[] = [isV2 ? this.v2HeaderBlock(address) : this.v1HeaderBlock(address)];
    const creationOrder = isV2 && (this.u8(address + 5) & 0x4) !== 0;
    for (let block = blocks.pop(); block !== undefined; block = blocks.pop()) {
      const found = isV2 ? this.v2Messages(block.start, block.end, creationOrder) : this.v1Messages(block.start, block.end);
      for (const message of found) {
        if (messages.length === MAX_MESSAGES) this.fail(`the object header at ${address} holds more than ${MAX_MESSAGES} messages`);
        messages.push(message);
        if (message.type !== MESSAGE.continuation) continue;
        const [at, length] = [this.u64(message.at), this.u64(message.at + 8)];
        if (seen.has(at)) this.fail(`the object header at ${address} continues twice at ${at}`);
        seen.add(at);
        blocks.push(isV2 ? this.v2ContinuationBlock(at, length) : { start: at, end: this.end(at, length) });
      }
    }
    return messages;
  }

  private v1HeaderBlock(address: number): { start: number; end: number } {
    if (this.u8(address) !== 1) this.fail(`no object header at ${address}`);
    // Version, reserved, message count, reference count, header size: 12 bytes, padded to 16.
    return { start: address + 16, end: this.end(address + 16, this.u32(address + 8)) };
  }

  private v1Messages(start: number, end: number): Message[] {
    const messages: Message[] = [];
    for (let at = start; at + 8 <= end; ) {
      const message = { type: this.u16(at), size: this.u16(at + 2), flags: this.u8(at + 4), at: at + 8 };
      if (message.at + message.size > end) this.fail(`an object header message at ${at} overruns its header`);
      messages.push(message);
      at = message.at + message.size;
    }
    return messages;
  }

  private v2HeaderBlock(address: number): { start: number; end: number } {
    if (this.u8(address + 4) !== 2) this.fail(`object header version ${this.u8(address + 4)} at ${address}`);
    const flags = this.u8(address + 5);
    // Times (16 bytes) and attribute phase change values (4 bytes) when the flags say so, then the size of chunk 0 in 1 to 8 bytes.
    const sizeAt = address + 6 + ((flags & 0x20) !== 0 ? 16 : 0) + ((flags & 0x10) !== 0 ? 4 : 0);
    const width = 1 << (flags & 0x3);
    const start = sizeAt + width;
    return { start, end: this.end(start, this.uint(sizeAt, width)) };
  }

  private v2ContinuationBlock(at: number, length: number): { start: number; end: number } {
    if (this.bytes.toString('latin1', at, at + 4) !== 'OCHK') this.fail(`no object header continuation at ${at}`);
    // The signature before the messages, the checksum after them.
    if (length < 8) this.fail(`an object header continuation of ${length} bytes at ${at}`);
    return { start: at + 4, end: this.end(at, length) - 4 };
  }

  private v2Messages(start: number, end: number, creationOrder: boolean): Message[] {
    const messages: Message[] = [];
    const headerLength = creationOrder ? 6 : 4;
    // What is left when no message header fits is a gap, not a message.
    for (let at = start; at + headerLength <= end; ) {
      const message = { type: this.u8(at), size: this.u16(at + 1), flags: this.u8(at + 3), at: at + headerLength };
      if (message.at + message.size > end) this.fail(`an object header message at ${at} overruns its block`);
      messages.push(message);
      at = message.at + message.size;
    }
    return messages;
  }

  /** A Dataspace message's dimensions (versions 1 and 2; scalar is []). */
  private shape(at: number): number[] {
    const version = this.u8(at);
    const rank = this.u8(at + 1);
    if (version !== 1 && version !== 2) this.fail(`dataspace version ${version} at ${at}`);
    if (version === 2 && this.u8(at + 3) === 2) throw new Hdf5Unsupported('a null dataspace');
    if (rank > MAX_RANK) this.fail(`a dataspace of rank ${rank} at ${at}`);
    const dimsAt = at + (version === 1 ? 8 : 4);
    return Array.from({ length: rank }, (_, axis) => this.u64(dimsAt + 8 * axis));
  }

  /** A Datatype message as jsfive names it: floats and integers ('<f4', '<i8'); jsfive describes the others. */
  private dtype(at: number): string {
    const typeClass = this.u8(at) & 0x0f;
    const bits = this.u8(at + 1);
    const order = (bits & 0x1) === 0 ? '<' : '>';
    if (typeClass === FLOAT_CLASS && (bits & 0x40) === 0) return `${order}f${this.u32(at + 4)}`;
    if (typeClass === INTEGER_CLASS) return `${order}${(bits & 0x8) !== 0 ? 'i' : 'u'}${this.u32(at + 4)}`;
    throw new Hdf5Unsupported(`datatype class ${typeClass}`);
  }

  /** A Data Layout message of version 3 or 4 (older ones jsfive reads): where its body is. */
  private layout(at: number): number {
    const version = this.u8(at);
    if (version !== 3 && version !== 4) throw new Hdf5Unsupported(`data layout version ${version}`);
    return at;
  }

  /** A Filter Pipeline message's filter ids (versions 1 and 2). */
  private filters(at: number): ChunkFilter[] {
    const version = this.u8(at);
    if (version !== 1 && version !== 2) this.fail(`filter pipeline version ${version} at ${at}`);
    const filters: ChunkFilter[] = [];
    let pos = at + (version === 1 ? 8 : 2);
    for (let i = this.u8(at + 1); i > 0; i -= 1) {
      const id = this.u16(pos);
      const hasName = version === 1 || id >= 256;
      const nameLength = hasName ? this.u16(pos + 2) : 0;
      const valuesAt = pos + (hasName ? 8 : 6);
      const values = this.u16(valuesAt - 2);
      // Version 1 pads the name to 8 bytes and the client data to an even count.
      const name = version === 1 ? Math.ceil(nameLength / 8) * 8 : nameLength;
      pos = valuesAt + name + 4 * (version === 1 ? values + (values % 2) : values);
      filters.push({ id });
    }
    return filters;
  }

  /** A Link Info message: compact storage (links as messages) only. */
  private checkCompactLinks(at: number): void {
    const flags = this.u8(at + 1);
    if (this.u64(at + 2 + ((flags & 0x1) !== 0 ? 8 : 0)) !== UNDEFINED_ADDRESS) throw new Hdf5Unsupported('dense link storage');
  }

  /** A Link message's name and (hard link) target. */
  private link(at: number): [string, number] {
    if (this.u8(at) !== 1) this.fail(`link message version ${this.u8(at)} at ${at}`);
    const flags = this.u8(at + 1);
    let pos = at + 2;
    const type = (flags & 0x8) !== 0 ? this.u8(pos) : 0;
    pos += ((flags & 0x8) !== 0 ? 1 : 0) + ((flags & 0x4) !== 0 ? 8 : 0) + ((flags & 0x10) !== 0 ? 1 : 0);
    if (type !== 0) throw new Hdf5Unsupported(`a link of type ${type}`);
    const width = 1 << (flags & 0x3);
    const nameLength = this.uint(pos, width);
    const nameAt = pos + width;
    const name = this.text(nameAt, this.end(nameAt, nameLength));
    return [name, this.u64(nameAt + nameLength)];
  }

  /** The members of a symbol-table group: its version-1 B-tree (each node once), symbol nodes and local heap. */
  private symbolTableLinks(treeAddress: number, heapAddress: number): Map<string, number> {
    if (this.bytes.toString('latin1', heapAddress, heapAddress + 4) !== 'HEAP') this.fail(`no local heap at ${heapAddress}`);
    const heapSize = this.u64(heapAddress + 8);
    const heapData = this.u64(heapAddress + 24);
    const heapEnd = this.end(heapData, heapSize);
    const links = new Map<string, number>();
    // Index nodes and symbol nodes alike, each once: a node reached twice is a loop or a lie, and would repeat work.
    const visited = new Set<number>();
    const visit = (node: number, level: number | undefined): void => {
      if (visited.has(node)) this.fail(`a group index that loops (node ${node} twice)`);
      visited.add(node);
      if (this.bytes.toString('latin1', node, node + 4) !== 'TREE' || this.u8(node + 4) !== 0) this.fail(`no group index node at ${node}`);
      const nodeLevel = this.u8(node + 5);
      if ((level !== undefined && nodeLevel !== level) || nodeLevel > MAX_BTREE_LEVEL) this.fail(`a group index with inconsistent levels at ${node}`);
      const used = this.u16(node + 6);
      // Header (24 bytes), then keys (8-byte heap offsets) and children (addresses) alternating, one more key than children.
      this.end(node + 24, used * 16 + 8);
      for (let i = 0; i < used; i += 1) {
        const child = this.u64(node + 24 + 16 * i + 8);
        if (nodeLevel > 0) {
          visit(child, nodeLevel - 1);
          continue;
        }
        if (visited.has(child)) this.fail(`a group index that loops (symbol node ${child} twice)`);
        visited.add(child);
        this.symbolNode(child, heapData, heapEnd, links);
      }
    };
    visit(treeAddress, undefined);
    return links;
  }

  private symbolNode(address: number, heapData: number, heapEnd: number, links: Map<string, number>): void {
    if (this.bytes.toString('latin1', address, address + 4) !== 'SNOD' || this.u8(address + 4) !== 1) this.fail(`no symbol table node at ${address}`);
    const count = this.u16(address + 6);
    this.end(address + 8, count * 40);
    for (let i = 0; i < count; i += 1) {
      const entry = address + 8 + 40 * i;
      const nameAt = heapData + this.u64(entry);
      if (nameAt >= heapEnd) this.fail(`a member name outside its group's heap (entry at ${entry})`);
      const length = this.bytes.subarray(nameAt, Math.min(heapEnd, nameAt + MAX_NAME_LENGTH + 1)).indexOf(0);
      if (length < 0 && nameAt + MAX_NAME_LENGTH < heapEnd) throw new Hdf5Unsupported(`a member name over ${MAX_NAME_LENGTH} bytes`);
      if (length < 0) this.fail(`a member name with no end in its group's heap (entry at ${entry})`);
      links.set(this.text(nameAt, nameAt + length), this.u64(entry + 8));
    }
  }

  private text(start: number, end: number): string {
    return this.bytes.toString('utf8', start, end);
  }

  /** `start + length`, checked to lie inside the file. */
  private end(start: number, length: number): number {
    if (start + length > this.bytes.length) this.fail(`${length} bytes at ${start}, past the end of the file (${this.bytes.length} bytes)`);
    return start + length;
  }

  private u8(at: number): number {
    return this.bytes.readUInt8(this.end(at, 1) - 1);
  }

  private u16(at: number): number {
    return this.bytes.readUInt16LE(this.end(at, 2) - 2);
  }

  private u32(at: number): number {
    return this.bytes.readUInt32LE(this.end(at, 4) - 4);
  }

  /** An 8-byte address or length (beyond 2^53 only ever compared, never used as an offset). */
  private u64(at: number): number {
    return Number(this.bytes.readBigUInt64LE(this.end(at, 8) - 8));
  }

  /** An unsigned integer of 1, 2, 4 or 8 bytes. */
  private uint(at: number, width: number): number {
    return width === 8 ? this.u64(at) : this.bytes.readUIntLE(this.end(at, width) - width, width);
  }

  private fail(problem: string): never {
    throw new CamvizError(`not a readable HDF5 file (truncated or corrupt?): ${problem}`, { file: this.file });
  }
}
