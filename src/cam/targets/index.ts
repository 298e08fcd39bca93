/** The targets: what turns forward values into the scalar Y a CAM method explains. */
import type { ScoreKind } from '../names.js';
import { scoreTarget } from './class.js';
import { FunctionTarget, type TargetFunction } from './function.js';
import type { Target } from './target.js';

export { type Target, type TargetRecord, ownRows } from './target.js';
export { ClassTarget, ProbTarget, scoreTarget } from './class.js';
export { SigmoidTarget } from './sigmoid.js';
export { OutputTarget } from './output.js';
export { type Region, type RegionImage, type RegionMask, RegionTarget, loadRegionMask, regionCellWeights } from './region.js';
export { SimilarityTarget, embeddingOf } from './similarity.js';
export { FunctionTarget, type TargetFunction } from './function.js';
export { NEGATIVE_CLASS, type RegionBox, TARGET_KINDS, type TargetKind, type TargetSpec, isTargetKind, parseRegionBox, targetFileSuffix } from './spec.js';

/** What a request may name as its target: a target, a function of the forward values and a row, or a score kind. */
export type TargetLike = Target | TargetFunction | ScoreKind;

export function asTarget(target: TargetLike): Target {
  if (typeof target === 'string') return scoreTarget(target);
  if (typeof target === 'function') return new FunctionTarget(target);
  return target;
}
export { type ModelOutput, type TargetChoice, type TargetRequest, chooseTarget, defaultEmbedding, describeOutputs, hasClassHead, modelOutputs } from './resolve.js';
