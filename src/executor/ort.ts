/**
 * The ONNX Runtime executor: ORT runs the forward pass of a model's ONNX
 * trunk, tfjs keeps what needs gradients. It wraps the model's tfjs
 * `Network` (its graph, score location, and the fallback for what ORT
 * cannot do) and an `OnnxTrunk` (where each graph value is in ONNX).
 *
 * - `forward`: one ORT run fetching the output, the scores and the
 *   requested layers, converted to camviz's layout (NHWC for 4-D values).
 * - `backward` to layers: one ORT run fetching the sources and what the part
 *   downstream of them reads; the head's gradient is then computed in closed
 *   form for a linear head (linear-head.ts), else on tfjs under the tape from
 *   the ORT values (`Network.backwardFrom`).
 * - Backward to the input (guided backprop), hooks anywhere in the graph
 *   (they wrap tfjs-layers `call`, which ORT never runs), and values the
 *   ONNX graph does not hold: the whole call runs on the Network.
 */
import * as tf from '../engine/tf.js';
import { CamvizError, describeError } from '../util/errors.js';
import { existsSync } from 'node:fs';
import { type OrtModule, type OrtSession, type OrtTensor, loadOnnxRuntime, ortThreads, savedGraphPath, savedGraphRead, withSession } from '../engine/onnxruntime.js';
import { type HostValue, OrtHostPool } from './ort-host-pool.js';
import { RemoteSession, type SessionAheadSpec, takeSessionAhead } from './ort-session-ahead.js';
import { SpareBuffers } from './spare-buffers.js';
import { transposeMatrices } from './transpose.js';
import type { PooledHead } from './closed-form.js';
import type { OrtPassPlan } from './ort-plan.js';
import { isHooked, onlyObserved } from '../hooks/registry.js';
import { fireObservingHooks } from '../hooks/hooks.js';
import type { Executor } from './executor.js';
import type * as tfl from '../engine/tfl.js';
import { type GraphNode, type LayerGraph, isContainer } from './graph.js';
import type { OnnxTrunk, OnnxValue } from './onnx-trunk.js';
import type { ScoreLocation } from './score.js';
import { linearHeadGradients, linearHeadsOf, type LinearHead } from './linear-head.js';
import {
  type BackwardOptions,
  type BackwardPlan,
  type BackwardResult,
  type BackwardTimings,
  type ForwardOptions,
  type ForwardValues,
  type ModelInputs,
  type Network,
  type Objective,
  disposeValues,
  outputKeyOf,
  unique,
} from './network.js';

/** ONNX Runtime is not installed, or does not load. */
export class OrtUnavailableError extends CamvizError {
  constructor(reason: string) {
    super(`ONNX Runtime is unavailable: ${reason}`);
    this.name = 'OrtUnavailableError';
  }
}

/** ONNX Runtime refuses the model (an op it does not know, a bad graph...). */
export class OrtModelRejectedError extends CamvizError {
  constructor(reason: string, file: string | undefined) {
    super(`ONNX Runtime refuses the model: ${reason}`, file === undefined ? {} : { file });
    this.name = 'OrtModelRejectedError';
  }
}

export interface OrtExecutorOptions {
  /** Intra-op threads (default: env CAMVIZ_ORT_THREADS, else 1). */
  readonly threads?: number;
  /** The model file, named in errors. */
  readonly file?: string;
  /**
   * Layers the first requests are expected to fetch or differentiate (e.g.
   * the default CAM target): the first session holds them as outputs too,
   * so that those requests run on it instead of making a second session.
   */
  readonly expectedLayers?: readonly GraphNode[];
  /** A folder to keep the first session's optimised graph in (see engine/onnxruntime.ts); none: not kept. */
  readonly optimizedFolder?: string;
  /** The fewest images a run announced to `hostRunPlan` must have to start the host workers (default HOST_WORKER_MIN_IMAGES). */
  readonly hostWorkerMinImages?: number;
  /** How long idle host workers live (ms; default HOST_WORKER_IDLE_MS; tests shorten it). */
  readonly hostWorkerIdleMs?: number;
  /** ONNX Runtime as the caller has it (engine/onnxruntime.ts lazyOnnxRuntime); default: loaded here. */
  readonly ort?: OrtModule;
}

/**
 * The fewest images of a run of `forwardHost` calls for which the host
 * workers start (at 2+ threads): starting two costs about 0.35 s of CPU
 * (the threads, onnxruntime-node, the sessions from the saved graph), which
 * Score-CAM on MobileNet (700 masked inputs) repays.
 */
export const HOST_WORKER_MIN_IMAGES = 256;

/**
 * Images per batch on a host worker. A fresh session's first pass grows
 * ORT's arena to the batch's buffers, page by page: MobileNet v1 at batch 8
 * faults 13,400 pages (0.2 s of CPU), at batch 4 6,700 (0.11 s); later
 * passes cost the same per image from 2 to 8 (4.4-4.6 ms, 1 thread).
 */
export const HOST_WORKER_BATCH = 4;

/** How a caller runs a long series of `forwardHost` calls (OrtExecutor.hostRunPlan). */
export interface HostRunPlan {
  /** Calls to keep in flight. */
  readonly inFlight: number;
  /** At most this many images a call (infinite: the caller's own size). */
  readonly batchSize: number;
}

/** Idle host workers end after this long (ms); `dispose` ends them at once. */
const HOST_WORKER_IDLE_MS = 10_000;

