/**
 * The CAM task: per batch of images, the maps of every requested class
 * (one forward pass, one backward pass per class rank), each upsampled to
 * the original image, normalised, coloured, blended and written as
 * `<stem>.<method>.<class>.png` (and `.npy` with --raw).
 */
import { UsageError } from '../errors.js';
import {
  type CamRequest,
  type CamResult,
  type ClassRequest,
  type GuidedResult,
  augmentedCompute,
  canonicalMethod,
  createMethod,
  deprocessGradient,
  guidedBackprop,
  guidedGradCam,
  isGuidedMethod,
} from '../cam/index.js';
import type { GraphNode } from '../model/graph.js';
import type { ImageGeometry } from '../model/geometry.js';
import { resolveClass } from '../model/labels.js';
import { defaultTarget, isCamTarget, resolveLayer } from '../model/layers.js';
import { inputTensor } from '../model/predict.js';
import { argmax, minMaxNormalize } from '../render/normalize.js';
import { encodeNpy } from '../render/npy.js';
import { heatmapImage, overlayHeatmap } from '../render/overlay.js';
import { encodePng } from '../render/png.js';
import { mapToOriginal, resizeBilinear } from '../render/resize.js';
import {
  type DecodedInput,
  OutputSet,
  type TaskContext,
  decodeBatch,
  elapsedSince,
  errorRecord,
  outputStem,
} from './common.js';
import type { BatchOutcome, CamResultRecord, CamTaskOptions, InputImage, InputRecord } from './types.js';

export class CamTask {
  readonly method: string;
  readonly layers: GraphNode[];
  private readonly classRequest: ClassRequest;

  constructor(
    private readonly context: TaskContext,
    private readonly options: CamTaskOptions,
  ) {
    this.method = canonicalMethod(options.method);
    this.layers = resolveTargets(context, options.layers);
    this.classRequest = resolveClassRequest(context, options);
  }

  /** What the layers option resolved to, for the manifest. */
  get layerLabel(): string {
    return this.layers.map((node) => node.path).join('+');
  }

  async process(batch: readonly InputImage[]): Promise<BatchOutcome> {
    const { decoded, failed } = await decodeBatch(batch, this.context, this.options);
    if (decoded.length === 0) return { records: failed, summaries: [] };
    let computed: { results: CamResult[][] | undefined; guided: GuidedResult[][] | undefined; forward: number; backward: number };
    try {
      computed = this.compute(decoded);
    } catch (error) {
      return { records: [...failed, ...decoded.map((item) => errorRecord(item.input, error, item.timings))], summaries: [] };
    }
    const perImageForward = computed.forward / decoded.length;
    const perImageBackward = computed.backward / decoded.length;
    const records = await Promise.all(
      decoded.map((item, i) =>
        this.writeOutputs(item, computed.results?.[i], computed.guided?.[i], { forward: perImageForward, backward: perImageBackward }),
      ),
    );
    return { records: orderLike(batch, [...failed, ...records]), summaries: [] };
  }

  private compute(decoded: readonly DecodedInput[]): {
    results: CamResult[][] | undefined;
    guided: GuidedResult[][] | undefined;
    forward: number;
    backward: number;
  } {
    const network = this.context.model.network();
    const input = inputTensor(this.context.model, decoded.map((item) => item.image.input));
    try {
      const started = performance.now();
      let guided: GuidedResult[][] | undefined;
      let results: CamResult[][] | undefined;
      if (this.method !== 'guidedbackprop') {
        const request: CamRequest = {
          input,
          layers: this.layers,
          classes: this.classRequest,
          score: this.options.score,
          eigenSmooth: this.options.eigenSmooth,
        };
        const camMethod = createMethod(this.method === 'guidedgradcam' ? 'gradcam' : this.method);
        results = this.options.augSmooth ? augmentedCompute(camMethod, network, request) : camMethod.compute(network, request);
      }
      if (isGuidedMethod(this.method)) {
        // Guided Grad-CAM explains the classes the Grad-CAM pass chose.
        const classes: ClassRequest = results ? { kind: 'perImage', classes: results.map((perImage) => perImage.map((result) => result.classIndex)) } : this.classRequest;
        guided = guidedBackprop(network, input, classes, this.options.score);
      }
      const total = elapsedSince(started);
      const split = network.lastBackwardTimings;
      const backward = Math.min(total, split.backward);
      return { results, guided, forward: total - backward, backward };
    } finally {
      input.dispose();
    }
  }

