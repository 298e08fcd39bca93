/**
 * The HTML report: the data it embeds and the thumbnails it makes (checked
 * in Node), and the page itself (opened from file:// in headless Chromium:
 * cards, images, filters, sorting, paging, no script injection).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import type { Browser, Page } from 'playwright-core';

import type { Manifest } from '../src/batch/manifest.js';
import { renderReportHtml, reportData, scriptSafeJson, thumbnailPath, writeReport } from '../src/batch/report.js';
import type { InputRecord } from '../src/tasks/types.js';

const CHROMIUM = '/usr/bin/chromium';
const skipBrowser: string | false = existsSync(CHROMIUM) ? false : `${CHROMIUM} not found (CI installs Debian's chromium)`;

const workDir = await mkdtemp(join(tmpdir(), 'camviz-report-test-'));
after(() => rm(workDir, { recursive: true, force: true }));

/** A width x height RGB picture with a diagonal colour gradient (far from blank). */
async function gradientImage(path: string, width: number, height: number, format: 'png' | 'jpeg', hue = 0): Promise<void> {
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const offset = (y * width + x) * 3;
      rgb[offset] = Math.round((255 * x) / Math.max(1, width - 1));
      rgb[offset + 1] = Math.round((255 * y) / Math.max(1, height - 1));
      rgb[offset + 2] = hue;
    }
  }
  await mkdir(dirname(path), { recursive: true });
  const image = sharp(rgb, { raw: { width, height, channels: 3 } });
  await (format === 'png' ? image.png() : image.jpeg()).toFile(path);
}

function baseManifest(command: Manifest['command'], records: InputRecord[]): Manifest {
  const errors = records.filter((record) => record.status === 'error').length;
  return {
    camviz: '0.1.0',
    command,
    model: { name: 'mobilenet_v1_0.75_224', source: 'zoo', sha256: 'ab'.repeat(32) },
    backend: { kind: 'cpu', package: '@tensorflow/tfjs-backend-cpu' },
    options: {},
    shard: null,
    startedAt: '2025-01-02T03:04:05.000Z',
    finishedAt: '2025-01-02T03:05:00.000Z',
    interrupted: false,
    summary: { inputs: records.length, ok: records.length - errors, error: errors },
    records,
  };
}

function camRecord(input: string, relative: string, outputs: { png: string; index: number; label: string | null; score: number; probability: number | null; layer?: string }[]): InputRecord {
  return {
    input,
    relative,
    status: 'ok',
    outputs: outputs.map((output) => output.png),
    predictions: outputs.map((output) => ({ index: output.index, label: output.label, probability: output.probability })),
    results: outputs.map((output) => ({
      input,
      method: 'gradcam',
      layer: output.layer ?? 'conv_pw_13_relu',
      class: { index: output.index, label: output.label },
      score: output.score,
      probability: output.probability,
      peak: { x: 1, y: 2 },
      png: output.png,
    })),
    timings: {},
  };
}

const ERROR_MESSAGE = 'could not decode the image: unsupported image format <img src=x onerror=alert(2)>';

/**
 * A cam run by hand: three ok inputs (one in a subfolder) with output PNGs
 * of known sizes, and one failed input whose file is not an image.
 */