/**
 * The ONNX Runtime executor of `network`'s model, whose ONNX form is
 * `trunk`. Makes its first session at once (the output, the scores, and
 * the expected layers), so that a model ORT refuses is known here
 * (`OrtModelRejectedError`).
 */
export async function createOrtExecutor(network: Network, trunk: OnnxTrunk, options: OrtExecutorOptions = {}): Promise<OrtExecutor> {
  const status = options.ort === undefined ? loadOnnxRuntime() : { available: true as const, module: options.ort };
  if (!status.available) throw new OrtUnavailableError(status.reason);
  const executor = new OrtExecutor(status.module, network, trunk, ortThreads(options.threads), options.file, {
    ...(options.optimizedFolder === undefined ? {} : { optimizedFolder: options.optimizedFolder }),
    minImages: options.hostWorkerMinImages ?? HOST_WORKER_MIN_IMAGES,
    idleMs: options.hostWorkerIdleMs ?? HOST_WORKER_IDLE_MS,
  });
  // Only this session's optimised graph is kept: it is the one every run starts with, and one a model bounds the cache.
  await executor.withSession(executor.firstSessionValues(options.expectedLayers ?? []), async () => undefined, options.optimizedFolder, true);
  return executor;
}

/** An ONNX value to fetch, and the graph key whose tensor it is. */
interface Fetch {
  readonly key: string;
  readonly value: OnnxValue;
}

export class OrtExecutor implements Executor {
  readonly graph: LayerGraph;
  readonly score: ScoreLocation;
  lastBackwardTimings: BackwardTimings = { forward: 0, backward: 0 };
  /** Per source key, its linear head (null: not linear), found once. */
  private readonly heads = new Map<string, LinearHead | null>();
  /** Whether the graph's input batch is fixed at 1 (then each image runs alone), learned from the first session. */
  private batchOfOne: boolean | undefined;
  /**
   * The output names of the sessions made for this executor, sorted. A
   * request whose values one of them holds runs on it: an extra output costs
   * nothing measurable, a session about 240 ms and a copy of the weights.
   */
  private readonly outputSets: string[][] = [];
  /** How many `forwardHost` batches the host workers ran (diagnostics and tests). */
  hostWorkerBatches = 0;
  /** The host workers (see hostRunPlan), once started. */
  private hostPool: OrtHostPool | undefined;
  private hostIdleTimer: NodeJS.Timeout | undefined;
  /** The executor's own input buffers not in use: `forwardHost` calls' (hostInputBuffer) and NCHW feeds' (onnxFeed). */
  private readonly freeBuffers: SpareBuffers;
  /** Every buffer `hostInputBuffer` handed out, to a caller or to onnxFeed: only those are transferred to a worker (detached until it hands them back). */
  private readonly ownBuffers = new WeakSet<Float32Array>();
  /** Sessions made ahead in a worker that this executor took (ort-session-ahead.ts), by session key. */
  private readonly remoteSessions = new Map<string, RemoteSession>();
  /**
   * The first session: what a later process may make ahead in a worker
   * (model/session-ahead.ts notes it), and whether this one was (then there
   * is nothing new to note).
   */
  firstSession: { readonly spec: Omit<SessionAheadSpec, 'optimizedFolder'>; readonly madeAhead: boolean } | undefined;

  /** @internal use `createOrtExecutor` */
  constructor(
    private readonly ort: OrtModule,
    readonly network: Network,
    readonly trunk: OnnxTrunk,
    private readonly threads: number,
    private readonly file: string | undefined,
    private readonly host: { readonly optimizedFolder?: string; readonly minImages: number; readonly idleMs: number } = { minImages: HOST_WORKER_MIN_IMAGES, idleMs: HOST_WORKER_IDLE_MS },
  ) {
    this.graph = network.graph;
    this.score = network.score;
    // More than this many were never in use at once: two per host worker and one being built (Score-CAM's batches), or a feed or two.
    this.freeBuffers = new SpareBuffers(2 * threads + 2);
  }

  async forward(inputs: ModelInputs, options: ForwardOptions = {}): Promise<ForwardValues> {
    const layers = options.layers ?? [];
    const input = this.ortInput(inputs);
    const observed = this.observedNodes(input);
    const fetches = input === undefined || observed === undefined ? undefined : this.forwardFetches(layers, observed);
    if (input === undefined || observed === undefined || fetches === undefined) return this.network.forward(inputs, options);
    const values = await this.runFeed(input, fetches);
    return this.collectObserved(values, layers, input, observed);
  }

  /**
   * The forward values of a pass of `input` (its tensor, or its batch size
   * when it was given as data), after the observe-only hooks of `observed`
   * (the nodes its fetches were chosen for) saw it; its tensors taken over,
   * as `collect` takes them.
   */
  private collectObserved(values: Map<string, tf.Tensor>, layers: readonly GraphNode[], input: tf.Tensor | number, observed: readonly GraphNode[]): ForwardValues {
    try {
      this.fireObservers(values, observed, typeof input === 'number' ? undefined : input);
    } catch (error) {
      tf.dispose([...values.values()]);
      throw error;
    }
    return this.network.collect(values, layers, typeof input === 'number' ? input : input.shape[0]!);
  }

