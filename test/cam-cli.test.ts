/**
 * `camviz gradcam` / `camviz cam` as users run them (`node bin/camviz.js`
 * in a child process, wasm backend), checked against independent work done
 * here: the .npy files parsed by hand and compared with the library's raw
 * maps, the PNGs decoded with sharp and compared with the map upsampled and
 * coloured by hand, the JSON against its documented shape.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';

import { type Explanation, explain } from '../src/explain.js';
import { useBackend } from '../src/engine/backend.js';
import { type LoadedImage, loadImage } from '../src/image/image.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { colormapLut } from '../src/render/colormap.js';
import { imagePath, mobilenetDir, repoRoot, skipWithoutSharedAssets } from './helpers/assets.js';
import { type CliRun, runCli } from './helpers/cli.js';
import { assertUsageError } from './helpers/usage-error.js';
import { maxAbsDifference, upsample } from './helpers/numeric.js';
import { readNpy } from './helpers/npy.js';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-cam-cli-'));
after(() => rm(workDir, { recursive: true, force: true }));

/** The CLI on MobileNet from the shared assets, wasm, one worker, quiet. */
function camviz(...args: string[]): Promise<CliRun> {
  const env = { ...process.env, CAMVIZ_BACKEND: 'wasm', CAMVIZ_CACHE: join(workDir, 'cache') };
  const common = ['--model', mobilenetDir, '--backend', 'wasm', '-j', '1', '-q'];
  return runCli([...args, ...common], { cwd: repoRoot, env, timeoutMs: 180_000 });
}

/** One entry of `--json`, as documented in `camviz cam --help`. */
interface CamRecord {
  input: string;
  method: string;
  layer: string;
  class: { index: number; label: string | null };
  target: { kind: string; class?: number };
  score: number;
  probability: number;
  peak: { x: number; y: number };
  png: string;
  npy?: string;
}

function parseRecords(run: CliRun): CamRecord[] {
  assert.equal(run.code, 0, `exit ${run.code}: ${run.stderr}`);
  const records = JSON.parse(run.stdout) as CamRecord[];
  assert.ok(Array.isArray(records));
  return records;
}

async function readRgb(path: string): Promise<{ width: number; height: number; rgb: Uint8Array }> {
  const { data, info } = await sharp(path).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.channels, 3);
  return { width: info.width, height: info.height, rgb: new Uint8Array(data) };
}

/** The reference bilinear upsampling (float64), then min-max normalised. */
function upsampledNormalised(map: ArrayLike<number>, width: number, height: number, outWidth: number, outHeight: number): Float64Array {
  const out = upsample(map, width, height, outWidth, outHeight);
  let min = Infinity;
  let max = -Infinity;
  for (const value of out) {
    min = Math.min(min, value);
    max = Math.max(max, value);
  }
  return out.map((value) => (value - min) / (max - min));
}

