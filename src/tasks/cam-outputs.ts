/**
 * What a CAM task writes for one explained class of one image, and the
 * record it makes of it: the map upsampled to the image, normalised,
 * coloured and blended, as `<stem>.<method>.<target>.png` (and the raw
 * map as `.npy` with --raw). Shared by the task that runs the methods
 * (cam.ts) and the planned run (planned-cam.ts), so that both name, draw
 * and record their outputs one way; no tfjs here.
 */
import type { TargetRecord } from '../cam/targets/spec.js';
import { targetFileSuffix } from '../cam/targets/spec.js';
import type { PreprocessName } from '../image/preprocess-names.js';
import { renderExplanation } from '../render/explanation.js';
import type { FeatureMap, GradientImage } from '../render/maps.js';
import { encodeNpy } from '../render/npy.js';
import { encodePhotoPng, encodePng } from '../render/png.js';
import { type DecodedInput, type OutputSet, elapsedSince, outputStem } from './common.js';
import type { CamResultRecord, CamTaskOptions } from './types.js';

/** One explained class of one image, as the outputs need it. */
export interface CamOutput {
  readonly classIndex: number;
  /** The target's record for this unit (the manifest's `target`; it names the files too). */
  readonly target: TargetRecord;
  readonly label: string | null;
  readonly score: number;
  readonly probability: number | null;
  /** The raw map; absent for guided backprop alone. */
  readonly map?: FeatureMap;
  /** The guided methods' gradient image. */
  readonly gradient?: GradientImage;
}

type OutputOptions = Pick<CamTaskOptions, 'outDir' | 'colormap' | 'alpha' | 'heatmapOnly' | 'pngCompression' | 'raw'>;

export class CamOutputWriter {
  private scratchBuffer = new Float32Array(0);

  constructor(
    private readonly options: OutputOptions,
    /** The canonical method name (file names and records). */
    private readonly method: string,
    private readonly preprocess: PreprocessName,
    /** The target layers' paths, joined by `+` (the records' `layer`). */
    private readonly layerLabel: string,
  ) {}

  /**
   * Draws and writes every output of `item` into `outputs`, in order, adding
   * the time it took to `timings`: a record each. The last picture may be
   * blended over the image's decoded pixels, which nothing reads afterwards.
   */
  async writeAll(item: DecodedInput, explained: readonly CamOutput[], outputs: OutputSet, timings: { render: number; encode: number }): Promise<CamResultRecord[]> {
    const records: CamResultRecord[] = [];
    for (const [i, output] of explained.entries()) records.push(await this.write(item, output, outputs, timings, i === explained.length - 1));
    return records;
  }

  /** One output of `writeAll`; `lastOfImage`: its picture may be blended over the image's decoded pixels. */
  private async write(item: DecodedInput, output: CamOutput, outputs: OutputSet, timings: { render: number; encode: number }, lastOfImage: boolean): Promise<CamResultRecord> {
    const renderStarted = performance.now();
    const { classIndex, map, gradient } = output;
    const stem = `${outputStem(this.options.outDir, item.input.relative)}.${this.method}.${targetFileSuffix(output.target)}`;
    const { rgb, peak } = renderExplanation(map, gradient, item.image, {
      colormap: this.options.colormap,
      alpha: this.options.alpha,
      heatmapOnly: this.options.heatmapOnly,
      preprocess: this.preprocess,
      scratch: this.scratch(item.image.original.width * item.image.original.height),
      blendIntoOriginal: lastOfImage,
    });
    const { original } = item.image;
    timings.render += elapsedSince(renderStarted);
    const encodeStarted = performance.now();
    // The heatmap alone is a smooth synthetic picture, which libvips' search for repeats compresses far better.
    const encode = this.options.heatmapOnly ? encodePng : encodePhotoPng;
    const png = await outputs.write(`${stem}.png`, await encode(rgb, original.width, original.height, { compressionLevel: this.options.pngCompression }));
    // The guided methods' raw output is the gradient image they show.
    const npy = this.options.raw ? await outputs.write(`${stem}.npy`, rawArray(output)) : undefined;
    timings.encode += elapsedSince(encodeStarted);
    return {
      input: item.input.path,
      method: this.method,
      layer: map === undefined ? 'input' : this.layerLabel,
      class: { index: classIndex, label: output.label },
      target: output.target,
      score: output.score,
      probability: output.probability,
      peak: { x: peak.x, y: peak.y },
      png,
      ...(npy === undefined ? {} : { npy }),
    };
  }

  /** The upsampling buffer, grown as needed; rendering is synchronous, so one serves every image. */
  private scratch(size: number): Float32Array {
    if (this.scratchBuffer.length < size) this.scratchBuffer = new Float32Array(size);
    return this.scratchBuffer.subarray(0, size);
  }
}

/** The predictions of one image's records: each explained class with its probability. */
export function predictionsOf(records: readonly CamResultRecord[]): { index: number; label: string | null; probability: number | null }[] {
  return records.map((record) => ({ index: record.class.index, label: record.class.label, probability: record.probability }));
}

/** What --raw writes: the gradient image [H, W, 3] of the guided methods, else the map [h, w]. */
function rawArray({ map, gradient }: Pick<CamOutput, 'map' | 'gradient'>): Buffer {
  if (gradient !== undefined) return encodeNpy(gradient.data, [gradient.height, gradient.width, 3]);
  return encodeNpy(map!.data, [map!.height, map!.width]);
}
