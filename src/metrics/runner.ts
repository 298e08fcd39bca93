/**
 * The faithfulness metrics of a batch of explanations: for each map (and a
 * seeded random map of the same size, the baseline a metric means
 * something against), the requested metrics' perturbed images, run through
 * the executor's forward pass in batches of METRIC_BATCH (forward passes
 * only, so any engine that implements Executor serves them), and their
 * class probabilities turned into values.
 */
import * as tf from '../engine/tf.js';
import type { ClassExplanation, ExplainBatch } from '../cam/explain.js';
import type { Executor } from '../executor/executor.js';
import { disposeValues } from '../executor/network.js';
import type { FeatureMap } from '../render/maps.js';
import { finiteRange } from '../render/normalize.js';
import type { CamvizModel } from '../model/load.js';
import { confidenceChange } from './confidence.js';
import { deletion } from './deletion.js';
import { blurImage, insertion } from './insertion.js';
import { METRIC_NAMES, METRIC_STEPS, type MetricValues, type MetricsOptions, type MetricsRecord, isMetricName } from './names.js';
import { UsageError } from '../util/errors.js';
import { seeStop } from '../util/see-stop.js';
import { seedOf, uniformMap } from './random.js';
import { road } from './road.js';
import { inputSaliency, relevanceOrder } from './saliency.js';
import type { ImageWriter, PreprocessedImage, Measurement, ReferenceProbabilities } from './types.js';

/** Perturbed images per forward pass. */
export const METRIC_BATCH = 20;


/**
 * The class probabilities [images][classes] of model inputs built on
 * demand, METRIC_BATCH at a time. Once `signal` is aborted no pass starts:
 * the call rejects with its reason (a curve's hundreds of images ran to
 * their end after a stop).
 */
export async function perturbedProbabilities(executor: Executor, images: readonly ImageWriter[], shape: readonly [number, number, number], signal?: AbortSignal): Promise<Float32Array[]> {
  const rows: Float32Array[] = [];
  const size = shape[0] * shape[1] * shape[2];
  for (let start = 0; start < images.length; start += METRIC_BATCH) {
    await seeStop(signal);
    const chunk = images.slice(start, start + METRIC_BATCH);
    const data = new Float32Array(chunk.length * size);
    chunk.forEach((write, i) => write(data.subarray(i * size, (i + 1) * size)));
    const input = tf.tensor4d(data, [chunk.length, ...shape]);
    try {
      const values = await executor.forward(input);
      try {
        const classes = values.probabilities.shape[1];
        const probabilities = values.probabilities.dataSync() as Float32Array;
        for (let i = 0; i < chunk.length; i++) rows.push(probabilities.slice(i * classes, (i + 1) * classes));
      } finally {
        disposeValues(values);
      }
    } finally {
      input.dispose();
    }
  }
  return rows;
}

