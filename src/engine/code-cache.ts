/**
 * A V8 code cache for the CommonJS files camviz loads from node_modules
 * (tfjs-core and -layers, the cpu and wasm backends, sharp, onnxruntime,
 * commander): each run after the first takes V8's compiled code from disk
 * instead of parsing and compiling megabytes of JavaScript again. Node 22
 * has this built in (`module.enableCompileCache()`), and there that one is
 * turned on instead; Node 20, which camviz supports, does not. It works as v8-compile-cache (eslint, yarn) and
 * Node 22's cache do: `Module.prototype._compile` is replaced by one that
 * compiles the module's wrapper with `vm.Script` and its cached data, and at
 * exit `script.createCachedData()` is written for every script whose entry
 * was missing, stale, damaged or rejected by V8: created then, it also holds
 * the functions compiled lazily during the run, not only the top level.
 *
 * One entry a file and state of V8's flags, `<cache root>/v8/<node
 * version>-<arch>/<file name>-<CRC of its path>-<flags key>.bin`; only files of 8 KiB
 * or more under a node_modules folder, so the cache holds at most the
 * dependencies camviz loads (1.2 MB for a Grad-CAM run). Anything that goes wrong (a read-only
 * or full disk, a damaged entry, two processes writing at once) costs the
 * cache only: the module is compiled as Node would, nothing is printed.
 *
 * Off with `CAMVIZ_CODE_CACHE=0`. Only the command line's main thread
 * (bin/camviz.js) enables it; importing the library hooks nothing. In a
 * folder run's workers it measured no gain (1.00x, interleaved): their
 * start is not where the time goes.
 */
