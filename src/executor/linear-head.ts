/**
 * The gradient of a linear classifier head in closed form. When the path
 * from a source layer to the class scores is global average pooling, then
 * only reshapes, dropouts and linear activations, then one Dense or 1x1
 * Conv2D (bias or not), then only reshapes, a score is linear in the
 * source's values:
 *
 *   score[b, c] = Σ_k W[k, c] · mean_hw A[b, h, w, k] + bias[c]
 *
 * so an objective Σ_terms weight · score[image, class] has the gradient
 * dObjective/dA[b, h, w, k] = Σ_terms(image b) weight · W[k, class] / (H·W),
 * whatever A is. In plain JS this takes a fraction of a millisecond, where
 * tfjs-wasm's `valueAndGrad` over the same head spends milliseconds in op
 * dispatch. Objectives say they are such sums through `scoreTerms`.
 *
 * A pointwise classifier before the pooling may have its outputs rectified
 * (SqueezeNet's head: 1x1 conv, ReLU, pooling). The head is then linear
 * wherever the classifier's output z[b, h, w, c] is positive, and flat
 * elsewhere:
 *
 *   dObjective/dA[b, h, w, k] = Σ_terms(image b) weight · W[k, class] · [z[b, h, w, class] > 0] / (H·W)
 *
 * (ReLU's gradient at 0 is 0, as tfjs' is). The gate is read from the
 * forward pass's own value of z (or of ReLU(z): the same sign), fetched
 * with the scores: the mask is the one the scores were computed through.
 */
import * as tf from '../engine/tf.js';
import type { GraphNode, LayerGraph } from './graph.js';
import type { ForwardValues, Objective, ScoreTerm } from './network.js';
import type { ScoreLocation } from './score.js';
import { type PooledHead, addChannelGradient } from './closed-form.js';

/** A source's linear head: the classifier kernel and where the channels are in the source tensor. */
export interface LinearHead extends PooledHead {
  /** Read only: it may be the backend's own array (see kernelValues). */
  readonly kernel: Float32Array | undefined;
  /** The channel axis of the source tensor (3: NHWC, 1: NCHW as an ONNX value stored as ONNX holds it). */
  readonly channelAxis: 1 | 3;
  /**
   * Set when the classifier's outputs pass a ReLU before the pooling: the
   * graph value whose sign gates the gradient (the classifier's output, or
   * the ReLU's), [B, h, w, classes] with the classes on `classAxis`.
   */
  readonly gate?: RectifiedGate;
}

export interface RectifiedGate {
  readonly key: string;
  readonly classAxis: 1 | 3;
}

const PASS_THROUGH = new Set(['Reshape', 'Flatten', 'Dropout', 'SpatialDropout1D', 'SpatialDropout2D', 'GaussianNoise', 'GaussianDropout', 'AlphaDropout', 'Identity']);

interface KernelOwner {
  kernel?: { read(): tf.Tensor };
  /**
   * The kernel as [outputs, inputs(, 1, 1)], ONNX's and PyTorch's layout,
   * while the layer holds it so (an imported Conv or Gemm): read as it is,
   * where `kernel` may first have to make tfjs' layout from it.
   */
  outputMajorKernel?: () => tf.Tensor | undefined;
  kernelSize?: number[];
  strides?: number[];
  activation?: { getClassName(): string };
}

/**
 * What lies between a source value and the class scores: global average
 * pooling and at most one linear classifier (Dense or 1x1 Conv2D, before or
 * after the pooling: they commute), with only reshapes, dropouts, linear
 * activations and relabelled axes around them — or why not. A classifier
 * whose output activation is split off (the scores are its pre-activation)
 * counts as linear. CAM reads the classifier's kernel from it; the ONNX
 * Runtime executor differentiates such a head in closed form.
 *
 * With `allowRectified`, a pointwise classifier before the pooling may
 * also have its outputs rectified, by its own relu activation or one plain
 * ReLU after it (no cap: ReLU6 is refused), and `rectified` names the
 * rectified value, whose sign gates the gradient (see the top of this
 * file). CAM does not allow it: its weights are the classifier's only for
 * a linear head.
 */
