/** The tasks by command: what one batch of images becomes. */
import { CamTask } from './cam.js';
import { type TaskContext, failureSeen } from './common.js';

export { requestStop, watchOutputs } from './common.js';
import { openTaskContext } from './context.js';
import { FmapTask } from './fmap.js';
import { PredictTask } from './predict.js';
import type { BatchOutcome, InputImage, TaskOptions } from './types.js';

export * from './types.js';
export { CamTask } from './cam.js';
export { FmapTask } from './fmap.js';
export { PredictTask } from './predict.js';
export { type StopState, type TaskContext, outputStem } from './common.js';
export { openTaskContext } from './context.js';

export interface Task {
  process(batch: readonly InputImage[]): Promise<BatchOutcome>;
}

export function createTask(context: TaskContext, options: TaskOptions): Task {
  switch (options.command) {
    case 'cam':
      return new CamTask(context, options);
    case 'fmap':
      return new FmapTask(context, options);
    case 'predict':
      return new PredictTask(context, options);
  }
}

/**
 * Processes a batch in a run that may stop early: with stop-on-failure set
 * (--fail-fast), a failed image stops this thread's other batches at once.
 */
export async function processStopping(task: Task, context: TaskContext, batch: readonly InputImage[]): Promise<BatchOutcome> {
  const outcome = await task.process(batch);
  if (outcome.records.some((record) => record.status === 'error')) failureSeen(context);
  return outcome;
}


/** Opens the model and creates the task: what a worker does at start. */
export async function startTask(options: TaskOptions, log?: (message: string) => void, failFast = false): Promise<{ context: TaskContext; task: Task }> {
  const context = await openTaskContext(options.model, log);
  context.stop = { requested: false, onFailure: failFast };
  try {
    return { context, task: createTask(context, options) };
  } catch (error) {
    context.model.dispose();
    throw error;
  }
}
