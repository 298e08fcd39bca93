/** The CAM methods by name. */
import { UsageError } from '../errors.js';
import type { CamMethod } from './base.js';
import { Cam } from './cam.js';
import { EigenCam } from './eigencam.js';
import { GradCam } from './gradcam.js';
import { GradCamPlusPlus } from './gradcampp.js';
import { HiResCam } from './hirescam.js';
import { LayerCam } from './layercam.js';
import { ScoreCam } from './scorecam.js';
import { XGradCam } from './xgradcam.js';

export * from './base.js';
export { Cam, classifierKernel } from './cam.js';
export { EigenCam } from './eigencam.js';
export { GradCam } from './gradcam.js';
export { GradCamPlusPlus } from './gradcampp.js';
export { HiResCam } from './hirescam.js';
export { LayerCam } from './layercam.js';
export { ScoreCam } from './scorecam.js';
export { XGradCam } from './xgradcam.js';
export { augmentedCompute } from './smooth.js';
export { type GuidedResult, deprocessGradient, guidedBackprop, guidedGradCam } from './guided.js';
export { firstPrincipalProjection } from './projection.js';

const MAP_METHODS: Record<string, () => CamMethod> = {
  gradcam: () => new GradCam(),
  gradcampp: () => new GradCamPlusPlus(),
  xgradcam: () => new XGradCam(),
  hirescam: () => new HiResCam(),
  layercam: () => new LayerCam(),
  cam: () => new Cam(),
  scorecam: () => new ScoreCam(),
  eigencam: () => new EigenCam(),
};

/** Methods whose output is a gradient image rather than a heatmap. */
export const GUIDED_METHODS = ['guidedbackprop', 'guidedgradcam'] as const;
export type GuidedMethodName = (typeof GUIDED_METHODS)[number];

export const METHOD_NAMES = [...Object.keys(MAP_METHODS), ...GUIDED_METHODS];

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

export function isGuidedMethod(name: string): name is GuidedMethodName {
  return (GUIDED_METHODS as readonly string[]).includes(name);
}

export function createMethod(name: string): CamMethod {
  const factory = MAP_METHODS[canonicalMethod(name)];
  if (factory === undefined) throw new UsageError(`'${name}' makes gradient images, not maps`);
  return factory();
}
