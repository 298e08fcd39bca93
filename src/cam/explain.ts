/**
 * One entry point for "explain these images": picks the method, applies
 * aug-smooth, runs guided backpropagation for the guided methods, and
 * returns one record per (image, class). The CLI's cam task and library
 * users both call it.
 */
import type * as tf from '../engine/tf.js';
import type { GraphNode } from '../executor/graph.js';
import type { Executor } from '../executor/executor.js';
import type { FeatureMap, GradientImage } from '../render/maps.js';
import type { CamResult } from './base.js';
import type { ClassRequest, ExplainedClass, ScoreKind } from './classes.js';
import { type GuidedResult, guidedBackprop, guidedGradCam } from './guided.js';
import { canonicalMethod, createMethod, isGuidedMethod } from './index.js';
import { augmentedCompute } from './smooth.js';
import type { TargetLike } from './targets/index.js';

export interface ExplainRequest {
  /** Method name or alias (`gradcam`, `gradcam++`, `scorecam`, `guidedgradcam`, ...). */
  method: string;
  /** Preprocessed batch [B, H, W, 3]. */
  input: tf.Tensor4D;
  /** Target layers (ignored by guided backprop). */
  layers: readonly GraphNode[];
  classes: ClassRequest;
  /** What Y is: a target, a function of the forward values and a row, or a score kind (default: the class logit). */
  target?: TargetLike;
  /** `prob` is the probability target; `target` wins when both are given. */
  score?: ScoreKind;
  augSmooth?: boolean;
  eigenSmooth?: boolean;
  /** Aborting ends Score-CAM's masked passes and aug-smooth's versions at the next pass: the call then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** One explanation: one class of one image. */
export interface ClassExplanation extends ExplainedClass {
  /** The map methods' (and Guided Grad-CAM's) raw map; absent for guided backprop alone. */
  map?: FeatureMap;
  /** With `map`: the per-layer raw maps it aggregates. */
  layerMaps?: FeatureMap[];
  /**
   * The guided methods' gradient image, at input size: the guided input
   * gradient, times the normalised Grad-CAM map for Guided Grad-CAM.
   */
  gradient?: GradientImage;
}

export interface ExplainBatch {
  /** [image][rank] */
  explanations: ClassExplanation[][];
  /** Milliseconds before the gradient sources, and of the taped part. */
  timings: { forward: number; backward: number };
}

export async function explainBatch(network: Executor, request: ExplainRequest): Promise<ExplainBatch> {
  const method = canonicalMethod(request.method);
  const started = performance.now();
  const maps = method === 'guidedbackprop' ? undefined : await computeMaps(network, request, method === 'guidedgradcam' ? 'gradcam' : method);
  // Guided Grad-CAM explains the classes the Grad-CAM pass chose.
  const guided = isGuidedMethod(method)
    ? await guidedBackprop(network, request.input, maps ? { kind: 'perImage', classes: maps.map((perImage) => perImage.map((result) => result.classIndex)) } : request.classes, request.target ?? request.score ?? 'logit')
    : undefined;
  const explanations = (maps ?? guided!).map((perImage, image) =>
    perImage.map((_, rank) => explanationOf(maps?.[image]?.[rank], guided?.[image]?.[rank])),
  );
  const total = performance.now() - started;
  const backward = Math.min(total, network.lastBackwardTimings.backward);
  return { explanations, timings: { forward: total - backward, backward } };
}

function computeMaps(network: Executor, request: ExplainRequest, methodName: string): Promise<CamResult[][]> {
  const method = createMethod(methodName);
  const camRequest = {
    input: request.input,
    layers: request.layers,
    classes: request.classes,
    target: request.target ?? request.score ?? 'logit',
    eigenSmooth: request.eigenSmooth ?? false,
    signal: request.signal,
  };
  return request.augSmooth ? augmentedCompute(method, network, camRequest) : method.compute(network, camRequest);
}

/** The record of one class of one image, from its map, its guided gradient, or both (Guided Grad-CAM). */
function explanationOf(cam: CamResult | undefined, guided: GuidedResult | undefined): ClassExplanation {
  const { image, classIndex, score, probability } = (cam ?? guided)!;
  return {
    image,
    classIndex,
    score,
    probability,
    ...(cam === undefined ? {} : { map: cam.map, layerMaps: cam.layerMaps }),
    ...(guided === undefined ? {} : { gradient: cam === undefined ? guided.gradient : guidedGradCam(guided.gradient, cam.map) }),
  };
}