  /**
   * The layout in which `forwardHost` takes a batch of images of this
   * height and width fetching `layers` straight to ONNX Runtime ('nchw':
   * [N, C, H, W] order, as the trunk's input), or undefined when such a
   * call would go through a tfjs tensor anyway (hooks, another input size,
   * layers ONNX does not hold).
   */
  hostInputLayout(height: number, width: number, layers: readonly GraphNode[] = []): OnnxValue['layout'] | undefined {
    const size = this.trunk.inputSize;
    const observed = this.observedNodes();
    if (height !== size.height || width !== size.width || observed === undefined || this.forwardFetches(layers, observed) === undefined) return undefined;
    return this.trunk.input.layout;
  }

  /**
   * `forward` of a batch of images given as plain data in the layout
   * `hostInputLayout` gave, `shape` being camviz's [N, H, W, C]: a caller
   * that builds its inputs in JS (Score-CAM's masked images) so skips the
   * round trip through a tfjs tensor and its transpose. A call ORT cannot
   * serve after all runs on the Network from the equivalent tensor.
   *
   * The data is the executor's from the call until it resolves; a buffer
   * from `hostInputBuffer` is the executor's for good (it may be handed to
   * a host worker) and is used again for later `hostInputBuffer` calls.
   */
  async forwardHost(data: Float32Array, layout: OnnxValue['layout'], shape: readonly [number, number, number, number], options: ForwardOptions = {}): Promise<ForwardValues> {
    const [n, h, w, c] = shape;
    if (data.length !== n * h * w * c) throw new Error(`forwardHost: ${data.length} values for a batch of [${shape.join(', ')}]`);
    const layers = options.layers ?? [];
    if (layout === this.hostInputLayout(h, w, layers)) {
      // Taken with the fetches: a hook registered while the pass runs waits for the next one.
      const observed = this.observedNodes()!;
      const fetches = this.forwardFetches(layers, observed)!;
      const dims = layout === 'nchw' ? [n, c, h, w] : [...shape];
      // While the workers start, calls wait for them: a first batch of a new size in this thread's session costs as much as one in a worker.
      const pool = this.poolFor(fetches);
      const onPool = pool !== undefined && (await pool.whenReady());
      const values = onPool ? await this.runOnPool(pool, data, dims, fetches) : await this.run({ data, dims }, fetches).finally(() => this.recycle(data));
      return this.collectObserved(values, layers, n, observed);
    }
    const nhwc = layout === 'nchw' ? transposeMatrices(data, n, c, h * w) : data;
    const input = tf.tensor4d(nhwc, [n, h, w, c]);
    try {
      return await this.forward(input, options);
    } finally {
      input.dispose();
      this.recycle(data);
    }
  }

  /**
   * How to run `images` more images of this size fetching `layers` through
   * `forwardHost`: how many calls to keep in flight, and at most how many
   * images a call. At 2+ threads, for a run long enough to repay their
   * start, it starts the host workers (one single-threaded session each:
   * ort-host-pool.ts) and asks for enough calls to keep them all busy
   * (calls made while they start wait for the first; if none starts, they
   * run in this thread), of HOST_WORKER_BATCH images. Otherwise one call in
   * flight (the next built while it runs), of any size.
   */
  hostRunPlan(images: number, height: number, width: number, layers: readonly GraphNode[] = []): HostRunPlan {
    const inThisThread = { inFlight: 1, batchSize: Number.POSITIVE_INFINITY };
    if (this.threads < 2 || images < this.host.minImages || this.batchOfOne !== false || this.hostInputLayout(height, width, layers) === undefined) return inThisThread;
    const fetches = this.forwardFetches(layers, this.observedNodes()!)!;
    this.hostPool ??= this.startHostPool(this.sessionOutputsFor(sortedNames(fetches)));
    this.keepHostPool();
    const pool = this.poolFor(fetches);
    return pool === undefined ? inThisThread : { inFlight: pool.lanes, batchSize: HOST_WORKER_BATCH };
  }

  /** A buffer of `length` values for a `forwardHost` call (one used before when there is one): the host workers take it without a copy. onnxFeed takes its NCHW feeds here too. */
  hostInputBuffer(length: number): Float32Array {
    const buffer = this.freeBuffers.take(length);
    this.ownBuffers.add(buffer);
    return buffer;
  }

  /**
   * Ends the executor's worker threads: the host workers (which also end
   * after 10 s without a run) and the session made ahead it took. A later
   * call starts or makes what it needs again.
   */
  async dispose(): Promise<void> {
    const remotes = [...this.remoteSessions.values()];
    this.remoteSessions.clear();
    await Promise.all([this.closeHostPool(), ...remotes.map((remote) => remote.release())]);
  }

  /** Ends the host workers only (the idle timer's end: the session made ahead may still be running a pass). */
  private async closeHostPool(): Promise<void> {
    clearTimeout(this.hostIdleTimer);
    const pool = this.hostPool;
    this.hostPool = undefined;
    this.freeBuffers.clear();
    await pool?.close();
  }

  /** The host workers, started for these outputs: their sessions load the saved optimised graph, else get the model's bytes. */
  private startHostPool(outputNames: readonly string[]): OrtHostPool {
    const cacheKey = this.sessionKey(outputNames);
    const folder = this.host.optimizedFolder;
    const saved = folder !== undefined && existsSync(savedGraphPath(this.ort, cacheKey, folder));
    return new OrtHostPool(
      this.threads,
      {
        cacheKey,
        // A saved graph is loaded; without one each worker makes its session from the bytes and saves
        // nothing (workers writing the same file at once, outside the cache's bookkeeping).
        ...(saved ? { optimizedFolder: folder } : { bytes: this.trunk.withOutputs(outputNames) }),
        ...(saved || this.trunk.externalDataFolder === undefined ? {} : { externalDataFolder: this.trunk.externalDataFolder }),
        inputName: this.trunk.input.name,
        outputNames,
      },
      this.file,
    );
  }