async function camFixture(): Promise<{ outDir: string; inputsDir: string; manifest: Manifest }> {
  const root = join(workDir, 'cam');
  const inputsDir = join(root, 'inputs');
  const outDir = join(root, 'out');
  await gradientImage(join(inputsDir, 'cat.png'), 400, 300, 'png', 40);
  await gradientImage(join(inputsDir, 'sub', 'dog.jpg'), 200, 500, 'jpeg', 200);
  await gradientImage(join(inputsDir, 'bird.png'), 100, 80, 'png', 120);
  await writeFile(join(inputsDir, 'broken.jpg'), 'this is not a JPEG');
  await gradientImage(join(outDir, 'cat.gradcam.281.png'), 40, 30, 'png', 10);
  await gradientImage(join(outDir, 'cat.gradcam.282.png'), 40, 30, 'png', 90);
  await gradientImage(join(outDir, 'sub', 'dog.gradcam.207.png'), 20, 50, 'png', 160);
  await gradientImage(join(outDir, 'bird.gradcam.12.png'), 10, 8, 'png', 250);
  const records: InputRecord[] = [
    camRecord(join(inputsDir, 'bird.png'), 'bird.png', [{ png: 'bird.gradcam.12.png', index: 12, label: 'house finch', score: 5.5, probability: 0.3 }]),
    {
      input: join(inputsDir, 'broken.jpg'),
      relative: 'broken.jpg',
      status: 'error',
      outputs: [],
      timings: {},
      error: ERROR_MESSAGE,
    },
    camRecord(join(inputsDir, 'cat.png'), 'cat.png', [
      { png: 'cat.gradcam.281.png', index: 281, label: 'tabby cat', score: 12.25, probability: 0.61 },
      { png: 'cat.gradcam.282.png', index: 282, label: 'tiger cat', score: 9.5, probability: 0.2 },
    ]),
    camRecord(join(inputsDir, 'sub', 'dog.jpg'), 'sub/dog.jpg', [{ png: 'sub/dog.gradcam.207.png', index: 207, label: 'golden retriever', score: 15.75, probability: 0.9 }]),
  ];
  return { outDir, inputsDir, manifest: baseManifest('cam', records) };
}