export type HeadWalk = { readonly ok: true; readonly classifier: GraphNode | undefined; readonly rectified?: string } | { readonly ok: false; readonly why: string };

export function walkLinearHead(graph: LayerGraph, sourceKey: string, score: ScoreLocation, { allowRectified = false } = {}): HeadWalk {
  let key = sourceKey;
  let pooled = false;
  let classifier: GraphNode | undefined;
  let rectified: string | undefined;
  const refuse = (why: string): HeadWalk => ({ ok: false, why });
  for (let steps = 0; key !== score.scoreKey; steps++) {
    if (steps > graph.nodes.length) return refuse('the scores are not downstream of it');
    // A Shape node reads only the value's shape (a Keras Reshape exported with its target shape computed at run time).
    const consumers = graph.consumers(key).filter((node) => node.layer.getClassName() !== 'Shape');
    const node = consumers[0];
    if (consumers.length !== 1 || node === undefined) return refuse(`its output feeds ${consumers.length} layers`);
    if (node.outputs.length !== 1 || !readsOnlyAsData(node, key)) return refuse(`${node.path} reads it with other values`);
    const className = node.layer.getClassName();
    const activation = (node.layer as unknown as KernelOwner).activation?.getClassName();
    // A classifier split from its output activation gives its pre-activation key as the score.
    const nextKey = score.splitNode === node.index ? score.scoreKey : node.outputs[0]!;
    const linear = activation === undefined || activation === 'linear' || nextKey === score.scoreKey;
    if (className === 'GlobalAveragePooling2D') {
      if (pooled) return refuse('it is pooled twice');
      pooled = true;
    } else if (className === 'Dense' || (className === 'Conv2D' && isPointwise(graph, node))) {
      if (classifier !== undefined) return refuse(`both ${classifier.path} and ${node.path} are classifiers`);
      const rectifiesBeforePooling = allowRectified && !linear && activation === 'relu' && !pooled;
      if (!linear && !rectifiesBeforePooling) return refuse(`${node.path} has a ${activation} activation`);
      classifier = node;
      if (rectifiesBeforePooling) rectified = nextKey;
    } else if (allowRectified && classifier !== undefined && !pooled && rectified === undefined && isPlainRelu(node)) {
      rectified = nextKey;
    } else if (!(PASS_THROUGH.has(className) || (className === 'Activation' && activation === 'linear') || relabelsVector(node))) {
      return refuse(`${node.path} (${className}) is in the way`);
    }
    key = nextKey;
  }
  if (!pooled) return refuse('no global average pooling found');
  return { ok: true, classifier, ...(rectified === undefined ? {} : { rectified }) };
}

/** A ReLU with no cap (a ReLU6, or a Clip with an upper bound, has maxValue): max(x, 0). */
function isPlainRelu(node: GraphNode): boolean {
  const layer = node.layer as unknown as KernelOwner & { maxValue?: number | null };
  const className = node.layer.getClassName();
  if (className === 'Activation') return layer.activation?.getClassName() === 'relu';
  return className === 'ReLU' && layer.maxValue == null;
}

/**
 * The linear head from `sourceKey` to the scores, or undefined when that
 * path is anything else (or any value on it feeds another layer too, so
 * that the scores could depend on the source another way). A source whose
 * pooling alone makes the scores (Darknet's classifier conv, a model that
 * ends in global pooling) has the identity as its classifier.
 */
export function linearHeadsOf(graph: LayerGraph, sourceKey: string, score: ScoreLocation): LinearHead | undefined {
  const shape = shapeOf(graph, sourceKey);
  if (shape === undefined || shape.length !== 4) return undefined;
  const walk = walkLinearHead(graph, sourceKey, score, { allowRectified: true });
  if (!walk.ok) return undefined;
  if (walk.classifier === undefined) return identityHeadOf(graph, score, shape);
  const head = headOf(walk.classifier, shape);
  if (head === undefined || walk.rectified === undefined) return head;
  const gate = gateOf(graph, walk.rectified, head, shape);
  return gate === undefined ? undefined : { ...head, gate };
}

