/** The CAM methods by name. */
import { UsageError } from '../util/errors.js';
import type { CamMethod } from './base.js';
import { type MapMethodName, canonicalMethod, isMapMethod } from './names.js';
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
export { type GuidedResult, guidedBackprop, guidedGradCam } from './guided.js';
export { firstPrincipalProjection } from './projection.js';
export { GUIDED_METHODS, type GuidedMethodName, MAP_METHOD_NAMES, type MapMethodName, METHOD_NAMES, SCORE_KINDS, canonicalMethod, isGuidedMethod, isMapMethod } from './names.js';

// Typed by the names, so that a method listed there and not here (or the reverse) does not compile.
const MAP_METHODS: Record<MapMethodName, () => CamMethod> = {
  gradcam: () => new GradCam(),
  gradcampp: () => new GradCamPlusPlus(),
  xgradcam: () => new XGradCam(),
  hirescam: () => new HiResCam(),
  layercam: () => new LayerCam(),
  cam: () => new Cam(),
  scorecam: () => new ScoreCam(),
  eigencam: () => new EigenCam(),
};

export function createMethod(name: string): CamMethod {
  const canonical = canonicalMethod(name);
  if (!isMapMethod(canonical)) throw new UsageError(`'${name}' makes gradient images, not maps`);
  return MAP_METHODS[canonical]();
}
