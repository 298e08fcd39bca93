/**
 * A planned run's task (cam-plan.ts says when there is one): Grad-CAM of
 * each image from its model's plan, without tfjs or the model's layers.
 * Per image: decoded and preprocessed as any run's, one ONNX Runtime pass
 * on the plan's session (executor/ort-plan.ts), the classes asked for (or
 * the top k by probability), Grad-CAM's channel weights from the head in closed form
 * (executor/closed-form.ts) and the map from them (cam/channel-weighted-map.ts),
 * then drawn, written and recorded as the cam task does (cam-outputs.ts).
 */
import { channelWeightedMap } from '../cam/channel-weighted-map.js';
import { type OrtModule, type OrtSession, loadOnnxRuntime, ortThreads } from '../engine/onnxruntime.js';
import { wholeProcessOrtThreads } from '../engine/ort-threads.js';
import { addChannelGradient } from '../executor/closed-form.js';
import { type PlannedPass, runPlannedPass, withPlannedSession } from '../executor/ort-plan.js';
import { softmaxRows } from '../executor/softmax.js';
import { preprocessImages } from '../image/preprocess.js';
import type { EngineReport } from '../model/engine.js';
import { onnxCacheDir } from '../model/onnx-writer/cache-limit.js';
import { type ClassesOfSpecs, classRequestOf } from '../model/labels.js';
import { topClassIndices } from '../model/top-classes.js';
import { CamvizError, describeError } from '../util/errors.js';
import { CamOutputWriter, type CamOutput, predictionsOf } from './cam-outputs.js';
import { type CamPlan, forgetCamPlan } from './cam-plan.js';
import { type DecodeContext, type DecodedInput, decodeBatch, recordOutputs } from './common.js';
import { errorRecord, inBatchOrder } from './records.js';
import type { BatchOutcome, CamTaskOptions, InputImage, InputRecord } from './types.js';

/**
 * Starts making the plan's session, so that reading its saved graph (10 MB
 * for MobileNet v1, on libuv's threads) overlaps what the command line
 * loads meanwhile: open() then takes it from the engine's cache of
 * sessions. With the threads a one-image run in this thread gives it
 * (wholeProcessOrtThreads, as batch/runner.ts asks); a failure
 * is left for open() to meet and report.
 */
export function openPlannedSessionAhead(plan: CamPlan): void {
  const status = loadOnnxRuntime();
  if (!status.available) return;
  withPlannedSession(status.module, plan.pass, wholeProcessOrtThreads(), onnxCacheDir(), async () => undefined).catch(() => undefined);
}

/** Why a plan cannot run here: the run then loads the model (batch/runner.ts). */
export class PlanUnusableError extends Error {}

export class PlannedCamTask {
  /** What decoding needs: the plan's input size; the run's stop state. */
  readonly context: DecodeContext;
  private readonly writer: CamOutputWriter;

  /** The classes each image is explained for: the request's, resolved as the cam task resolves them. */
  private readonly classes: ClassesOfSpecs;

  private constructor(
    readonly plan: CamPlan,
    private readonly options: CamTaskOptions,
    private readonly ort: OrtModule,
    /** What runs the passes, for the manifest. */
    readonly engine: EngineReport,
  ) {
    this.context = { model: { meta: plan.meta } };
    this.classes = classRequestOf(options.classes, options.topK, plan.meta.labels, plan.pass.head.classes);
    this.writer = new CamOutputWriter(options, 'gradcam', plan.meta.preprocess, plan.layerLabel);
  }

