/**
 * Downloading a model over http(s) into a folder of the cache. Nothing
 * reaches the folder unless it is whole and as model.json describes it: the
 * files go into a temporary folder, renamed into place only once model.json
 * parses as a model whose topology its manifest covers, every weight group
 * has exactly the bytes its manifest declares, and camviz.json (for models
 * at a URL) is valid. A server answering 200 with an HTML page therefore
 * never poisons the cache.
 *
 * Sizes are bounded while the bytes arrive (never a whole oversized body in
 * memory): model.json by MODEL_JSON_LIMIT, each weight file by what its
 * group still lacks, all weights by TOTAL_WEIGHTS_LIMIT, camviz.json and
 * its labels file by METADATA_LIMIT. Weight URLs are confined by the
 * resolved URL (same origin, below model.json's folder), since WHATWG URLs
 * turn `%2e%2e` into `..`.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { type FileHandle, open, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CamvizError } from '../util/errors.js';
import { MODEL_JSON_LIMIT, type ModelJson, confinedWeightPath, expectedGroupBytes, parseModelJson, pathInside } from './io.js';
import { sha256Hex } from '../util/sha256.js';
import { checkTopologyAgainstManifest } from './topology-check.js';
import { makeFolders } from '../util/make-folders.js';

export const MIB = 2 ** 20;
/** A model.json is a topology and a manifest: MobileNet's is 100 KB. */
export { MODEL_JSON_LIMIT } from './io.js';
/** All weight files of one model together. */
export const TOTAL_WEIGHTS_LIMIT = 2048 * MIB;
/** camviz.json, and the labels file it names. */
export const METADATA_LIMIT = 16 * MIB;
const MAX_REDIRECTS = 10;
const TIMEOUT_MS = 120_000;

export interface FetchLog {
  (message: string): void;
}

export interface DownloadOptions {
  /** sha256 of model.json, checked before anything else is fetched. */
  sha256?: string;
  /** Also fetch camviz.json beside model.json (absent is fine). */
  withCamvizJson?: boolean;
  log?: FetchLog;
}

/** A failed HTTP request (network error, HTTP status, redirects): wrapped by the caller with what was being done. */
class FetchError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'FetchError';
  }
}