  /** The host pool when it may serve these fetches (started, not failed, holding them). */
  private poolFor(fetches: readonly Fetch[]): OrtHostPool | undefined {
    const pool = this.hostPool;
    return pool?.usable === true && fetches.every((fetch) => pool.outputNames.includes(fetch.value.name)) ? pool : undefined;
  }

  /** Restarts the idle countdown of the host workers. */
  private keepHostPool(): void {
    clearTimeout(this.hostIdleTimer);
    this.hostIdleTimer = setTimeout(() => (this.hostPool?.busy === true ? this.keepHostPool() : void this.closeHostPool()), this.host.idleMs);
    this.hostIdleTimer.unref();
  }

  /** One batch on a host worker, joined as `run` joins its outputs. */
  private async runOnPool(pool: OrtHostPool, data: Float32Array, dims: readonly number[], fetches: readonly Fetch[]): Promise<Map<string, tf.Tensor>> {
    const { outputs, input } = await pool.run(data, dims, sortedNames(fetches), this.ownBuffers.has(data));
    this.hostWorkerBatches++;
    this.keepHostPool();
    if (this.ownBuffers.has(data)) {
      this.ownBuffers.add(input);
      this.recycle(input);
    }
    return new Map(
      fetches.map((fetch) => {
        const joined = new JoinedOutput(fetch.value);
        joined.add(outputs[fetch.value.name]!, 1);
        return [fetch.key, joined.tensor()];
      }),
    );
  }

  /** A buffer of `hostInputBuffer`'s back to its free list; any other is left alone. */
  private recycle(data: Float32Array): void {
    if (this.ownBuffers.has(data)) this.freeBuffers.keep(data);
  }

  /** What a forward pass fetches: the output, the scores, the graph outputs, `layers` and what `observed`'s hooks see; undefined when ONNX lacks one. */
  private forwardFetches(layers: readonly GraphNode[], observed: readonly GraphNode[]): Fetch[] | undefined {
    return this.fetchesOf(unique([this.score.outputKey, this.score.scoreKey, ...this.graph.outputKeys, ...layers.map(outputKeyOf), ...this.observedKeys(observed)]));
  }

  async backward(inputs: ModelInputs, objectives: readonly Objective[], options: BackwardOptions): Promise<BackwardResult> {
    if (objectives.length === 0) throw new Error('backward() needs at least one objective');
    const input = options.sources === 'input' ? undefined : this.ortInput(inputs);
    const observed = this.observedNodes(input);
    if (input === undefined || observed === undefined) return this.onNetwork(inputs, objectives, options);
    const plan = this.network.backwardPlan(options);
    const heads = this.linearHeads(plan, objectives);
    if (heads !== undefined) {
      const layers = options.layers ?? [];
      const gates = heads.flatMap((head) => (head.gate === undefined ? [] : [head.gate.key]));
      const fetches = this.fetchesOf(unique([...plan.sourceKeys, ...gates, this.score.outputKey, this.score.scoreKey, ...this.graph.outputKeys, ...layers.map(outputKeyOf), ...this.observedKeys(observed)]));
      if (fetches !== undefined) return this.closedForm(input, objectives, options, plan, heads, fetches, observed);
    }
    // The tape reruns the layers after the sources on tfjs, whose hooks would fire there as well: observed models run wholly on the Network.
    if (observed.length > 0) return this.onNetwork(inputs, objectives, options);
    const fetches = this.fetchesOf(plan.beforeFetches);
    if (fetches === undefined) return this.onNetwork(inputs, objectives, options);
    const started = performance.now();
    const before = await this.runFeed(input, fetches);
    const result = this.network.backwardFrom(inputs, objectives, options, plan, before, started);
    this.lastBackwardTimings = this.network.lastBackwardTimings;
    return result;
  }

  private async onNetwork(inputs: ModelInputs, objectives: readonly Objective[], options: BackwardOptions): Promise<BackwardResult> {
    const result = await this.network.backward(inputs, objectives, options);
    this.lastBackwardTimings = this.network.lastBackwardTimings;
    return result;
  }

  /** One ORT run for the forward values, then the gradients of the linear heads in plain JS. */
  private async closedForm(
    input: tf.Tensor,
    objectives: readonly Objective[],
    options: BackwardOptions,
    plan: BackwardPlan,
    heads: readonly LinearHead[],
    fetches: readonly Fetch[],
    observed: readonly GraphNode[],
  ): Promise<BackwardResult> {
    const started = performance.now();
    const run = await this.runFeed(input, fetches);
    // A linear head's gradient depends on its source's shape only; a rectified head's on its gate too (fetched with it).
    const sourceShapes = plan.sourceKeys.map((key) => run.get(key)!.shape);
    const gateValues = heads.map((head) => (head.gate === undefined ? undefined : (run.get(head.gate.key)!.dataSync() as Float32Array)));
    const values = this.collectObserved(run, options.layers ?? [], input, observed);
    const headStarted = performance.now();
    try {
      const { objectives: objectiveValues, gradients } = await linearHeadGradients(values, objectives, sourceShapes, heads, gateValues);
      this.lastBackwardTimings = { forward: headStarted - started, backward: performance.now() - headStarted };
      return { values, objectives: objectiveValues, gradients };
    } catch (error) {
      disposeValues(values);
      throw error;
    }
  }

