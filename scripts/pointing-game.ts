/**
 * The pointing game on the embedded shapes model: freshly generated scenes
 * with known shape boxes; a map "points" at a shape when the maximum of the
 * map upsampled to the image (the `peak` camviz reports) lies inside that
 * shape's box. Single-shape scenes ask for the shape's class; two-shape
 * scenes ask for each class and count a hit only on its own shape.
 *
 *   node dist/scripts/pointing-game.js [--scenes 200] [--seed 7001] [--methods gradcam,cam]
 *
 * prints the table the README shows; test/pointing-game.test.ts runs it
 * smaller with thresholds.
 */
import { parseArgs } from 'node:util';
import { METHOD_NAMES } from '../src/cam/index.js';
import { explain } from '../src/explain.js';
import { useBackend } from '../src/engine/backend.js';
import { type LoadedImage, imageFromRgb } from '../src/image/image.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { hitRate, tallyPointing } from '../src/metrics/pointing.js';
import { type Scene, generateScene, mulberry32 } from './shapes-data.js';

export interface PointingResult {
  method: string;
  single: { hits: number; total: number };
  two: { hits: number; total: number };
}

export interface PointingOptions {
  scenes: number;
  seed: number;
  /** Side of the generated images (the model input is 64). */
  size: number;
}

export const DEFAULT_POINTING: PointingOptions = { scenes: 200, seed: 7001, size: 128 };

/** Scenes with one shape and scenes with two, reproducible from the seed. */
export async function pointingScenes(model: CamvizModel, options: PointingOptions): Promise<{ scene: Scene; image: LoadedImage }[][]> {
  const make = async (seed: number, twoShapeProbability: number): Promise<{ scene: Scene; image: LoadedImage }[]> => {
    const rng = mulberry32(seed);
    const scenes = Array.from({ length: options.scenes }, () => generateScene(rng, { size: options.size, twoShapeProbability }));
    return Promise.all(
      scenes.map(async (scene) => ({
        scene,
        image: await imageFromRgb(scene.rgb, scene.width, scene.height, { size: model.meta.inputSize }),
      })),
    );
  };
  return [await make(options.seed, 0), await make(options.seed + 1, 1)];
}

export async function pointingGame(model: CamvizModel, method: string, scenes: { scene: Scene; image: LoadedImage }[][]): Promise<PointingResult> {
  const [singles, pairs] = scenes as [{ scene: Scene; image: LoadedImage }[], { scene: Scene; image: LoadedImage }[]];
  const result: PointingResult = { method, single: { hits: 0, total: 0 }, two: { hits: 0, total: 0 } };
  for (const [group, tally] of [
    [singles, result.single],
    [pairs, result.two],
  ] as const) {
    for (const { scene, image } of group) {
      // Each shape's class, asked of its own scene.
      for (const shape of scene.shapes) {
        const explanation = (await explain(model, [image], { method, classes: [shape.classIndex] }))[0]?.[0];
        if (explanation === undefined) throw new Error(`${method}: no explanation for class ${shape.classIndex}`);
        tallyPointing(tally, explanation.picture.peak, [shape.box]);
      }
    }
  }
  return result;
}

const percent = (tally: { hits: number; total: number }): string => `${(100 * hitRate(tally)).toFixed(1)}% (${tally.hits}/${tally.total})`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      scenes: { type: 'string', default: String(DEFAULT_POINTING.scenes) },
      seed: { type: 'string', default: String(DEFAULT_POINTING.seed) },
      methods: { type: 'string', default: METHOD_NAMES.join(',') },
      backend: { type: 'string', default: 'wasm' },
    },
  });
  await useBackend(values.backend === 'cpu' ? 'cpu' : 'wasm');
  const model = await loadModel('shapes');
  const options = { ...DEFAULT_POINTING, scenes: Number(values.scenes), seed: Number(values.seed) };
  const scenes = await pointingScenes(model, options);
  console.log(`Pointing game, embedded shapes model, ${options.scenes} single-shape and ${options.scenes} two-shape scenes of ${options.size}x${options.size} (seed ${options.seed})\n`);
  console.log('| method | single shape | two shapes, each class on its own shape |');
  console.log('|---|---|---|');
  for (const method of values.methods!.split(',')) {
    const result = await pointingGame(model, method, scenes);
    console.log(`| ${method} | ${percent(result.single)} | ${percent(result.two)} |`);
  }
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) await main();