/**
 * Where the classes are in the rectified value `key`: undefined when its
 * shape cannot tell (as in headOf), or when its positions are not the
 * source's (each position's gate must be that position's).
 */
function gateOf(graph: LayerGraph, key: string, head: LinearHead, sourceShape: readonly (number | null)[]): RectifiedGate | undefined {
  const shape = shapeOf(graph, key);
  const classAxis = shape?.length === 4 ? axisOfSize(shape, head.classes) : undefined;
  if (shape === undefined || classAxis === undefined) return undefined;
  const positionsOf = (dims: readonly (number | null)[], channelAxis: 1 | 3): (number | null)[] => (channelAxis === 3 ? dims.slice(1, 3) : dims.slice(2, 4));
  const [gatePositions, sourcePositions] = [positionsOf(shape, classAxis), positionsOf(sourceShape, head.channelAxis)];
  if (gatePositions.some((dim, i) => dim === null || dim !== sourcePositions[i])) return undefined;
  return { key, classAxis };
}

/** The shape of the graph value `key` (undefined when no node makes it). */
function shapeOf(graph: LayerGraph, key: string): readonly (number | null)[] | undefined {
  const producer = graph.producer(key);
  return producer?.outputShapes[producer.outputs.indexOf(key)];
}

/**
 * The axis of a 4-D value that holds `size` channels: 3 (NHWC) or 1 (an
 * ONNX value as ONNX holds it); undefined when both or neither do (a
 * C×C×C map: the layout cannot be told from the shape).
 */
function axisOfSize(shape: readonly (number | null)[], size: number): 1 | 3 | undefined {
  const [last, first] = [shape[3] === size, shape[1] === size];
  return last === first ? undefined : last ? 3 : 1;
}

/**
 * The identity head of a source pooled straight into the scores: as many
 * classes as the source has channels, found on the axis whose size is the
 * score count (undefined when that cannot be told, as in headOf).
 */
function identityHeadOf(graph: LayerGraph, score: ScoreLocation, sourceShape: readonly (number | null)[]): LinearHead | undefined {
  const classes = shapeOf(graph, score.scoreKey)?.at(-1);
  if (typeof classes !== 'number') return undefined;
  const channelAxis = axisOfSize(sourceShape, classes);
  if (channelAxis === undefined) return undefined;
  return { kernel: undefined, channels: classes, classes, channelStride: 1, classStride: 1, channelAxis };
}

/**
 * Whether `node` reads `key` as its data, and any other input only as a
 * shape: every node but a Reshape has that one input; a Reshape reads its
 * data first and its target shape (no gradient flows into it) second.
 */
function readsOnlyAsData(node: GraphNode, key: string): boolean {
  if (node.inputs.length === 1) return node.inputs[0] === key;
  return node.layer.getClassName() === 'Reshape' && node.inputs[0] === key && !node.inputs.slice(1).includes(key);
}

/** Moving axes of sizes 1 keeps the element order: a Transpose or (Un)squeeze of a value with one axis above 1 (the channels, after pooling). */
const RELABELLING = new Set(['Transpose', 'Squeeze', 'Unsqueeze']);

function relabelsVector(node: GraphNode): boolean {
  if (!RELABELLING.has(node.layer.getClassName())) return false;
  const output = node.outputShapes[0] ?? [];
  const bigAxes = output.slice(1).filter((dim) => dim !== 1);
  return bigAxes.length <= 1 && bigAxes.every((dim) => dim !== null);
}

/**
 * A 1x1 convolution that keeps every position: stride 1 and as many
 * positions out as in (no padding). A strided one reads some positions
 * only, and its scores have no gradient at the others.
 */