  /** The linear head of each source when the closed form applies to this call, else undefined. */
  private linearHeads(plan: BackwardPlan, objectives: readonly Objective[]): LinearHead[] | undefined {
    if (plan.innerSourceKeys.length > 0 || objectives.some((objective) => objective.scoreTerms === undefined)) return undefined;
    const heads: LinearHead[] = [];
    for (const key of plan.sourceKeys) {
      const head = this.headOf(key);
      if (head === undefined) return undefined;
      heads.push(head);
    }
    return heads;
  }

  /** The closed-form head from the value `key` to the scores (cached), or undefined when there is none. */
  private headOf(key: string): LinearHead | undefined {
    if (!this.heads.has(key)) this.heads.set(key, linearHeadsOf(this.graph, key, this.score) ?? null);
    return this.heads.get(key) ?? undefined;
  }

  /**
   * The single NHWC input tensor ORT can take, or undefined when the call
   * must run on the Network: several inputs, or another input size or type
   * than the trunk's. (Hooks ORT cannot serve are the callers' check: see
   * observedNodes.)
   */
  private ortInput(inputs: ModelInputs): tf.Tensor | undefined {
    const list = Array.isArray(inputs) ? inputs : [inputs as tf.Tensor];
    if (list.length !== 1) return undefined;
    const input = list[0]!;
    const { height, width } = this.trunk.inputSize;
    return input.dtype === 'float32' && input.rank === 4 && input.shape[1] === height && input.shape[2] === width ? input : undefined;
  }

  /**
   * The graph nodes whose layers have observe-only forward hooks, when those
   * are the model's only hooks and ONNX holds every value they see (their
   * inputs and outputs; the model's input, which ORT cannot fetch, only
   * when the call has its tensor, `input`): ORT serves the call, fetches
   * those values too and fires the hooks from them after its pass
   * (fireObservers). Empty when nothing is hooked. Undefined when any other
   * hook is registered, or a hooked layer is not one of the graph's nodes
   * or its values are not in ONNX: the call then runs on the Network, where
   * every hook fires as tfjs runs the layer.
   */
  private observedNodes(input?: tf.Tensor): GraphNode[] | undefined {
    const hooked = hookedLayers(this.network.model);
    if (hooked.length === 0) return [];
    if (!hooked.every((layer) => !isContainer(layer) && onlyObserved(layer))) return undefined;
    const nodes = this.graph.nodes.filter((node) => isHooked(node.layer));
    if (new Set(nodes.map((node) => node.layer)).size !== hooked.length) return undefined;
    const inputKeys = new Set(this.graph.inputKeys);
    const seen = (key: string): boolean => (inputKeys.has(key) ? input !== undefined : this.trunk.valueOf(key) !== undefined);
    return nodes.every((node) => [...node.inputs, ...node.outputs].every(seen)) ? nodes : undefined;
  }

  /**
   * Fires the observe-only hooks of `observed` from a pass's values (graph
   * key -> tensor, in camviz's layout), in the layers' order, each with its
   * layer's inputs and output, as tfjs would have while running them:
   * inside a tidy, as tfjs runs a layer, so that what a hook makes and does
   * not keep is freed. Before the values are collected (and the ones only
   * the hooks asked for disposed).
   */
  private fireObservers(values: ReadonlyMap<string, tf.Tensor>, observed: readonly GraphNode[], input: tf.Tensor | undefined): void {
    if (observed.length === 0) return;
    // The model's one input (ortInput takes no other) is the call's tensor, as tfjs gives it to the first layer.
    const inputKeys = new Set(this.graph.inputKeys);
    const valueOf = (key: string): tf.Tensor => {
      const value = values.get(key) ?? (inputKeys.has(key) ? input : undefined);
      if (value === undefined) throw new Error(`the value ${key} an observe-only hook sees was not fetched`);
      return value;
    };
    tf.tidy(() => {
      for (const node of observed) {
        const outputs = node.outputs.map(valueOf);
        fireObservingHooks(node.layer, node.inputs.map(valueOf), outputs.length === 1 ? outputs[0]! : outputs);
      }
    });
  }

  /** The values the observe-only hooks of `observed` see that a pass fetches (all but the model's input). */
  private observedKeys(observed: readonly GraphNode[]): string[] {
    const inputKeys = new Set(this.graph.inputKeys);
    return observed.flatMap((node) => [...node.inputs, ...node.outputs]).filter((key) => !inputKeys.has(key));
  }

  /** The ONNX values of these graph keys, or undefined when one has none. */
  private fetchesOf(keys: readonly string[]): Fetch[] | undefined {
    const fetches: Fetch[] = [];
    for (const key of new Set(keys)) {
      const value = this.trunk.valueOf(key);
      if (value === undefined) return undefined;
      fetches.push({ key, value });
    }
    return fetches;
  }