  /**
   * The task, its session made from the saved graph, and one pass of zeros
   * run on it. A PlanUnusableError when ONNX Runtime is absent, or the saved
   * graph is missing or does not load (the full run saves it again, and the
   * plan holds after); the plan is also removed when the graph does not
   * match it (its input or outputs, or the shapes of the pass's values: a
   * plan damaged in a way its seal missed, or from a bug), which would
   * otherwise hold for every later run and fail each so.
   */
  static async open(plan: CamPlan, options: CamTaskOptions): Promise<PlannedCamTask> {
    const status = loadOnnxRuntime();
    if (!status.available) throw new PlanUnusableError(status.reason);
    const threads = ortThreads(options.model.ortThreads);
    const folder = onnxCacheDir();
    let mismatch: string | undefined;
    try {
      mismatch = await withPlannedSession(status.module, plan.pass, threads, folder, async (session) => sessionMismatch(session, plan));
    } catch (error) {
      throw new PlanUnusableError(describeError(error));
    }
    // The pass's arithmetic is its cost (about 2.5% of a cold run): the first pass's fresh pages are paid either way.
    const { height, width } = plan.pass.inputSize;
    mismatch ??= await runPlannedPass(status.module, plan.pass, threads, folder, new Float32Array(height * width * 3)).then(() => undefined, describeError);
    if (mismatch !== undefined) {
      await forgetCamPlan(options.model);
      throw new PlanUnusableError(`${mismatch}; the plan is removed`);
    }
    const engine: EngineReport = { kind: 'onnxruntime', requested: options.model.engine ?? 'auto', version: status.version, threads };
    return new PlannedCamTask(plan, options, status.module, engine);
  }

  async process(batch: readonly InputImage[]): Promise<BatchOutcome> {
    const { decoded, failed } = await decodeBatch(batch, this.context, this.options);
    const records: InputRecord[] = [];
    for (const item of decoded) records.push(await this.explain(item));
    return { records: inBatchOrder(batch, [...failed, ...records]), summaries: [] };
  }

  /** One image: its pass, its maps, its outputs and records (or its error record). */
  private async explain(item: DecodedInput): Promise<InputRecord> {
    const started = performance.now();
    let explained: CamOutput[];
    let timings: { forward: number; backward: number };
    try {
      const { height, width } = this.plan.pass.inputSize;
      const input = preprocessImages([item.image.input], height, width, this.plan.meta.preprocess);
      const pass = await runPlannedPass(this.ort, this.plan.pass, this.engine.threads!, onnxCacheDir(), input);
      const forwardDone = performance.now();
      explained = this.explained(pass);
      timings = { forward: forwardDone - started, backward: performance.now() - forwardDone };
    } catch (error) {
      return errorRecord(item.input, error, item.timings);
    }
    const all = { ...item.timings, ...timings, render: 0, encode: 0 };
    return recordOutputs(item, this.options.outDir, all, async (outputs) => {
      const records = await this.writer.writeAll(item, explained, outputs, all);
      return { predictions: predictionsOf(records), results: records };
    });
  }

  /**
   * The classes the request explains in a pass (given, or its top k by
   * probability), each with its Grad-CAM map: the channel weights are the
   * head's gradient of the class score, the same at every position.
   */
  private explained(pass: PlannedPass): CamOutput[] {
    const probabilities = pass.probabilities ?? softmaxRows(pass.scores, pass.scores.length);
    if (probabilities.some(Number.isNaN) || pass.scores.some(Number.isNaN)) throw new CamvizError("the model's output is not a number (NaN): its weights may be damaged");
    const classes = this.classes.kind === 'explicit' ? this.classes.classes : topClassIndices(probabilities, this.classes.k);
    const { head, channelAxis } = this.plan.pass;
    const [, a, b, c] = pass.dims;
    return classes.map((classIndex) => {
      const weights = new Float32Array(head.channels);
      addChannelGradient(head, classIndex, 1, channelAxis === 1 ? b * c : a * b, weights);
      return {
        classIndex,
        target: { kind: 'class', class: classIndex },
        label: this.plan.meta.labels?.[classIndex] ?? null,
        score: pass.scores[classIndex]!,
        probability: probabilities[classIndex]!,
        map: channelWeightedMap(pass.activations, pass.dims, channelAxis, weights),
      };
    });
  }
}

/** Why the session is not the plan's (its input or outputs are not the ones it names), or undefined when it is. */
function sessionMismatch(session: OrtSession, plan: CamPlan): string | undefined {
  const { inputName, activationName, scoresName, probabilitiesName } = plan.pass;
  const outputs = [activationName, scoresName, ...(probabilitiesName === undefined ? [] : [probabilitiesName])];
  if (session.inputNames.includes(inputName) && outputs.every((name) => session.outputNames.includes(name))) return undefined;
  return "the saved graph's input and outputs are not the plan's";
}
