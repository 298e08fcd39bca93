/**
 * What camviz needs to know about a model beyond its weights: how to
 * preprocess pixels, the input size, the class labels and where the class
 * scores are. It comes from the zoo entry, a `camviz.json` beside
 * model.json, or a recognised model.json hash, and can be overridden on the
 * command line.
 */
import { dirname, join, resolve } from 'node:path';
import { CamvizError, UsageError } from '../util/errors.js';
import { readOptionalJson } from '../util/json-file.js';
import { imagenetLabels, readLabelsFile } from './labels.js';
import { type PreprocessName, parsePreprocess } from '../image/preprocess.js';

/** The `camviz.json` file format (all fields optional). */
export interface CamvizJson {
  name?: string;
  description?: string;
  preprocess?: PreprocessName;
  /** Square side, or [height, width]. */
  inputSize?: number | [number, number];
  /** A list of names, a labels file relative to the model folder, or "imagenet". */
  labels?: string[] | string;
  /** The layer whose output is the pre-softmax class score. */
  scoreLayer?: string;
  /** The default CAM target layer. */
  targetLayer?: string;
}

export interface InputSize {
  width: number;
  height: number;
}

export interface ModelMetadata {
  name: string;
  description?: string;
  /** What the user asked for: a path, zoo name or URL. */
  source: string;
  /** The local model.json (or .onnx file) that was read. */
  modelJsonPath: string;
  /** sha256 of model.json (or of the .onnx or .h5 file; of a .keras file's entries' names, sizes and CRC-32s: keras/). */
  sha256: string;
  format: ModelFormat;
  preprocess: PreprocessName;
  /** Where the preprocessing setting came from. */
  preprocessSource: 'option' | 'camviz.json' | 'zoo' | 'default';
  inputSize: InputSize;
  labels?: string[];
  scoreLayer?: string;
  targetLayer?: string;
  /** Why the model has no default CAM target (a vision transformer's last layers are token sequences): CAM commands then need --layer. */
  noTargetLayer?: string;
}

export type ModelFormat = 'layers' | 'graph' | 'onnx';

export interface MetadataOverrides {
  preprocess?: string;
  labels?: string;
  /** `224` or `224x192` (width x height). */
  size?: string;
}

export const DEFAULT_PREPROCESS: PreprocessName = 'unit';

export async function readCamvizJson(modelJsonPath: string): Promise<CamvizJson | undefined> {
  return (await readOptionalJson(join(dirname(modelJsonPath), 'camviz.json'), 'camviz.json')) as CamvizJson | undefined;
}

export function parseSize(value: string): InputSize {
  const match = /^(\d+)(?:x(\d+))?$/i.exec(value.trim());
  if (!match) throw new UsageError(`--size '${value}' is not a size: give 224 or WIDTHxHEIGHT`);
  const width = Number(match[1]);
  const height = match[2] === undefined ? width : Number(match[2]);
  if (width < 1 || height < 1) throw new UsageError(`--size '${value}' must be positive`);
  return { width, height };
}

function sizeFromJson(size: number | [number, number]): InputSize {
  return typeof size === 'number' ? { width: size, height: size } : { height: size[0], width: size[1] };
}

interface MetadataSources {
  source: string;
  modelJsonPath: string;
  sha256: string;
  format: ModelFormat;
  /** The model's input shape [batch, height, width, channels], if known. */
  inputShape?: readonly (number | null)[];
  /** What the format implies, below every other source (ONNX: torch preprocessing, 224). */
  defaults?: CamvizJson;
  /** Metadata of the zoo entry or recognised model. */
  known?: CamvizJson;
  camvizJson?: CamvizJson;
  overrides: MetadataOverrides;
}

/** Merges the metadata sources: option > camviz.json > zoo/known > model. */
export async function resolveMetadata(sources: MetadataSources): Promise<ModelMetadata> {
  const { overrides, camvizJson, known } = sources;
  const folder = dirname(sources.modelJsonPath);
  const merged: CamvizJson = { ...sources.defaults, ...known, ...camvizJson };
  const preprocess = resolvePreprocess(overrides.preprocess, camvizJson, known, sources.defaults?.preprocess);
  const inputSize = resolveInputSize(overrides.size, { ...known, ...camvizJson }, sources.inputShape, sources.modelJsonPath, sources.defaults?.inputSize);
  const labels = overrides.labels !== undefined ? await readLabelsFile(resolve(overrides.labels)) : await labelsFrom(merged.labels, folder);
  return {
    name: merged.name ?? defaultName(sources.modelJsonPath),
    ...(merged.description === undefined ? {} : { description: merged.description }),
    source: sources.source,
    modelJsonPath: sources.modelJsonPath,
    sha256: sources.sha256,
    format: sources.format,
    ...preprocess,
    inputSize,
    ...(labels === undefined ? {} : { labels }),
    ...(merged.scoreLayer === undefined ? {} : { scoreLayer: merged.scoreLayer }),
    ...(merged.targetLayer === undefined ? {} : { targetLayer: merged.targetLayer }),
  };
}

function resolvePreprocess(
  option: string | undefined,
  camvizJson: CamvizJson | undefined,
  known: CamvizJson | undefined,
  formatDefault: PreprocessName | undefined,
): Pick<ModelMetadata, 'preprocess' | 'preprocessSource'> {
  if (option !== undefined) return { preprocess: parsePreprocess(option), preprocessSource: 'option' };
  if (camvizJson?.preprocess !== undefined) return { preprocess: parsePreprocess(camvizJson.preprocess), preprocessSource: 'camviz.json' };
  if (known?.preprocess !== undefined) return { preprocess: known.preprocess, preprocessSource: 'zoo' };
  return { preprocess: formatDefault ?? DEFAULT_PREPROCESS, preprocessSource: 'default' };
}

function resolveInputSize(
  option: string | undefined,
  merged: CamvizJson,
  inputShape: readonly (number | null)[] | undefined,
  file: string,
  formatDefault: CamvizJson['inputSize'],
): InputSize {
  if (option !== undefined) return parseSize(option);
  if (merged.inputSize !== undefined) return sizeFromJson(merged.inputSize);
  const height = inputShape?.[1];
  const width = inputShape?.[2];
  if (typeof height === 'number' && typeof width === 'number') return { width, height };
  // One side fixed: square at that side, rather than a default the fixed side would contradict.
  if (typeof height === 'number') return { width: height, height };
  if (typeof width === 'number') return { width, height: width };
  if (formatDefault !== undefined) return sizeFromJson(formatDefault);
  throw new CamvizError('the model accepts any input size: give --size (or inputSize in camviz.json)', { file });
}

async function labelsFrom(labels: string[] | string | undefined, folder: string): Promise<string[] | undefined> {
  if (labels === undefined) return undefined;
  if (Array.isArray(labels)) return labels;
  if (labels === 'imagenet') return imagenetLabels();
  // Relative to the model folder; an absolute path stays as it is.
  return readLabelsFile(resolve(folder, labels));
}

function defaultName(modelJsonPath: string): string {
  const folder = dirname(modelJsonPath);
  return folder.split(/[\\/]/).pop() || 'model';
}
