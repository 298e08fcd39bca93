/**
 * How a layer whose output is not stored as camviz's NHWC feature map is
 * read as one, by every CAM method and by `fmap` (pytorch-grad-cam's
 * `reshape_transform`, found from the graph instead of written by the
 * user; the importer that proves it sets it: model/onnx/grid-views.ts):
 *
 * - 'tokens': a transformer's token sequence [N, T, C] whose last h x w
 *   tokens are a patch embedding's grid, row by row, after `leading` other
 *   tokens (ViT's class token): read as [N, h, w, C], the leading tokens
 *   dropped;
 * - 'channelsLast': a 4-D value whose axes are [N, H, W, C] (Swin's
 *   stages), which an importer that stores 4-D values as if NCHW holds
 *   transposed ([N, W, C, H]): read as [N, H, W, C].
 *
 * Both are re-indexings, so the gradient of the grid is the same view of
 * the layer's gradient, and activations and gradients go through the same
 * function.
 */
import * as tf from '../engine/tf.js';
import type { GraphNode, Layer } from './graph.js';

export type GridView =
  | { readonly kind: 'tokens'; readonly height: number; readonly width: number; readonly leading: number }
  | { readonly kind: 'channelsLast' };

const views = new WeakMap<Layer, GridView>();

/** Declares that `layer`'s (single) output reads as a grid through `view`. */
export function setGridView(layer: Layer, view: GridView): void {
  views.set(layer, view);
}

/** The view `node`'s output is read through, if any. */
export function gridViewOf(node: GraphNode): GridView | undefined {
  return node.outputShapes.length === 1 ? views.get(node.layer) : undefined;
}

/** The shape of `node`'s output as a feature map reads it: [N, h, w, C]; its own shape without a view. */
export function gridShape(node: GraphNode): readonly (number | null)[] | undefined {
  const shape = node.outputShapes[0];
  const view = gridViewOf(node);
  if (shape === undefined || view === undefined) return shape;
  if (view.kind === 'tokens') return [shape[0] ?? null, view.height, view.width, shape[2] ?? null];
  return [shape[0] ?? null, shape[3] ?? null, shape[1] ?? null, shape[2] ?? null];
}

/**
 * `tensor` (the output of `node`, or its gradient) as the [N, h, w, C]
 * grid: a new tensor when `node` has a view, `tensor` itself otherwise.
 * A token count other than the planned grid's is refused: the view was
 * proved for the graph's shapes at the size in use.
 */
export function asGrid(tensor: tf.Tensor, node: GraphNode): tf.Tensor {
  const view = gridViewOf(node);
  if (view === undefined) return tensor;
  if (view.kind === 'channelsLast') {
    if (tensor.rank !== 4) throw new Error(`layer ${node.path}: a channels-last view of a ${tensor.rank}-D value`);
    return tf.transpose(tensor, [0, 3, 1, 2]);
  }
  const [batch, tokens, channels] = tensor.shape;
  const { height, width, leading } = view;
  if (tensor.rank !== 3 || tokens !== leading + height * width) {
    throw new Error(`layer ${node.path}: [${tensor.shape.join(', ')}] is not ${leading} + ${height}x${width} tokens`);
  }
  return tf.tidy(() => tf.reshape(tf.slice(tensor, [0, leading, 0], [batch!, height * width, channels!]), [batch!, height, width, channels!]));
}
