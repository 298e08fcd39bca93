/**
 * The CAM task: per batch of images, the maps of every requested class
 * (one forward pass, one backward pass per class rank), each upsampled to
 * the original image, normalised, coloured, blended and written as
 * `<stem>.<method>.<class>.png` (and `.npy` with --raw); targets other than
 * a class name theirs (`<stem>.<method>.region.<class>.png`, ...).
 */
import { type ClassRequest, canonicalMethod, classifierKernel } from '../cam/index.js';
import * as tf from '../engine/tf.js';
import { type ClassExplanation, type ExplainBatch, explainBatch } from '../cam/explain.js';
import { camTargets } from '../cam/request.js';
import { NEGATIVE_CLASS, RegionTarget, type Target, type TargetChoice, chooseTarget } from '../cam/targets/index.js';
import { UsageError } from '../util/errors.js';
import { loadImage } from '../image/image.js';
import type { GraphNode } from '../executor/graph.js';
import { inputChannels, inputTensor } from '../model/predict.js';
import { plannable, writeCamPlan } from './cam-plan.js';
import { type Batching, type DecodedInput, type TaskContext, decodeBatch, modelWorkInParts, onePerImage, recordEach, recordOutputs, recordsOfParts, stopSignalOf } from './common.js';
import { CamOutputWriter, predictionsOf } from './cam-outputs.js';
import { inBatchOrder } from './records.js';
import { metricsField, withMetrics } from '../metrics/runner.js';
import type { BatchOutcome, CamResultRecord, CamTaskOptions, InputImage, InputRecord } from './types.js';

export class CamTask {
  readonly method: string;
  readonly layers: GraphNode[];
  private readonly classRequest: ClassRequest;
  private readonly targetChoice: TargetChoice;
  /** The target, built on the first batch (similarity's reference embedding is computed once per run). */
  private target: Promise<Target> | undefined;
  private readonly writer: CamOutputWriter;

  constructor(
    private readonly context: TaskContext,
    private readonly options: CamTaskOptions,
  ) {
    this.method = canonicalMethod(options.method);
    this.layers = camTargets(context.model, options.layers);
    // A target that does not fit the model is refused here, before any image.
    this.targetChoice = chooseTarget(context.model, options.target ?? {}, {
      method: this.method,
      classes: options.classes,
      topK: options.topK,
      score: options.score,
    });
    if (this.targetChoice.kind === 'region' && options.augSmooth) {
      throw new UsageError('--aug-smooth flips the images: it does not combine with --target region');
    }
    // The metrics score perturbed images by the explained class's probability: of another target's map, they measured an unrelated number.
    if (options.metrics !== undefined && !this.targetChoice.measuredByClassProbability) {
      throw new UsageError(`--metrics measures a map by its class's probability: --target ${this.describeTarget(options)} has no such probability`);
    }
    this.classRequest = this.targetChoice.classes;
    // CAM's head requirement depends on the layers, not the images: refused once, before any image.
    if (this.method === 'cam') for (const layer of this.layers) tf.dispose(classifierKernel(context.model.network(), layer));
    this.writer = new CamOutputWriter(options, this.method, context.model.meta.preprocess, this.layerLabel);
  }

  /** The target as the flags gave it, for messages. */
  private describeTarget(options: CamTaskOptions): string {
    const negated = this.targetChoice.kind === 'sigmoid' && options.classes.some((value) => value.trim().toLowerCase() === NEGATIVE_CLASS);
    return negated ? `sigmoid --class ${NEGATIVE_CLASS}` : this.targetChoice.kind === 'class' || this.targetChoice.kind === 'prob' ? `${this.targetChoice.kind} (the model has no class head)` : this.targetChoice.kind;
  }

  /** What the layers option resolved to, for the manifest. */
  get layerLabel(): string {
    return this.layers.map((node) => node.path).join('+');
  }

  async process(batch: readonly InputImage[]): Promise<BatchOutcome> {
    const { decoded, failed } = await decodeBatch(batch, this.context, this.options);
    const parts = await modelWorkInParts(decoded, this.batching, (items) => this.compute(items), this.context);
    const records = await recordsOfParts(parts, (items, { explanations, timings }) => {
      const perImage = { forward: timings.forward / items.length, backward: timings.backward / items.length };
      return recordEach(items, (item, i) => this.writeOutputs(item, explanations[i]!, perImage));
    });
    if (records.some((record) => record.status === 'ok')) await this.writePlanOnce();
    return { records: inBatchOrder(batch, [...failed, ...records]), summaries: [] };
  }