describe('camviz gradcam / cam on both.png (shared assets, wasm)', { skip: skipWithoutSharedAssets }, () => {
  const both = imagePath('both.png');
  let model: CamvizModel;
  let image: LoadedImage;
  const library = async (method: string, classIndex: number): Promise<Explanation> => (await explain(model, [image], { method, classes: [classIndex] }))[0]![0]!;
  const outDir = (name: string): string => join(workDir, name);
  const at = (path: string): string => resolve(repoRoot, path);

  before(async () => {
    await useBackend('wasm');
    model = await loadModel(mobilenetDir);
    image = await loadImage(both, { size: model.meta.inputSize });
  });
  after(() => model?.dispose());

  test('--class 243,281 --json --raw: the documented JSON, both PNGs and .npy files, the library raw maps, peaks on the hottest pixels', async () => {
    const out = outDir('raw');
    const records = parseRecords(await camviz('gradcam', both, '--class', '243,281', '--json', '--raw', '-o', out));
    assert.equal(records.length, 2);
    const original = await readRgb(both);
    const lut = colormapLut('jet');
    for (const [record, expected] of records.map((r, i) => [r, [{ index: 243, label: 'bull mastiff' }, { index: 281, label: 'tabby, tabby cat' }][i]!] as const)) {
      assert.deepEqual(Object.keys(record).sort(), ['class', 'input', 'layer', 'method', 'npy', 'peak', 'png', 'probability', 'score', 'target']);
      assert.deepEqual(Object.keys(record.class).sort(), ['index', 'label']);
      assert.deepEqual(record.target, { kind: 'class', class: expected.index });
      assert.deepEqual(Object.keys(record.peak).sort(), ['x', 'y']);
      assert.equal(record.input, both);
      assert.equal(record.method, 'gradcam');
      assert.equal(record.layer, 'conv_pw_13_relu');
      assert.deepEqual(record.class, expected);
      // The reference scores of ../shared/tools/torch_ref (README) and the README's probability of 243.
      assert.ok(Math.abs(record.score - (expected.index === 243 ? 16.938 : 12.2564)) < 1e-3, `score ${record.score}`);
      if (expected.index === 243) assert.ok(Math.abs(record.probability - 0.813) < 1e-3, `probability ${record.probability}`);
      assert.equal(at(record.png), join(out, `both.gradcam.${expected.index}.png`));
      assert.equal(at(record.npy!), join(out, `both.gradcam.${expected.index}.npy`));

      const npy = readNpy(at(record.npy!));
      assert.deepEqual(npy.shape, [7, 7]);
      const raw = (await library('gradcam', expected.index)).map!;
      assert.ok(maxAbsDifference(npy.data, raw.data) <= 1e-6 * Math.max(...raw.data), 'the .npy is the library raw map');

      // The peak: the maximum of the map upsampled here, give or take the
      // tie between the two pixels either side of a cell centre.
      const heat = upsampledNormalised(npy.data, 7, 7, 224, 224);
      let best = 0;
      for (let i = 1; i < heat.length; i++) if (heat[i]! > heat[best]!) best = i;
      assert.ok(Math.abs((best % 224) - record.peak.x) <= 1 && Math.abs(Math.floor(best / 224) - record.peak.y) <= 1, `peak ${JSON.stringify(record.peak)} vs ${best % 224},${Math.floor(best / 224)}`);
      assert.ok(heat[record.peak.y * 224 + record.peak.x]! > 0.999);
      if (expected.index === 243) assert.ok(record.peak.y < 112, 'the dog is in the upper half');
      else assert.ok(record.peak.y >= 112, 'the cat is in the lower half');

      // In the PNG, the peak pixel is the photo half-blended with the colormap's hottest colour.
      const png = await readRgb(at(record.png));
      assert.deepEqual([png.width, png.height], [224, 224]);
      const p = (record.peak.y * 224 + record.peak.x) * 3;
      for (let c = 0; c < 3; c++) {
        const blended = 0.5 * original.rgb[p + c]! + 0.5 * lut[255 * 3 + c]!;
        assert.ok(Math.abs(png.rgb[p + c]! - blended) <= 1, `peak pixel channel ${c}: ${png.rgb[p + c]} vs ${blended}`);
      }
      // And the whole PNG is that blend of the hand-upsampled heat, away from colour-index rounding ties.
      let mismatched = 0;
      for (let i = 0; i < heat.length; i++) {
        const scaled = heat[i]! * 255;
        if (Math.abs(scaled - Math.floor(scaled) - 0.5) < 1e-3) continue;
        const entry = Math.round(scaled) * 3;
        for (let c = 0; c < 3; c++) {
          if (Math.abs(png.rgb[i * 3 + c]! - (0.5 * original.rgb[i * 3 + c]! + 0.5 * lut[entry + c]!)) > 0.5) mismatched++;
        }
      }
      assert.equal(mismatched, 0, `${mismatched} PNG channels are not the blend of the photo and the coloured heat`);
    }
  });

  test('--top-k 2: the two most probable classes, 243 then 282, each with its PNG', async () => {
    const out = outDir('top');
    const records = parseRecords(await camviz('gradcam', both, '--top-k', '2', '--json', '-o', out));
    assert.deepEqual(records.map((r) => r.class.index), [243, 282]);
    assert.ok(records[0]!.probability > records[1]!.probability);
    assert.ok(Math.abs(records[1]!.probability - 0.1235) < 1e-3, `282 probability ${records[1]!.probability}`);
    for (const record of records) {
      assert.equal(record.npy, undefined, 'no .npy without --raw');
      assert.ok(existsSync(at(record.png)));
    }
    assert.deepEqual(readdirSync(out).filter((f) => f.endsWith('.png')).sort(), ['both.gradcam.243.png', 'both.gradcam.282.png']);
  });

  test('--class "tabby cat" is class 281', async () => {
    const records = parseRecords(await camviz('gradcam', both, '--class', 'tabby cat', '--json', '-o', outDir('label')));
    assert.equal(records.length, 1);
    assert.deepEqual(records[0]!.class, { index: 281, label: 'tabby, tabby cat' });
    assert.ok(records[0]!.peak.y >= 112);
  });

  test('--heatmap-only: every pixel is the jet colour of the normalised, upsampled raw map', async () => {
    const out = outDir('heat');
    const [record] = parseRecords(await camviz('gradcam', both, '--class', '281', '--heatmap-only', '--raw', '--json', '-o', out));
    const npy = readNpy(at(record!.npy!));
    const heat = upsampledNormalised(npy.data, 7, 7, 224, 224);
    const png = await readRgb(at(record!.png));
    const lut = colormapLut('jet');
    let compared = 0;
    for (let i = 0; i < heat.length; i++) {
      const scaled = heat[i]! * 255;
      // Values within 1e-3 of a rounding tie may fall either way in float32.
      if (Math.abs(scaled - Math.floor(scaled) - 0.5) < 1e-3) continue;
      const entry = Math.round(scaled) * 3;
      assert.deepEqual([png.rgb[i * 3], png.rgb[i * 3 + 1], png.rgb[i * 3 + 2]], [lut[entry], lut[entry + 1], lut[entry + 2]], `pixel ${i % 224},${Math.floor(i / 224)}`);
      compared++;
    }
    assert.ok(compared > 0.99 * heat.length, `${compared} pixels compared`);
  });

  test('--method gradcam++ is Grad-CAM++ (gradcampp in names), the library map', async () => {
    const out = outDir('plusplus');
    const [record] = parseRecords(await camviz('cam', both, '--method', 'gradcam++', '--class', '281', '--raw', '--json', '-o', out));
    assert.equal(record!.method, 'gradcampp');
    assert.equal(at(record!.png), join(out, 'both.gradcampp.281.png'));
    const raw = (await library('gradcampp', 281)).map!;
    assert.ok(maxAbsDifference(readNpy(at(record!.npy!)).data, raw.data) <= 1e-6 * Math.max(...raw.data));
    // Not the Grad-CAM map under another name.
    assert.ok(maxAbsDifference(raw.data, (await library('gradcam', 281)).map!.data) > 1);
  });

  test('camviz cam --method guidedgradcam writes the library guided Grad-CAM picture', async () => {
    const out = outDir('guided');
    const [record] = parseRecords(await camviz('cam', both, '--method', 'guidedgradcam', '--class', '243', '--json', '-o', out));
    assert.equal(record!.method, 'guidedgradcam');
    assert.equal(record!.class.index, 243);
    assert.equal(at(record!.png), join(out, 'both.guidedgradcam.243.png'));
    const png = await readRgb(at(record!.png));
    const picture = (await library('guidedgradcam', 243)).picture;
    assert.equal(maxAbsDifference(png.rgb, picture.rgb), 0);
    assert.deepEqual(record!.peak, picture.peak);
    // Weighted by Grad-CAM: not the plain guided backprop picture.
    assert.ok(maxAbsDifference(png.rgb, (await library('guidedbackprop', 243)).picture.rgb) > 50);
  });

  test('unknown method, layer or class: exit 2 with one clear line, nothing written', async () => {
    const out = outDir('errors');
    assertUsageError(await camviz('cam', both, '--method', 'nope', '-o', out), /unknown method 'nope'.*gradcam/);
    assertUsageError(await camviz('gradcam', both, '--layer', 'conv_pw_99_relu', '-o', out), /layer 'conv_pw_99_relu' is not in the model/);
    assertUsageError(await camviz('gradcam', both, '--class', 'zebrafish-monster', '-o', out), /class 'zebrafish-monster' matches no label/);
    assertUsageError(await camviz('gradcam', both, '--class', '1000', '-o', out), /class 1000 is out of range/);
    assert.ok(!existsSync(out) || readdirSync(out).every((name) => !name.endsWith('.png')), 'no PNG written');
  });
});
