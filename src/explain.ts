/**
 * The library's high-level call: explain images with a model, by class and
 * layer names, and get maps plus pictures ready to save.
 *
 *   const model = await loadModel('mobilenet_v1_0.75_224');
 *   const image = await loadImage('cat.jpg', { size: model.meta.inputSize });
 *   const [[cat]] = await explain(model, [image], { classes: ['tabby cat'] });
 *   await writeFile('cat.png', await encodePng(cat.picture.rgb, cat.picture.width, cat.picture.height));
 */
import { type FeatureMap, type ScoreKind, canonicalMethod } from './cam/index.js';
import { explainBatch } from './cam/explain.js';
import type { TargetLike } from './cam/targets/index.js';
import { camTargets, classRequest } from './cam/request.js';
import type { LoadedImage } from './image/image.js';
import type { CamvizModel } from './model/load.js';
import { inputTensor } from './model/predict.js';
import { type ExplanationImage, type ExplanationImageOptions, renderExplanation } from './render/explanation.js';
import type { GradientImage } from './render/maps.js';

export interface ExplainOptions extends ExplanationImageOptions {
  /** Default `gradcam`. */
  method?: string;
  /** Target layer names; default: the model's default target. */
  layers?: readonly string[];
  /** Class indices or label names; default: each image's top `topK`. */
  classes?: readonly (number | string)[];
  topK?: number;
  score?: ScoreKind;
  /** What Y is (see Targets): a target object, a function of the forward values and a row, or a score kind; wins over `score`. */
  target?: TargetLike;
  augSmooth?: boolean;
  eigenSmooth?: boolean;
}

export interface Explanation {
  /** The canonical method name (`gradcampp` for `gradcam++`). */
  method: string;
  /** Target layer paths; empty for guided backprop alone. */
  layers: string[];
  classIndex: number;
  label: string | null;
  score: number;
  /** The probability that goes with the score; null for targets without one (output, region, similarity). */
  probability: number | null;
  /** The raw map (after ReLU) at feature resolution; absent for guided backprop. */
  map?: FeatureMap;
  /** Guided methods: the gradient image shown (times the normalised Grad-CAM map for Guided Grad-CAM), at input size. */
  gradient?: GradientImage;
  /** The picture over the original image, with the normalised heat and its peak. */
  picture: ExplanationImage;
}

/** Explanations for every image (outer) and class (inner). */
export async function explain(model: CamvizModel, images: readonly LoadedImage[], options: ExplainOptions = {}): Promise<Explanation[][]> {
  const method = canonicalMethod(options.method ?? 'gradcam');
  // Guided backprop alone differentiates down to the input; no layer is used.
  const layers = method === 'guidedbackprop' ? [] : camTargets(model, options.layers ?? []);
  const input = inputTensor(model, images.map((image) => image.input));
  try {
    const batch = await explainBatch(await model.executor(), {
      method,
      input,
      layers,
      classes: classRequest(model, options.classes ?? [], options.topK ?? 1),
      ...(options.score === undefined ? {} : { score: options.score }),
      ...(options.target === undefined ? {} : { target: options.target }),
      ...(options.augSmooth === undefined ? {} : { augSmooth: options.augSmooth }),
      ...(options.eigenSmooth === undefined ? {} : { eigenSmooth: options.eigenSmooth }),
    });
    return batch.explanations.map((perImage, i) =>
      perImage.map(({ classIndex, score, probability, map, gradient }) => ({
        method,
        layers: layers.map((node) => node.path),
        classIndex,
        label: model.meta.labels?.[classIndex] ?? null,
        score,
        probability,
        ...(map ? { map } : {}),
        ...(gradient ? { gradient } : {}),
        picture: renderExplanation(map, gradient, images[i]!, { preprocess: model.meta.preprocess, ...options }),
      })),
    );
  } finally {
    input.dispose();
  }
}