  /**
   * @internal The plan of a pass that fetches `layer`'s activations and the
   * class scores from this executor's first session, with the pooled linear
   * head between them (executor/ort-plan.ts): what a later process needs to
   * run that pass without this executor. Undefined when there is none: no
   * first session whose optimised graph was saved, the layer or the scores
   * not among its outputs, no closed-form head without a gate, external data.
   */
  passPlan(layer: GraphNode): OrtPassPlan | undefined {
    const first = this.firstSession?.spec;
    const folder = this.host.optimizedFolder;
    if (first === undefined || folder === undefined || this.trunk.externalDataFolder !== undefined) return undefined;
    if (!existsSync(savedGraphPath(this.ort, first.sessionKey, folder))) return undefined;
    const sourceKey = outputKeyOf(layer);
    const [activation, scores] = [this.trunk.valueOf(sourceKey), this.trunk.valueOf(this.score.scoreKey)];
    if (activation === undefined || scores === undefined || !first.outputNames.includes(activation.name) || !first.outputNames.includes(scores.name)) return undefined;
    const head = this.headOf(sourceKey);
    if (head === undefined || head.gate !== undefined || this.score.activation === 'sigmoid') return undefined;
    // A softmax head's probabilities are its output, as the executor's passes give them (Network.view).
    const probabilities = this.score.activation === 'softmax' ? this.trunk.valueOf(this.score.outputKey) : undefined;
    if (this.score.activation === 'softmax' && (probabilities === undefined || !first.outputNames.includes(probabilities.name))) return undefined;
    return {
      sessionKey: first.sessionKey,
      inputName: first.inputName,
      inputLayout: this.trunk.input.layout,
      inputSize: { ...this.trunk.inputSize },
      activationName: activation.name,
      // An 'nchw' value is camviz's NHWC tensor transposed: ORT returns it NCHW.
      channelAxis: activation.layout === 'nchw' ? 1 : head.channelAxis,
      scoresName: scores.name,
      ...(probabilities === undefined ? {} : { probabilitiesName: probabilities.name }),
      head: plannedHead(head),
    };
  }

  /** @internal The ONNX values of these graph keys, or undefined when one has none. */
  valuesOf(keys: readonly string[]): OnnxValue[] | undefined {
    return this.fetchesOf(keys)?.map((fetch) => fetch.value);
  }

  /**
   * @internal The values of the first session: what every forward pass
   * fetches (output, scores, graph outputs) and the expected layers' outputs
   * (and a rectified head's gate) that the trunk holds.
   */
  firstSessionValues(expectedLayers: readonly GraphNode[]): OnnxValue[] {
    const always = [this.score.outputKey, this.score.scoreKey, ...this.graph.outputKeys];
    // A layer with a rectified head: its gate too, which its closed form fetches.
    const withGates = (key: string): string[] => {
      const gate = this.headOf(key)?.gate;
      return gate === undefined ? [key] : [key, gate.key];
    };
    const expected = expectedLayers.flatMap((layer) => withGates(outputKeyOf(layer))).filter((key) => this.trunk.valueOf(key) !== undefined);
    return this.valuesOf(unique([...always, ...expected])) ?? this.valuesOf([this.score.outputKey, this.score.scoreKey]) ?? [];
  }

  /**
   * @internal Runs `use` with a session whose graph outputs include
   * `values`: one made before whose outputs hold them (the smallest), else
   * one made for these names (its optimised graph kept in `optimizedFolder`
   * when given). `first`: this is the executor's first session, which may
   * have been made ahead in a worker (ort-session-ahead.ts).
   */
  async withSession<T>(values: readonly OnnxValue[], use: (session: OrtSession) => Promise<T>, optimizedFolder?: string, first = false): Promise<T> {
    const names = this.sessionOutputsFor(sortedValueNames(values));
    const key = this.sessionKey(names);
    const remote = await this.remoteSession(key, names, first, optimizedFolder);
    if (remote !== undefined) {
      this.sessionMade(remote, names);
      return use(remote);
    }
    let created = false;
    try {
      return await withSession(
        this.ort,
        key,
        () => this.trunk.withOutputs(names),
        this.threads,
        (session) => {
          created = true;
          this.sessionMade(session, names);
          if (first) this.firstSession ??= { spec: this.firstSessionSpec(key, names), madeAhead: false };
          return use(session);
        },
        optimizedFolder,
        this.trunk.externalDataFolder === undefined ? {} : { externalDataFolder: this.trunk.externalDataFolder },
      );
    } catch (error) {
      // Only a session that could not be made is a rejection; a failing run is reported as it is.
      if (created) throw error;
      // An error that names its file already is not made to name it twice.
      if (error instanceof CamvizError && error.file !== undefined) throw new OrtModelRejectedError(error.message, error.file);
      throw new OrtModelRejectedError(describeError(error), this.file);
    }
  }

  /** What a later process needs to make this session ahead (ort-session-ahead.ts). */
  private firstSessionSpec(key: string, names: readonly string[]): Omit<SessionAheadSpec, 'optimizedFolder'> {
    return { sessionKey: key, inputName: this.trunk.input.name, outputNames: [...names], threads: this.threads };
  }

  /** What the executor learns from a session it runs on: the input's batch, and the outputs sessions hold. */
  private sessionMade(session: OrtSession, names: readonly string[]): void {
    this.batchOfOne ??= fixedBatchOfOne(session);
    if (!this.outputSets.some((set) => set.join('\u0000') === names.join('\u0000'))) this.outputSets.push([...names]);
  }