describe('report data and thumbnails (no browser)', () => {
  test('writeReport makes 320-px JPEG thumbnails of readable inputs and none for unreadable ones', async () => {
    const { outDir, manifest } = await camFixture();
    const path = await writeReport(outDir, manifest);
    assert.equal(path, join(outDir, 'index.html'));
    // Longest side 320, aspect kept: 400x300 -> 320x240, 200x500 -> 128x320; a 100x80 input is not enlarged.
    const expected: Record<string, [number, number]> = { 'cat.png': [320, 240], 'sub/dog.jpg': [128, 320], 'bird.png': [100, 80] };
    for (const [relative, [width, height]] of Object.entries(expected)) {
      const meta = await sharp(join(outDir, '_report', 'thumbs', `${relative}.jpg`)).metadata();
      assert.equal(meta.format, 'jpeg', relative);
      assert.deepEqual([meta.width, meta.height], [width, height], relative);
    }
    assert.equal(existsSync(join(outDir, '_report', 'thumbs', 'broken.jpg.jpg')), false);
    // Atomic writes leave no temporary files behind.
    assert.deepEqual((await readdir(outDir)).filter((name) => name.endsWith('.tmp')), []);
  });

  test('an existing thumbnail is kept, not regenerated', async () => {
    const root = join(workDir, 'keep');
    await gradientImage(join(root, 'in.png'), 64, 64, 'png');
    const thumb = join(root, 'out', thumbnailPath('in.png'));
    await mkdir(dirname(thumb), { recursive: true });
    await writeFile(thumb, 'placeholder thumbnail');
    const record: InputRecord = { input: join(root, 'in.png'), relative: 'in.png', status: 'ok', outputs: [], timings: {} };
    await writeReport(join(root, 'out'), baseManifest('predict', [record]));
    assert.equal(await readFile(thumb, 'utf8'), 'placeholder thumbnail');
  });

  test('a thumbnail older than its input is made again (the input was replaced); one newer is kept', async () => {
    const root = join(workDir, 'stale');
    const input = join(root, 'in.png');
    await gradientImage(input, 64, 32, 'png');
    const thumb = join(root, 'out', thumbnailPath('in.png'));
    await mkdir(dirname(thumb), { recursive: true });
    await writeFile(thumb, 'the old input\'s thumbnail');
    const old = new Date(Date.now() - 60_000);
    await utimes(thumb, old, old);
    const record: InputRecord = { input, relative: 'in.png', status: 'ok', outputs: [], timings: {} };
    await writeReport(join(root, 'out'), baseManifest('predict', [record]));
    const meta = await sharp(thumb).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['jpeg', 64, 32]);
  });

  test('an input that is a FIFO, or above the pixel limit, gets no thumbnail, and the report is written', { skip: process.platform === 'win32' ? 'no FIFOs' : false }, async () => {
    const root = join(workDir, 'hostile-inputs');
    await mkdir(root, { recursive: true });
    const fifo = join(root, 'pipe.png');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo');
    // 12000x12000 = 144 megapixels declared in a small PNG: over the 100 MP limit, refused from its header.
    const huge = join(root, 'huge.png');
    await sharp({ create: { width: 12000, height: 12000, channels: 3, background: '#808080' } }).png({ compressionLevel: 9 }).toFile(huge);
    const records: InputRecord[] = ['pipe.png', 'huge.png'].map((name) => ({ input: join(root, name), relative: name, status: 'error', outputs: [], timings: {}, error: 'x' }));
    // Before, the FIFO's open blocked a libuv thread for good, and this never returned.
    await writeReport(join(root, 'out'), baseManifest('predict', records));
    assert.equal(existsSync(join(root, 'out', thumbnailPath('pipe.png'))), false);
    assert.equal(existsSync(join(root, 'out', thumbnailPath('huge.png'))), false);
    // A run with --max-pixels 0 (no limit) decoded it: its report shows it.
    const unlimited = { ...baseManifest('predict', [{ ...records[1]!, status: 'ok', error: undefined }]), options: { image: { maxPixels: 0 } } };
    await writeReport(join(root, 'out'), unlimited);
    const meta = await sharp(join(root, 'out', thumbnailPath('huge.png'))).metadata();
    assert.deepEqual([meta.width, meta.height], [320, 320]);
  });

  test('a relative path that climbs out of the folder gets no thumbnail written outside it', async () => {
    const root = join(workDir, 'climb');
    await gradientImage(join(root, 'in.png'), 16, 16, 'png');
    const record: InputRecord = { input: join(root, 'in.png'), relative: '../../../escaped.png', status: 'ok', outputs: [], timings: {} };
    await writeReport(join(root, 'out'), baseManifest('predict', [record]));
    assert.equal(existsSync(join(root, 'escaped.png.jpg')), false);
    assert.equal(existsSync(join(root, 'out', 'escaped.png.jpg')), false);
  });

  test('scriptSafeJson escapes everything that could end a script element and round-trips', () => {
    const value = { name: '</script><script>alert(1)</script>"quotes" & <!-- \u2028\u2029' };
    const text = scriptSafeJson(value);
    assert.doesNotMatch(text, /[<>&\u2028\u2029]/);
    assert.deepEqual(JSON.parse(text), value);
  });

  test('the embedded data holds every output PNG with its caption fields, labels once', () => {
    const input = '/x/a.jpg';
    const fmap: InputRecord = {
      input,
      relative: 'a.jpg',
      status: 'ok',
      outputs: ['a.conv1.fmap.png', 'a.conv1.fmap.json', 'a.conv2.fmap.png', 'a.conv2.fmap.json', 'a.extra.png'],
      results: [
        { input, layer: 'conv1', shape: [8, 8, 16], png: 'a.conv1.fmap.png', json: 'a.conv1.fmap.json' },
        { input, layer: 'conv2', shape: [4, 4, 32], png: 'a.conv2.fmap.png', json: 'a.conv2.fmap.json' },
      ],
      timings: {},
    };
    const data = reportData(baseManifest('fmap', [fmap]), new Set(), new Date(0));
    // The listed PNG without a result record still shows, after the described ones; JSON legends do not.
    assert.deepEqual(data.records[0]!.o, [{ f: 'a.conv1.fmap.png', l: 'conv1', h: [8, 8, 16] }, { f: 'a.conv2.fmap.png', l: 'conv2', h: [4, 4, 32] }, { f: 'a.extra.png' }]);
    assert.equal(data.records[0]!.t, 0);
    const cam = reportData(
      baseManifest('cam', [camRecord('/x/c.jpg', 'c.jpg', [{ png: 'c.gradcam.281.png', index: 281, label: 'tabby cat', score: 12.345678, probability: 0.6123456 }])]),
      new Set(['c.jpg']),
      new Date(0),
    );
    assert.deepEqual(cam.labels, { '281': 'tabby cat' });
    // The input path is kept only when it is not just a folder plus the relative path.
    const elsewhere = reportData(baseManifest('cam', [{ input: 'D:\\shots\\c.jpg', relative: 'c.jpg', status: 'ok', outputs: [], timings: {} }, { input: '/y/c2.jpg', relative: 'c.jpg', status: 'ok', outputs: [], timings: {} }]), new Set(), new Date(0));
    assert.deepEqual(elsewhere.records.map((record) => record.i), [undefined, '/y/c2.jpg']);
    assert.deepEqual(cam.records[0], {
      n: 'c.jpg',
      ok: 1,
      t: 1,
      p: [[281, 0.6123]],
      o: [{ f: 'c.gradcam.281.png', m: 'gradcam', l: 'conv_pw_13_relu', c: 281, s: 12.35, p: 0.6123 }],
    });
  });

  test('the page costs a few hundred bytes per record', (t) => {
    const records = (count: number): InputRecord[] =>
      Array.from({ length: count }, (_, i) => {
        const relative = `photos/batch_${String(Math.floor(i / 100)).padStart(2, '0')}/img_${String(i).padStart(5, '0')}.jpg`;
        const stem = relative.replace(/\.jpg$/, '');
        return camRecord(`data/${relative}`, relative, [
          { png: `${stem}.gradcam.281.png`, index: 281, label: 'tabby cat', score: 12.3456, probability: 0.612345 },
        ]);
      });
    const size = (count: number): number => Buffer.byteLength(renderReportHtml(reportData(baseManifest('cam', records(count)), new Set(), new Date(0))));
    const perRecord = (size(2000) - size(0)) / 2000;
    // One class, one layer: the paths themselves are ~75 bytes of it.
    assert.ok(perRecord < 300, `${perRecord} bytes per record`);
    t.diagnostic(`report page: ${perRecord.toFixed(0)} bytes per cam record`);
  });
});

