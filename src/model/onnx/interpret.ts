/**
 * A reference interpreter for ONNX graphs: runs the nodes in file order
 * with the op library, freeing each value after its last use. The model
 * builder (build.ts) runs the same ops inside tfl layers; this runs them
 * directly, for constant folding at load and for the conformance tests.
 */
import * as tf from '../../engine/tf.js';
import { CamvizError } from '../../util/errors.js';
import { laid, type LaidTensor, type Layout } from './layout.js';
import { runNode } from './ops/index.js';
import { tensorFromOnnx } from './ops/common.js';
import type { OnnxModel } from './types.js';

export { laid, toLayout, onnxShape, type LaidTensor, type Layout } from './layout.js';
export { runNode, supportedOp, SUPPORTED_OPS, UnsupportedOpError, MAX_OPSET } from './ops/index.js';
export { tensorFromOnnx } from './ops/common.js';

/** The default domain's opset of a model. */
export function defaultOpset(model: OnnxModel): number {
  return model.opsets.get('') ?? model.opsets.get('ai.onnx') ?? 1;
}

/**
 * Run `model` on `feeds` and return the `fetches` values (new tensors the
 * caller owns; the feeds stay the caller's and are not disposed). Every
 * other value, initializers included, is disposed once no later node reads
 * it, also when a node throws. Because it disposes intermediates it is not
 * for differentiation: under tf.grad, run the nodes with `runNode` (as the
 * model builder's layers do) and let tf.grad's scope free them.
 */
export function interpretGraph(model: OnnxModel, feeds: Map<string, LaidTensor>, fetches: string[]): Map<string, LaidTensor> {
  const { graph } = model;
  const opset = defaultOpset(model);
  const lastUse = lastUses(model, fetches);
  const owned = new Map<string, LaidTensor>();
  const lookup = (name: string): LaidTensor | undefined => {
    if (name === '') return undefined;
    const value = owned.get(name) ?? feeds.get(name);
    if (value !== undefined) return value;
    const initializer = graph.initializers.get(name);
    if (initializer === undefined) {
      const fed = graph.inputs.some((input) => input.name === name);
      throw new CamvizError(fed ? `ONNX graph input '${name}' is not fed` : `ONNX value '${name}' is read before it is computed`);
    }
    const created = laid(tensorFromOnnx(initializer));
    owned.set(name, created);
    return created;
  };
  const release = (name: string): void => {
    const value = owned.get(name);
    if (value === undefined || fetches.includes(name)) return;
    value.tensor.dispose();
    owned.delete(name);
  };
  try {
    graph.nodes.forEach((node, index) => {
      const outputs = runNode(node, node.inputs.map(lookup), opset);
      node.outputs.forEach((name, i) => {
        const value = outputs[i];
        if (name === '' || value === undefined) value?.tensor.dispose();
        else owned.set(name, value);
      });
      outputs.slice(node.outputs.length).forEach((extra) => extra.tensor.dispose());
      for (const name of [...node.inputs, ...node.outputs]) if ((lastUse.get(name) ?? -1) <= index) release(name);
    });
    return collectFetches(fetches, owned, feeds);
  } catch (error) {
    for (const value of owned.values()) value.tensor.dispose();
    throw error;
  }
}

/** The index of the last node that reads each value (fetches: never released). */
function lastUses(model: OnnxModel, fetches: string[]): Map<string, number> {
  const last = new Map<string, number>();
  model.graph.nodes.forEach((node, index) => {
    for (const name of node.inputs) if (name !== '') last.set(name, index);
  });
  for (const name of fetches) last.set(name, Infinity);
  return last;
}

function collectFetches(fetches: string[], owned: Map<string, LaidTensor>, feeds: Map<string, LaidTensor>): Map<string, LaidTensor> {
  const result = new Map<string, LaidTensor>();
  for (const name of fetches) {
    const value = owned.get(name);
    if (value !== undefined) result.set(name, value);
    else {
      const feed = feeds.get(name);
      if (feed === undefined) throw new CamvizError(`ONNX value '${name}' is not computed by the graph`);
      result.set(name, { tensor: tf.clone(feed.tensor), layout: feed.layout as Layout });
    }
  }
  return result;
}
