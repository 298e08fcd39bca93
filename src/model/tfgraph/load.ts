/**
 * A TF.js graph model as camviz's model: checks that refuse it (no image
 * input) and, unless it needs `executeAsync`, its layers model (build.ts)
 * for the input size in use. A graph with control flow stays predict-only.
 */
import type { GraphModel } from '@tensorflow/tfjs-converter';
import { CamvizError } from '../../util/errors.js';
import { type BuiltTfGraph, buildTfGraphModel } from './build.js';
import { needsExecuteAsync, readNodes, valueKey } from './graph-def.js';

/** A graph model's layers model, or why it has none (it then supports predict only). */
export type ImportedTfGraph = { readonly built: BuiltTfGraph } | { readonly predictOnly: string };

/**
 * The graph's one input, checked to be an image tensor [batch, height,
 * width, 3] (unknown dims allowed): camviz feeds nothing else.
 */
export function checkImageInput(graphModel: GraphModel, file: string): string {
  const inputs = graphModel.inputs;
  if (inputs.length !== 1) {
    const names = inputs.map((input) => `'${input.name}'`).join(', ');
    throw new CamvizError(`the graph has ${inputs.length} inputs (${names || 'none'}); camviz feeds one image tensor [batch, height, width, 3]`, { file });
  }
  const input = inputs[0]!;
  const shape = input.shape;
  const channels = shape?.[3];
  if (shape !== undefined && (shape.length !== 4 || (channels !== undefined && channels !== -1 && channels !== 3))) {
    throw new CamvizError(`the graph's input '${input.name}' has shape [${shape.join(', ')}], not an image tensor [batch, height, width, 3]`, { file });
  }
  if (input.dtype !== undefined && input.dtype !== 'float32') {
    throw new CamvizError(`the graph's input '${input.name}' is ${input.dtype}, not a float32 image tensor`, { file });
  }
  return input.name;
}

/** Builds the layers model of a graph model for an input of `size`, or says why it stays predict-only. */
export function importTfGraph(graphModel: GraphModel, topology: Readonly<Record<string, unknown>>, size: { width: number; height: number }, file: string): ImportedTfGraph {
  const inputName = checkImageInput(graphModel, file);
  const nodes = readNodes(topology);
  const asyncNode = nodes.find((node) => needsExecuteAsync(node.op));
  if (asyncNode !== undefined) {
    return { predictOnly: `op '${asyncNode.op}' (node '${asyncNode.name}') needs executeAsync, which camviz cannot differentiate: this graph model supports predict only` };
  }
  const outputs = graphModel.outputs.map((output) => valueKey(output.name));
  return { built: buildTfGraphModel(graphModel, nodes, { name: inputName }, outputs, size, file) };
}
