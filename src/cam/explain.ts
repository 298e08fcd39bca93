/**
 * One entry point for "explain these images": picks the method, applies
 * aug-smooth, and runs guided backpropagation for the guided methods. The
 * CLI's cam task and library users both call it.
 */
import type * as tf from '../engine/tf.js';
import type { GraphNode } from '../executor/graph.js';
import type { Network } from '../executor/network.js';
import type { CamResult, ClassRequest, ScoreKind } from './base.js';
import { type GuidedResult, guidedBackprop } from './guided.js';
import { canonicalMethod, createMethod, isGuidedMethod } from './index.js';
import { augmentedCompute } from './smooth.js';

export interface ExplainRequest {
  /** Method name or alias (`gradcam`, `gradcam++`, `scorecam`, `guidedgradcam`, ...). */
  method: string;
  /** Preprocessed batch [B, H, W, 3]. */
  input: tf.Tensor4D;
  /** Target layers (ignored by guided backprop). */
  layers: readonly GraphNode[];
  classes: ClassRequest;
  score?: ScoreKind;
  augSmooth?: boolean;
  eigenSmooth?: boolean;
}

export interface ExplainBatch {
  /** [image][rank]: the maps; absent for guided backprop alone. */
  maps?: CamResult[][];
  /** [image][rank]: input gradients of the guided methods. */
  guided?: GuidedResult[][];
  /** Milliseconds before the gradient sources, and of the taped part. */
  timings: { forward: number; backward: number };
}

export function explainBatch(network: Network, request: ExplainRequest): ExplainBatch {
  const method = canonicalMethod(request.method);
  const started = performance.now();
  let maps: CamResult[][] | undefined;
  let guided: GuidedResult[][] | undefined;
  if (method !== 'guidedbackprop') {
    const camMethod = createMethod(method === 'guidedgradcam' ? 'gradcam' : method);
    const camRequest = {
      input: request.input,
      layers: request.layers,
      classes: request.classes,
      score: request.score ?? 'logit',
      eigenSmooth: request.eigenSmooth ?? false,
    };
    maps = request.augSmooth ? augmentedCompute(camMethod, network, camRequest) : camMethod.compute(network, camRequest);
  }
  if (isGuidedMethod(method)) {
    // Guided Grad-CAM explains the classes the Grad-CAM pass chose.
    const classes: ClassRequest = maps ? { kind: 'perImage', classes: maps.map((perImage) => perImage.map((result) => result.classIndex)) } : request.classes;
    guided = guidedBackprop(network, request.input, classes, request.score ?? 'logit');
  }
  const total = performance.now() - started;
  const backward = Math.min(total, network.lastBackwardTimings.backward);
  return { ...(maps ? { maps } : {}), ...(guided ? { guided } : {}), timings: { forward: total - backward, backward } };
}
