/**
 * What refuses an ONNX model before anything is built or any image read:
 * its opset, its ops, the order of its nodes, and its input, which must be
 * one image tensor.
 */
import { CamvizError, UsageError } from '../../util/errors.js';
import { MAX_OPSET, supportedOp } from './interpret.js';
import type { OnnxModel } from './types.js';

/** The oldest: torchvision's exports start at 11; older graphs use since-removed op versions. */
export const MIN_OPSET = 7;

/**
 * The largest input side camviz builds a graph for: the bound of --size
 * (src/cli/options.ts), where a MobileNet forward pass already needs over
 * 2 GB. A graph declaring a larger fixed input is refused before the load
 * pass allocates it.
 */
export const MAX_INPUT_SIDE = 4096;

/** Refuses an input size the load pass could not allocate. */
export function checkInputSize(size: { width: number; height: number }, file: string): void {
  if (size.width > MAX_INPUT_SIDE || size.height > MAX_INPUT_SIDE) {
    throw new CamvizError(`input size ${size.width}x${size.height} is larger than camviz runs (${MAX_INPUT_SIDE} pixels a side)`, { file });
  }
}

/**
 * Refuses an input size that contradicts a side the graph fixes: ONNX
 * Runtime runs only the sizes the input declares, and refused every image.
 * `given` says where the size came from: --size (a usage error) or camviz.json.
 */
export function checkInputFits(input: OnnxImageInput, size: { width: number; height: number }, file: string, given: 'option' | 'camviz.json'): void {
  const heightFits = input.height === undefined || input.height === size.height;
  const widthFits = input.width === undefined || input.width === size.width;
  if (heightFits && widthFits) return;
  const declared = `${input.width ?? 'any'}x${input.height ?? 'any'}`;
  const message = `${given === 'option' ? '--size' : "camviz.json's inputSize"} ${size.width}x${size.height} does not fit the model's input '${input.name}', fixed at ${declared} (width x height): give that size, or export the model with dynamic sides`;
  throw given === 'option' ? new UsageError(message, { file }) : new CamvizError(message, { file });
}

/** The image input the graph takes, in the ONNX (NCHW) order of its shape. */
export interface OnnxImageInput {
  name: string;
  channels: number;
  /** Fixed spatial size, when the graph declares one. */
  height: number | undefined;
  width: number | undefined;
}

/** The default-domain opset of the model, refused when camviz does not claim it. */
export function defaultOpset(model: OnnxModel, file: string): number {
  const opset = model.opsets.get('') ?? model.opsets.get('ai.onnx');
  if (opset === undefined) throw new CamvizError('the model imports no default ONNX opset', { file });
  if (opset > MAX_OPSET) throw new CamvizError(`ONNX opset ${opset} is newer than camviz supports (${MIN_OPSET} to ${MAX_OPSET})`, { file });
  if (opset < MIN_OPSET) throw new CamvizError(`ONNX opset ${opset} is older than camviz supports (${MIN_OPSET} to ${MAX_OPSET})`, { file });
  return opset;
}

/**
 * The graph's image input: one 4-D input [N, C, H, W] with 1 or 3 channels.
 * Anything else is refused before any image is read.
 */
