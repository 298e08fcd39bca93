/**
 * What the stop tests (scorecam-stop, long-work-stop) share: the model's
 * passes counted, so that what follows a stop is counted, not timed (and
 * that a refused request made none: class-beyond-units); the runner's
 * batches in flight in this thread; the maps on disk.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import type { InProcessExecutor } from '../../src/batch/pool.js';
import type { CamvizModel } from '../../src/model/load.js';
import type { BatchOutcome, InputImage } from '../../src/tasks/types.js';
import { noise } from './files.js';

/** The runner's batches in flight in this thread (InProcessExecutor.capacity). */
export const IN_FLIGHT = 3;

/** The calls that run the model: a forward pass, or a backward pass (with the forward it needs). */
const PASSES: ReadonlySet<PropertyKey> = new Set(['forward', 'backward']);

/** The model's executor, counting its passes (forward and backward); `onPass` hears each count, as the pass ends. */
export function countingPasses(model: Pick<CamvizModel, 'executor'>, onPass: (passes: number) => void = () => undefined): { passes(): number } {
  const original = model.executor.bind(model);
  let passes = 0;
  model.executor = async () => {
    const network = await original();
    return new Proxy(network, {
      get(target, key) {
        const value: unknown = Reflect.get(target, key);
        if (PASSES.has(key)) {
          return async (...args: unknown[]) => {
            const values: unknown = await (value as (...args: unknown[]) => Promise<unknown>).apply(target, args);
            onPass(++passes);
            return values;
          };
        }
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
  };
  return { passes: () => passes };
}

/** IN_FLIGHT small noise images (`img0.png`, ...) written in `folder`: one batch each. */
export async function inFlightImages(folder: string): Promise<InputImage[]> {
  await mkdir(folder, { recursive: true });
  const images: InputImage[] = [];
  for (let i = 0; i < IN_FLIGHT; i++) {
    const relative = `img${i}.png`;
    await sharp(noise(96, 80, i + 1), { raw: { width: 96, height: 80, channels: 3 } }).png().toFile(join(folder, relative));
    images.push({ path: join(folder, relative), relative });
  }
  return images;
}

/** `--batch-size 1` batches, all in flight at once as the runner keeps them. */
export function processAll(executor: InProcessExecutor, images: readonly InputImage[]): Promise<BatchOutcome[]> {
  return Promise.all(images.map((image) => executor.process([image])));
}

export async function pngsIn(folder: string): Promise<string[]> {
  return existsSync(folder) ? (await readdir(folder, { recursive: true })).filter((name) => name.endsWith('.png')) : [];
}
