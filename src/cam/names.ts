/**
 * The CAM methods' names and aliases, apart from their implementations so
 * that the command line can check `--method` without loading TensorFlow.js.
 */
import { UsageError } from '../util/errors.js';

/** Methods whose output is a gradient image rather than a heatmap. */
export const GUIDED_METHODS = ['guidedbackprop', 'guidedgradcam'] as const;
export type GuidedMethodName = (typeof GUIDED_METHODS)[number];

/** Methods that make a heatmap, in the order `--help` lists them. */
export const MAP_METHOD_NAMES = ['gradcam', 'gradcampp', 'xgradcam', 'hirescam', 'layercam', 'cam', 'scorecam', 'eigencam'] as const;

export type MapMethodName = (typeof MAP_METHOD_NAMES)[number];

export const METHOD_NAMES: readonly string[] = [...MAP_METHOD_NAMES, ...GUIDED_METHODS];

/** What the class score Y is: the pre-softmax score (the logit) or the probability (the same as `--target prob`). */
export const SCORE_KINDS = ['logit', 'prob'] as const;
export type ScoreKind = (typeof SCORE_KINDS)[number];

export { TARGET_KINDS, type TargetKind, isTargetKind } from './targets/spec.js';

export function isScoreKind(value: string): value is ScoreKind {
  return (SCORE_KINDS as readonly string[]).includes(value);
}

const ALIASES: Record<string, string> = {
  'gradcam++': 'gradcampp',
  gradcamplusplus: 'gradcampp',
  'grad-cam': 'gradcam',
  'score-cam': 'scorecam',
  'eigen-cam': 'eigencam',
  'guided-backprop': 'guidedbackprop',
  guidedbp: 'guidedbackprop',
  'guided-gradcam': 'guidedgradcam',
};

/** The canonical method name (used in file names), accepting aliases. */
export function canonicalMethod(name: string): string {
  const lower = name.toLowerCase();
  const canonical = ALIASES[lower] ?? lower;
  if (!METHOD_NAMES.includes(canonical)) {
    throw new UsageError(`unknown method '${name}': choose one of ${METHOD_NAMES.join(', ')} (gradcam++ = gradcampp)`);
  }
  return canonical;
}

export function isMapMethod(name: string): name is MapMethodName {
  return (MAP_METHOD_NAMES as readonly string[]).includes(name);
}

export function isGuidedMethod(name: string): name is GuidedMethodName {
  return (GUIDED_METHODS as readonly string[]).includes(name);
}


/**
 * Why a method runs wholly on tfjs, if it does: guided backprop
 * differentiates down to the input, which ONNX Runtime cannot (it has no
 * gradients), so under auto it gets no ONNX Runtime session (issue 12).
 */
export function tfjsOnlyMethodReason(method: string): string | undefined {
  return method === 'guidedbackprop' ? 'guided backprop runs wholly on tfjs (its gradient reaches the input)' : undefined;
}
