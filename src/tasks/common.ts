/**
 * What the per-image tasks share: decoding a batch (a bad image fails
 * alone), naming outputs under --out, and writing them atomically,
 * removing an image's earlier outputs if a later one fails. No tfjs here:
 * a planned run (planned-cam.ts) shares it too; the model is opened in
 * context.ts.
 */
import { rm } from 'node:fs/promises';
import { dirname, extname, join, relative, sep } from 'node:path';
import type { BackendInfo } from '../engine/backend.js';
import { type LoadedImage, loadImage } from '../image/image.js';
import type { InputSize } from '../model/metadata.js';
import type { CamvizModel } from '../model/load.js';
import type { EngineReport } from '../model/engine.js';
import { WriteError, writeFileAtomic } from '../util/atomic-file.js';
import { CamvizError } from '../util/errors.js';
import { errorRecord } from './records.js';
import type { InputImage, InputRecord, TaskOptions, Timings } from './types.js';
import { makeFolders } from '../util/make-folders.js';
import { type EarlierOutputs, writeOwnOutput } from '../util/outputs-ledger.js';

export interface TaskContext {
  model: CamvizModel;
  backend: BackendInfo;
  /** What runs the model's passes, and why: chosen by openTaskContext (a context made by hand chooses at its first pass). */
  engine?: EngineReport;
  /**
   * Set when the run is stopping (a signal, --fail-fast): batches not yet
   * computing are dropped without a record, so that only the work already
   * under way finishes.
   */
  stop?: StopState;
  /** This thread's model work, one batch at a time (see modelWorkOf). */
  modelWork?: ModelWork;
}

export interface StopState {
  requested: boolean;
  /** Aborted when the stop is requested (stopSignalOf): long model work (Score-CAM's masked passes) ends between its chunks. */
  controller?: AbortController;
  /** --fail-fast: a failed image requests the stop in this thread at once, before the main thread hears of it. */
  onFailure?: boolean;
  /** The last batch's turn (see nextTurn). */
  turn?: Promise<void>;
  /** Told when a failure stops this thread, so that other threads can stop too. */
  onFailureStop?: () => void;
}

/** What decoding a batch needs of a task's context: the model's input size, and whether the run is stopping. */
export interface DecodeContext {
  readonly model: { readonly meta: { readonly inputSize: InputSize } };
  stop?: StopState;
}

/** With --fail-fast, the first failure stops this thread's batches not yet computing, at once. */
export function failureSeen(context: Pick<TaskContext, 'stop'>): void {
  const stop = context.stop;
  if (stop?.onFailure !== true || stop.requested) return;
  markStopped(stop);
  stop.onFailureStop?.();
}

/**
 * Asks the batches of this thread that are not yet computing to come back
 * empty, and the model work under way that can end early (Score-CAM's
 * masked passes) to end at its next chunk: its images are then not done.
 */
export function requestStop(context: Pick<TaskContext, 'stop'>): void {
  context.stop ??= { requested: false };
  markStopped(context.stop);
}

/** Whether the run is stopping; a function, so that a check after an await reads the flag again. */
function stopping(stop: StopState | undefined): boolean {
  return stop?.requested === true;
}

function markStopped(stop: StopState): void {
  stop.requested = true;
  stop.controller?.abort(new WorkStopped());
}

/**
 * What model work that stops early throws (the reason of stopSignalOf's
 * signal): its images are not done, which is no failure. They get no
 * record, as batches dropped by the stop.
 */
export class WorkStopped extends Error {
  constructor() {
    super("the run stopped before this image's model work was done");
    this.name = 'WorkStopped';
  }
}

/** The signal long model work watches (ExplainRequest.signal): aborted, with a WorkStopped, once the run is stopping. */
export function stopSignalOf(stop: StopState | undefined): AbortSignal | undefined {
  if (stop === undefined) return undefined;
  stop.controller ??= new AbortController();
  // A stop requested before the signal was first asked for (a test setting `requested`) aborts it at once.
  if (stop.requested && !stop.controller.signal.aborted) stop.controller.abort(new WorkStopped());
  return stop.controller.signal;
}

/**
 * A thread's model work: batches in flight overlap their decoding and
 * writing with it (three a thread: pool.ts), but their model work runs one
 * batch at a time, in the order the batches came. Without it, work that
 * awaits between its passes (ONNX Runtime's, Score-CAM's hundreds of masked
 * passes) interleaved the batches in flight, and a stop waited for all of
 * them. `inWork` and `mostAtOnce` count batches in model work (tests).
 */
