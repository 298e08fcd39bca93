/** The predict task: top-k classes per image, no files. */
import { classProbabilities, topK } from '../model/predict.js';
import { type Batching, type DecodedInput, type TaskContext, decodeBatch, elapsedSince, modelWorkInParts, onePerImage, recordsOfParts } from './common.js';
import { inBatchOrder } from './records.js';
import type { BatchOutcome, InputImage, InputRecord, PredictTaskOptions } from './types.js';

export class PredictTask {
  private readonly batching: Batching = { oneAtATime: false };
  constructor(
    private readonly context: TaskContext,
    private readonly options: PredictTaskOptions,
  ) {}

  async process(batch: readonly InputImage[]): Promise<BatchOutcome> {
    const { decoded, failed } = await decodeBatch(batch, this.context, this.options);
    const parts = await modelWorkInParts(decoded, this.batching, (items) => this.predict(items), this.context);
    const records = await recordsOfParts(parts, (_, predicted) => predicted);
    return { records: inBatchOrder(batch, [...failed, ...records]), summaries: [] };
  }

  private async predict(items: readonly DecodedInput[]): Promise<InputRecord[]> {
    const started = performance.now();
    const probabilities = onePerImage(await classProbabilities(this.context.model, items.map((item) => item.image.input)), items);
    const forward = elapsedSince(started) / items.length;
    return items.map((item, i) => ({
      input: item.input.path,
      relative: item.input.relative,
      status: 'ok',
      outputs: [],
      predictions: topK(probabilities[i]!, this.options.top, this.context.model.meta.labels),
      timings: { ...item.timings, forward, total: (item.timings.decode ?? 0) + forward },
    }));
  }
}
