/** The predict task: top-k classes per image, no files. */
import { classProbabilities, topK } from '../model/predict.js';
import { type TaskContext, decodeBatch, elapsedSince } from './common.js';
import { errorRecord, inBatchOrder } from './records.js';
import type { BatchOutcome, InputImage, InputRecord, PredictTaskOptions } from './types.js';

export class PredictTask {
  constructor(
    private readonly context: TaskContext,
    private readonly options: PredictTaskOptions,
  ) {}

  async process(batch: readonly InputImage[]): Promise<BatchOutcome> {
    const { decoded, failed } = await decodeBatch(batch, this.context, this.options);
    const records: InputRecord[] = [...failed];
    if (decoded.length > 0) {
      try {
        const started = performance.now();
        const probabilities = await classProbabilities(this.context.model, decoded.map((item) => item.image.input));
        const forward = elapsedSince(started) / decoded.length;
        decoded.forEach((item, i) => {
          records.push({
            input: item.input.path,
            relative: item.input.relative,
            status: 'ok',
            outputs: [],
            predictions: topK(probabilities[i]!, this.options.top, this.context.model.meta.labels),
            timings: { ...item.timings, forward, total: (item.timings.decode ?? 0) + forward },
          });
        });
      } catch (error) {
        records.push(...decoded.map((item) => errorRecord(item.input, error, item.timings)));
      }
    }
    return { records: inBatchOrder(batch, records), summaries: [] };
  }
}