export class ModelWork {
  inWork = 0;
  mostAtOnce = 0;
  private last: Promise<void> = Promise.resolve();

  /** Runs `work` once the batches before it have finished theirs. */
  async turn<T>(work: () => Promise<T>): Promise<T> {
    const previous = this.last;
    let done!: () => void;
    this.last = new Promise<void>((resolve) => (done = resolve));
    try {
      await previous;
      // Its own turn of the event loop: a stop message that arrived during the previous batch's synchronous work is seen first.
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.inWork++;
      this.mostAtOnce = Math.max(this.mostAtOnce, this.inWork);
      try {
        return await work();
      } finally {
        this.inWork--;
      }
    } finally {
      done();
    }
  }
}

/** The context's model work, made on first use. */
export function modelWorkOf(context: Pick<TaskContext, 'modelWork'>): ModelWork {
  context.modelWork ??= new ModelWork();
  return context.modelWork;
}

/**
 * Model work is synchronous: while a batch computes, a stop message (a
 * worker's cancel, a signal) waits. Each batch therefore resumes in its own
 * turn of the event loop, after the one before it, so that a message that
 * arrived during the previous batch's work is seen before this one starts.
 */
function nextTurn(stop: StopState): Promise<void> {
  const turn = (stop.turn ?? Promise.resolve()).then(() => new Promise<void>((resolve) => setImmediate(resolve)));
  stop.turn = turn;
  return turn;
}

export interface DecodedInput {
  input: InputImage;
  image: LoadedImage;
  timings: Timings;
}

/**
 * Decodes a batch concurrently (sharp works off the main thread); failures
 * become error records. Once the run is stopping, the batch is dropped: no
 * decoded image is returned, so no model work starts.
 */
export async function decodeBatch(
  batch: readonly InputImage[],
  context: DecodeContext,
  options: TaskOptions,
): Promise<{ decoded: DecodedInput[]; failed: InputRecord[] }> {
  const decode = async (input: InputImage): Promise<DecodedInput | InputRecord> => {
    const started = performance.now();
    try {
      const image = await loadImage(input.path, { size: context.model.meta.inputSize, ...options.image });
      return { input, image, timings: { decode: performance.now() - started } };
    } catch (error) {
      failureSeen(context);
      return errorRecord(input, error);
    }
  };
  if (context.stop?.requested) return { decoded: [], failed: [] };
  const outcomes = await Promise.all(batch.map(decode));
  // libvips has one error buffer per process, and every sharp call clears it
  // when it ends: images failing together get each other's reason, or
  // "Unknown error". A failed image is decoded again, one at a time, so that
  // its message (and the manifest) names its own problem. (Other work of the
  // process may still overlap a retry: a wrong reason becomes rare, not
  // impossible; the problem and the file named are always right.)
  for (const [i, outcome] of outcomes.entries()) {
    if ('status' in outcome) outcomes[i] = await oneAtATime(() => decode(batch[i]!));
  }
  const failed = outcomes.filter((outcome): outcome is InputRecord => 'status' in outcome);
  if (context.stop !== undefined) await nextTurn(context.stop);
  // Failures found are reported; images not yet computed are dropped.
  if (context.stop?.requested) return { decoded: [], failed };
  return { decoded: outcomes.filter((outcome): outcome is DecodedInput => 'image' in outcome), failed };
}

/** A part of a batch's model work: its images and the work's value for them, or one image and its error. */
export type ModelWorkPart<T> =
  | { readonly items: readonly DecodedInput[]; readonly value: T }
  | { readonly items: readonly [DecodedInput]; readonly error: unknown };

/** What a task has learnt of its batches over its run (modelWorkInParts). */
export interface Batching {
  /** Each image of a failed batch succeeded alone: the rest of the run goes one image at a time. */
  oneAtATime: boolean;
  /** Each image of a failed batch failed alone as well: retrying alone is not worth its cost. */
  retryUseless?: boolean;
}

/**
 * A batch's model work (`work` of its images), in parts: all of them at
 * once; or, where that fails for several images, each image alone, so that
 * an image that breaks its batch fails only itself, and a model that takes
 * one image at a time though its input says any number (a Reshape to batch
 * 1, as `x.view(1, -1)` exports) fails none. What a failed batch shows is
 * kept for the run (`batching`): every image succeeding alone sends the
 * rest one at a time; every image failing alone stops the retries (a model
 * failing everywhere would run each batch twice).
 *
 * The thread's batches take turns (`context.modelWork`, see ModelWork).
 * Once the run is stopping (`context.stop`): a batch whose turn comes after
 * the stop does no model work (no part: not done); work that ends early
 * (WorkStopped) leaves its images without a part; a failed batch is not
 * retried (its failure may be the stop's: a second signal releases the
 * model), and no image starts after one fails.
 */
