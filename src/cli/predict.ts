/** `camviz predict`: top classes per image. */
import { relative } from 'node:path';
import { expandInputs } from '../batch/inputs.js';
import { describeError } from '../errors.js';
import { loadImage } from '../model/image.js';
import { type Prediction, classProbabilities, topK } from '../model/predict.js';
import { type ImageOptions, type ModelOptions, imageLoadOptions, parseCount, prepareModel, printJson } from './common.js';

interface PredictRecord {
  input: string;
  predictions?: Prediction[];
  error?: string;
}

export async function runPredict(inputs: string[], options: ModelOptions & ImageOptions & { top?: string; json?: boolean }): Promise<number> {
  const top = parseCount(options.top ?? '5', '--top');
  const images = await expandInputs(inputs, options.glob === undefined ? {} : { glob: options.glob });
  const { model } = await prepareModel(options);
  const loadOptions = imageLoadOptions(options, model.meta.inputSize);
  const records: PredictRecord[] = [];
  try {
    for (const image of images) {
      try {
        const loaded = await loadImage(image.path, loadOptions);
        const [probabilities] = classProbabilities(model, [loaded.input]);
        records.push({ input: image.path, predictions: topK(probabilities!, top, model.meta.labels) });
      } catch (error) {
        records.push({ input: image.path, error: describeError(error) });
        process.stderr.write(`camviz: ${describeError(error)}\n`);
      }
      if (!options.json) printRecord(records[records.length - 1]!);
    }
  } finally {
    model.dispose();
  }
  if (options.json) printJson(records);
  return records.some((record) => record.error !== undefined) ? 1 : 0;
}

function printRecord(record: PredictRecord): void {
  if (record.predictions === undefined) return;
  const lines = record.predictions.map(
    (prediction) =>
      `  ${String(prediction.index).padStart(4)}  ${(prediction.probability * 100).toFixed(2).padStart(6)}%  ${prediction.label ?? ''}`,
  );
  process.stdout.write(`${relative(process.cwd(), record.input) || record.input}\n${lines.join('\n')}\n`);
}
