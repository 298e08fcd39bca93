/**
 * Hostile and broken Keras files: each is refused with one line naming the
 * file, exit 1, nothing written, within bounded time (the CLI child is
 * killed after 15 s) and memory (its heap capped at 1 GiB). The archives
 * are built here from the real cifar10 `.keras` of ../shared/assets/keras
 * (its config.json edited) or written from scratch; the HDF5 cases edit the
 * real Keras 3.5 `.h5`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { loadModel } from '../src/model/load.js';
import { ZipArchive } from '../src/model/keras/zip.js';
import { asset } from './helpers/assets.js';
import { runCli } from './helpers/cli.js';
import { expectCamvizError } from './helpers/errors.js';
import { listFiles } from './helpers/files.js';
import { type ZipSpec, zipOf } from './helpers/zip.js';

const kerasDir = asset('keras');
const cifar = join(kerasDir, 'cifar10_k3.10.keras');
const mnist = join(kerasDir, 'mnist_cnn_k3.5.h5');
const image = join(kerasDir, 'images', 'both_32.png');
const skip: string | false = existsSync(cifar) && existsSync(mnist) ? false : `Keras assets not found at ${kerasDir}`;

type Json = Record<string, unknown>;

/** The real cifar10 archive's entries, its config.json passed through `edit`. */
function cifarWith(edit: (config: { config: { layers: Json[] } }) => void, extra: ZipSpec[] = []): Buffer {
  const archive = ZipArchive.open(readFileSync(cifar), cifar);
  const config = JSON.parse(archive.read('config.json', 1 << 20).toString('utf8')) as { config: { layers: Json[] } };
  edit(config);
  return zipOf([
    { name: 'metadata.json', data: archive.read('metadata.json', 1 << 20) },
    { name: 'config.json', data: Buffer.from(JSON.stringify(config)) },
    { name: 'model.weights.h5', data: archive.read('model.weights.h5', 1 << 30) },
    ...extra,
  ]);
}

/** The real mnist .h5 with every occurrence of `from` (little-endian uint64s) replaced by `to`. */
function mnistReplacing(from: readonly number[], to: readonly number[]): Buffer {
  const bytes = Buffer.from(readFileSync(mnist));
  const encode = (values: readonly number[]): Buffer => Buffer.concat(values.map((value) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(value)); return b; }));
  const needle = encode(from);
  let found = 0;
  for (let at = bytes.indexOf(needle); at >= 0; at = bytes.indexOf(needle, at + 1)) {
    encode(to).copy(bytes, at);
    found += 1;
  }
  assert.ok(found > 0, 'the dims to replace are in the file');
  return bytes;
}

/**
 * The real mnist .h5 with the address of every dataset moved: its Data Layout
 * messages (version 1 object headers: type 8, 24 bytes, then layout version
 * 3, class 1 contiguous, address, size) rewritten.
 */
function mnistWithDataAt(address: (length: number) => number): Buffer {
  const bytes = Buffer.from(readFileSync(mnist));
  let found = 0;
  for (let at = 0; at + 26 <= bytes.length; at += 1) {
    const header = bytes.readUInt16LE(at) === 8 && bytes.readUInt16LE(at + 2) === 24 && bytes.readUIntLE(at + 5, 3) === 0;
    if (header && bytes[at + 8] === 3 && bytes[at + 9] === 1) {
      bytes.writeBigUInt64LE(BigInt(address(bytes.length)), at + 10);
      found += 1;
    }
  }
  assert.ok(found > 0, 'the layout messages are where the format puts them');
  return bytes;
}

const renamed = (layers: Json[], name: string, className: string): void => {
  const conv = layers.find((layer) => layer['class_name'] === 'Conv2D' && (layer['config'] as Json)['name'] === name)!;
  conv['class_name'] = className;
};

/** A valid config, so that the archive gets as far as the weights entry. */
const EMPTY_SEQUENTIAL = JSON.stringify({ class_name: 'Sequential', config: { name: 'empty', layers: [] } });

interface HostileCase {
  name: string;
  file: string;
  bytes: () => Buffer;
  /** What the one line must say. */
  says: RegExp;
}

