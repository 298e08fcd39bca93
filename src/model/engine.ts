/**
 * Which engine runs a model's passes: ONNX Runtime (native, forward passes
 * and the trunk of leaf gradient methods) or tfjs. `auto` takes ONNX Runtime
 * where it loads and the model has an ONNX form, and falls back to tfjs
 * otherwise: when onnxruntime-node is absent or broken, and per model when
 * ONNX Runtime refuses the model.
 */
import type { EngineChoice } from '../engine/engine-choices.js';
import type * as tfl from '../engine/tfl.js';
import type { OnnxRuntimeStatus } from '../engine/onnxruntime.js';
import type { Executor } from '../executor/executor.js';
import type { Network } from '../executor/network.js';
import type { OnnxTrunk } from '../executor/onnx-trunk.js';
import { defaultTarget } from '../executor/layers.js';
import { CamvizError, UsageError, describeError } from '../util/errors.js';
import type { ModelSourceFiles } from './io.js';
import type { BuiltOnnxModel } from './onnx/build.js';
import { closeSessionsAhead, sessionAheadPending, sessionAheadVersion } from '../executor/ort-session-ahead.js';
import { noteFirstSession } from './session-ahead.js';

export type EngineKind = 'onnxruntime' | 'tfjs';
export type EngineFallback = 'unavailable' | 'rejected';

/** What a model runs on, and why. */
export interface EngineReport {
  /** The engine that runs the model's passes. */
  readonly kind: EngineKind;
  /** What was asked for (LoadOptions.engine, --engine, CAMVIZ_ENGINE). */
  readonly requested: EngineChoice;
  /** ONNX Runtime's version when it runs. */
  readonly version?: string;
  /** ONNX Runtime's intra-op threads when it runs. */
  readonly threads?: number;
  /** Under auto, why tfjs runs: ONNX Runtime absent or broken, the model has no ONNX form, or ONNX Runtime refused it. */
  readonly reason?: string;
  /**
   * Set when tfjs runs under auto although the model has an ONNX form:
   * `unavailable` (onnxruntime-node absent or broken; said with --verbose),
   * `rejected` (ONNX Runtime refused this model: the per-model fallback, always said once).
   */
  readonly fallback?: EngineFallback;
}

export interface EngineRequest {
  readonly choice: EngineChoice;
  /** ONNX Runtime intra-op threads (default: CAMVIZ_ORT_THREADS, else 1). */
  readonly threads?: number;
  /**
   * Why the work asked of the model runs wholly on tfjs (guided backprop:
   * its gradient reaches the input). Under auto, tfjs is then chosen at once:
   * no ONNX Runtime session (130-240 ms) is made for nothing.
   */
  readonly tfjsOnly?: string;
  /** Where what the ONNX writer's cache says goes (an entry found damaged and written again, one that cannot be saved). */
  readonly log?: (message: string) => void;
}

/** The parts of a loaded model the choice reads (CamvizModel; kept structural so that load.ts and this file do not import each other). */
export interface EngineSubject {
  readonly meta: {
    readonly modelJsonPath: string;
    readonly sha256: string;
    readonly inputSize: { readonly width: number; readonly height: number };
    /** The default CAM target's name, when the model's metadata gives one. */
    readonly targetLayer?: string;
    /** Why the model has no default CAM target, when it has none. */
    readonly noTargetLayer?: string;
  };
  readonly onnx?: BuiltOnnxModel;
  /** The TF.js layers model (also a graph model's, as camviz imports it), which the ONNX writer writes. */
  readonly layersModel?: tfl.LayersModel;
  /** For a TF.js layers model read from its files: what was read (the writer's cache may take its fingerprint by it). */
  readonly sourceFiles?: ModelSourceFiles | undefined;
  network(): Network;
}

/** What runs a model's passes, and the report of the choice. */
export interface ChosenEngine {
  readonly executor: Executor;
  readonly report: EngineReport;
}

/** The install hint for a missing or broken onnxruntime-node: what a project depending on camviz sets offline. */
export const ORT_INSTALL_HINT =
  'npm install onnxruntime-node (offline or without CUDA: set ONNXRUNTIME_NODE_INSTALL=skip, or "allowScripts": {"onnxruntime-node": false} in package.json, to skip its CUDA download)';

/**
 * The executor `request` asks for, with the report of the choice: tfjs'
 * Network, or ONNX Runtime's executor over the same graph. Throws as
 * `model.network()` does, a UsageError when `onnxruntime` cannot be had, and
 * a CamvizError naming the file when ONNX Runtime refuses the model then.
 */
export async function chooseEngine(model: EngineSubject, request: EngineRequest): Promise<ChosenEngine> {
  try {
    return await chooseEngineNow(model, request);
  } finally {
    // A session made ahead that the choice did not take (tfjs chosen, another model or size) is of no more use.
    if (sessionAheadPending()) await closeSessionsAhead();
  }
}

