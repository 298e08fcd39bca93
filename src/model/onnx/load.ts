/**
 * Where an ONNX `--model` is and how it becomes camviz's model: a `.onnx`
 * file, a folder holding `model.onnx`, or an http(s) URL of a `.onnx`
 * (downloaded once into the cache). Checks that refuse a model (opset,
 * ops, graph order, the image input) all run before any image is read.
 */
import { basename, resolve } from 'node:path';
import { type BuiltOnnxModel, buildOnnxModel } from './build.js';
import { type OnnxImageInput, checkGraphOrder, checkInputSize, checkSupportedOps, defaultOpset, imageInput } from './check.js';
import { ONNX_MODEL_FILE } from './file.js';
import { type OnnxExternalData, readOnnxWithSha256 } from './read.js';
import type { LayerInfo } from '../../executor/layers.js';
import type { OnnxModel } from './types.js';

export { ONNX_MODEL_FILE, isOnnxFile, isOnnxUrl, localOnnxPath } from './file.js';
export { checkInputFits } from './check.js';

/** A parsed and checked ONNX model, before it is built for an input size. */
export interface CheckedOnnx {
  readonly path: string;
  readonly sha256: string;
  /** Set when the model keeps tensors in external files. */
  readonly externalData?: OnnxExternalData;
  readonly model: OnnxModel;
  readonly opset: number;
  readonly input: OnnxImageInput;
  /** The model's name: the file name without `.onnx` (the folder's for model.onnx). */
  readonly name: string;
}

/** Reads and checks an ONNX file: everything that can refuse it before an image is read. */
export async function readCheckedOnnx(path: string): Promise<CheckedOnnx> {
  const { model, sha256, externalData } = await readOnnxWithSha256(path);
  const opset = defaultOpset(model, path);
  checkSupportedOps(model, opset, path);
  checkGraphOrder(model, path);
  const input = imageInput(model, path);
  const file = basename(path);
  const name = file === ONNX_MODEL_FILE ? basename(resolve(path, '..')) : file.replace(/\.onnx$/i, '');
  return { path, sha256, ...(externalData === undefined ? {} : { externalData }), model, opset, input, name };
}

/** Builds the layers model of a checked ONNX model for an input of `size`. */
export function buildChecked(checked: CheckedOnnx, size: { width: number; height: number }): BuiltOnnxModel {
  checkInputSize(size, checked.path);
  const built = buildOnnxModel(checked.model, checked.input, size, checked.opset, checked.path);
  return checked.externalData === undefined ? built : { ...built, externalData: checked.externalData };
}

/** A row of an ONNX model's layer table. */
export interface OnnxLayerInfo extends LayerInfo {
  /** The PyTorch module whose output this node is (the outermost), if any. */
  module?: string;
}

/**
 * The layer table of an ONNX model as its user knows it: ONNX node names,
 * the module each node's output is, and ONNX (NCHW) output shapes rather
 * than the NHWC shapes camviz computes in.
 */
export function describeOnnxLayers(built: BuiltOnnxModel, layers: readonly LayerInfo[]): OnnxLayerInfo[] {
  return layers.map((layer) => {
    const module = built.modules.get(layer.name);
    return {
      ...layer,
      name: built.nodeNames.get(layer.name) ?? layer.name,
      outputShape: [...(built.onnxShapes.get(layer.name) ?? layer.outputShape)],
      ...(module === undefined ? {} : { module }),
    };
  });
}