const CASES: HostileCase[] = [
  {
    name: 'a zip bomb: an entry declaring 3 GiB',
    file: 'bomb-declared.keras',
    bytes: () => zipOf([{ name: 'config.json', data: Buffer.from(EMPTY_SEQUENTIAL) }, { name: 'model.weights.h5', data: Buffer.alloc(1024), deflate: true, declaredSize: 3 * 2 ** 30 }]),
    says: /zip entry model\.weights\.h5 declares 3221225472 bytes, over the \d+-byte limit: refused/,
  },
  {
    name: 'a zip bomb: an entry inflating to 64 MiB while declaring 1 KiB',
    file: 'bomb-inflated.keras',
    bytes: () => zipOf([{ name: 'config.json', data: Buffer.from(EMPTY_SEQUENTIAL) }, { name: 'model.weights.h5', data: Buffer.alloc(64 * 2 ** 20), deflate: true, declaredSize: 1024 }]),
    says: /inflates beyond the 1024 bytes it declares/,
  },
  { name: 'a ../ entry', file: 'climbing.keras', bytes: () => cifarWith(() => {}, [{ name: '../../evil.sh', data: Buffer.from('echo') }]), says: /'\.\.\/\.\.\/evil\.sh' points outside the archive/ },
  { name: 'an absolute entry', file: 'absolute.keras', bytes: () => cifarWith(() => {}, [{ name: '/etc/evil', data: Buffer.from('x') }]), says: /'\/etc\/evil' points outside the archive/ },
  {
    name: 'a password-protected zip',
    file: 'encrypted.keras',
    bytes: () => zipOf([{ name: 'config.json', data: Buffer.from('{}'), flags: 1 }]),
    says: /encrypted \(password-protected archive\)/,
  },
  { name: 'a truncated zip', file: 'truncated.keras', bytes: () => readFileSync(cifar).subarray(0, 700_000), says: /no central directory \(truncated\?\)/ },
  { name: 'a truncated HDF5', file: 'truncated.h5', bytes: () => readFileSync(mnist).subarray(0, 400_000), says: /HDF5 file is truncated: 400000 bytes, its superblock says 789192/ },
  {
    // Everything the model needs sits before the cut: without the superblock's end-of-file check it would run.
    name: 'an HDF5 truncated after its weights',
    file: 'truncated-late.h5',
    bytes: () => readFileSync(mnist).subarray(0, 600_000),
    says: /HDF5 file is truncated: 600000 bytes, its superblock says 789192/,
  },
  {
    name: 'an HDF5 whose data addresses lie (past the end of the file)',
    file: 'lying-address.h5',
    bytes: () => mnistWithDataAt((length) => length - 64),
    says: /HDF5 dataset '.+' points past the end of the file/,
  },
  {
    name: 'a corrupt HDF5 (object headers overwritten)',
    file: 'corrupt.h5',
    bytes: () => Buffer.from(readFileSync(mnist)).fill(0xff, 96, 4096),
    says: /not a readable HDF5 file \(truncated or corrupt\?\)/,
  },
  {
    name: 'an HDF5 dataset whose shape lies (2^30 output channels)',
    file: 'lying-shape.h5',
    bytes: () => mnistReplacing([3, 3, 32, 64], [3, 3, 32, 2 ** 30]),
    says: /declares shape \[3, 3, 32, 1073741824\], more than the file holds/,
  },
  {
    // All 64 bits of each dimension are read (jsfive read the low 32, 0 here, and the layer's config then disagreed with the weights).
    name: 'an HDF5 dataset whose shape lies (2^40 output channels)',
    file: 'lying-shape-2.h5',
    bytes: () => mnistReplacing([3, 3, 32, 64], [3, 3, 32, 2 ** 40]),
    says: /declares shape \[3, 3, 32, 1099511627776\], more than the file holds/,
  },
  {
    name: 'missing weights (a layer the weights do not have)',
    file: 'missing.keras',
    bytes: () =>
      cifarWith((config) => {
        const conv = structuredClone(config.config.layers.find((layer) => layer['class_name'] === 'Conv2D')!);
        (conv['config'] as Json)['name'] = 'conv2d_added';
        config.config.layers.splice(2, 0, conv);
      }),
    says: /layer 'conv2d_added' \(Conv2D\) misses weights/,
  },
  {
    name: 'extra weights (a layer the config does not have)',
    file: 'extra.keras',
    bytes: () => cifarWith((config) => config.config.layers.splice(config.config.layers.findIndex((layer) => (layer['config'] as Json)['name'] === 'dense_1'), 1)),
    says: /weights hold layer 'dense_1', which the model config does not have/,
  },
  {
    name: 'an unknown layer class',
    file: 'custom.keras',
    bytes: () => cifarWith((config) => renamed(config.config.layers, 'conv2d_1', 'MyConv')),
    says: /layer 'conv2d_1' has class 'MyConv'.*tf\.serialization\.registerClass/,
  },
  {
    // Written as text: JSON.stringify would itself overflow the stack on this.
    name: 'a config nested 100000 deep',
    file: 'deep.keras',
    bytes: () => {
      const archive = ZipArchive.open(readFileSync(cifar), cifar);
      const config = archive.read('config.json', 1 << 20).toString('utf8').replace('"bias_constraint": null', `"bias_constraint": ${'['.repeat(100_000)}${']'.repeat(100_000)}`);
      return zipOf([
        { name: 'config.json', data: Buffer.from(config) },
        { name: 'model.weights.h5', data: archive.read('model.weights.h5', 1 << 30) },
      ]);
    },
    says: /the model config nests too deeply: refused|config\.json is not valid JSON/,
  },
  {
    // Before, read on as a model.json: "model.json is not valid JSON".
    name: 'an empty .h5',
    file: 'empty.h5',
    bytes: () => Buffer.alloc(0),
    says: /not a Keras model: the file is empty/,
  },
  {
    name: 'a .keras that is neither HDF5 nor a zip (a text file)',
    file: 'text.keras',
    bytes: () => Buffer.from('this is not a model\n'),
    says: /not a Keras model: it starts with neither HDF5's signature nor a zip header/,
  },
  {
    name: 'a Lambda layer',
    file: 'lambda.keras',
    bytes: () => cifarWith((config) => config.config.layers.splice(2, 0, { class_name: 'Lambda', config: { name: 'lambda_x', function: ['4wEAAAAAAAAA', null, null] } })),
    says: /layer 'lambda_x' is a Lambda layer: its function is Python bytecode/,
  },
];