export function imageInput(model: OnnxModel, file: string): OnnxImageInput {
  const inputs = model.graph.inputs;
  if (inputs.length === 0) {
    // An input with an initializer of its name is a weight with a default (ONNX IR 4 and later): nothing is left to feed.
    throw new CamvizError('the graph takes no input to feed (an input with an initializer of its name is a weight): camviz feeds one image tensor [N, C, H, W]', { file });
  }
  if (inputs.length !== 1) {
    throw new CamvizError(`the graph takes ${inputs.length} inputs (${inputs.map((input) => input.name).join(', ')}); camviz feeds one image tensor`, { file });
  }
  const input = inputs[0]!;
  const shape = input.shape;
  const described = `input '${input.name}' ${shape === undefined ? 'of unknown rank' : `[${shape.map((dim) => dim ?? '?').join(', ')}]`}`;
  if (input.type !== undefined && input.type !== 'float32') {
    throw new CamvizError(`${described} is ${input.type}, not an image tensor (float32 [N, C, H, W])`, { file });
  }
  if (shape === undefined || shape.length !== 4) throw new CamvizError(`${described} is not an image tensor [N, C, H, W]`, { file });
  const [batch, channels, height, width] = shape;
  if (channels !== 1 && channels !== 3) throw new CamvizError(`${described} is not an image tensor [N, C, H, W] with 1 or 3 channels`, { file });
  // ONNX Runtime would refuse every batch (camviz feeds one image, or batches of its own size), and a side of 0 every image.
  if (typeof batch === 'number' && batch !== 1) throw new CamvizError(`${described} takes a fixed batch of ${batch}: camviz needs batch 1 or a dynamic batch (export the model so)`, { file });
  if ([height, width].some((dim) => typeof dim === 'number' && dim < 1)) throw new CamvizError(`${described} declares an image side of 0`, { file });
  const fixed = (dim: number | string | null | undefined): number | undefined => (typeof dim === 'number' && dim > 0 ? dim : undefined);
  return { name: input.name, channels, height: fixed(height), width: fixed(width) };
}

/** Refuses ops camviz does not run, naming the op type, the node and the opset. */
export function checkSupportedOps(model: OnnxModel, opset: number, file: string): void {
  for (const node of model.graph.nodes) {
    const domain = node.domain === 'ai.onnx' ? '' : node.domain;
    if (domain !== '') throw new CamvizError(`ONNX op ${node.domain}.${node.opType} (node '${node.name}') is not supported: camviz runs the default domain only`, { file });
    if (!supportedOp(node.opType, opset)) {
      throw new CamvizError(`unsupported ONNX op ${node.opType} (node '${node.name}', opset ${opset})`, { file });
    }
  }
}

/**
 * Refuses a graph whose nodes are not in topological order: a cycle, or a
 * value read before the node that writes it (or never written).
 */
export function checkGraphOrder(model: OnnxModel, file: string): void {
  const { graph } = model;
  if (graph.outputs.length === 0) throw new CamvizError('the graph has no outputs', { file });
  const known = new Set<string>([...graph.initializers.keys(), ...graph.inputs.map((input) => input.name)]);
  const writer = new Map<string, number>();
  graph.nodes.forEach((node, index) => node.outputs.forEach((value) => writer.set(value, index)));
  graph.nodes.forEach((node, index) => {
    for (const value of node.inputs) {
      if (value === '' || known.has(value)) continue;
      const from = writer.get(value);
      if (from === undefined) throw new CamvizError(`node '${node.name}' reads '${value}', which no node writes and no input or initializer holds`, { file });
      if (reaches(model, index, from)) throw new CamvizError(`the graph has a cycle through nodes '${node.name}' and '${graph.nodes[from]!.name}'`, { file });
      throw new CamvizError(`node '${node.name}' reads '${value}' before node '${graph.nodes[from]!.name}' writes it (nodes are not in topological order)`, { file });
    }
    for (const value of node.outputs) if (value !== '') known.add(value);
  });
  for (const output of graph.outputs) {
    if (!known.has(output.name)) throw new CamvizError(`graph output '${output.name}' is written by no node`, { file });
  }
}

/** Whether node `to` depends on the outputs of node `from` (through any path). */
function reaches(model: OnnxModel, from: number, to: number): boolean {
  const nodes = model.graph.nodes;
  const readers = new Map<string, number[]>();
  nodes.forEach((node, index) => node.inputs.forEach((value) => readers.set(value, [...(readers.get(value) ?? []), index])));
  const seen = new Set<number>([from]);
  const pending = [from];
  for (let index = pending.pop(); index !== undefined; index = pending.pop()) {
    if (index === to) return true;
    for (const value of nodes[index]!.outputs) {
      for (const reader of readers.get(value) ?? []) {
        if (!seen.has(reader)) {
          seen.add(reader);
          pending.push(reader);
        }
      }
    }
  }
  return false;
}