import { isAscii } from 'node:buffer';
import { closeSync, fstatSync, openSync, readSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import Module from 'node:module';
import { basename, dirname, join, sep } from 'node:path';
import { Script } from 'node:vm';
import { isAlive, parseTemporaryName, temporaryName } from '../util/atomic-file.js';
import { readRegularFileSync } from '../util/read-whole-file.js';
import { cacheRoot } from '../util/cache-root.js';
import { crc32 } from '../util/crc32.js';
import { type FileIdentity, identityOf, sameIdentity } from '../util/file-identity.js';
import { makeFoldersSync } from '../util/make-folders.js';

/** What became of the files compiled through the cache in this thread, so far. */
export interface CodeCacheStats {
  /** V8 took the entry's code. */
  accepted: number;
  /** V8 refused the entry (another V8 version or flags, or a source of another length): written again at exit. */
  rejected: number;
  /** No entry yet: written at exit. */
  missing: number;
  /** The entry was made from another version of the file: compiled afresh, written again at exit. */
  stale: number;
  /** The entry could not be used (cut off, garbage, another format): written again at exit. */
  damaged: number;
  /** Of the files V8 took or refused an entry for, those read straight into the wrapper (wrapperFromEntry) rather than by Node's loader. */
  direct: number;
}

/** The module object Node's CommonJS loader passes as `this` to `_compile` (the members used here). */
interface LoaderModule {
  exports: unknown;
  require(id: string): unknown;
}

type Compile = (this: LoaderModule, content: string, filename: string, format?: string) => unknown;

/** A handler of `Module._extensions`: loads the file into the module (`.js` also serves `.cjs`, which has none of its own). */
type Extension = (this: unknown, module: LoaderModule, filename: string) => void;

/** Node's CommonJS loader: `require('node:module')`, with the internals its own `require` functions use. */
interface Loader {
  prototype: { _compile: Compile };
  wrapper: readonly string[];
  _extensions: Record<string, Extension>;
  _cache: object;
  _resolveFilename(request: string, parent: LoaderModule, isMain: boolean, options?: { paths?: string[] }): string;
  _resolveLookupPaths(request: string, parent: LoaderModule): string[] | null;
}

type CompiledWrapper = (this: unknown, exports: unknown, require: NodeJS.Require, module: LoaderModule, filename: string, dirname: string) => unknown;

const loader = Module as unknown as Loader;

/** Node's CommonJS wrapper (`Module.wrapper`); a file is compiled through the cache only while Node's is unchanged. */
const WRAPPER_HEAD = '(function (exports, require, module, __filename, __dirname) { ';
const WRAPPER_TAIL = '\n});';

/** An entry: magic, then the lengths of the header and the data and the CRC-32 of both (u32 LE each), the header (JSON), the data. */
const MAGIC = Buffer.from('CVZC0001', 'latin1');
const PREAMBLE_BYTES = MAGIC.length + 12;

/**
 * Smaller files are left to Node: reading, checking and deserialising an
 * entry costs about as much as compiling a few kilobytes. A Grad-CAM run
 * loads 23-37 files of at least this size (94% of its 4.6 MB of dependency
 * source) and about 120 smaller ones.
 */
const MIN_SOURCE_LENGTH = 8192;

/** Dependency source (UTF-16 units) past which a run counts as one that loaded the engine (see enableCodeCache). */
const ENGINE_SOURCE_LENGTH = 1_000_000;

/**
 * Past this many entries, a writer empties the folder first: a bound when
 * many installs (other paths) share one cache. camviz's own runs make 40-60.
 */
const MAX_ENTRIES = 1000;

/**
 * An entry is written only for a file last changed this long before it was
 * read. File times are coarse (a few ms on Linux, up to 2 s on FAT): a file
 * changed again within the same tick as the version compiled keeps its
 * times, and its entry would pass for the new version. Past the window, any
 * change gives new times (as git treats "racily clean" files).
 */
const SETTLED_NS = 2_000_000_000n;

/** What identifies the version of a file an entry was made from. */
interface FileVersion extends FileIdentity {
  /** The source's length in UTF-16 units, as V8 sees it. */
  readonly length: number;
}

/** A script whose entry is (re)written at exit. */
interface PendingEntry {
  /** The entry's name without its V8 flags part (see entryName). */
  readonly stem: string;
  readonly version: FileVersion;
  readonly script: Script;
  /** One of `alsoFiles` (see enableCodeCache). */
  readonly vouched: boolean;
}

let enabled = false;
const stats: CodeCacheStats = { accepted: 0, rejected: 0, missing: 0, stale: 0, damaged: 0, direct: 0 };

/** The folder of this Node's entries under the cache root (V8 rejects data of another version, so each has its own). */
export function codeCacheFolder(): string {
  return join(cacheRoot(), 'v8', `${process.version}-${process.arch}`);
}

/** Counts of this thread's files compiled through the cache (tests and diagnostics). */
export function codeCacheStats(): Readonly<CodeCacheStats> {
  return { ...stats };
}

/**
 * Compiles this thread's CommonJS files under node_modules through the code
 * cache from now on, unless `CAMVIZ_CODE_CACHE=0`; true when it is on. Once a
 * thread: a second call changes nothing. Left off where Node's own compile
 * does more than compile: with source maps (`--enable-source-maps` maps
 * stacks through the loader) or a policy manifest.
 *
 * `alsoFiles`: CommonJS files outside node_modules to cache as well, by
 * absolute path, which the caller vouches call no `import()` (the command
 * line's own bundle, bin/camviz.js, whose build checks it: the look below
 * would count words such as "graph-import/" in its module names).
 */
export function enableCodeCache(alsoFiles: readonly string[] = []): boolean {
  if (enabled) return true;
  if (process.env['CAMVIZ_CODE_CACHE'] === '0' || process.sourceMapsEnabled || nodeOptionsInclude('--experimental-policy')) return false;
  const folder = codeCacheFolder();
  // Node 22.1 and later have their own (which also caches ES modules, camviz's own): that one is used.
  const builtIn = (Module as unknown as { enableCompileCache?: (directory: string) => unknown }).enableCompileCache;
  if (typeof builtIn === 'function') {
    builtIn(folder);
    enabled = true;
    return true;
  }
  const nodeCompile = loader.prototype._compile;
  const pending: PendingEntry[] = [];
  // V8's data holds the functions compiled so far. The bundle is loaded whole
  // by every run, `--version` and usage errors included, whose entry would
  // hold a third of what a Grad-CAM run compiles: entries of vouched files
  // are written only by a run that went on to load the engine (tfjs-core
  // alone is 1.2 MB of source; commander, which every run loads, 0.1 MB).
  let dependencyBytes = 0;
  const cachedPath = (filename: string, vouched: boolean): boolean => vouched || filename.includes(`${sep}node_modules${sep}`);
  loader.prototype._compile = function compileThroughCache(this: LoaderModule, content: string, filename: string, format?: string): unknown {
    const vouched = alsoFiles.includes(filename);
    const cached = format !== 'module' && content.length >= MIN_SOURCE_LENGTH && cachedPath(filename, vouched);
    if (cached && !vouched) dependencyBytes += content.length;
    const wrapper = cached ? cachedWrapper(content, filename, folder, pending, vouched) : undefined;
    if (wrapper === undefined) return nodeCompile.call(this, content, filename, format);
    return runWrapper(this, wrapper, filename);
  };
  const nodeLoadJs = loader._extensions['.js']!;
  loader._extensions['.js'] = function loadThroughCache(this: unknown, module: LoaderModule, filename: string): void {
    const vouched = alsoFiles.includes(filename);
    const found = cachedPath(filename, vouched) ? wrapperFromEntry(filename, folder, pending, vouched) : undefined;
    if (found === undefined) return nodeLoadJs.call(this, module, filename);
    if (!vouched) dependencyBytes += found.length;
    runWrapper(module, found.wrapper, filename);
  };
  process.once('exit', () => writeEntries(folder, dependencyBytes >= ENGINE_SOURCE_LENGTH ? pending : pending.filter((entry) => !entry.vouched)));
  enabled = true;
  return true;
}

function nodeOptionsInclude(flag: string): boolean {
  return process.execArgv.some((argument) => argument.startsWith(flag)) || (process.env['NODE_OPTIONS'] ?? '').includes(flag);
}

/**
 * The module's wrapper function compiled with its entry's code, or
 * undefined to leave the file to Node: Node's wrapper patched by someone,
 * a file that is no plain CommonJS script (ES module syntax, which Node's own
 * compile detects, or a `#!` line), one that may call `import()`, or one
 * that cannot be read.
 */
function cachedWrapper(content: string, filename: string, folder: string, pending: PendingEntry[], vouched: boolean): CompiledWrapper | undefined {
  if (!nodesWrapper()) return undefined;
  let version: FileVersion;
  try {
    version = { ...identityOf(filename, statSync(filename, { bigint: true })), length: content.length };
  } catch {
    return undefined;
  }
  const stem = entryStem(filename);
  const found = readEntry(join(folder, entryName(stem, currentFlagsKey())), version);
  // Entries are only made from files without import() (below), so a usable one needs no look.
  if (found.data === undefined && !vouched && mayImportDynamically(content)) return undefined;
  const wrapper = compiledWrapper(WRAPPER_HEAD + content + WRAPPER_TAIL, { stem, version, vouched }, found.data, pending);
  if (wrapper !== undefined && found.data === undefined) stats[found.miss]++;
  return wrapper;
}

/**
 * The module's wrapper compiled with its entry's code, read straight from
 * the file's bytes; undefined to leave the file to Node's loader, and so to
 * compileThroughCache (no entry, one of another version of the file, or
 * anything unexpected).
 *
 * Why: Node reads a module into a string, and the wrapper around it makes
 * a second, joined copy, which V8 compiles. Here the file is read between
 * the wrapper's two halves in one reused buffer and decoded once: for
 * tfjs-layers (1.4 MB, which a few non-ASCII characters make a two-byte
 * string) one 2.9 MB string instead of two and Node's read buffer. Fresh
 * memory costs about 10 µs a page on the machines camviz is benched on,
 * and these copies were 1,000-1,400 of a cold run's main-thread page faults.
 *
 * What Node's `.js` handler also does is left out safely: its choice of
 * CommonJS or ES module by package.json's `type` was made when the entry
 * was written (entries are only made by compileThroughCache, which Node
 * calls for CommonJS only), and the entry is only used for that very file
 * (its identity and times, see readEntry).
 */
function wrapperFromEntry(filename: string, folder: string, pending: PendingEntry[], vouched: boolean): { wrapper: CompiledWrapper; length: number } | undefined {
  if (!nodesWrapper()) return undefined;
  let fd: number;
  try {
    fd = openSync(filename, 'r');
  } catch {
    return undefined;
  }
  try {
    const stat = fstatSync(fd, { bigint: true });
    if (!stat.isFile() || stat.size < BigInt(MIN_SOURCE_LENGTH) || stat.size > BigInt(MAX_DIRECT_BYTES)) return undefined;
    const stem = entryStem(filename);
    const identity = identityOf(filename, stat);
    const found = readEntry(join(folder, entryName(stem, currentFlagsKey())), identity);
    if (found.data === undefined) return undefined;
    const wrapped = wrappedSource(fd, Number(stat.size));
    const length = wrapped === undefined ? undefined : wrapped.length - WRAPPER_HEAD.length - WRAPPER_TAIL.length;
    if (wrapped === undefined || length !== found.length) return undefined;
    const wrapper = compiledWrapper(wrapped, { stem, version: { ...identity, length }, vouched }, found.data, pending);
    if (wrapper === undefined) return undefined;
    stats.direct++;
    return { wrapper, length };
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** Files past this size are read by Node: the buffer wrappedSource keeps stays small (tfjs-layers, the largest, is 1.4 MB). */
const MAX_DIRECT_BYTES = 4 * 2 ** 20;

/**
 * The buffer wrappedSource reads into, kept for the thread's life: a new
 * one for each file, or each job's files, was fresh memory every time
 * (page faults, about 2.8 ms a MiB here), where Node's loader reads into
 * memory malloc hands back. Sized in whole MiB, so that one serves.
 */
let sourceBuffer: Buffer | undefined;

/**
 * The file's text inside Node's wrapper, as one flat string: a one-byte
 * string when the file is ASCII (a copy of its bytes), else decoded from
 * UTF-8 as Node decodes it (malformed bytes give U+FFFD either way).
 * Undefined when the file ends before `size` bytes.
 */
function wrappedSource(fd: number, size: number): string | undefined {
  const end = WRAPPER_HEAD.length + size;
  if (sourceBuffer === undefined || sourceBuffer.length < end + WRAPPER_TAIL.length) {
    sourceBuffer = Buffer.allocUnsafe(Math.ceil((end + WRAPPER_TAIL.length) / 2 ** 20) * 2 ** 20);
    sourceBuffer.write(WRAPPER_HEAD, 0, 'latin1');
  }
  for (let at = WRAPPER_HEAD.length; at < end; ) {
    const read = readSync(fd, sourceBuffer, at, end - at, at - WRAPPER_HEAD.length);
    if (read === 0) return undefined;
    at += read;
  }
  sourceBuffer.write(WRAPPER_TAIL, end, 'latin1');
  const bytes = sourceBuffer.subarray(0, end + WRAPPER_TAIL.length);
  return isAscii(bytes) ? bytes.toString('latin1') : bytes.toString('utf8');
}

/** Whether Node's CommonJS wrapper is the one entries are made with (someone may have patched `Module.wrapper`). */
function nodesWrapper(): boolean {
  return loader.wrapper[0] === WRAPPER_HEAD && loader.wrapper[1] === WRAPPER_TAIL;
}

/**
 * The wrapper compiled from `wrapped` with the entry's data (undefined when
 * there is none) and run to the function it is; the script is kept for an
 * entry written at exit when V8 had no data or refused it. Undefined when
 * it does not compile: Node's compile then gives the file's own error, or
 * loads it as an ES module.
 */
function compiledWrapper(wrapped: string, entry: Omit<PendingEntry, 'script'>, data: Buffer | undefined, pending: PendingEntry[]): CompiledWrapper | undefined {
  let script: Script;
  try {
    script = new Script(wrapped, {
      filename: entry.version.path,
      // Node compiles the file's text as a function body: its first line's columns in stack traces then match.
      columnOffset: -WRAPPER_HEAD.length,
      ...(data === undefined ? {} : { cachedData: data }),
    });
  } catch {
    return undefined;
  }
  if (data !== undefined) stats[script.cachedDataRejected === true ? 'rejected' : 'accepted']++;
  if (data === undefined || script.cachedDataRejected === true) pending.push({ ...entry, script });
  return script.runInThisContext({ displayErrors: true }) as CompiledWrapper;
}

/**
 * Whether the source may call `import()`: such a file is left to Node. In
 * Node 20 a script made from cached data loses the loader its `import()`
 * needs (it fails with ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING), and
 * `vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER` prints an experimental
 * warning. Between `import` and its `(` only spaces and comments may stand,
 * so this finds every call (and some words in comments or strings, which
 * only cost the cache). camviz's dependencies have none but commander's help.
 */
function mayImportDynamically(content: string): boolean {
  return /\bimport\s*[(/]/.test(content);
}

/**
 * An entry's name before its flags part: the source file's name (for people
 * looking in the folder) and the CRC-32 of its path. Two paths with the same
 * name and CRC would share an entry: each would find the other's path in it
 * and count it stale, which costs the cache only.
 */
function entryStem(filename: string): string {
  const name = basename(filename).replace(/[^\w.-]/g, '_');
  return `${name}-${crc32(Buffer.from(filename)).toString(16).padStart(8, '0')}`;
}

/**
 * Entries are named by the V8 flags in force as well as by the file, so that
 * data made under other flags is kept beside, not overwritten. V8 rejects
 * data made under other flags, which differ between processes (a V8 option
 * on the command line) and change within one (a folder run sets
 * `--heap-growing-percent` for its duration: src/batch/runner.ts): a file
 * loaded under both would otherwise be rejected and rewritten by every run
 * of the other kind.
 */
function entryName(stem: string, flagsKey: string): string {
  return `${stem}-${flagsKey}.bin`;
}

/**
 * The hash of V8's flags stamped in a code cache's header, as hex (bytes
 * 12-15 in V8 11: magic, version hash, source hash, flags hash). Only a name:
 * should a V8 lay its header out otherwise, entries are rejected and written
 * again, never misused.
 */
function flagsKeyOf(data: Buffer): string {
  return data.length >= 16 ? data.toString('hex', 12, 16) : 'none';
}

let flagsKeyNow: string | undefined;

/**
 * The flags key of data made now, from an empty script's cache (20-80 µs),
 * made once for the files one synchronous job requires (a package's tree):
 * flags change in calls between jobs. Were they changed within one, the
 * entry would only be missed and written again: V8 checks the flags.
 */
function currentFlagsKey(): string {
  if (flagsKeyNow === undefined) {
    flagsKeyNow = flagsKeyOf(new Script('', { filename: 'camviz-code-cache-flags' }).createCachedData());
    queueMicrotask(() => {
      flagsKeyNow = undefined;
    });
  }
  return flagsKeyNow;
}

/** The entry files of a source file in this Node's cache folder, under any V8 flags (tests, diagnostics). */
export function codeCacheEntriesOf(filename: string): string[] {
  const prefix = `${entryStem(filename)}-`;
  try {
    return readdirSync(codeCacheFolder())
      .filter((name) => name.startsWith(prefix) && name.endsWith('.bin'))
      .map((name) => join(codeCacheFolder(), name));
  } catch {
    return [];
  }
}

/**
 * The entry's code when the entry is whole and was made from this version
 * of the file; otherwise why not.
 *
 * Why running the entry's code is then safe: V8 checks the data itself
 * against its own version, its flags and the source's length, and rejects
 * a mismatch, but it cannot see a change that keeps the length. That is
 * what the file's version is for: its size, inode and device, and both its
 * modification and change (ctime) times in nanoseconds. A rewrite in place
 * that keeps the size and sets the mtime back still moves the ctime, which
 * no system call sets back; a replacement by another file changes the
 * inode or the ctime. Entries are only made from files settled before they
 * were read (SETTLED_NS). The entry's CRC-32 catches damage before V8
 * sees the data: V8 in release builds does not check its own checksum, and
 * takes data with a byte altered.
 *
 * Given the file's identity alone (its source not read yet), the source's
 * length comes back for the caller to compare.
 */
/**
 * The largest entry read: V8's data for the largest file cached (tfjs-layers,
 * 1.4 MB of source) is a few MB. A larger file, or one that is not a regular
 * file (a link to a device, which may never end), is a miss.
 */
const MAX_ENTRY_BYTES = 64 * 2 ** 20;

function readEntry(entryPath: string, file: FileIdentity | FileVersion): { data: Buffer; length: number } | { data?: undefined; miss: 'missing' | 'damaged' | 'stale' } {
  const bytes = readRegularFileSync(entryPath, MAX_ENTRY_BYTES);
  if (bytes === undefined) return { miss: 'missing' };
  const parsed = parseEntry(bytes);
  if (parsed === undefined) return { miss: 'damaged' };
  if (!sameVersion(parsed.version, file)) return { miss: 'stale' };
  return { data: parsed.data, length: parsed.version.length };
}

function parseEntry(bytes: Buffer): { version: FileVersion; data: Buffer } | undefined {
  if (bytes.length < PREAMBLE_BYTES || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const headerBytes = bytes.readUInt32LE(MAGIC.length);
  const dataBytes = bytes.readUInt32LE(MAGIC.length + 4);
  const storedCrc = bytes.readUInt32LE(MAGIC.length + 8);
  if (bytes.length !== PREAMBLE_BYTES + headerBytes + dataBytes) return undefined;
  const header = bytes.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + headerBytes);
  const data = bytes.subarray(PREAMBLE_BYTES + headerBytes);
  if (crc32(data, crc32(header)) !== storedCrc) return undefined;
  try {
    const version = JSON.parse(header.toString('utf8')) as FileVersion;
    return { version, data };
  } catch {
    return undefined;
  }
}

/** Whether the stored version is of this file, and of a source this long when the length is known. */
function sameVersion(stored: Partial<FileVersion> | null, current: FileIdentity | FileVersion): boolean {
  return (
    stored !== null &&
    typeof stored === 'object' &&
    typeof stored.length === 'number' &&
    // Fields missing from a damaged or forged header compare unequal.
    sameIdentity(stored as FileIdentity, current) &&
    (!('length' in current) || stored.length === current.length)
  );
}

/**
 * Runs the compiled wrapper as Node's own `_compile` does (Node 20's
 * Module.prototype._compile): `this` is the exports, and `require` is made
 * as Node's makeRequireFunction makes it.
 */
function runWrapper(module: LoaderModule, wrapper: CompiledWrapper, filename: string): unknown {
  const executing = executingSymbol(module);
  const flags = module as unknown as Record<symbol, boolean>;
  // Node marks the module while its code runs (require(esm) finds cycles with it); as Node, not reset on a throw.
  if (executing !== undefined) flags[executing] = true;
  const result = Reflect.apply(wrapper, module.exports, [module.exports, requireFor(module), module, filename, dirname(filename)]);
  if (executing !== undefined) flags[executing] = false;
  return result;
}

let executingKey: symbol | null | undefined;

/** Node's internal `kIsExecuting` key on module objects, found by its description (null when this Node has none). */
function executingSymbol(module: LoaderModule): symbol | undefined {
  if (executingKey === undefined) executingKey = Object.getOwnPropertySymbols(module).find((key) => key.description === 'kIsExecuting') ?? null;
  return executingKey ?? undefined;
}

/** The `require` Node gives a module's code (lib/internal/modules/helpers.js, makeRequireFunction). */
function requireFor(module: LoaderModule): NodeJS.Require {
  const require = function require(id: string): unknown {
    return module.require(id);
  } as NodeJS.Require;
  const resolve = function resolve(request: string, options?: { paths?: string[] }): string {
    expectString(request);
    return loader._resolveFilename(request, module, false, options);
  } as NodeJS.RequireResolve;
  resolve.paths = function paths(request: string): string[] | null {
    expectString(request);
    return loader._resolveLookupPaths(request, module);
  };
  require.resolve = resolve;
  require.main = process.mainModule;
  require.extensions = loader._extensions as unknown as NodeJS.Require['extensions'];
  require.cache = loader._cache as NodeJS.Require['cache'];
  return require;
}

/** Node's check of `require.resolve`'s argument, with its error code. */
function expectString(request: unknown): asserts request is string {
  if (typeof request === 'string') return;
  const error = new TypeError(`The "request" argument must be of type string. Received ${request === null ? 'null' : typeof request}`);
  (error as NodeJS.ErrnoException).code = 'ERR_INVALID_ARG_TYPE';
  throw error;
}

/**
 * Writes the entries of the scripts compiled without usable data, at exit
 * (synchronously: nothing else runs then). Each goes to a temporary name
 * and is renamed over the entry, so that a reader never sees half an entry,
 * and two processes writing the same entry leave one of them whole. No
 * flush to disk: an entry cut off by a power cut fails its length or CRC
 * and is written again. The first failure (read-only or full disk) ends
 * the writing, silently.
 */
function writeEntries(folder: string, pending: readonly PendingEntry[]): void {
  const settledBefore = BigInt(Date.now()) * 1_000_000n - SETTLED_NS;
  const writable = pending.filter((entry) => BigInt(entry.version.ctimeNs) < settledBefore && BigInt(entry.version.mtimeNs) < settledBefore);
  if (writable.length === 0) return;
  try {
    makeFoldersSync(folder);
    tidyFolder(folder);
    for (const entry of writable) writeEntry(folder, entry);
  } catch {
    // Only the cache is lost.
  }
}

function writeEntry(folder: string, { stem, version, script }: PendingEntry): void {
  const data = script.createCachedData();
  // Named by the flags V8 stamped on the data now, which a later load must match.
  const entryPath = join(folder, entryName(stem, flagsKeyOf(data)));
  const header = Buffer.from(JSON.stringify(version), 'utf8');
  const preamble = Buffer.alloc(PREAMBLE_BYTES);
  MAGIC.copy(preamble);
  preamble.writeUInt32LE(header.length, MAGIC.length);
  preamble.writeUInt32LE(data.length, MAGIC.length + 4);
  preamble.writeUInt32LE(crc32(data, crc32(header)), MAGIC.length + 8);
  const temporary = temporaryName(entryPath);
  try {
    writeFileSync(temporary, Buffer.concat([preamble, header, data]), { flag: 'wx' });
    renameSync(temporary, entryPath);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
}

/** Removes the temporary files of writers that died, and every entry when there are more than MAX_ENTRIES. */
function tidyFolder(folder: string): void {
  const names = readdirSync(folder);
  const tooMany = names.filter(isEntryName).length > MAX_ENTRIES;
  for (const name of names) {
    const owner = parseTemporaryName(name)?.pid;
    // This process's own temporaries may belong to a worker thread writing now.
    const orphan = owner !== undefined && owner !== process.pid && !isAlive(owner);
    if (orphan || (tooMany && isEntryName(name))) rmSync(join(folder, name), { force: true });
  }
}

function isEntryName(name: string): boolean {
  return name.endsWith('.bin') && !name.startsWith('.');
}