  private async writeOutputs(
    item: DecodedInput,
    results: CamResult[] | undefined,
    guided: GuidedResult[] | undefined,
    model: { forward: number; backward: number },
  ): Promise<InputRecord> {
    const outputs = new OutputSet(this.options.outDir);
    const timings = { ...item.timings, ...model, render: 0, encode: 0 };
    try {
      const count = results?.length ?? guided?.length ?? 0;
      const records: CamResultRecord[] = [];
      for (let rank = 0; rank < count; rank++) {
        records.push(await this.writeOne(item, results?.[rank], guided?.[rank], outputs, timings));
      }
      const classes = records.map((record) => record.class);
      return {
        input: item.input.path,
        relative: item.input.relative,
        status: 'ok',
        outputs: [...outputs.written],
        predictions: classes.map((entry, i) => ({ index: entry.index, label: entry.label, probability: records[i]!.probability })),
        results: records,
        timings: { ...timings, total: Object.values(timings).reduce((sum, value) => sum + value, 0) },
      };
    } catch (error) {
      await outputs.discard();
      return errorRecord(item.input, error, timings);
    }
  }

  private async writeOne(
    item: DecodedInput,
    result: CamResult | undefined,
    guided: GuidedResult | undefined,
    outputs: OutputSet,
    timings: { render: number; encode: number },
  ): Promise<CamResultRecord> {
    const renderStarted = performance.now();
    const { original, geometry } = item.image;
    const classIndex = result?.classIndex ?? guided!.classIndex;
    const stem = `${outputStem(this.options.outDir, item.input.relative)}.${this.method}.${classIndex}`;
    let heat: Float32Array | undefined;
    let rgb: Uint8Array;
    if (result !== undefined) {
      heat = minMaxNormalize(mapToOriginal(result.map.data, result.map.width, result.map.height, geometry));
    }
    if (guided !== undefined) {
      const gradient = result === undefined ? guided.gradient : guidedGradCam(guided, camAtInput(result, geometry));
      rgb = gradientToOriginal(displayOrder(gradient, this.context.model.meta.preprocess), guided.width, guided.height, geometry);
    } else if (this.options.heatmapOnly) {
      rgb = heatmapImage(heat!, this.options.colormap);
    } else {
      rgb = overlayHeatmap(original.rgb, heat!, original.width, original.height, { alpha: this.options.alpha, colormap: this.options.colormap });
    }
    const peak = heat === undefined ? gradientPeak(guided!, geometry) : argmax(heat, original.width)!;
    timings.render += elapsedSince(renderStarted);
    const encodeStarted = performance.now();
    const png = await outputs.write(`${stem}.png`, await encodePng(rgb, original.width, original.height, { compressionLevel: this.options.pngCompression }));
    let npy: string | undefined;
    if (this.options.raw) {
      npy =
        result !== undefined
          ? await outputs.write(`${stem}.npy`, encodeNpy(result.map.data, [result.map.height, result.map.width]))
          : await outputs.write(`${stem}.npy`, encodeNpy(guided!.gradient, [guided!.height, guided!.width, 3]));
    }
    timings.encode += elapsedSince(encodeStarted);
    const labels = this.context.model.meta.labels;
    return {
      input: item.input.path,
      method: this.method,
      layer: guided !== undefined && result === undefined ? 'input' : this.layerLabel,
      class: { index: classIndex, label: labels?.[classIndex] ?? null },
      score: result?.score ?? guided!.score,
      probability: result?.probability ?? guided!.probability,
      peak: { x: peak.x, y: peak.y },
      png,
      ...(npy === undefined ? {} : { npy }),
    };
  }
}

