/**
 * Where an ONNX `--model` is and how it becomes camviz's model: a `.onnx`
 * file, a folder holding `model.onnx`, or an http(s) URL of a `.onnx`
 * (downloaded once into the cache). Checks that refuse a model (opset,
 * ops, graph order, the image input) all run before any image is read.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { basename, extname, join, resolve } from 'node:path';
import { type BuiltOnnxModel, buildOnnxModel } from './build.js';
import { type OnnxImageInput, checkGraphOrder, checkInputSize, checkSupportedOps, defaultOpset, imageInput } from './check.js';
import { readOnnxFile } from './read.js';
import type { LayerInfo } from '../../executor/layers.js';
import type { OnnxModel } from './types.js';

/** The file name a model folder holds its ONNX graph under. */
export const ONNX_MODEL_FILE = 'model.onnx';

/**
 * Whether a file holds an ONNX ModelProto rather than a model.json: its
 * name ends in `.onnx`, or its first byte is 0x08, the tag of ir_version
 * (field 1, a varint), which protobuf writers put first and no JSON text
 * starts with.
 */
export async function isOnnxFile(path: string): Promise<boolean> {
  if (extname(path).toLowerCase() === '.onnx') return true;
  const handle = await open(path, 'r').catch(() => undefined);
  if (handle === undefined) return false;
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(1), 0, 1, 0);
    return bytesRead === 1 && buffer[0] === 0x08;
  } finally {
    await handle.close();
  }
}

/** The .onnx file a local `--model` value names, or undefined when it is not an ONNX model. */
export async function localOnnxPath(spec: string): Promise<string | undefined> {
  const path = resolve(spec);
  const info = await stat(path).catch(() => undefined);
  if (info === undefined) return undefined;
  if (info.isDirectory()) {
    const inside = join(path, ONNX_MODEL_FILE);
    const hasJson = (await stat(join(path, 'model.json')).catch(() => undefined))?.isFile() === true;
    return !hasJson && (await stat(inside).catch(() => undefined))?.isFile() === true ? inside : undefined;
  }
  return info.isFile() && (await isOnnxFile(path)) ? path : undefined;
}

/** Whether a URL names a .onnx file (query and fragment aside). */
export function isOnnxUrl(spec: string): boolean {
  if (!/^https?:\/\//i.test(spec)) return false;
  try {
    return new URL(spec).pathname.toLowerCase().endsWith('.onnx');
  } catch {
    return false;
  }
}

/** sha256 of a file, read as a stream (ONNX files can be large). */
export async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** A parsed and checked ONNX model, before it is built for an input size. */
export interface CheckedOnnx {
  readonly path: string;
  readonly sha256: string;
  readonly model: OnnxModel;
  readonly opset: number;
  readonly input: OnnxImageInput;
  /** The model's name: the file name without `.onnx` (the folder's for model.onnx). */
  readonly name: string;
}

/** Reads and checks an ONNX file: everything that can refuse it before an image is read. */
export async function readCheckedOnnx(path: string): Promise<CheckedOnnx> {
  const model = await readOnnxFile(path);
  const opset = defaultOpset(model, path);
  checkSupportedOps(model, opset, path);
  checkGraphOrder(model, path);
  const input = imageInput(model, path);
  const file = basename(path);
  const name = file === ONNX_MODEL_FILE ? basename(resolve(path, '..')) : file.replace(/\.onnx$/i, '');
  return { path, sha256: await fileSha256(path), model, opset, input, name };
}

/** Builds the layers model of a checked ONNX model for an input of `size`. */
export function buildChecked(checked: CheckedOnnx, size: { width: number; height: number }): BuiltOnnxModel {
  checkInputSize(size, checked.path);
  return buildOnnxModel(checked.model, checked.input, size, checked.opset, checked.path);
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
