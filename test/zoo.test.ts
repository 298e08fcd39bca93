/**
 * The model zoo against a loopback HTTP server that serves the shared
 * models: download into the cache, atomically, once; failures leave
 * nothing behind and say what to do.
 */
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, normalize } from 'node:path';

import { describeError } from '../src/util/errors.js';
import { useBackend } from '../src/engine/backend.js';
import { loadModel } from '../src/model/load.js';
import { MODEL_JSON_LIMIT } from '../src/model/download.js';
import { sharedAssetsDir, skipWithoutSharedAssets } from './helpers/assets.js';
import { expectCamvizError } from './helpers/errors.js';
import { listFiles } from './helpers/files.js';

const MODEL = 'mobilenet_v1_0.75_224';
const modelsDir = join(sharedAssetsDir, 'models');
const sourceDir = join(modelsDir, MODEL);

const workDir = await mkdtemp(join(tmpdir(), 'camviz-zoo-test-'));
after(() => rm(workDir, { recursive: true, force: true }));

/** Weight paths of a model.json, read independently of camviz. */
async function weightFiles(modelJsonPath: string): Promise<string[]> {
  const json = JSON.parse(await readFile(modelJsonPath, 'utf8')) as { weightsManifest: { paths: string[] }[] };
  return json.weightsManifest.flatMap((group) => group.paths);
}

/** A failed download may leave no cache folder at all: that counts as nothing cached. */
const cachedFiles = (dir: string): Promise<string[]> => listFiles(dir, { missingAsEmpty: true });

interface ModelServer {
  url: string;
  /** Paths requested so far. */
  requests: string[];
  /** Paths answered with 404. */
  missing: Set<string>;
  /** Paths answered with other bytes. */
  replaced: Map<string, Buffer>;
  /** Paths answered with a redirect to the given location. */
  redirects: Map<string, string>;
  /** Paths answered with this many bytes of spaces, streamed; with or without a Content-Length. */
  oversized: Map<string, { bytes: number; declareLength: boolean }>;
  /** Paths whose response the client closed before it was complete. */
  aborted: string[];
  /** Called on each request before it is answered. */
  observe: ((path: string) => void) | undefined;
  close(): Promise<void>;
}

/** Serves `root` over http on 127.0.0.1 with an OS-chosen port. */
async function serveFolder(root: string): Promise<ModelServer> {
  const requests: string[] = [];
  const missing = new Set<string>();
  const replaced = new Map<string, Buffer>();
  const redirects = new Map<string, string>();
  const oversized = new Map<string, { bytes: number; declareLength: boolean }>();
  const aborted: string[] = [];
  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://localhost').pathname);
    requests.push(path);
    served.observe?.(path);
    const location = redirects.get(path);
    if (location !== undefined) {
      response.writeHead(302, { location }).end();
      return;
    }
    const large = oversized.get(path);
    if (large !== undefined) {
      await streamSpaces(response, large.bytes, large.declareLength, () => aborted.push(path));
      return;
    }
    const file = normalize(join(root, path));
    const replacement = replaced.get(path);
    if (replacement !== undefined) {
      response.writeHead(200, { 'content-type': 'application/octet-stream' }).end(replacement);
      return;
    }
    if (missing.has(path) || !file.startsWith(root)) {
      response.writeHead(404).end('not found');
      return;
    }
    try {
      const bytes = await readFile(file);
      response.writeHead(200, { 'content-type': 'application/octet-stream' }).end(bytes);
    } catch {
      response.writeHead(404).end('not found');
    }
  };
  const server: Server = createServer((request, response) => void handle(request, response));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const served: ModelServer = {
    url: `http://127.0.0.1:${port}/`,
    requests,
    missing,
    replaced,
    redirects,
    oversized,
    aborted,
    observe: undefined,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return served;
}

/** Writes `bytes` spaces in 64 KiB chunks, as the client takes them; `onAbort` if the client closes first. */
async function streamSpaces(response: ServerResponse, bytes: number, declareLength: boolean, onAbort: () => void): Promise<void> {
  response.writeHead(200, { 'content-type': 'application/octet-stream', ...(declareLength ? { 'content-length': String(bytes) } : {}) });
  const chunk = Buffer.alloc(64 * 1024, ' ');
  let closed = false;
  response.on('close', () => {
    closed = true;
  });
  for (let sent = 0; sent < bytes && !closed; sent += chunk.length) {
    const part = sent + chunk.length <= bytes ? chunk : chunk.subarray(0, bytes - sent);
    if (!response.write(part)) await new Promise((resolve) => (closed ? resolve(undefined) : response.once('drain', resolve).once('close', resolve)));
  }
  if (closed) onAbort();
  else response.end();
}

