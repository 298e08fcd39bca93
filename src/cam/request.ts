/**
 * What the user asked for, in a model's terms: target layers by name (or
 * the model's default), and classes by index or label (or the top k).
 */
import { UsageError } from '../util/errors.js';
import type { GraphNode } from '../executor/graph.js';
import { classRequestOf } from '../model/labels.js';
import { defaultTarget, isCamTarget, resolveLayer } from '../executor/layers.js';
import type { CamvizModel } from '../model/load.js';
import type { ClassRequest } from './classes.js';
import { classUnits } from './targets/target.js';

/** The target layers; no names gives the model's default target. */
export function camTargets(model: CamvizModel, names: readonly string[]): GraphNode[] {
  const network = model.network();
  if (names.length === 0) {
    const target = defaultTarget(network, model.meta);
    if (target === undefined) throw new UsageError(model.meta.noTargetLayer ?? 'the model has no layer with a spatial output to explain (see camviz layers)');
    return [target];
  }
  return names.map((name) => resolveLayer(network, name, isCamTarget, 'a CAM target (4-D output with spatial size above 1)'));
}

/**
 * Classes by index or label, each spec one class or several separated by
 * commas (a whole label counts as one, though ImageNet's hold commas:
 * "tabby, tabby cat"); repeats are explained once. None gives each image's
 * top k.
 */
export function classRequest(model: CamvizModel, specs: readonly (string | number)[], topK = 1): ClassRequest {
  return classRequestOf(specs, topK, model.meta.labels, classCount(model));
}

/** The number of classes: the size of the model output. */
export function classCount(model: CamvizModel): number {
  return classUnits(model.network()) ?? model.meta.labels?.length ?? Number.MAX_SAFE_INTEGER;
}