/** Downloads model.json and its weight files into `folder`, atomically. */
export async function downloadModel(modelJsonUrl: URL, folder: string, options: DownloadOptions = {}): Promise<void> {
  const modelJsonBytes = await fetchBytes(modelJsonUrl, MODEL_JSON_LIMIT, 'model.json');
  if (options.sha256 !== undefined && sha256Hex(modelJsonBytes) !== options.sha256) {
    throw new CamvizError('downloaded model.json does not match the zoo\'s sha256', { file: modelJsonUrl.href });
  }
  const modelJson = parseModelJson(modelJsonBytes, modelJsonUrl.href);
  checkTopologyAgainstManifest(modelJson, modelJsonUrl.href);
  const temp = `${folder}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const weights = plannedWeights(modelJson, modelJsonUrl, temp);
  const count = modelJson.weightsManifest.reduce((sum, group) => sum + group.paths.length, 0);
  // Said once the origin answers, so that an offline run prints its one error line alone.
  options.log?.(`downloading ${modelJsonUrl.href} and ${count} weight file${count === 1 ? '' : 's'}`);
  await makeFolders(temp);
  try {
    await downloadWeights(weights);
    if (options.withCamvizJson === true) await downloadCamvizJson(modelJsonUrl, temp);
    await writeFile(join(temp, 'model.json'), modelJsonBytes);
    await makeFolders(dirname(folder));
    try {
      await rename(temp, folder);
    } catch (error) {
      // Another process finished the same download first: keep theirs.
      if (!existsSync(join(folder, 'model.json'))) throw error;
    }
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}

/**
 * Downloads a single-file model (an ONNX graph) into `folder` as
 * `fileName`, with camviz.json beside it if the server has one, atomically:
 * `check` reads the file in the temporary folder and throws if it is not a
 * model, so a wrong body never reaches the cache.
 */
export async function downloadModelFile(url: URL, folder: string, fileName: string, check: (path: string) => Promise<void>, log?: FetchLog): Promise<void> {
  const temp = `${folder}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await makeFolders(temp);
  try {
    log?.(`downloading ${url.href}`);
    await fetchToFile(url, join(temp, fileName), TOTAL_WEIGHTS_LIMIT, `the ${TOTAL_WEIGHTS_LIMIT / MIB} MiB limit for a model file`);
    try {
      await check(join(temp, fileName));
    } catch (error) {
      // The temporary file means nothing to the user: name the URL.
      if (error instanceof CamvizError) throw new CamvizError(error.message, { file: url.href });
      throw error;
    }
    await downloadCamvizJson(url, temp);
    await makeFolders(dirname(folder));
    try {
      await rename(temp, folder);
    } catch (error) {
      // Another process finished the same download first: keep theirs.
      if (!existsSync(join(folder, fileName))) throw error;
    }
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}

interface PlannedFile {
  url: URL;
  /** Where it goes in the temporary folder. */
  path: string;
}

interface PlannedGroup {
  files: PlannedFile[];
  /** Bytes the manifest declares for the group; undefined when it cannot say (string weights). */
  expected: number | undefined;
}

/** Every weight file's URL and local path, confined, before any is fetched; the declared total bounded. */
function plannedWeights(modelJson: ModelJson, modelJsonUrl: URL, temp: string): PlannedGroup[] {
  const groups = modelJson.weightsManifest.map((group) => ({
    files: group.paths.map((path) => ({
      url: confinedUrl(path, modelJsonUrl, `weight path '${path}'`),
      path: confinedWeightPath(temp, path, modelJsonUrl.href),
    })),
    expected: expectedGroupBytes(group.weights),
  }));
  const declared = groups.reduce((sum, group) => sum + (group.expected ?? 0), 0);
  if (declared > TOTAL_WEIGHTS_LIMIT) {
    throw new CamvizError(`model.json declares ${declared} bytes of weights, more than the ${TOTAL_WEIGHTS_LIMIT / MIB} MiB limit: refused`, {
      file: modelJsonUrl.href,
    });
  }
  return groups;
}

/**
 * `path` resolved against model.json's URL, refused unless the result has
 * the same origin and lies below model.json's folder. Checked on the
 * resolved URL: `%2e%2e/x` contains no `..` but resolves above the folder.
 */
function confinedUrl(path: string, modelJsonUrl: URL, what: string, file: string = modelJsonUrl.href): URL {
  const folder = new URL('.', modelJsonUrl);
  let url: URL | undefined;
  try {
    url = new URL(path, modelJsonUrl);
  } catch {
    url = undefined;
  }
  if (url === undefined || url.origin !== folder.origin || !url.pathname.startsWith(folder.pathname)) {
    throw new CamvizError(`${what} leaves the model folder: refused`, { file });
  }
  return url;
}

async function downloadWeights(groups: readonly PlannedGroup[]): Promise<void> {
  let total = 0;
  for (const group of groups) {
    let received = 0;
    for (const file of group.files) {
      // A file may hold what its group still lacks (a group's split over its files is not declared).
      const limit = group.expected === undefined ? TOTAL_WEIGHTS_LIMIT - total : group.expected - received;
      const what =
        group.expected === undefined ? `the ${TOTAL_WEIGHTS_LIMIT / MIB} MiB limit for all weights` : `the ${limit} bytes its weightsManifest group still lacks`;
      await makeFolders(dirname(file.path));
      const bytes = await fetchToFile(file.url, file.path, limit, what);
      received += bytes;
      total += bytes;
    }
    const last = group.files.at(-1);
    if (last !== undefined && group.expected !== undefined && received !== group.expected) {
      const which = group.files.length === 1 ? 'weight file is' : `weight files of its group hold`;
      throw new CamvizError(`downloaded ${which} ${received} bytes, the weightsManifest declares ${group.expected}: refused`, { file: last.url.href });
    }
  }
}

/** camviz.json beside model.json, if the server has one, and the labels file it names. */
async function downloadCamvizJson(modelJsonUrl: URL, temp: string): Promise<void> {
  const url = new URL('camviz.json', modelJsonUrl);
  const bytes = await fetchOptionalBytes(url, METADATA_LIMIT, 'camviz.json');
  if (bytes === undefined) return;
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new CamvizError(`camviz.json is not valid JSON: ${(error as Error).message}`, { file: url.href });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new CamvizError('camviz.json is not a JSON object', { file: url.href });
  }
  const labels = (parsed as { labels?: unknown }).labels;
  if (typeof labels === 'string' && labels !== 'imagenet') {
    // A remote model's labels are a file beside it, never a path on this machine.
    const path = pathInside(temp, labels);
    if (path === undefined) throw new CamvizError(`labels file '${labels}' leaves the model folder: refused`, { file: url.href });
    const labelsUrl = confinedUrl(labels, modelJsonUrl, `labels file '${labels}'`, url.href);
    await makeFolders(dirname(path));
    await fetchToFile(labelsUrl, path, METADATA_LIMIT, `the ${METADATA_LIMIT / MIB} MiB limit for a labels file`);
  }
  await writeFile(join(temp, 'camviz.json'), bytes);
}