export interface MetricsBatch {
  /** The preprocessed batch [B, H, W, C] the explanations were computed on. */
  input: tf.Tensor4D;
  /** [image][rank], as explainBatch returns them; each must have a map. */
  explanations: readonly (readonly ClassExplanation[])[];
  /** Per image, the seed of its random map and imputation noise (e.g. from its relative path: seedOf). */
  seeds: readonly number[];
  /** Aborting ends the measuring between its forward passes: the call then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** [image][rank]: each explanation's metrics and its random baseline's. */
export async function measureExplanations(executor: Executor, batch: MetricsBatch, options: MetricsOptions): Promise<MetricsRecord[][]> {
  checkMetricsCall(batch, options);
  const [count, height, width, channels] = batch.input.shape;
  const data = batch.input.dataSync() as Float32Array;
  const size = height * width * channels;
  const images: PreprocessedImage[] = Array.from({ length: count }, (_, i) => ({ pixels: data.slice(i * size, (i + 1) * size), width, height, channels }));
  const blurred = images.map((image) => (options.names.includes('insertion') ? blurImage(image) : image.pixels));
  const references = await referenceProbabilities(executor, images, blurred, options, batch.signal);
  const measured = batch.explanations.map((perRank, image) =>
    perRank.map((explanation) => {
      if (explanation.map === undefined) throw new Error(`class ${explanation.classIndex} has no map to measure`);
      const randomMap: FeatureMap = { width: explanation.map.width, height: explanation.map.height, data: uniformMap(explanation.map.width, explanation.map.height, batch.seeds[image]!) };
      const seed = `${batch.seeds[image]}:${explanation.classIndex}`;
      const context = { image: images[image]!, blurred: blurred[image]!, references: references(image, explanation.classIndex), options };
      return { map: measurements(explanation.map, `${seed}:map`, context), random: measurements(randomMap, `${seed}:random`, context) };
    }),
  );
  const all = measured.flatMap((perRank) => perRank.flatMap(({ map, random }) => [...map, ...random]));
  const rows = await perturbedProbabilities(executor, all.flatMap((measurement) => measurement.images), [height, width, channels], batch.signal);
  // Rows come back in the order the images were listed: image, rank, the map's measurements, then the random map's.
  let next = 0;
  const finish = (list: readonly Measurement[], classIndex: number): MetricValues =>
    Object.assign({}, ...list.map((measurement) => measurement.finish(measurement.images.map(() => rows[next++]![classIndex]!)))) as MetricValues;
  return measured.map((perRank, image) =>
    perRank.map(({ map, random }, rank) => {
      const explanation = batch.explanations[image]![rank]!;
      const values = { ...finish(map, explanation.classIndex), random: finish(random, explanation.classIndex) };
      return isConstant(explanation.map!) ? { ...values, constantMap: true as const } : values;
    }),
  );
}

/** Whether the map ranks no cell above another: constant over its finite cells, or none finite. */
function isConstant(map: FeatureMap): boolean {
  const range = finiteRange(map.data);
  return range === null || range.min === range.max;
}

/**
 * What the command line checks of its flags, checked for library callers:
 * steps of 0 or 2.5 gave curves of other lengths unsaid, an unknown name a
 * TypeError, a missing seed the seed "undefined", and a class beyond the
 * model's values of null.
 */
function checkMetricsCall(batch: MetricsBatch, options: MetricsOptions): void {
  const { steps, names } = options;
  if (!(Number.isInteger(steps) && steps >= METRIC_STEPS.min && steps <= METRIC_STEPS.max)) {
    throw new UsageError(`metric steps ${steps} must be a whole number from ${METRIC_STEPS.min} to ${METRIC_STEPS.max}`);
  }
  const unknown = names.find((name) => !isMetricName(name));
  if (unknown !== undefined) throw new UsageError(`unknown metric '${String(unknown)}': choose from ${METRIC_NAMES.join(', ')}`);
  const images = batch.input.shape[0];
  if (batch.seeds.length !== images || batch.explanations.length !== images) {
    throw new UsageError(`the batch holds ${images} image${images === 1 ? '' : 's'}, with ${batch.explanations.length} lists of explanations and ${batch.seeds.length} seeds: give one of each per image`);
  }
}

/**
 * The class probabilities of the images every curve of an image starts or
 * ends at (the image, all zeros, blurred), by image and class: one forward
 * pass serves all the image's classes and maps.
 */
async function referenceProbabilities(
  executor: Executor,
  images: readonly PreprocessedImage[],
  blurred: readonly Float32Array[],
  options: MetricsOptions,
  signal: AbortSignal | undefined,
): Promise<(image: number, classIndex: number) => ReferenceProbabilities> {
  const deletion = options.names.includes('deletion');
  const insertion = options.names.includes('insertion');
  const first = images[0];
  if (first === undefined) return () => ({ original: Number.NaN, zeros: Number.NaN, blurred: Number.NaN });
  const rows = await perturbedProbabilities(
    executor,
    images.flatMap((image, i): ImageWriter[] => [
      (out) => out.set(image.pixels),
      ...(deletion ? [(out: Float32Array) => out.fill(0)] : []),
      ...(insertion ? [(out: Float32Array) => out.set(blurred[i]!)] : []),
    ]),
    [first.height, first.width, first.channels],
    signal,
  );
  const perImage = 1 + (deletion ? 1 : 0) + (insertion ? 1 : 0);
  return (image, classIndex) => {
    const classes = rows[0]?.length ?? 0;
    if (!(classIndex < classes)) throw new UsageError(`class ${classIndex} is out of range: the model gives ${classes} probabilities`);
    const [original, ...ends] = rows.slice(image * perImage, (image + 1) * perImage).map((row) => row[classIndex]!);
    return { original: original!, zeros: deletion ? ends.shift()! : Number.NaN, blurred: insertion ? ends.shift()! : Number.NaN };
  };
}

interface MapContext {
  image: PreprocessedImage;
  blurred: Float32Array;
  references: ReferenceProbabilities;
  options: MetricsOptions;
}

/** The requested metrics of one map, in METRIC_NAMES order. */
function measurements(map: FeatureMap, seed: string, { image, blurred, references, options }: MapContext): Measurement[] {
  const saliency = inputSaliency(map, image.width, image.height);
  const needsOrder = options.names.includes('deletion') || options.names.includes('insertion');
  const order = needsOrder ? relevanceOrder(saliency) : new Int32Array(0);
  return options.names.map((name) => {
    switch (name) {
      case 'confidence':
        return confidenceChange(image, saliency, references.original);
      case 'deletion':
        return deletion(image, order, options.steps, references);
      case 'insertion':
        return insertion(image, blurred, order, options.steps, references);
      case 'road':
        return road(image, saliency, seedOf(seed), references.original);
    }
  });
}

/** An explanation with its metrics, as the cam task records it. */
export type MeasuredExplanation = ClassExplanation & { metrics?: MetricsRecord };

/**
 * A cam task's batch with each explanation's metrics; their time counts as
 * forward time (they are forward passes). `names` are the inputs' relative
 * paths, whose hashes seed the random maps, so that a run's values do not
 * depend on --jobs, --batch-size or the order of inputs. `signal`: the
 * run's stop, seen between the passes.
 */
export async function withMetrics(
  model: CamvizModel,
  input: tf.Tensor4D,
  computed: ExplainBatch,
  names: readonly string[],
  options: MetricsOptions,
  signal: AbortSignal | undefined,
): Promise<ExplainBatch> {
  const started = performance.now();
  const metrics = await measureExplanations(await model.executor(), { input, explanations: computed.explanations, seeds: names.map(seedOf), signal }, options);
  const explanations = computed.explanations.map((perRank, image) => perRank.map((explanation, rank): MeasuredExplanation => ({ ...explanation, metrics: metrics[image]![rank]! })));
  return { explanations, timings: { ...computed.timings, forward: computed.timings.forward + performance.now() - started } };
}

/** The `metrics` field of a cam record, if its explanation was measured. */
export function metricsField(explanation: MeasuredExplanation): { metrics?: MetricsRecord } {
  return explanation.metrics === undefined ? {} : { metrics: explanation.metrics };
}