  private planWritten = false;
  private readonly batching: Batching = { oneAtATime: false };

  /**
   * Once a plannable request has run on ONNX Runtime, writes the model's
   * plan (cam-plan.ts), so that a later one-image run of it need not load
   * the model. Once a run, after its first image that succeeded.
   */
  private async writePlanOnce(): Promise<void> {
    if (this.planWritten) return;
    this.planWritten = true;
    const { model, engine, backend } = this.context;
    const layer = this.layers[0];
    if (engine?.kind !== 'onnxruntime' || this.targetChoice.kind !== 'class' || this.layers.length !== 1 || layer === undefined || !plannable(this.options)) return;
    if (inputChannels(model) !== 3) return;
    try {
      const pass = (await model.executor()).passPlan?.(layer);
      // The files as the load read them: a TF.js model's model.json and weights, an ONNX file (one without external data: passPlan's check).
      const modelFiles = model.sourceFiles?.usedPaths ?? (model.meta.format === 'onnx' ? [model.meta.modelJsonPath] : undefined);
      if (pass === undefined || modelFiles === undefined) return;
      await writeCamPlan({ spec: this.options.model, pass, meta: model.meta, layerLabel: this.layerLabel, backend: { kind: backend.kind, package: backend.packageName }, modelFiles });
    } catch {
      // Best effort, as writeCamPlan: the run's images are done whatever happens here.
    }
  }

  private async compute(decoded: readonly DecodedInput[]): Promise<ExplainBatch> {
    const target = await this.batchTarget(decoded);
    const input = inputTensor(this.context.model, decoded.map((item) => item.image.input));
    // Score-CAM's masked passes, aug-smooth's versions and the metrics' passes end at the next pass once the run stops: these images are then not done.
    const signal = stopSignalOf(this.context.stop);
    try {
      const computed = await explainBatch(await this.context.model.executor(), {
        method: this.method,
        input,
        layers: this.layers,
        classes: this.classRequest,
        target,
        augSmooth: this.options.augSmooth,
        eigenSmooth: this.options.eigenSmooth,
        signal,
      });
      onePerImage(computed.explanations, decoded);
      const { metrics } = this.options;
      return metrics === undefined ? computed : await withMetrics(this.context.model, input, computed, decoded.map((item) => item.input.relative), metrics, signal);
    } finally {
      input.dispose();
    }
  }

  /** The run's target, over this batch's images (a region is given in each image's own pixels). */
  private async batchTarget(decoded: readonly DecodedInput[]): Promise<Target> {
    this.target ??= this.targetChoice.build(() => this.referenceInput());
    const target = await this.target;
    return target instanceof RegionTarget ? target.forImages(decoded.map(({ image }) => ({ geometry: image.geometry, sourceSize: image.sourceSize }))) : target;
  }

  /** The --reference image as the model's input, prepared as the inputs are. */
  private async referenceInput(): Promise<tf.Tensor4D> {
    const { model } = this.context;
    const image = await loadImage(this.options.target!.reference!, { size: model.meta.inputSize, ...this.options.image });
    return inputTensor(model, [image.input]);
  }

  private async writeOutputs(item: DecodedInput, explanations: readonly ClassExplanation[], model: { forward: number; backward: number }): Promise<InputRecord> {
    const timings = { ...item.timings, ...model, render: 0, encode: 0 };
    const target = (await this.target)!;
    return recordOutputs(item, this.options.outDir, timings, async (outputs) => {
      const explained = explanations.map((explanation) => ({ ...explanation, target: target.describe(explanation.classIndex), label: this.targetChoice.labels?.[explanation.classIndex] ?? null }));
      const written = await this.writer.writeAll(item, explained, outputs, timings);
      const records: CamResultRecord[] = written.map((record, i) => ({ ...record, ...metricsField(explanations[i]!) }));
      return { predictions: predictionsOf(records), results: records };
    });
  }
}