/** A port on which nothing listens (it was just released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const ENV_KEYS = ['CAMVIZ_ZOO_URL', 'CAMVIZ_CACHE', 'XDG_CACHE_HOME'] as const;
let savedEnv: Record<string, string | undefined> = {};
let cacheCount = 0;

/** A new empty cache folder, set as CAMVIZ_CACHE. */
async function freshCache(): Promise<string> {
  const cache = join(workDir, `cache${cacheCount++}`);
  process.env['CAMVIZ_CACHE'] = cache;
  return cache;
}

describe('zoo', { skip: skipWithoutSharedAssets }, () => {
  let server: ModelServer;

  before(async () => {
    await useBackend('cpu');
    server = await serveFolder(modelsDir);
  });
  after(() => server.close());
  beforeEach(() => {
    savedEnv = Object.fromEntries(ENV_KEYS.map((key) => [key, process.env[key]]));
    server.requests.length = 0;
    server.missing.clear();
    server.replaced.clear();
    server.redirects.clear();
    server.oversized.clear();
    server.aborted.length = 0;
    server.observe = undefined;
  });
  afterEach(() => {
    for (const key of ENV_KEYS) {
      if (savedEnv[key] === undefined) delete process.env[key];
      else process.env[key] = savedEnv[key];
    }
  });

  test('downloads model.json and every weight file once, atomically, then loads from the cache', async () => {
    process.env['CAMVIZ_ZOO_URL'] = server.url;
    const cache = await freshCache();
    const expectedFiles = ['model.json', ...(await weightFiles(join(sourceDir, 'model.json')))].sort();
    assert.equal(expectedFiles.length, 56, 'the shared MobileNet has 55 weight files');

    // While files are still being fetched, the model's cache folder must not exist yet.
    const cached = join(cache, 'zoo', MODEL);
    const visibleTooEarly: string[] = [];
    server.observe = (path) => {
      if (existsSync(cached)) visibleTooEarly.push(path);
    };
    const messages: string[] = [];
    const first = await loadModel(MODEL, { log: (message) => messages.push(message) });
    try {
      assert.equal(first.meta.preprocess, 'tf');
      assert.equal(first.meta.labels?.length, 1000);
      assert.deepEqual([...server.requests].sort(), expectedFiles.map((file) => `/${MODEL}/${file}`).sort());
      assert.ok(messages.some((message) => message.includes(`${MODEL}/model.json`)));
    } finally {
      first.dispose();
    }

    assert.deepEqual(visibleTooEarly, [], 'the cache folder appears only when complete');
    const zooDir = join(cache, 'zoo');
    assert.equal(first.meta.modelJsonPath, join(cached, 'model.json'));
    assert.deepEqual(readdirSync(zooDir), [MODEL], 'no temporary folder is left beside the model');
    assert.deepEqual(await listFiles(cached), expectedFiles);
    for (const file of expectedFiles) {
      assert.ok((await readFile(join(cached, file))).equals(await readFile(join(sourceDir, file))), `${file} equals the source`);
    }

    server.requests.length = 0;
    const second = await loadModel(MODEL);
    second.dispose();
    assert.deepEqual(server.requests, [], 'a cached model makes no request');
  });

  test('a 404 for a weight file leaves no cache folder and gives one clear line', async () => {
    process.env['CAMVIZ_ZOO_URL'] = server.url;
    const cache = await freshCache();
    server.missing.add(`/${MODEL}/group7-shard1of1`);
    const error = await expectCamvizError(() => loadModel(MODEL));
    const line = describeError(error);
    assert.match(line, /404/);
    assert.ok(line.includes('group7-shard1of1'), line);
    assert.ok(line.includes(MODEL), line);
    assert.deepEqual(await cachedFiles(cache), [], 'nothing is written to the cache');
    assert.ok(!existsSync(join(cache, 'zoo', MODEL)));
    // Once the server has the file, the next attempt succeeds.
    server.missing.clear();
    (await loadModel(MODEL)).dispose();
    assert.ok(existsSync(join(cache, 'zoo', MODEL, 'group7-shard1of1')));
  });

  test('a model.json that does not match the zoo sha256 is refused and not cached', async () => {
    process.env['CAMVIZ_ZOO_URL'] = server.url;
    const cache = await freshCache();
    server.replaced.set(`/${MODEL}/model.json`, await readFile(join(modelsDir, 'darknet_tiny', 'model.json')));
    const error = await expectCamvizError(() => loadModel(MODEL));
    assert.match(error.message, /sha256/);
    assert.deepEqual(await cachedFiles(cache), []);
    assert.deepEqual(server.requests, [`/${MODEL}/model.json`], 'no weight file is fetched');
  });

  test('CAMVIZ_ZOO_URL naming a local folder is used in place, without a cache', async () => {
    for (const origin of [modelsDir, new URL(`file://${modelsDir}/`).href]) {
      process.env['CAMVIZ_ZOO_URL'] = origin;
      const cache = await freshCache();
      const model = await loadModel(MODEL);
      try {
        assert.equal(model.meta.modelJsonPath, join(sourceDir, 'model.json'));
        assert.equal(model.meta.preprocess, 'tf');
      } finally {
        model.dispose();
      }
      assert.ok(!existsSync(cache), 'the cache is not touched');
    }
    assert.deepEqual(server.requests, []);
  });

  test('offline with an empty cache: one line naming --model shapes and CAMVIZ_ZOO_URL, nothing cached', async () => {
    process.env['CAMVIZ_ZOO_URL'] = `http://127.0.0.1:${await closedPort()}/`;
    const cache = await freshCache();
    const error = await expectCamvizError(() => loadModel(MODEL));
    const line = describeError(error);
    assert.ok(line.includes('--model shapes'), line);
    assert.ok(line.includes('CAMVIZ_ZOO_URL'), line);
    assert.ok(line.includes(MODEL), line);
    assert.equal(error.exitCode, 1);
    assert.deepEqual(await cachedFiles(cache), []);
  });

  test('without CAMVIZ_CACHE the cache is under XDG_CACHE_HOME/camviz', async () => {
    process.env['CAMVIZ_ZOO_URL'] = server.url;
    delete process.env['CAMVIZ_CACHE'];
    const xdg = join(workDir, 'xdg');
    process.env['XDG_CACHE_HOME'] = xdg;
    const model = await loadModel(MODEL);
    model.dispose();
    assert.equal(model.meta.modelJsonPath, join(xdg, 'camviz', 'zoo', MODEL, 'model.json'));
  });

  test('a model URL is downloaded once and recognised by its model.json sha256', async () => {
    const cache = await freshCache();
    const url = `${server.url}${MODEL}/`;
    const model = await loadModel(url);
    try {
      assert.ok(model.meta.modelJsonPath.startsWith(join(cache, 'url')));
      assert.equal(model.meta.preprocess, 'tf');
      assert.equal(model.meta.preprocessSource, 'zoo');
      assert.equal(model.meta.scoreLayer, 'conv_preds');
    } finally {
      model.dispose();
    }
    // model.json, 55 weight files and camviz.json (absent here: a 404 that is no error).
    assert.equal(server.requests.length, 57);
    assert.ok(server.requests.includes(`/${MODEL}/camviz.json`));
    server.requests.length = 0;
    (await loadModel(`${url}model.json`)).dispose();
    assert.deepEqual(server.requests, [], 'the same model.json URL is a cache hit');
  });

  test('a downloaded model.json whose weight path leaves the folder is refused before any weight is fetched', async () => {
    const cache = await freshCache();
    const evil = JSON.stringify({ modelTopology: {}, weightsManifest: [{ paths: [`../${MODEL}/group1-shard1of1`], weights: [] }] });
    server.replaced.set('/evil/model.json', Buffer.from(evil));
    const error = await expectCamvizError(() => loadModel(`${server.url}evil/model.json`));
    assert.match(error.message, /leaves the model folder/);
    assert.deepEqual(server.requests, ['/evil/model.json']);
    assert.deepEqual(await cachedFiles(cache), []);
  });
  test('a weight file answered with an HTML page is refused before the cache; the next run downloads again', async () => {
    process.env['CAMVIZ_ZOO_URL'] = server.url;
    const cache = await freshCache();
    const html = Buffer.from('<!doctype html><html><body>Too many requests</body></html>');
    server.replaced.set(`/${MODEL}/group7-shard1of1`, html);
    const error = await expectCamvizError(() => loadModel(MODEL));
    const line = describeError(error);
    const declared = (await stat(join(sourceDir, 'group7-shard1of1'))).size;
    assert.ok(line.includes(`${MODEL}/group7-shard1of1`), line);
    assert.ok(line.includes(`downloaded weight file is ${html.length} bytes, the weightsManifest declares ${declared}: refused`), line);
    assert.deepEqual(await cachedFiles(cache), [], 'nothing is cached');
    server.replaced.clear();
    (await loadModel(MODEL)).dispose();
  });

  test('a damaged cache entry is discarded and downloaded again, saying so in one line', async () => {
    process.env['CAMVIZ_ZOO_URL'] = server.url;
    const cache = await freshCache();
    (await loadModel(MODEL)).dispose();
    const cached = join(cache, 'zoo', MODEL);
    const expectedFiles = await listFiles(cached);
    const declared = (await stat(join(sourceDir, 'group7-shard1of1'))).size;
    const damages: [string, () => Promise<void>, string][] = [
      ['an HTML page for a weight file', () => writeFile(join(cached, 'group7-shard1of1'), '<html></html>'), `group7-shard1of1: 13 bytes, the weightsManifest declares ${declared}`],
      ['a missing weight file', () => rm(join(cached, 'group3-shard1of1')), 'group3-shard1of1 is missing'],
      ['a truncated model.json', () => writeFile(join(cached, 'model.json'), '{"modelTop'), 'model.json does not match the zoo\'s sha256'],
      // Not read without end.
      ['model.json a link to /dev/zero', async () => {
        await rm(join(cached, 'model.json'));
        await symlink('/dev/zero', join(cached, 'model.json'));
      }, 'model.json unreadable: EINVAL'],
    ];
    for (const [what, damage, why] of damages) {
      await damage();
      server.requests.length = 0;
      const messages: string[] = [];
      (await loadModel(MODEL, { log: (message) => messages.push(message) })).dispose();
      assert.ok(messages.includes(`cached model ${MODEL} is damaged (${why}); downloading again`), `${what}: ${messages.join(' | ')}`);
      assert.equal(server.requests.length, expectedFiles.length, `${what}: downloaded again`);
      assert.deepEqual(await listFiles(cached), expectedFiles);
      assert.deepEqual(readdirSync(join(cache, 'zoo')), [MODEL], 'nothing is left beside the model');
    }
  });

  test('a remote model.json declaring a 1,000,000-filter convolution without weights is refused before it is built or cached', async () => {
    const cache = await freshCache();
    server.replaced.set('/hostile/model.json', Buffer.from(JSON.stringify(hostileModelJson(1_000_000))));
    const error = await expectCamvizError(() => loadModel(`${server.url}hostile/model.json`));
    assert.match(error.message, /layer 'conv' \(Conv2D\) needs a kernel of \[1, 1, 3, 1000000\] that the weightsManifest does not list: refused/);
    assert.equal(error.file, `${server.url}hostile/model.json`);
    assert.deepEqual(server.requests, ['/hostile/model.json']);
    assert.deepEqual(await cachedFiles(cache), []);
  });

  test('a model.json over the 64 MiB limit is refused while it streams in', async () => {
    const cache = await freshCache();
    server.oversized.set('/huge/model.json', { bytes: 2 * MODEL_JSON_LIMIT, declareLength: false });
    const error = await expectCamvizError(() => loadModel(`${server.url}huge/model.json`));
    assert.match(error.message, /download is larger than the 64 MiB limit for model\.json: refused/);
    assert.equal(error.file, `${server.url}huge/model.json`);
    await untilAborted('/huge/model.json');
    assert.deepEqual(await cachedFiles(cache), []);
  });

  test('a weight file longer than its manifest declares is refused while it streams in, or at once by its Content-Length', async () => {
    process.env['CAMVIZ_ZOO_URL'] = server.url;
    const declared = (await stat(join(sourceDir, 'group7-shard1of1'))).size;
    for (const declareLength of [false, true]) {
      const cache = await freshCache();
      server.aborted.length = 0;
      server.oversized.set(`/${MODEL}/group7-shard1of1`, { bytes: declared + 64 * 2 ** 20, declareLength });
      const error = await expectCamvizError(() => loadModel(MODEL));
      assert.equal(error.message, `download is larger than the ${declared} bytes its weightsManifest group still lacks: refused`);
      assert.equal(error.file, `${server.url}${MODEL}/group7-shard1of1`);
      await untilAborted(`/${MODEL}/group7-shard1of1`);
      assert.deepEqual(await cachedFiles(cache), []);
    }
  });

  test('a remote weight path that resolves above the model folder (%2e%2e) is refused before it is requested', async () => {
    for (const path of ['%2e%2e/secret.bin', 'sub/%2E%2e/%2e%2e/secret.bin', '.%2e/secret.bin']) {
      const cache = await freshCache();
      server.requests.length = 0;
      server.replaced.set('/evil/model.json', Buffer.from(JSON.stringify({ modelTopology: {}, weightsManifest: [{ paths: [path], weights: [] }] })));
      const error = await expectCamvizError(() => loadModel(`${server.url}evil/model.json`));
      assert.equal(error.message, `weight path '${path}' leaves the model folder: refused`);
      assert.deepEqual(server.requests, ['/evil/model.json'], path);
      assert.deepEqual(await cachedFiles(cache), []);
    }
  });

  test('a fetch that fails after a redirect names the URL redirected to', async () => {
    const closed = await closedPort();
    await freshCache();
    server.redirects.set('/moved/model.json', `http://127.0.0.1:${closed}/elsewhere/model.json`);
    let line = describeError(await expectCamvizError(() => loadModel(`${server.url}moved/model.json`)));
    assert.ok(line.includes(`http://127.0.0.1:${closed}/elsewhere/model.json: ECONNREFUSED`), line);
    process.env['CAMVIZ_ZOO_URL'] = server.url;
    server.redirects.set(`/${MODEL}/group7-shard1of1`, '/gone/group7-shard1of1');
    line = describeError(await expectCamvizError(() => loadModel(MODEL)));
    assert.ok(line.includes(`${server.url}gone/group7-shard1of1: HTTP 404`), line);
  });

  test('a model URL brings its camviz.json and the labels file it names', async () => {
    const cache = await freshCache();
    const names = Array.from({ length: 1000 }, (_, i) => `served class ${i}`);
    server.replaced.set(`/${MODEL}/camviz.json`, Buffer.from(JSON.stringify({ name: 'served', labels: 'meta/names.txt', preprocess: 'torch' })));
    server.replaced.set(`/${MODEL}/meta/names.txt`, Buffer.from(`${names.join('\n')}\n`));
    const model = await loadModel(`${server.url}${MODEL}/`);
    try {
      assert.equal(model.meta.name, 'served');
      assert.equal(model.meta.preprocess, 'torch');
      assert.equal(model.meta.preprocessSource, 'camviz.json');
      assert.deepEqual(model.meta.labels, names);
      assert.ok(model.meta.modelJsonPath.startsWith(join(cache, 'url')));
    } finally {
      model.dispose();
    }
  });

  test('a malformed remote camviz.json, or one naming labels outside the model folder, is one line and caches nothing', async () => {
    const cases: [string, RegExp][] = [
      ['{"labels": ', /^camviz\.json is not valid JSON/],
      ['["a"]', /^camviz\.json is not a JSON object$/],
      [JSON.stringify({ labels: '/etc/passwd' }), /^labels file '\/etc\/passwd' leaves the model folder: refused$/],
      [JSON.stringify({ labels: '%2e%2e/names.txt' }), /^labels file '%2e%2e\/names\.txt' leaves the model folder: refused$/],
    ];
    for (const [text, message] of cases) {
      const cache = await freshCache();
      server.replaced.set(`/${MODEL}/camviz.json`, Buffer.from(text));
      const error = await expectCamvizError(() => loadModel(`${server.url}${MODEL}/`));
      assert.match(error.message, message);
      assert.equal(error.file, `${server.url}${MODEL}/camviz.json`);
      assert.deepEqual(await cachedFiles(cache), [], text);
    }
  });

  /** Waits until the server has seen the client close `path`'s response early (the client stopped reading). */
  async function untilAborted(path: string): Promise<void> {
    for (let turn = 0; turn < 500 && !server.aborted.includes(path); turn++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.ok(server.aborted.includes(path), `the download of ${path} was cut short`);
  }
});

/** A Keras topology of one 1x1 convolution with `filters` filters, and no weights. */
function hostileModelJson(filters: number): object {
  const input = { class_name: 'InputLayer', name: 'x', inbound_nodes: [], config: { name: 'x', batch_input_shape: [null, 4, 4, 3], dtype: 'float32', sparse: false } };
  const conv = {
    class_name: 'Conv2D',
    name: 'conv',
    inbound_nodes: [[['x', 0, 0, {}]]],
    config: { name: 'conv', filters, kernel_size: [1, 1], strides: [1, 1], padding: 'valid', data_format: 'channels_last', dilation_rate: [1, 1], activation: 'linear', use_bias: true },
  };
  return {
    format: 'layers-model',
    modelTopology: { keras_version: '2.1.4', backend: 'tensorflow', model_config: { class_name: 'Model', config: { name: 'm', layers: [input, conv], input_layers: [['x', 0, 0]], output_layers: [['conv', 0, 0]] } } },
    weightsManifest: [],
  };
}