  /**
   * The session made ahead for `key` that this executor took (its first
   * session only is looked for), while its worker still runs; undefined
   * otherwise (a worker that failed is forgotten: a session of this thread
   * takes over).
   */
  private async remoteSession(key: string, names: readonly string[], first: boolean, optimizedFolder: string | undefined): Promise<RemoteSession | undefined> {
    let remote = this.remoteSessions.get(key);
    if (remote === undefined && first && optimizedFolder !== undefined) {
      remote = await takeSessionAhead({ sessionKey: key, threads: this.threads, optimizedFolder, inputName: this.trunk.input.name, outputNames: names });
      if (remote !== undefined) {
        // Its saved graph was used: the cache's bound keeps it as recently used.
        if (remote.savedGraph !== undefined) await savedGraphRead(remote.savedGraph);
        this.remoteSessions.set(key, remote);
        this.firstSession = { spec: this.firstSessionSpec(key, names), madeAhead: true };
      }
    }
    if (remote === undefined || remote.usable) return remote;
    this.remoteSessions.delete(key);
    void remote.release().catch(() => undefined);
    return undefined;
  }

  /** The session cache's key of the model with these outputs (it also names the saved optimised graph). */
  private sessionKey(names: readonly string[]): string {
    return `${this.trunk.cacheKey}|${names.join('\u0000')}`;
  }

  /** The output names of the session to run `names` on: the smallest made before that holds them all, else `names`. */
  private sessionOutputsFor(names: readonly string[]): string[] {
    const holding = this.outputSets.filter((set) => names.every((name) => set.includes(name)));
    return holding.sort((a, b) => a.length - b.length)[0] ?? [...names];
  }

  /** One ORT pass of camviz's NHWC `input`, fed in the trunk input's layout (onnxFeed). */
  private async runFeed(input: tf.Tensor, fetches: readonly Fetch[]): Promise<Map<string, tf.Tensor>> {
    const feed = this.onnxFeed(input);
    try {
      return await this.run(feed, fetches);
    } finally {
      // Only a buffer onnxFeed took: any other is the caller's (forwardHost gives back its own).
      if (feed.pooled === true) this.recycle(feed.data);
    }
  }

  /**
   * camviz's input as ONNX takes it. The values the input was made from,
   * where there are (image inputs), save reading them back. NHWC to NCHW
   * through tfjs' transpose on wasm (SIMD: 0.11 ms for [1, 224, 224, 3]
   * against 0.2-0.4 ms for the JS loop and the read back), the JS loop on
   * other backends; either into one of the executor's own buffers
   * (`recycle` takes it back after the pass): a fresh one each image
   * faulted in its 147 pages about every other pass (1.3 ms; README
   * Performance).
   */
  private onnxFeed(input: tf.Tensor): OnnxFeed {
    const host = tf.hostValues(input);
    if (this.trunk.input.layout !== 'nchw' || input.rank !== 4) return { data: host ?? (input.dataSync() as Float32Array), dims: [...input.shape] };
    const [n, h, w, c] = input.shape as [number, number, number, number];
    const dims = [n, c, h, w];
    const data = this.hostInputBuffer(input.size);
    if (tf.getBackend() !== 'wasm') return { data: transposeMatrices(host ?? (input.dataSync() as Float32Array), n, h * w, c, data), dims, pooled: true };
    const transposed = tf.transpose(input, [0, 3, 1, 2]);
    try {
      // Read at once: the view on the heap lasts until the next tfjs call.
      data.set(tf.peekValues(transposed));
      return { data, dims, pooled: true };
    } finally {
      transposed.dispose();
    }
  }

  /**
   * One ORT pass of the input `feed` (in the trunk input's layout; one pass
   * per image when the graph's batch is fixed at 1): graph key -> tensor in
   * camviz's layout, owned by the caller.
   */
  private async run(feed: OnnxFeed, fetches: readonly Fetch[]): Promise<Map<string, tf.Tensor>> {
    const batch = feed.dims[0]!;
    const imageSize = feed.data.length / batch;
    const outputs = new Map(fetches.map((fetch) => [fetch.value.name, new JoinedOutput(fetch.value)]));
    await this.withSession(
      fetches.map((fetch) => fetch.value),
      async (session) => {
        const runs = this.batchOfOne === true && batch > 1 ? batch : 1;
        for (let i = 0; i < runs; i++) {
          const slice = runs === 1 ? feed.data : feed.data.subarray(i * imageSize, (i + 1) * imageSize);
          await this.runOnce(session, slice, [runs === 1 ? batch : 1, ...feed.dims.slice(1)], outputs, runs);
        }
      },
    );
    return new Map(fetches.map((fetch) => [fetch.key, outputs.get(fetch.value.name)!.tensor()]));
  }

  /** One session run; each output goes into its JoinedOutput (converted from ORT's buffer before it is released). */
  private async runOnce(session: OrtSession, data: Float32Array, dims: readonly number[], outputs: ReadonlyMap<string, JoinedOutput>, runs: number): Promise<void> {
    const tensor = session instanceof RemoteSession ? RemoteSession.feed(data, dims) : new this.ort.Tensor('float32', data, [...dims]);
    const results = await session.run({ [this.trunk.input.name]: tensor }, [...outputs.keys()]);
    try {
      for (const [name, output] of outputs) output.add(results[name]!, runs);
    } finally {
      for (const result of Object.values(results)) result.dispose();
    }
  }
}

