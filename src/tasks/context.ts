/**
 * Opening a task's model: the tfjs backend, the model, and the engine that
 * runs its passes, chosen before the first image.
 */
import { requestedBackend, restartWasmWithThreads, useBackend } from '../engine/backend.js';
import { type CamvizModel, loadModel } from '../model/load.js';
import type { EngineReport } from '../model/engine.js';
import type { TaskContext } from './common.js';
import type { ModelSpec } from './types.js';

export async function openTaskContext(spec: ModelSpec, log?: (message: string) => void): Promise<TaskContext> {
  const backend = await useBackend(requestedBackend(spec.backend), spec.wasmThreads === undefined ? {} : { wasmThreads: spec.wasmThreads });
  const model = await loadModel(spec.model, {
    ...(spec.preprocess === undefined ? {} : { preprocess: spec.preprocess }),
    ...(spec.labels === undefined ? {} : { labels: spec.labels }),
    ...(spec.size === undefined ? {} : { size: spec.size }),
    ...(spec.engine === undefined ? {} : { engine: spec.engine }),
    ...(spec.ortThreads === undefined ? {} : { ortThreads: spec.ortThreads }),
    ...(spec.tfjsOnly === undefined ? {} : { tfjsOnly: spec.tfjsOnly }),
    ...(log === undefined ? {} : { log }),
  });
  try {
    const engine = await chosenEngine(model);
    // Threads wanted only when tfjs runs the passes: known now (auto's per-model fallback).
    const restarted = engine.kind === 'tfjs' && spec.wasmThreadsIfTfjs !== undefined ? await restartWasmWithThreads(spec.wasmThreadsIfTfjs) : undefined;
    return { model, backend: restarted ?? backend, engine };
  } catch (error) {
    model.dispose();
    throw error;
  }
}

/**
 * The engine, chosen before the first image so that a usage error (--engine
 * onnxruntime without it) stops the run at once and a fallback is said once.
 * A graph model that supports predict only runs on tfjs' GraphModel.
 */
async function chosenEngine(model: CamvizModel): Promise<EngineReport> {
  if (model.layersModel === undefined) return { kind: 'tfjs', requested: model.engineRequest.choice, reason: 'a predict-only graph model runs on tfjs' };
  return model.engine();
}