function isPointwise(graph: LayerGraph, node: GraphNode): boolean {
  const owner = node.layer as unknown as KernelOwner;
  if (!(owner.kernelSize ?? []).every((dim) => dim === 1) || !(owner.strides ?? []).every((dim) => dim === 1)) return false;
  const input = shapeOf(graph, node.inputs[0]!);
  const output = node.outputShapes[0];
  if (input === undefined || output === undefined || input.length !== 4 || output.length !== 4) return false;
  // The channels are last (NHWC) or second (an ONNX value as ONNX holds it): the positions are the other two axes.
  return (input[1] === output[1] && input[2] === output[2]) || (input[2] === output[2] && input[3] === output[3]);
}

/**
 * The kernel and the source's channel axis (undefined when it cannot be
 * told). An imported classifier's weights are read in the layout they are
 * stored in: making tfjs' layout first transposed a 1001x768 classifier on
 * the wasm heap and copied it back, about 20 ms of a cold start.
 */
function headOf(classifier: GraphNode, sourceShape: readonly (number | null)[]): LinearHead | undefined {
  const owner = classifier.layer as unknown as KernelOwner;
  const outputMajor = owner.outputMajorKernel?.();
  const kernel = outputMajor ?? owner.kernel?.read();
  if (kernel === undefined) return undefined;
  const [channels, classes] = outputMajor === undefined ? [kernel.shape[kernel.rank - 2]!, kernel.shape[kernel.rank - 1]!] : [kernel.shape[1]!, kernel.shape[0]!];
  const channelAxis = axisOfSize(sourceShape, channels);
  if (channelAxis === undefined) return undefined;
  const strides = outputMajor === undefined ? { channelStride: classes, classStride: 1 } : { channelStride: 1, classStride: channels };
  return { kernel: kernelValues(kernel), channels, classes, ...strides, channelAxis };
}

/**
 * A float32 kernel's values read once, with no second copy: `dataSync()`
 * gives a fresh copy of a tensor on wasm, and on the cpu backend (where
 * camviz builds a loaded model's weights) the backend's own array, which is
 * never written: tfjs never changes a tensor's values in place (a variable
 * written gets a new tensor), and a weight read as a view of its file is
 * written by nothing either. Wrapping it in `new Float32Array` copied the
 * 1001x768 classifier (3 MB) once more, twice on wasm: 9 ms of a cold start.
 */
function kernelValues(kernel: tf.Tensor): Float32Array {
  const values = kernel.dataSync();
  return values instanceof Float32Array ? values : Float32Array.from(values);
}

/**
 * The objectives' values (from the scores) and, per objective, the gradient
 * with respect to each source (tensors of the sources' shapes, owned by the
 * caller). A rectified head needs its gate's values (`gateValues`, of the
 * same batch and positions as its source); the others only the shape.
 */
export async function linearHeadGradients(
  values: ForwardValues,
  objectives: readonly Objective[],
  sourceShapes: readonly (readonly number[])[],
  heads: readonly LinearHead[],
  gateValues: readonly (Float32Array | undefined)[] = [],
): Promise<{ objectives: number[]; gradients: tf.Tensor[][] }> {
  const scores = (await values.scores.data()) as Float32Array;
  const classes = values.scores.shape[1];
  const objectiveValues: number[] = [];
  const gradients: tf.Tensor[][] = [];
  try {
    for (const objective of objectives) {
      const terms = objective.scoreTerms!(values);
      objectiveValues.push(terms.reduce((sum, term) => sum + term.weight * scores[term.image * classes + term.classIndex]!, 0));
      gradients.push(sourceShapes.map((shape, i) => gradientOf(terms, shape, heads[i]!, gateValues[i])));
    }
    return { objectives: objectiveValues, gradients };
  } catch (error) {
    tf.dispose(gradients.flat());
    throw error;
  }
}