/** The hooked layers of the model, the model itself and nested models (and their layers) included. */
function hookedLayers(model: tfl.LayersModel): tfl.layers.Layer[] {
  return [...(isHooked(model) ? [model] : []), ...model.layers.flatMap((layer) => (isContainer(layer) ? hookedLayers(layer) : isHooked(layer) ? [layer] : []))];
}

/** Whether the session's (first) input declares a batch dim fixed at 1. */
function fixedBatchOfOne(session: OrtSession): boolean {
  const metadata = session.inputMetadata[0];
  return metadata !== undefined && metadata.isTensor && metadata.shape[0] === 1;
}

/**
 * One ONNX value over the runs of one pass (one run per image when the
 * graph's batch is fixed at 1), joined on the batch in camviz's layout as
 * the runs come: a 4-D NCHW value is transposed straight from ORT's buffer,
 * others are copied from it (the buffer is released with ORT's tensor).
 */
class JoinedOutput {
  private data: Float32Array | undefined;
  /** An integer value's (see addIntegers). */
  private integers: Int32Array | undefined;
  private filled = 0;
  private batch = 0;
  private parts = 0;
  private partDims: readonly number[] = [];

  constructor(private readonly value: OnnxValue) {}

  add(tensor: Pick<OrtTensor, 'type' | 'dims' | 'data'> | HostValue, runs: number): void {
    if (tensor.type === 'int64' || tensor.type === 'int32') return this.addIntegers(tensor, runs);
    if (tensor.type !== 'float32') throw new CamvizError(`ONNX value '${this.value.name}' is ${tensor.type}, not float32`);
    const part = tensor.data as Float32Array;
    this.data ??= new Float32Array(part.length * runs);
    if (this.filled + part.length > this.data.length) throw new CamvizError(`ONNX value '${this.value.name}' changes size between runs`);
    this.partDims = tensor.dims;
    const count = tensor.dims[0] ?? 1;
    const into = this.data.subarray(this.filled, this.filled + part.length);
    if (this.nchw()) {
      const [, c = 1, h = 1, w = 1] = tensor.dims;
      transposeMatrices(part, count, c, h * w, into);
    } else {
      into.set(part);
    }
    this.filled += part.length;
    this.batch += count;
    this.parts += 1;
  }

  /**
   * Shape arithmetic that the layers after a CAM target read, computed
   * before it (ViT's class token expanded to the batch: a Concat of the
   * batch size): int32, as the model's own layers hold integers. From one
   * run only: a vector computed from the batch size, per image, does not
   * join into the batch's.
   */
  private addIntegers(tensor: Pick<OrtTensor, 'type' | 'dims' | 'data'> | HostValue, runs: number): void {
    if (runs !== 1) throw new CamvizError(`ONNX value '${this.value.name}' is ${tensor.type}, read from a graph whose batch is fixed at 1`);
    const values = Array.from(tensor.data as ArrayLike<number | bigint>, Number);
    if (values.some((value) => !Number.isSafeInteger(value) || value !== (value | 0))) throw new CamvizError(`ONNX value '${this.value.name}' is ${tensor.type} beyond int32`);
    this.integers = Int32Array.from(values);
    this.partDims = tensor.dims;
    this.parts = 1;
  }

  /** The joined value as a tensor (NHWC for a 4-D NCHW value). */
  tensor(): tf.Tensor {
    if (this.integers !== undefined) return tf.tensor(this.integers, [...this.partDims], 'int32');
    const [, c = 1, h = 1, w = 1] = this.partDims;
    // One run: ORT's own dims (a value of rank 0 stays so); several: joined on the batch.
    const joined = this.parts === 1 ? [...this.partDims] : [this.batch, ...this.partDims.slice(1)];
    const dims = this.nchw() ? [this.batch, h, w, c] : joined;
    return tf.tensor(this.data!.subarray(0, this.filled), dims, 'float32');
  }

  private nchw(): boolean {
    return this.value.layout === 'nchw' && this.partDims.length === 4;
  }
}

/** A linear head's classifier as a plan holds it: its own copy, W[k, c] at `k + c * channels`. */
function plannedHead(head: LinearHead): PooledHead {
  const { kernel, channels, classes } = head;
  if (kernel === undefined) return { kernel: undefined, channels, classes, channelStride: 1, classStride: channels };
  const copy = new Float32Array(channels * classes);
  for (let c = 0; c < classes; c++) for (let k = 0; k < channels; k++) copy[k + c * channels] = kernel[k * head.channelStride + c * head.classStride]!;
  return { kernel: copy, channels, classes, channelStride: 1, classStride: channels };
}

/** An input batch as ONNX Runtime takes it: the data and its dims in the trunk input's layout. */
interface OnnxFeed {
  readonly data: Float32Array;
  readonly dims: readonly number[];
  /** `data` is one of the executor's own buffers, taken for this pass alone (onnxFeed). */
  readonly pooled?: boolean;
}

/** The fetches' ONNX names, once each, sorted (how sessions are keyed). */
function sortedNames(fetches: readonly Fetch[]): string[] {
  return sortedValueNames(fetches.map((fetch) => fetch.value));
}

/** The values' ONNX names, each once, sorted (sessions are keyed by them). */
function sortedValueNames(values: readonly OnnxValue[]): string[] {
  return [...new Set(values.map((value) => value.name))].sort();
}