describe('hostile Keras files', { skip }, () => {
  let folder: string;
  before(async () => {
    folder = await mkdtemp(join(tmpdir(), 'camviz-keras-hostile-'));
  });
  after(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  for (const hostile of CASES) {
    test(`${hostile.name}: one line naming the file, exit 1, nothing written`, async () => {
      const path = join(folder, hostile.file);
      writeFileSync(path, hostile.bytes());
      const out = join(folder, `out-${hostile.file}`);
      const run = await runCli(['gradcam', image, '--model', path, '-o', out], {
        cwd: folder,
        env: { ...process.env, NODE_OPTIONS: '--max-old-space-size=1024' },
        timeoutMs: 15_000,
      });
      assert.equal(run.code, 1, `exit code (signal ${run.signal}): ${run.stderr}`);
      const lines = run.stderr.trim().split('\n');
      assert.equal(lines.length, 1, run.stderr);
      assert.match(lines[0]!, /^camviz: /);
      assert.ok(lines[0]!.includes(path), `names the file: ${lines[0]}`);
      assert.match(lines[0]!, hostile.says);
      assert.deepEqual(await listFiles(out, { missingAsEmpty: true }), []);
    });
  }

  test('the library refuses the same way: a CamvizError naming the file', async () => {
    const path = join(folder, 'lambda-library.keras');
    writeFileSync(path, CASES.find((hostile) => hostile.file === 'lambda.keras')!.bytes());
    const error = await expectCamvizError(() => loadModel(path));
    assert.equal(error.file, path);
  });

  test('the format is told by the first bytes: an HDF5 named .keras and a zip named .h5 both load', async () => {
    const h5AsKeras = join(folder, 'really-h5.keras');
    const zipAsH5 = join(folder, 'really-zip.h5');
    copyFileSync(mnist, h5AsKeras);
    copyFileSync(cifar, zipAsH5);
    for (const [path, side] of [[h5AsKeras, 28], [zipAsH5, 32]] as const) {
      const model = await loadModel(path);
      try {
        assert.deepEqual(model.meta.inputSize, { width: side, height: side });
      } finally {
        model.dispose();
      }
    }
  });
});