export async function modelWorkInParts<T>(
  decoded: readonly DecodedInput[],
  batching: Batching,
  work: (items: readonly DecodedInput[]) => Promise<T>,
  context: Pick<TaskContext, 'stop' | 'modelWork'> = {},
): Promise<ModelWorkPart<T>[]> {
  if (decoded.length === 0) return [];
  const { stop } = context;
  return modelWorkOf(context).turn(async () => {
    if (stopping(stop)) return [];
    if (decoded.length === 1 || batching.oneAtATime) return eachAlone(decoded, work, stop);
    try {
      return [{ items: decoded, value: await work(decoded) }];
    } catch (error) {
      if (error instanceof WorkStopped) return [];
      if (stopping(stop) || batching.retryUseless === true) return decoded.map((item) => ({ items: [item] as const, error }));
      const parts = await eachAlone(decoded, work, stop);
      if (parts.every((part) => 'value' in part)) batching.oneAtATime = true;
      if (parts.every((part) => 'error' in part)) batching.retryUseless = true;
      return parts;
    }
  });
}

/**
 * The records of a batch's model work: a failed part's images as error
 * records, a done part's as `record` makes them from its value.
 */
export async function recordsOfParts<T>(
  parts: readonly ModelWorkPart<T>[],
  record: (items: readonly DecodedInput[], value: T) => InputRecord[] | Promise<InputRecord[]>,
): Promise<InputRecord[]> {
  const records: InputRecord[] = [];
  for (const part of parts) {
    if ('error' in part) records.push(...part.items.map((item) => errorRecord(item.input, part.error, item.timings)));
    else records.push(...(await record(part.items, part.value)));
  }
  return records;
}

/**
 * Each image's record, made by `write` (which writes its outputs), all at
 * once. One that throws (an unexpected failure: an image's own error is
 * recorded) fails the batch only once the others have settled: the
 * batch's outputs are then removed (batch/batch-writes.ts), and another
 * image's write still to come would land after that, a map without its
 * record. The first failure is thrown.
 */