async function chooseEngineNow(model: EngineSubject, request: EngineRequest): Promise<ChosenEngine> {
  const network = model.network();
  if (request.choice === 'tfjs') return { executor: network, report: { kind: 'tfjs', requested: 'tfjs' } };
  if (request.choice === 'auto' && request.tfjsOnly !== undefined) return tfjsBecause(network, request, request.tfjsOnly);
  const onnxForm = onnxFormOf(model, network, request.log);
  // A model without an ONNX form does not load ONNX Runtime (34-143 ms) for nothing.
  if (onnxForm === undefined) {
    const reason = 'the model has no ONNX form (a TF.js graph model that needs executeAsync)';
    if (request.choice === 'onnxruntime') throw new UsageError(`--engine onnxruntime: ${reason}; use --engine tfjs or auto`, { file: model.meta.modelJsonPath });
    return tfjsBecause(network, request, reason);
  }
  const { lazyOnnxRuntime, loadOnnxRuntime } = await import('../engine/onnxruntime.js');
  // A worker made a session ahead: ONNX Runtime loads, and this thread loads it only if it makes a session of its own.
  const loadedAhead = await sessionAheadVersion();
  const ort = loadedAhead === undefined ? loadOnnxRuntime() : lazyOnnxRuntime(loadedAhead);
  if (!ort.available) return withoutOrt(network, request, `ONNX Runtime is unavailable: ${ort.reason}`);
  return ortExecutor(model, network, onnxForm, request, ort);
}

/** ONNX Runtime does not load (`reason` says why): a usage error when it was asked for, tfjs under auto. */
function withoutOrt(network: Network, request: EngineRequest, reason: string): ChosenEngine {
  if (request.choice === 'onnxruntime') throw new UsageError(`--engine onnxruntime: ${reason}: ${ORT_INSTALL_HINT}`);
  return tfjsBecause(network, request, reason, 'unavailable');
}

function tfjsBecause(network: Network, request: EngineRequest, reason: string, fallback?: EngineFallback): ChosenEngine {
  return { executor: network, report: { kind: 'tfjs', requested: request.choice, reason, ...(fallback === undefined ? {} : { fallback }) } };
}

/** The ONNX Runtime executor; a model ONNX Runtime refuses runs on tfjs under auto, and is an error (exit 1) under onnxruntime. */
async function ortExecutor(
  model: EngineSubject,
  network: Network,
  onnxForm: () => Promise<OnnxTrunk>,
  request: EngineRequest,
  ort: Extract<OnnxRuntimeStatus, { available: true }>,
): Promise<ChosenEngine> {
  const { OrtModelRejectedError, OrtUnavailableError, createOrtExecutor } = await import('../executor/ort.js');
  const { ortThreads } = await import('../engine/onnxruntime.js');
  try {
    const trunk = await onnxForm();
    // The default CAM target is what a CAM command without --layer differentiates: its first session holds it.
    const target = defaultTarget(network, model.meta);
    const { onnxCacheDir } = await import('./onnx-writer/cache.js');
    const folder = onnxCacheDir();
    const executor = await createOrtExecutor(network, trunk, {
      ort: ort.module,
      file: model.meta.modelJsonPath,
      optimizedFolder: folder,
      ...(request.threads === undefined ? {} : { threads: request.threads }),
      ...(target === undefined ? {} : { expectedLayers: [target] }),
    });
    // What the next run may make ahead, in a worker, while it loads (model/session-ahead.ts).
    if (executor.firstSession?.madeAhead === false) await noteFirstSession(model.meta.modelJsonPath, executor.firstSession.spec, folder);
    return { executor, report: { kind: 'onnxruntime', requested: request.choice, version: ort.version, threads: ortThreads(request.threads) } };
  } catch (error) {
    if (error instanceof OrtUnavailableError) return withoutOrt(network, request, error.message);
    if (!(error instanceof OrtModelRejectedError)) throw error;
    if (request.choice === 'onnxruntime') throw new CamvizError(`--engine onnxruntime: ${error.message}`, { file: model.meta.modelJsonPath, cause: error });
    return tfjsBecause(network, request, describeError(error), 'rejected');
  }
}

/**
 * How to get the model's ONNX form for ONNX Runtime (its trunk), or
 * undefined when it has none. ONNX files give their own graph; TF.js models
 * (layers models, and graph models as camviz imports them) are written by
 * camviz's ONNX writer for the input size in use, cached beside the zoo.
 */
function onnxFormOf(model: EngineSubject, network: Network, log: ((message: string) => void) | undefined): (() => Promise<OnnxTrunk>) | undefined {
  if (model.onnx !== undefined) {
    return async () => {
      const { onnxTrunkOf } = await import('./onnx/trunk.js');
      return onnxTrunkOf(model.meta.modelJsonPath, model.meta.sha256, network.graph, model.meta.inputSize, model.onnx?.externalData);
    };
  }
  const layersModel = model.layersModel;
  if (layersModel === undefined) return undefined;
  return async () => {
    const { OnnxWriteError, onnxTrunkOfLayersModel } = await import('./onnx-writer/index.js');
    try {
      return await onnxTrunkOfLayersModel(layersModel, model.meta.inputSize, {
        ...(model.sourceFiles === undefined ? {} : { sourceFiles: model.sourceFiles }),
        ...(log === undefined ? {} : { log }),
      });
    } catch (error) {
      // A model the writer cannot express is one ONNX Runtime cannot run: the per-model fallback.
      if (!(error instanceof OnnxWriteError)) throw error;
      const { OrtModelRejectedError } = await import('../executor/ort.js');
      throw new OrtModelRejectedError(error.message, model.meta.modelJsonPath);
    }
  };
}