describe('report page in headless Chromium', { skip: skipBrowser }, () => {
  let browser: Browser;

  before(async () => {
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
    });
  });
  after(async () => {
    await browser?.close();
  });

  interface OpenPage {
    page: Page;
    problems: string[];
    dialogs: string[];
    requests: string[];
  }

  /** Opens a report from file:// and records console errors, page errors, dialogs and non-file requests. */
  async function open(indexPath: string): Promise<OpenPage> {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    const problems: string[] = [];
    const dialogs: string[] = [];
    const requests: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning') problems.push(`console ${message.type()}: ${message.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });
    page.on('request', (request) => {
      if (!request.url().startsWith('file://')) requests.push(request.url());
    });
    await page.goto(pathToFileURL(indexPath).href);
    await page.waitForSelector('#cards');
    return { page, problems, dialogs, requests };
  }

  /** Scrolls every image into view (they load lazily) and waits until each has finished loading. */
  interface ImageState {
    src: string;
    naturalWidth: number;
    naturalHeight: number;
  }

  async function loadAllImages(page: Page): Promise<ImageState[]> {
    const images = page.locator('#cards img');
    const count = await images.count();
    for (let i = 0; i < count; i++) await images.nth(i).scrollIntoViewIfNeeded();
    // Strings, not functions: the test compiles without the DOM library.
    await page.waitForFunction(`[...document.querySelectorAll('#cards img')].every((img) => img.complete)`);
    return page.evaluate<ImageState[]>(
      `[...document.querySelectorAll('#cards img')].map((img) => ({ src: img.getAttribute('src'), naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight }))`,
    );
  }

  const cardNames = (page: Page): Promise<string[]> => page.$$eval('#cards .card .name', (nodes) => nodes.map((node) => node.textContent ?? ''));

  test('a cam run: every card and image, the error card, filters, sorting, a non-blank screenshot', async () => {
    const { outDir, manifest } = await camFixture();
    const { page, problems, dialogs, requests } = await open(await writeReport(outDir, manifest));
    try {
      assert.equal(await page.locator('#cards .card').count(), 4);
      assert.deepEqual(await cardNames(page), ['bird.png', 'broken.jpg', 'cat.png', 'sub/dog.jpg']);

      // Each image's decoded size is the size the fixture wrote (thumbnails: longest side 320).
      const sizes = new Map((await loadAllImages(page)).map((image) => [decodeURIComponent(image.src), [image.naturalWidth, image.naturalHeight]]));
      assert.deepEqual(
        Object.fromEntries(sizes),
        {
          '_report/thumbs/bird.png.jpg': [100, 80],
          'bird.gradcam.12.png': [10, 8],
          '_report/thumbs/cat.png.jpg': [320, 240],
          'cat.gradcam.281.png': [40, 30],
          'cat.gradcam.282.png': [40, 30],
          '_report/thumbs/sub/dog.jpg.jpg': [128, 320],
          'sub/dog.gradcam.207.png': [20, 50],
        },
      );
      const loading = await page.evaluate<string[]>(`[...document.querySelectorAll('img')].map((img) => img.loading)`);
      assert.deepEqual(loading, new Array(7).fill('lazy'));

      const errorCard = page.locator('.card[data-status="error"]');
      assert.equal(await errorCard.count(), 1);
      assert.equal(await errorCard.locator('.badge').textContent(), 'error');
      assert.equal(await errorCard.locator('.message').textContent(), ERROR_MESSAGE);
      assert.equal(await errorCard.locator('.missing').textContent(), 'original image not readable');

      const captions = await page.locator('.card[data-name="cat.png"] figcaption').allTextContents();
      assert.deepEqual(captions, [
        'input',
        'gradcam · conv_pw_13_relu · class 281 tabby cat · score 12.25 · p 61%',
        'gradcam · conv_pw_13_relu · class 282 tiger cat · score 9.5 · p 20%',
      ]);
      assert.deepEqual(await page.locator('.card[data-name="cat.png"] ol.predictions li').allTextContents(), ['class 281 tabby cat: 61%', 'class 282 tiger cat: 20%']);

      const header = await page.locator('#facts').textContent();
      for (const part of ['mobilenet_v1_0.75_224', 'cpu', '@tensorflow/tfjs-backend-cpu', '0.1.0', 'ok3', 'error1']) assert.ok(header!.includes(part), `${part} in ${header}`);

      await page.selectOption('#status', 'error');
      assert.deepEqual(await cardNames(page), ['broken.jpg']);
      await page.selectOption('#status', 'ok');
      assert.deepEqual(await cardNames(page), ['bird.png', 'cat.png', 'sub/dog.jpg']);
      await page.selectOption('#status', 'all');

      await page.fill('#filter', 'TIGER');
      assert.deepEqual(await cardNames(page), ['cat.png']);
      await page.fill('#filter', '207');
      assert.deepEqual(await cardNames(page), ['sub/dog.jpg']);
      await page.fill('#filter', 'broken');
      assert.deepEqual(await cardNames(page), ['broken.jpg']);
      await page.fill('#filter', 'no such thing');
      assert.equal(await page.locator('#cards .card').count(), 0);
      await page.fill('#filter', '');

      // Highest probability first (dog 0.9, cat 0.61, bird 0.3), the error without one last.
      await page.selectOption('#sort', 'probability');
      assert.deepEqual(await cardNames(page), ['sub/dog.jpg', 'cat.png', 'bird.png', 'broken.jpg']);
      // Scores: dog 15.75, cat 12.25, bird 5.5.
      await page.selectOption('#sort', 'score');
      assert.deepEqual(await cardNames(page), ['sub/dog.jpg', 'cat.png', 'bird.png', 'broken.jpg']);
      await page.selectOption('#sort', 'status');
      assert.deepEqual(await cardNames(page), ['broken.jpg', 'bird.png', 'cat.png', 'sub/dog.jpg']);
      // By class label: golden retriever, house finch, tabby cat; no class last.
      await page.selectOption('#sort', 'class');
      assert.deepEqual(await cardNames(page), ['sub/dog.jpg', 'bird.png', 'cat.png', 'broken.jpg']);
      await page.selectOption('#sort', 'path');
      assert.deepEqual(await cardNames(page), ['bird.png', 'broken.jpg', 'cat.png', 'sub/dog.jpg']);

      // A score floor keeps the cards with a map scoring at least that much.
      await page.fill('#minscore', '10');
      assert.deepEqual(await cardNames(page), ['cat.png', 'sub/dog.jpg']);
      await page.fill('#minscore', '13');
      assert.deepEqual(await cardNames(page), ['sub/dog.jpg']);
      await page.fill('#minscore', '');
      assert.equal(await page.locator('#cards .card').count(), 4);

      await page.evaluate('window.scrollTo(0, 0)');
      const shot = await page.screenshot({ fullPage: true });
      const stats = await sharp(shot).stats();
      const spread = Math.max(...stats.channels.slice(0, 3).map((channel) => channel.stdev));
      assert.ok(spread > 20, `screenshot pixel standard deviation ${spread}`);

      assert.deepEqual(problems, []);
      assert.deepEqual(dialogs, []);
      assert.deepEqual(requests, []);
    } finally {
      await page.close();
    }
  });

  test('an fmap run: one grid per layer captioned with layer and shape', async () => {
    const root = join(workDir, 'fmap');
    const input = join(root, 'in', 'leaf.png');
    await gradientImage(input, 90, 60, 'png');
    await gradientImage(join(root, 'out', 'leaf.conv1.fmap.png'), 34, 34, 'png', 30);
    await gradientImage(join(root, 'out', 'leaf.conv2.fmap.png'), 50, 26, 'png', 220);
    const record: InputRecord = {
      input,
      relative: 'leaf.png',
      status: 'ok',
      outputs: ['leaf.conv1.fmap.png', 'leaf.conv1.fmap.json', 'leaf.conv2.fmap.png', 'leaf.conv2.fmap.json'],
      results: [
        { input, layer: 'conv1', shape: [16, 16, 4], png: 'leaf.conv1.fmap.png', json: 'leaf.conv1.fmap.json' },
        { input, layer: 'conv2', shape: [8, 8, 8], png: 'leaf.conv2.fmap.png', json: 'leaf.conv2.fmap.json' },
      ],
      timings: {},
    };
    const { page, problems } = await open(await writeReport(join(root, 'out'), baseManifest('fmap', [record])));
    try {
      assert.deepEqual(await page.locator('figcaption').allTextContents(), ['input', 'conv1 · 16×16×4', 'conv2 · 8×8×8']);
      const images = await loadAllImages(page);
      assert.deepEqual(images.map((image) => [image.naturalWidth, image.naturalHeight]), [[90, 60], [34, 34], [50, 26]]);
      assert.deepEqual(problems, []);
    } finally {
      await page.close();
    }
  });

  test('a target without a probability (--target output): no percentage shown, and it sorts with the cards that have none, not as 0', async () => {
    const root = join(workDir, 'no-probability');
    const inputsDir = join(root, 'in');
    const outDir = join(root, 'out');
    await gradientImage(join(inputsDir, 'z-output.png'), 40, 30, 'png', 10);
    await gradientImage(join(outDir, 'z-output.gradcam.output.value.2.png'), 40, 30, 'png', 90);
    await gradientImage(join(inputsDir, 'm-class.png'), 40, 30, 'png', 160);
    await gradientImage(join(outDir, 'm-class.gradcam.3.png'), 40, 30, 'png', 250);
    const records: InputRecord[] = [
      { input: join(inputsDir, 'a-broken.jpg'), relative: 'a-broken.jpg', status: 'error', outputs: [], timings: {}, error: 'not an image' },
      camRecord(join(inputsDir, 'm-class.png'), 'm-class.png', [{ png: 'm-class.gradcam.3.png', index: 3, label: null, score: 1.5, probability: 0.2 }]),
      camRecord(join(inputsDir, 'z-output.png'), 'z-output.png', [{ png: 'z-output.gradcam.output.value.2.png', index: 2, label: null, score: 4.25, probability: null }]),
    ];
    const manifest = baseManifest('cam', records);
    const data = reportData(manifest, new Set(), new Date(0));
    assert.deepEqual(data.records[2]!.p, [[2, null]]);
    assert.equal(data.records[2]!.o![0]!.p, null);
    const { page, problems } = await open(await writeReport(outDir, manifest));
    try {
      assert.deepEqual(await page.locator('.card[data-name="z-output.png"] ol.predictions li').allTextContents(), ['class 2']);
      assert.deepEqual(await page.locator('.card[data-name="z-output.png"] figcaption').allTextContents(), ['input', 'gradcam · conv_pw_13_relu · class 2 · score 4.25']);
      await page.selectOption('#sort', 'probability');
      assert.deepEqual(await cardNames(page), ['m-class.png', 'a-broken.jpg', 'z-output.png']);
      assert.deepEqual(problems, []);
    } finally {
      await page.close();
    }
  });

  test('a hostile file name, label and message show literally and run nothing', async () => {
    const root = join(workDir, 'hostile');
    // The `/` in `</script>` makes folders: the relative path is nested, as a real run would record it.
    const relative = 'x</script><script>alert(1)</script>"quotes" & \'single\' #%3F?.png';
    const stem = relative.replace(/\.png$/, '');
    const input = join(root, 'in', relative);
    await gradientImage(input, 30, 20, 'png');
    await gradientImage(join(root, 'out', `${stem}.gradcam.1.png`), 30, 20, 'png', 99);
    const record = camRecord(input, relative, [
      { png: `${stem}.gradcam.1.png`, index: 1, label: '<b onmouseover=alert(3)>goldfish</b>', score: 1, probability: 0.5 },
    ]);
    const failed: InputRecord = { input: join(root, 'in', 'missing.png'), relative: 'missing.png', status: 'error', outputs: [], timings: {}, error: '</script><script>alert(4)</script>' };
    const indexPath = await writeReport(join(root, 'out'), baseManifest('cam', [record, failed]));
    const html = await readFile(indexPath, 'utf8');
    assert.equal(html.includes('<script>alert('), false);
    assert.equal(html.split('</script>').length - 1, 2, 'only the page\'s own two script elements close');

    const { page, problems, dialogs } = await open(indexPath);
    try {
      assert.deepEqual(await cardNames(page), ['missing.png', relative]);
      assert.equal(await page.locator('.card.error .message').textContent(), '</script><script>alert(4)</script>');
      assert.equal(await page.locator('.card.ok ol.predictions li').textContent(), 'class 1 <b onmouseover=alert(3)>goldfish</b>: 50%');
      assert.equal(await page.locator('#cards b').count(), 0);
      // Nothing beyond the page's own elements was created from the data.
      assert.equal(await page.locator('script').count(), 2);
      const images = await loadAllImages(page);
      assert.deepEqual(images.map((image) => [image.naturalWidth, image.naturalHeight]), [[30, 20], [30, 20]]);
      await page.locator('.card.ok h2').hover();
      await page.fill('#filter', 'quotes');
      assert.deepEqual(await cardNames(page), [relative]);
      assert.deepEqual(dialogs, []);
      assert.deepEqual(problems, []);
    } finally {
      await page.close();
    }
  });

  test('thousands of records: cards render a page at a time', async () => {
    const root = join(workDir, 'many');
    const records: InputRecord[] = Array.from({ length: 450 }, (_, i) => ({
      input: join(root, 'absent', `img_${String(i).padStart(4, '0')}.jpg`),
      relative: `img_${String(i).padStart(4, '0')}.jpg`,
      status: 'error',
      outputs: [],
      timings: {},
      error: `file not found (img_${i})`,
    }));
    const outDir = join(root, 'out');
    const indexPath = await writeReport(outDir, baseManifest('predict', records));
    assert.equal(existsSync(join(outDir, '_report', 'thumbs')), false);
    const bytes = (await stat(indexPath)).size;
    const { page, problems } = await open(indexPath);
    try {
      assert.equal(await page.locator('#cards .card').count(), 200);
      assert.equal(await page.locator('#more').textContent(), 'show 200 more of 250');
      await page.click('#more');
      assert.equal(await page.locator('#cards .card').count(), 400);
      await page.click('#more');
      assert.equal(await page.locator('#cards .card').count(), 450);
      assert.equal(await page.locator('#more').isHidden(), true);
      assert.equal(await page.locator('#count').textContent(), 'showing 450 of 450');
      await page.fill('#filter', 'img_0449');
      assert.deepEqual(await cardNames(page), ['img_0449.jpg']);
      assert.deepEqual(problems, []);
      assert.ok(bytes < 20_000 + 450 * 150, `${bytes} bytes`);
    } finally {
      await page.close();
    }
  });
});