export async function recordEach(items: readonly DecodedInput[], write: (item: DecodedInput, index: number) => Promise<InputRecord>): Promise<InputRecord[]> {
  const settled = await Promise.allSettled(items.map(write));
  const failed = settled.find((result) => result.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  return settled.map((result) => (result as PromiseFulfilledResult<InputRecord>).value);
}

/**
 * `values`, one per image of `items`, or an error the batch retry acts
 * on: a model that folds its batch into one row (a Reshape to batch 1
 * before a reduction) gives fewer, and the first image would get a result
 * made of all of them.
 */
export function onePerImage<T>(values: readonly T[], items: readonly DecodedInput[]): readonly T[] {
  if (values.length !== items.length) throw new CamvizError(`the model gave ${values.length} result${values.length === 1 ? '' : 's'} for ${items.length} images: it takes one image at a time`);
  return values;
}

/**
 * Each image alone, in order; once the run is stopping, no image starts and
 * a failure ends the batch: the images after it have no part (no record:
 * not done), nor has one whose work stopped early (WorkStopped).
 */
async function eachAlone<T>(decoded: readonly DecodedInput[], work: (items: readonly DecodedInput[]) => Promise<T>, stop: StopState | undefined): Promise<ModelWorkPart<T>[]> {
  const parts: ModelWorkPart<T>[] = [];
  for (const item of decoded) {
    if (stopping(stop)) break;
    try {
      parts.push({ items: [item], value: await work([item]) });
    } catch (error) {
      if (error instanceof WorkStopped) break;
      parts.push({ items: [item], error });
      if (stopping(stop)) break;
    }
  }
  return parts;
}

let retries: Promise<unknown> = Promise.resolve();

/** Runs `fn` after the previous call's `fn` has finished (a queue of one). */
function oneAtATime<T>(fn: () => Promise<T>): Promise<T> {
  const result = retries.then(fn, fn);
  retries = result.catch(() => undefined);
  return result;
}


/** `<outDir>/<relative without extension>`: outputs add `.<what>.<ext>`. */
export function outputStem(outDir: string, relative: string): string {
  const extension = extname(relative);
  return join(outDir, extension === '' ? relative : relative.slice(0, -extension.length));
}

/** A layer path as a file-name part. */
export function fileSafe(name: string): string {
  return name.replace(/[\\/:*?"<>|\s]+/g, '_');
}

/**
 * What is told of each output file this thread writes (see watchOutputs):
 * `writing` before it is written; `settled` once its write has ended,
 * `written` saying whether the file at `path` is now this run's (a write
 * that failed left whatever was there, an earlier run's map perhaps).
 */
export interface OutputWatcher {
  writing(path: string): void;
  settled(path: string, written: boolean): void;
}

let outputWatcher: OutputWatcher | undefined;

/**
 * Tells `watcher` of each output file this thread writes: a worker thread
 * tells the main thread, which removes the outputs of images it never gets
 * the records of (a thread terminated at a second signal, a batch that
 * threw: batch/pool.ts), so that no map is left without its record.
 */
export function watchOutputs(watcher: OutputWatcher | undefined): void {
  outputWatcher = watcher;
}

/**
 * Collects one image's output files; if any write fails, the ones already
 * written are removed so that an input has all of its outputs or none.
 * Given the files camviz wrote before (`earlier`, see InputImage), it
 * replaces no other file: one in the way fails the image, naming it; and
 * it records each file it writes in the folder's ledger.
 */
export class OutputSet {
  /** Paths written so far, relative to the output folder (as the manifest keeps them). */
  readonly written: string[] = [];

  constructor(
    private readonly outDir: string,
    private readonly earlier?: EarlierOutputs,
  ) {}

  /**
   * Writes `path` (under the output folder) atomically, without flushing it
   * to disk (see AtomicWriteOptions: outputs are derived data; the manifest
   * is flushed); returns it relative to the folder. Its folder is made only
   * when the write finds it missing: one mkdir per folder, not one per file.
   */
  async write(path: string, data: Uint8Array | string): Promise<string> {
    const inside = relative(this.outDir, path).split(sep).join('/');
    const watcher = outputWatcher;
    watcher?.writing(path);
    let written = false;
    try {
      await this.writeInFolder(path, inside, data);
      written = true;
    } finally {
      watcher?.settled(path, written);
    }
    this.written.push(inside);
    return inside;
  }

  /** Writes `path` atomically, making its folder only when the write finds it missing: one mkdir per folder, not one per file. */
  private async writeInFolder(path: string, inside: string, data: Uint8Array | string): Promise<void> {
    try {
      await this.writeFile(path, inside, data);
    } catch (error) {
      // ENOENT: the folder is missing; ENOTDIR: a file is in its way, which mkdir reports.
      if (!(error instanceof WriteError && (error.code === 'ENOENT' || error.code === 'ENOTDIR'))) throw error;
      await makeFolders(dirname(path));
      await this.writeFile(path, inside, data);
    }
  }

  /** A folder run's outputs are recorded in its ledger, so that later runs may replace them, and replace no file of a user's (writeOwnOutput); other runs' are not. */
  private async writeFile(path: string, inside: string, data: Uint8Array | string): Promise<void> {
    if (this.earlier === undefined) return writeFileAtomic(path, data, { durable: false });
    if ((await writeOwnOutput(this.outDir, inside, path, data, this.earlier, { durable: false })) === 'foreign') {
      throw new CamvizError("a file camviz did not write has this output's name: left as it is (move it, or use another --out)", { file: path });
    }
  }

  async discard(): Promise<void> {
    await Promise.all(this.written.map((path) => rm(join(this.outDir, path), { force: true })));
    this.written.length = 0;
  }
}

/**
 * Writes one input's outputs and makes its record: all outputs and status
 * ok, or (when any write fails) none of them and the error.
 */
export async function recordOutputs(
  item: DecodedInput,
  outDir: string,
  timings: Timings,
  write: (outputs: OutputSet) => Promise<Pick<InputRecord, 'results' | 'predictions'>>,
): Promise<InputRecord> {
  const outputs = new OutputSet(outDir, item.input.replaceable);
  try {
    const written = await write(outputs);
    return {
      input: item.input.path,
      relative: item.input.relative,
      status: 'ok',
      outputs: [...outputs.written],
      ...written,
      timings: { ...timings, total: Object.values(timings).reduce((sum, value) => sum + (value ?? 0), 0) },
    };
  } catch (error) {
    await outputs.discard();
    return errorRecord(item.input, error, timings);
  }
}

export function elapsedSince(started: number): number {
  return performance.now() - started;
}
