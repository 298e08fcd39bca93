/**
 * The model zoo against a loopback HTTP server that serves the shared
 * models: download into the cache, atomically, once; failures leave
 * nothing behind and say what to do.
 */
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, normalize } from 'node:path';

import { CamvizError, describeError } from '../src/util/errors.js';
import { useBackend } from '../src/engine/backend.js';
import { loadModel } from '../src/model/load.js';
import { sharedAssetsDir, skipWithoutSharedAssets } from './helpers/assets.js';
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
  /** Called on each request before it is answered. */
  observe: ((path: string) => void) | undefined;
  close(): Promise<void>;
}

/** Serves `root` over http on 127.0.0.1 with an OS-chosen port. */
async function serveFolder(root: string): Promise<ModelServer> {
  const requests: string[] = [];
  const missing = new Set<string>();
  const replaced = new Map<string, Buffer>();
  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://localhost').pathname);
    requests.push(path);
    served.observe?.(path);
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
    observe: undefined,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return served;
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

async function expectCamvizError(load: () => Promise<{ dispose(): void }>): Promise<CamvizError> {
  let caught: unknown;
  try {
    (await load()).dispose();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof CamvizError, `expected a CamvizError, got ${String(caught)}`);
  assert.ok(!describeError(caught).includes('\n'), 'one line');
  return caught;
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

  test('offline with an empty cache: one line naming --model shapes, nothing cached', async () => {
    process.env['CAMVIZ_ZOO_URL'] = `http://127.0.0.1:${await closedPort()}/`;
    const cache = await freshCache();
    const error = await expectCamvizError(() => loadModel(MODEL));
    const line = describeError(error);
    assert.ok(line.includes('--model shapes'), line);
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
    assert.equal(server.requests.length, 56);
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
});