/** The response to `url`, redirects followed by hand so that a failure names the URL that failed. */
async function request(url: URL): Promise<{ response: Response; url: URL }> {
  let current = url;
  for (let redirects = 0; ; redirects++) {
    let response: Response;
    try {
      response = await fetch(current, { redirect: 'manual', signal: AbortSignal.timeout(TIMEOUT_MS) });
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      throw new FetchError(`${current.href}: ${cause?.code ?? cause?.message ?? (error as Error).message}`);
    }
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location !== null) {
      await response.body?.cancel();
      if (redirects === MAX_REDIRECTS) throw new FetchError(`${url.href}: more than ${MAX_REDIRECTS} redirects`);
      current = new URL(location, current);
      if (current.protocol !== 'http:' && current.protocol !== 'https:') throw new FetchError(`${url.href}: redirected to ${current.href}: refused`);
      continue;
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new FetchError(`${current.href}: HTTP ${response.status} ${response.statusText}`, response.status);
    }
    return { response, url: current };
  }
}

/** The body's chunks, refused as soon as they exceed `limit` bytes (or the declared length does); `what` names the limit. */
async function* limitedBody(response: Response, url: URL, limit: number, what: string): AsyncGenerator<Uint8Array> {
  const tooLarge = (): CamvizError => new CamvizError(`download is larger than ${what}: refused`, { file: url.href });
  const declared = Number(response.headers.get('content-length') ?? Number.NaN);
  if (declared > limit) {
    await response.body?.cancel();
    throw tooLarge();
  }
  if (response.body === null) return;
  let received = 0;
  const reader = response.body.getReader();
  try {
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      received += chunk.value.byteLength;
      if (received > limit) throw tooLarge();
      yield chunk.value;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

async function fetchBytes(url: URL, limit: number, what: string): Promise<Buffer> {
  const { response, url: final } = await request(url);
  const chunks: Uint8Array[] = [];
  for await (const chunk of limitedBody(response, final, limit, `the ${limit / MIB} MiB limit for ${what}`)) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Like fetchBytes, but a 404 or 410 is an absent file. */
async function fetchOptionalBytes(url: URL, limit: number, what: string): Promise<Buffer | undefined> {
  try {
    return await fetchBytes(url, limit, what);
  } catch (error) {
    if (error instanceof FetchError && (error.status === 404 || error.status === 410)) return undefined;
    throw error;
  }
}

/** Streams `url` into `path`; returns the byte count. */
async function fetchToFile(url: URL, path: string, limit: number, what: string): Promise<number> {
  const { response, url: final } = await request(url);
  let handle: FileHandle | undefined;
  let written = 0;
  try {
    handle = await open(path, 'wx');
    for await (const chunk of limitedBody(response, final, limit, what)) {
      await handle.write(chunk);
      written += chunk.byteLength;
    }
  } finally {
    await handle?.close();
  }
  return written;
}
