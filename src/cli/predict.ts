/** `camviz predict`: top classes per image. */
import { PREDICT_DEFAULTS } from '../tasks/defaults.js';
import type { InputRecord, PredictTaskOptions } from '../tasks/types.js';
import { type BatchCliOptions, baseTaskOptions, runImageCommand } from './run-command.js';
import { checkImageCommandOptions, parseCount } from './common.js';

export async function runPredict(inputs: string[], options: BatchCliOptions & { top?: string }): Promise<number> {
  checkImageCommandOptions(options);
  const task: PredictTaskOptions = { command: 'predict', ...baseTaskOptions(options), top: options.top === undefined ? PREDICT_DEFAULTS.top : parseCount(options.top, '--top') };
  return runImageCommand(inputs, options, task, {
    // predict writes no picture; with --out it keeps a manifest of the run.
    writesFiles: options.out !== undefined,
    printJson: (records: InputRecord[]) =>
      records.map((record) => ({ input: record.input, ...(record.predictions ? { predictions: record.predictions } : { error: record.error }) })),
    printText: (records: InputRecord[]) => {
      for (const record of records) {
        if (record.status === 'ok') process.stdout.write(`${formatPredictions(record)}\n`);
      }
    },
  });
}

/** The plain-text listing of one image's predictions, under the input's path as the user gave it. */
export function formatPredictions(record: InputRecord): string {
  const lines = (record.predictions ?? []).map(
    // A predict record always has a probability; null is a cam record's target without one.
    (prediction) => `  ${String(prediction.index).padStart(4)}  ${prediction.probability === null ? '      -' : `${(prediction.probability * 100).toFixed(2).padStart(6)}%`}  ${prediction.label ?? ''}`,
  );
  return `${record.input}\n${lines.join('\n')}`;
}