/** The normalised map at model-input resolution (for Guided Grad-CAM). */
function camAtInput(result: CamResult, geometry: ImageGeometry): Float32Array {
  return minMaxNormalize(resizeBilinear(result.map.data, result.map.width, result.map.height, geometry.input.width, geometry.input.height));
}

/** Input-space gradients in RGB order (caffe preprocessing feeds BGR). */
function displayOrder(gradient: Float32Array, preprocess: string): Float32Array {
  if (preprocess !== 'caffe') return gradient;
  const out = new Float32Array(gradient.length);
  for (let i = 0; i < gradient.length; i += 3) {
    out[i] = gradient[i + 2]!;
    out[i + 1] = gradient[i + 1]!;
    out[i + 2] = gradient[i]!;
  }
  return out;
}

/** A deprocessed gradient image resampled onto the original image's pixels. */
function gradientToOriginal(gradient: Float32Array, width: number, height: number, geometry: ImageGeometry): Uint8Array {
  const bytes = deprocessGradient(gradient);
  const pixels = geometry.original.width * geometry.original.height;
  const out = new Uint8Array(pixels * 3);
  const channel = new Float32Array(width * height);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < channel.length; i++) channel[i] = bytes[i * 3 + c]!;
    const resampled = mapToOriginal(channel, width, height, geometry);
    for (let i = 0; i < pixels; i++) out[i * 3 + c] = Math.round(Math.min(255, Math.max(0, resampled[i]!)));
  }
  return out;
}

/** Where the guided gradient is strongest, in original pixels. */
function gradientPeak(guided: GuidedResult, geometry: ImageGeometry): { x: number; y: number } {
  const magnitude = new Float32Array(guided.width * guided.height);
  for (let i = 0; i < magnitude.length; i++) {
    magnitude[i] = Math.hypot(guided.gradient[i * 3]!, guided.gradient[i * 3 + 1]!, guided.gradient[i * 3 + 2]!);
  }
  return argmax(mapToOriginal(magnitude, guided.width, guided.height, geometry), geometry.original.width)!;
}

function resolveTargets(context: TaskContext, names: readonly string[]): GraphNode[] {
  const network = context.model.network();
  if (names.length === 0) {
    const target = defaultTarget(network, context.model.meta.targetLayer);
    if (target === undefined) throw new UsageError('the model has no layer with a spatial output to explain (see camviz layers)');
    return [target];
  }
  return names.map((name) => resolveLayer(network, name, isCamTarget, 'a CAM target (4-D output with spatial size above 1)'));
}

function resolveClassRequest(context: TaskContext, options: CamTaskOptions): ClassRequest {
  if (options.classes.length === 0) return { kind: 'top', k: options.topK };
  const classCount = classCountOf(context);
  return { kind: 'explicit', classes: options.classes.map((spec) => resolveClass(spec, context.model.meta.labels, classCount)) };
}

/** The number of classes: the size of the model output. */
export function classCountOf(context: TaskContext): number {
  const network = context.model.network();
  const shape = network.graph.producer(network.score.outputKey)?.outputShapes[0] ?? [];
  const dims = shape.slice(1);
  if (dims.some((dim) => dim === null)) return context.model.meta.labels?.length ?? Number.MAX_SAFE_INTEGER;
  return dims.reduce<number>((product, dim) => product * (dim as number), 1);
}

/** Records in the order of the batch. */
function orderLike(batch: readonly InputImage[], records: InputRecord[]): InputRecord[] {
  const byPath = new Map(records.map((record) => [`${record.relative}\u0000${record.input}`, record]));
  return batch.map((input) => byPath.get(`${input.relative}\u0000${input.path}`)!);
}