/** dObjective/dSource: per image, Σ weight · W[k, class] / (H·W) at every position of channel k (masked where a rectified head's output is not positive). */
function gradientOf(terms: readonly ScoreTerm[], shape: readonly number[], head: LinearHead, gateValues: Float32Array | undefined): tf.Tensor {
  const [batch, a, b, c] = shape as [number, number, number, number];
  for (const term of terms) checkTerm(term, batch, head.classes);
  if (head.gate !== undefined) return rectifiedGradientOf(terms, shape, head, head.gate, gateValues);
  const { channels } = head;
  const positions = head.channelAxis === 3 ? a * b : b * c;
  const perChannel = new Float32Array(batch * channels);
  for (const term of terms) {
    const row = term.image * channels;
    addChannelGradient(head, term.classIndex, term.weight, positions, perChannel.subarray(row, row + channels));
  }
  const data = new Float32Array(batch * positions * channels);
  for (let image = 0; image < batch; image++) {
    const weights = perChannel.subarray(image * channels, (image + 1) * channels);
    const base = image * positions * channels;
    if (head.channelAxis === 3) {
      for (let p = 0; p < positions; p++) data.set(weights, base + p * channels);
    } else {
      for (let k = 0; k < channels; k++) data.fill(weights[k]!, base + k * positions, base + (k + 1) * positions);
    }
  }
  return tf.tensor(data, [...shape], 'float32');
}

function checkTerm(term: ScoreTerm, batch: number, classes: number): void {
  if (term.image < 0 || term.image >= batch || term.classIndex < 0 || term.classIndex >= classes) {
    throw new Error(`score term (image ${term.image}, class ${term.classIndex}) is outside the scores [${batch}, ${classes}]`);
  }
}

/**
 * The gradient through a rectified head: at each position where the gate
 * (the class's classifier output) is positive, the class's classifier
 * column times weight / (H·W). Summed as the linear head's: each term's
 * product added to the float32 total, in the terms' order. An image's
 * first term writes its rows whole (a native copy of the scaled column:
 * 0 + x rounds as x does, but for a zero's sign: -0 where the sum gives
 * +0), where a loop per element took a fresh process 20 ms for
 * SqueezeNet's 169 positions x 512 channels, before V8 compiled it.
 */
function rectifiedGradientOf(terms: readonly ScoreTerm[], shape: readonly number[], head: LinearHead, gate: RectifiedGate, gateValues: Float32Array | undefined): tf.Tensor {
  const { channels, classes, kernel, channelStride, classStride } = head;
  const [batch, a, b, c] = shape as [number, number, number, number];
  const positions = head.channelAxis === 3 ? a * b : b * c;
  if (kernel === undefined) throw new Error('a rectified head needs its classifier\'s kernel');
  if (gateValues === undefined || gateValues.length !== batch * positions * classes) throw new Error(`a rectified head needs its gate's ${batch * positions * classes} values`);
  // Value (image, p, k) of the source is at image * positions * channels + p * positionStride + k * channelStep; the gate's likewise.
  const [positionStride, channelStep] = head.channelAxis === 3 ? [channels, 1] : [1, positions];
  const [gatePositionStride, gateClassStep] = gate.classAxis === 3 ? [classes, 1] : [1, positions];
  const data = new Float32Array(batch * positions * channels);
  const written = new Set<number>();
  const scaled = new Float32Array(channels);
  for (const term of terms) {
    const scale = term.weight / positions;
    const column = term.classIndex * classStride;
    for (let k = 0; k < channels; k++) scaled[k] = scale * kernel[k * channelStride + column]!;
    const gateBase = term.image * positions * classes + term.classIndex * gateClassStep;
    const imageBase = term.image * positions * channels;
    const first = !written.has(term.image);
    written.add(term.image);
    for (let p = 0; p < positions; p++) {
      if (!(gateValues[gateBase + p * gatePositionStride]! > 0)) continue;
      const base = imageBase + p * positionStride;
      if (first && channelStep === 1) {
        data.set(scaled, base);
        continue;
      }
      for (let k = 0; k < channels; k++) data[base + k * channelStep] = data[base + k * channelStep]! + scale * kernel[k * channelStride + column]!;
    }
  }
  return tf.tensor(data, [...shape], 'float32');
}
