/**
 * An ONNX graph as a tfjs-layers functional model, so that camviz's
 * executor, hooks, fmap, CAM methods, predict and layers work on it as on
 * any layers model. Each ONNX node that computes on the image's data
 * becomes one layer whose `call` runs the node (`runNode`, tf ops only, so
 * gradients flow through it).
 *
 * At load, for the input size in use, one eager pass on a zero batch-1
 * input:
 * - folds every node whose inputs are all constants (initializers,
 *   `Constant`, shape arithmetic on them): it runs once here and its
 *   outputs become constants of the layers that read them;
 * - learns each remaining value's layout and shape (the batch dim null),
 *   which `computeOutputShape` reports. Shapes are in the stored layout,
 *   so a feature map reads [N, H, W, C] as camviz's conventions want.
 *   Only shapes matter there: a Conv, a pool, an elementwise op or a
 *   Concat that reads image data (a value computed from the image's values,
 *   not only its shape: `shapesOnly`) gives zeros of its output's shape
 *   that touch no memory (ops/common.ts, zerosStandIn), after the op's own
 *   checks: running MobileNet v1's convolutions on the zero image cost
 *   about 0.1 s of a cold start, filling zeros in the wasm heap 15 ms more;
 * - folds a zero Pad into the Conv that alone reads it (see
 *   `convWithPadFolded`): one fused convolution instead of a padded copy
 *   of the feature map and a convolution. The Pad's names resolve to the
 *   Conv's layer;
 * - folds a Reshape's target computed from a value's `Shape` (PyTorch's
 *   `x.view(x.size(0), ...)`) into a constant target whose batch dim is
 *   ONNX's 0 ("copy this dim"), when the Shape reads the Reshape's own data
 *   (see `reshapeWithConstantTarget`): the shape arithmetic then runs no
 *   kernels, and the nodes that computed the target are no layers.
 *
 * The model's input is NHWC `[null, H, W, 3]` (camviz's input tensor); it is
 * the ONNX input as an 'nhwc' value, so no transpose is needed. The checks
 * that refuse a graph are in check.ts, the Keras-class views of nodes in
 * keras.ts, the PyTorch names in names.ts.
 */
import * as tf from '../../engine/tf.js';
import * as tfl from '../../engine/tfl.js';
import { CamvizError } from '../../util/errors.js';
import { oneLine } from '../../util/text.js';
import { type LaidTensor, type Layout, onnxShape, toLayout } from './layout.js';
import { runNode, tensorFromOnnx } from './interpret.js';
import { type OpContext, attrInt, attrInts, constantInts, constantNumber, releaseStandIns, zerosStandIn } from './ops/common.js';
import type { OnnxImageInput } from './check.js';
import type { OnnxExternalData } from './read.js';
import {
  type ConvGeometry,
  type ConvLayerWeights,
  type DenseGeometry,
  type InputSource,
  clipMax,
  convGeometry,
  convView,
  denseGeometry,
  denseView,
  kerasClassName,
  runConv,
  tfjsKernel,
  tfjsKernelShape,
} from './keras.js';
import { nodeNameIndex, topModule } from './names.js';
import type { OnnxModel, OnnxNode, OnnxTensor } from './types.js';
import { allocateNumericData, bytesOf } from './parse.js';
import { ImportedNodeLayer, wireLayersModel } from '../graph-import/node-layer.js';
import { type GridView, setGridView } from '../../executor/grid-view.js';
import { gridViews } from './grid-views.js';

export interface BuiltOnnxModel {
  readonly layersModel: tfl.LayersModel;
  /** Every name a user may give (module paths, ONNX node and value names) -> the tfjs layer name. */
  readonly layerNames: ReadonlyMap<string, string>;
  /** The default CAM target, as the name a PyTorch user knows (a module path when there is one). */
  readonly defaultLayer: string | undefined;
  /** Why there is no default CAM target, when a transformer's classifier reads token sequences with no grid (see `tokenHeadReason`). */
  readonly noDefaultLayer?: string;
  /** Per tfjs layer name, the ONNX (NCHW) shape of its first output; null dims are dynamic. */
  readonly onnxShapes: ReadonlyMap<string, (number | null)[]>;
  /** Per tfjs layer name, the module whose output it is (the outermost), if any. */
  readonly modules: ReadonlyMap<string, string>;
  /** Per tfjs layer name, the ONNX node name (tfjs names allow fewer characters). */
  readonly nodeNames: ReadonlyMap<string, string>;
  /** The model's external data as read (load.ts sets it; ONNX Runtime reads those files again). */
  readonly externalData?: OnnxExternalData;
  /** Frees the folded constants (the layers model has no weights of its own). */
  dispose(): void;
}

interface PlannedLayer {
  node: OnnxNode;
  name: string;
  className: string;
  sources: InputSource[];
  /** The values read at run time, in order. */
  runtimeInputs: string[];
  outputLayouts: Layout[];
  /** Stored-layout shapes, dynamic dims null. */
  outputShapes: (number | null)[][];
  onnxShape: (number | null)[];
  /** For a Conv the executor may fuse with its activation: its geometry in tfjs-layers' terms. */
  conv?: ConvGeometry;
  /** For a ReLU-like Clip: its upper bound (ReLU6 fuses as relu6). */
  maxValue?: number;
  /** For a Gemm that is a Keras Dense layer (x·W + b): its weights. */
  dense?: DenseGeometry;
  /** For a Conv that reads a zero Pad's input with the Pad's pads as its own: that Pad (no layer of its own). */
  foldedPad?: OnnxNode;
}

/**
 * A planned layer as the model holds it: a Conv's weights as its kernel in
 * tfjs' layout (its weight source is then `kernel`), so that the model keeps
 * one copy of them, in the layout tfjs' convolutions, the executor's fused
 * chains and the CAM methods read.
 */
interface LayerPlan extends Omit<PlannedLayer, 'conv'> {
  conv?: ConvLayerWeights;
}

interface NodeLayerConfig {
  name: string;
  plan: LayerPlan;
  opset: number;
  /** Dense kernels in tfjs' layout, made on first read and freed with the model. */
  kernels: Set<tf.Tensor>;
}

/**
 * Ops whose float constant inputs from this index on are settings, not
 * weights (Resize's roi and scales, Upsample's scales, Clip's bounds, Pad's
 * fill value): `camviz layers` counts no parameters for them, as PyTorch
 * counts none for F.interpolate, ReLU6 or F.pad.
 */
const GEOMETRY_INPUTS_FROM: Readonly<Record<string, number>> = { Resize: 1, Upsample: 1, Clip: 1, Pad: 1 };

/** One ONNX node as a layer: `call` runs the node on its runtime inputs and its folded constants. */
class OnnxNodeLayer extends ImportedNodeLayer<LayerPlan> {
  static className = 'OnnxNode';
  private readonly opset: number;

  constructor(config: NodeLayerConfig) {
    super(config.name, config.plan);
    this.opset = config.opset;
    if (config.plan.conv !== undefined) Object.assign(this, convView(config.plan.conv));
    if (config.plan.maxValue !== undefined) Object.assign(this, { maxValue: config.plan.maxValue });
    if (config.plan.dense !== undefined) Object.assign(this, denseView(config.plan.dense, config.kernels));
  }

  override countParams(): number {
    let count = 0;
    const geometryFrom = GEOMETRY_INPUTS_FROM[this.plan.node.opType] ?? Infinity;
    for (const [index, source] of this.plan.sources.entries()) {
      if (source.kind === 'constant' && source.value.tensor.dtype === 'float32' && index < geometryFrom) count += source.value.tensor.size;
      if (source.kind === 'kernel') count += this.plan.conv?.kernelShape.reduce((product, dim) => product * dim, 1) ?? 0;
    }
    return count;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor | tf.Tensor[] {
    const given = Array.isArray(inputs) ? inputs : [inputs];
    const { conv, sources } = this.plan;
    const input = sources[0];
    // A Conv layer's one runtime input is its data (convGeometry wants constant weights and bias).
    if (conv !== undefined && input?.kind === 'runtime' && given.length === 1) {
      return runConv(conv, { tensor: given[0]!, layout: input.layout });
    }
    const outputs = runPlanned(this.plan, given, this.opset);
    return outputs.length === 1 ? outputs[0]! : outputs;
  }
}

/** RGB [N, H, W, 3] to one channel [N, H, W, 1]: the mean of the channels, for a graph that takes grey images. */
class ChannelMeanLayer extends tfl.LayerClass {
  static className = 'ChannelMean';

  override computeOutputShape(inputShape: tfl.Shape | tfl.Shape[]): tfl.Shape {
    const shape = inputShape as tfl.Shape;
    return [...shape.slice(0, -1), 1];
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.mean(Array.isArray(inputs) ? inputs[0]! : inputs, 3, true);
  }
}

/** Runs a planned node on runtime tensors; outputs are new tensors in the planned layouts. */
function runPlanned(plan: LayerPlan, given: readonly tf.Tensor[], opset: number): tf.Tensor[] {
  return tf.tidy(() => {
    let next = 0;
    const inputs = plan.sources.map((source): LaidTensor | undefined => {
      if (source.kind === 'omitted') return undefined;
      if (source.kind === 'constant') return source.value;
      // Only a Conv layer holds a kernel, and its call runs it (runConv) without the ONNX node.
      if (source.kind === 'kernel') throw new Error(`layer '${plan.name}' holds its weights as a tfjs kernel; runConv runs it`);
      return { tensor: given[next++]!, layout: source.layout };
    });
    const outputs = runNode(plan.node, inputs, opset);
    return outputs.map((output, i) => {
      const tensor = toLayout(output, plan.outputLayouts[i] ?? output.layout);
      // A node that passes a tensor through (Identity, Dropout) must not hand
      // out its input or a constant: the executor disposes each value once.
      const shared = given.includes(tensor) || inputs.some((input) => input?.tensor === tensor);
      return shared ? tf.clone(tensor) : tensor;
    });
  });
}

/** A tfjs-layers name (letters, digits, `-._/`, starting with a letter or digit) for an ONNX node, unique in the model. */
function layerName(node: OnnxNode, index: number, used: Set<string>): string {
  const base = (node.name || `${node.opType}_${index}`).replace(/[^-A-Za-z0-9._/]/g, '_').replace(/^[^A-Za-z0-9]+/, '') || `${node.opType}_${index}`;
  let name = base;
  for (let k = 1; used.has(name); k++) name = `${base}_${k}`;
  used.add(name);
  return name;
}

/**
 * Builds the layers model for an input of `height` x `width`. The graph must
 * have passed `checkGraphOrder` and `checkSupportedOps`.
 */
export function buildOnnxModel(model: OnnxModel, input: OnnxImageInput, size: { height: number; width: number }, opset: number, file: string): BuiltOnnxModel {
  const constants = new Map<string, LaidTensor>();
  try {
    const backend = initializerBackend();
    const onCpu = tf.getBackend() === 'cpu';
    for (const [name, tensor] of model.graph.initializers) {
      constants.set(name, { tensor: withFile(() => tensorFromOnnx(onCpu ? withOwnData(tensor) : tensor, backend), file), layout: 'onnx' });
    }
    const plans = planLayers(model, input, size, opset, constants, file);
    return assemble(model, input, size, opset, plans, constants, file);
  } catch (error) {
    for (const value of constants.values()) value.tensor.dispose();
    throw error;
  }
}

/**
 * The initializer with data of its own when its data is a view of a larger
 * buffer (the whole file's: parse.ts `adoptBytes`). On the cpu backend a
 * tensor holds its array itself, and a view kept alive for the model's life
 * (a bias, a Gemm's weights) would keep the whole file with it, beside the
 * Conv kernels made from the rest: ResNet-18's 45 MB twice. Elsewhere the
 * values go to the backend's memory on first use (wasm's heap), and the
 * views that ONNX Runtime's runs never read cost what copies would.
 */
function withOwnData(tensor: OnnxTensor): OnnxTensor {
  const { data, type } = tensor;
  if (Array.isArray(data) || type === 'string' || data.byteLength === data.buffer.byteLength) return tensor;
  const copy = allocateNumericData(type, data.length);
  bytesOf(copy).set(bytesOf(data));
  return { ...tensor, data: copy };
}

/**
 * Where the initializers' data live while wasm is the backend: the cpu
 * backend's, where a float32 initializer is the parsed array itself (no
 * copy), and tfjs moves each to the wasm heap on its first use by a wasm
 * kernel. Copying them all into the heap at load cost MobileNet v1 about
 * 35 ms, for weights that, when ONNX Runtime runs the passes, tfjs never
 * reads (as for TF.js models: engine/backend.ts withWeightsBuiltOnCpu).
 * Elsewhere, the active backend's.
 */
function initializerBackend(): tf.KernelBackend | undefined {
  return tf.getBackend() === 'wasm' ? (tf.engine().findBackend('cpu') ?? undefined) : undefined;
}

/**
 * Ops that read only their input's shape: what they give, and what is
 * computed from it alone, is shape arithmetic (a Reshape's target, a
 * Resize's sizes), which the planning pass computes, where every other
 * value computed from the image is image data, for which ops give
 * stand-ins (ops/common.ts, zerosStandIn).
 */
const SHAPE_READERS = new Set(['Shape', 'Size']);

/**
 * The eager pass on a zero batch-1 input: folds constants, and plans one
 * layer per remaining node with its layouts and shapes. Every value that
 * depends on the image has the image's batch as its first dim, so that dim
 * is dynamic (null) in the planned shapes and `Shape` of such a value is
 * computed with the image, not folded.
 */
function planLayers(
  model: OnnxModel,
  input: OnnxImageInput,
  size: { height: number; width: number },
  opset: number,
  constants: Map<string, LaidTensor>,
  file: string,
): PlannedLayer[] {
  const nodes = model.graph.nodes;
  const remainingUses = new Map<string, number>();
  const readers = new Map<string, OnnxNode[]>();
  for (const node of nodes) {
    for (const value of node.inputs) {
      remainingUses.set(value, (remainingUses.get(value) ?? 0) + 1);
      const list = readers.get(value);
      if (list === undefined) readers.set(value, [node]);
      else list.push(node);
    }
  }
  // A Conv whose Pad is folded into it -> that Conv reading the Pad's input; the folded Pad per such Conv.
  const foldedConvs = new Map<OnnxNode, OnnxNode>();
  const foldedPads = new Map<OnnxNode, OnnxNode>();
  const probes = new Map<string, LaidTensor>([[input.name, { tensor: zerosStandIn([1, size.height, size.width, input.channels], 'float32'), layout: 'nhwc' }]]);
  // Int vectors computed at run time from runtime values' shapes, as known at load (the batch symbolic).
  const shapes = new Map<string, RuntimeShape>();
  // Values computed from the image's values (not only from its shape): the plan never reads them (see SHAPE_READERS).
  const imageValues = new Set<string>([input.name]);
  const valueNames = new Set(nodes.flatMap((node) => [...node.inputs, ...node.outputs]));
  const plans: PlannedLayer[] = [];
  const used = new Set<string>();
  const constantOf = (value: string): LaidTensor | undefined => constants.get(value);
  try {
    nodes.forEach((original, index) => {
      if (original.opType === 'Pad') {
        const reader = readers.get(original.outputs[0] ?? '');
        const folded = reader?.length === 1 && !isGraphOutput(model, original.outputs[0]!) ? convWithPadFolded(original, reader[0]!, opset, constants, probes) : undefined;
        if (folded !== undefined) {
          // The Pad neither runs nor uses its input: the folded Conv reads (and releases) it.
          foldedConvs.set(reader![0]!, folded);
          foldedPads.set(folded, original);
          return;
        }
      }
      const unfolded = foldedConvs.get(original) ?? original;
      const node = reshapeWithConstantTarget(unfolded, opset, shapes, constants, valueNames) ?? unfolded;
      const present = node.inputs.filter((value) => value !== '');
      const inputs = node.inputs.map((value) => (value === '' ? undefined : (constants.get(value) ?? probes.get(value))));
      const folds = present.every((value) => constants.has(value));
      const readsImage = present.some((value) => imageValues.has(value));
      // A folded node's values are constants of the model; a planned node's only tell shapes and layouts, and one that reads image values computes none.
      const outputs = storedAsImages(runChecked(node, inputs, opset, file, readsImage), readsImage);
      if (readsImage && !SHAPE_READERS.has(node.opType)) for (const value of node.outputs) imageValues.add(value);
      if (folds) {
        outputs.forEach((output, i) => constants.set(node.outputs[i]!, output));
      } else {
        node.outputs.forEach((value, i) => probes.set(value, outputs[i]!));
        const plan = planOf(node, index, outputs, probes, constantOf, used);
        const foldedPad = foldedPads.get(node);
        plans.push(foldedPad === undefined ? plan : { ...plan, foldedPad });
        const shape = runtimeShapeOf({ node, opset }, constants, probes, shapes);
        if (shape !== undefined) shapes.set(node.outputs[0]!, shape);
      }
      // A rewritten node no longer reads some of its original inputs: they are released too.
      const dropped = original.inputs.filter((value) => value !== '' && !node.inputs.includes(value));
      for (const value of [...present, ...dropped]) {
        const left = (remainingUses.get(value) ?? 0) - 1;
        remainingUses.set(value, left);
        if (left <= 0 && !isGraphOutput(model, value)) {
          probes.get(value)?.tensor.dispose();
          probes.delete(value);
        }
      }
    });
  } finally {
    for (const probe of probes.values()) probe.tensor.dispose();
    releaseStandIns();
  }
  return withoutUnreadShapes(plans, model, shapes);
}

/** An entry of a runtime shape vector: a number known at load, or dim 0 (the batch) of the runtime value `batchOf`. */
type ShapeEntry = number | { batchOf: string };

/** An int vector (or scalar) computed at run time from runtime values' shapes only. */
interface RuntimeShape {
  entries: ShapeEntry[];
  scalar: boolean;
}

/**
 * What a node computes from runtime shapes (`Shape` of a runtime value, then
 * Gather, Unsqueeze, Squeeze, Slice, Concat, Cast or Identity on such
 * vectors and constants), entry by entry; undefined for anything else. Only
 * the batch dim is dynamic (see planLayers): the other dims of a `Shape`
 * are those of the input size in use.
 */
function runtimeShapeOf(ctx: OpContext, constants: ReadonlyMap<string, LaidTensor>, probes: ReadonlyMap<string, LaidTensor>, shapes: ReadonlyMap<string, RuntimeShape>): RuntimeShape | undefined {
  const { node, opset } = ctx;
  if (!isDefaultDomain(node) || node.outputs.length !== 1) return undefined;
  const [first = '', second = ''] = node.inputs;
  if (node.opType === 'Shape') {
    const probe = probes.get(first);
    if (probe === undefined || probe.tensor.rank === 0) return undefined;
    const entries = onnxShape(probe).map((dim, axis): ShapeEntry => (axis === 0 ? { batchOf: first } : dim));
    const clamp = (index: number): number => Math.min(Math.max(index < 0 ? index + entries.length : index, 0), entries.length);
    const start = clamp(attrInt(ctx, 'start', 0));
    return { entries: entries.slice(start, Math.max(start, clamp(attrInt(ctx, 'end', entries.length)))), scalar: false };
  }
  if (node.opType === 'Concat') {
    const parts = node.inputs.map((value) => shapes.get(value) ?? vectorOf(constants.get(value)));
    if ([0, -1].includes(attrInt(ctx, 'axis', 0)) && parts.every((part) => part !== undefined && !part.scalar)) return { entries: parts.flatMap((part) => part!.entries), scalar: false };
    return undefined;
  }
  const data = shapes.get(first);
  if (data === undefined) return undefined;
  switch (node.opType) {
    case 'Identity':
      return data;
    case 'Cast':
      return [6, 7].includes(attrInt(ctx, 'to', 0)) ? data : undefined;
    case 'Gather': {
      const indices = constants.get(second);
      if (indices === undefined || indices.tensor.rank > 1 || data.scalar || attrInt(ctx, 'axis', 0) !== 0) return undefined;
      const picked = constantInts(indices)!.map((index) => data.entries[index < 0 ? index + data.entries.length : index]);
      return picked.every((entry) => entry !== undefined) ? { entries: picked, scalar: indices.tensor.rank === 0 } : undefined;
    }
    case 'Unsqueeze': {
      const axes = opset < 13 ? attrInts(ctx, 'axes') : constantInts(constants.get(second));
      return data.scalar && axes?.length === 1 && [0, -1].includes(axes[0]!) ? { entries: data.entries, scalar: false } : undefined;
    }
    case 'Squeeze': {
      const axes = opset < 13 ? attrInts(ctx, 'axes') : second === '' ? undefined : constantInts(constants.get(second));
      // From opset 13 the axes are an input, which must be a constant if given.
      if (opset >= 13 && second !== '' && axes === undefined) return undefined;
      const squeezable = !data.scalar && data.entries.length === 1 && (axes === undefined || (axes.length === 1 && [0, -1].includes(axes[0]!)));
      return squeezable ? { entries: data.entries, scalar: true } : undefined;
    }
    case 'Slice':
      return sliceOfShape(ctx, data, constants);
    default:
      return undefined;
  }
}

/** A constant 1-D int vector as a runtime shape of known entries. */
function vectorOf(value: LaidTensor | undefined): RuntimeShape | undefined {
  if (value === undefined || value.tensor.rank !== 1 || value.tensor.dtype !== 'int32') return undefined;
  return { entries: constantInts(value)!, scalar: false };
}

/** Slice of a runtime shape vector: one axis (0), step 1, constant bounds clamped as ONNX clamps them. */
function sliceOfShape(ctx: OpContext, data: RuntimeShape, constants: ReadonlyMap<string, LaidTensor>): RuntimeShape | undefined {
  const [, startsInput = '', endsInput = '', axesInput = '', stepsInput = ''] = ctx.node.inputs;
  const read = (value: string): number[] | undefined => (value === '' ? undefined : constantInts(constants.get(value)));
  const starts = ctx.opset < 10 ? attrInts(ctx, 'starts') : read(startsInput);
  const ends = ctx.opset < 10 ? attrInts(ctx, 'ends') : read(endsInput);
  const axes = ctx.opset < 10 ? attrInts(ctx, 'axes') : read(axesInput);
  const steps = ctx.opset < 10 ? undefined : read(stepsInput);
  const known = (value: string, list: number[] | undefined): boolean => ctx.opset < 10 || value === '' || list !== undefined;
  if (!known(axesInput, axes) || !known(stepsInput, steps) || data.scalar || starts?.length !== 1 || ends?.length !== 1) return undefined;
  if ((axes !== undefined && ![0, -1].includes(axes[0]!)) || (steps !== undefined && steps[0] !== 1)) return undefined;
  const length = data.entries.length;
  const clamp = (index: number): number => Math.min(Math.max(index < 0 ? index + length : index, 0), length);
  return { entries: data.entries.slice(clamp(starts[0]!), clamp(ends[0]!)), scalar: false };
}

/**
 * `node` with a constant target when it is a Reshape whose target is a
 * runtime shape made of numbers known at load and, first, the batch dim of
 * the Reshape's own data: that entry becomes ONNX's 0, which copies the
 * data's dim 0, so the result is the same for every batch size. Needs
 * `allowzero` 0 (else 0 means an empty dim). The new target is a constant
 * under a name no graph value has.
 */
function reshapeWithConstantTarget(node: OnnxNode, opset: number, shapes: ReadonlyMap<string, RuntimeShape>, constants: Map<string, LaidTensor>, valueNames: Set<string>): OnnxNode | undefined {
  if (node.opType !== 'Reshape' || opset < 5 || !isDefaultDomain(node) || attrInt({ node, opset }, 'allowzero', 0) !== 0) return undefined;
  const [data = '', target = ''] = node.inputs;
  const shape = shapes.get(target);
  if (shape === undefined || shape.scalar) return undefined;
  const dims = shape.entries.map((entry, axis) => (typeof entry === 'number' ? entry : entry.batchOf === data && axis === 0 ? 0 : undefined));
  if (dims.some((dim) => dim === undefined)) return undefined;
  let name = `${target}:constant`;
  for (let k = 1; valueNames.has(name); k++) name = `${target}:constant_${k}`;
  valueNames.add(name);
  constants.set(name, { tensor: tf.tensor1d(dims as number[], 'int32'), layout: 'onnx' });
  return { ...node, inputs: [data, name] };
}

/**
 * The plans without the runtime-shape nodes that no layer reads any more
 * (their Reshape now has a constant target) and that are no graph output.
 */
function withoutUnreadShapes(plans: PlannedLayer[], model: OnnxModel, shapes: ReadonlyMap<string, RuntimeShape>): PlannedLayer[] {
  const read = new Set(model.graph.outputs.map((output) => output.name));
  const kept: PlannedLayer[] = [];
  for (let i = plans.length - 1; i >= 0; i--) {
    const plan = plans[i]!;
    if (plan.node.outputs.every((value) => shapes.has(value) && !read.has(value))) continue;
    for (const value of plan.runtimeInputs) read.add(value);
    kept.push(plan);
  }
  return kept.reverse();
}

/**
 * `conv` reading `pad`'s input with the Pad's spatial pads as its own, when
 * that is the same computation and a convolution tfjs runs (fused): the Pad
 * pads with zeros (constant mode, value 0), only the spatial axes and by
 * non-negative constants; the Conv has no pads of its own and reads the
 * Pad's output as its data; the result has a `convGeometry` (a depthwise
 * Conv then needs TF's "same" padding). The caller checks that the Conv is
 * the Pad output's only reader and that it is no graph output.
 */
function convWithPadFolded(pad: OnnxNode, conv: OnnxNode, opset: number, constants: ReadonlyMap<string, LaidTensor>, probes: ReadonlyMap<string, LaidTensor>): OnnxNode | undefined {
  const data = pad.inputs[0];
  const input = data === undefined ? undefined : probes.get(data);
  if (input === undefined || !isDefaultDomain(pad) || !isDefaultDomain(conv) || conv.opType !== 'Conv' || conv.inputs[0] !== pad.outputs[0]) return undefined;
  const pads = zeroSpatialPads(pad, opset, constants);
  if (pads === undefined || !hasNoPads(conv)) return undefined;
  const { auto_pad: _autoPad, ...attributes } = conv.attributes;
  const folded: OnnxNode = { ...conv, inputs: [data!, ...conv.inputs.slice(1)], attributes: { ...attributes, pads: { kind: 'ints', value: pads } } };
  const sources = folded.inputs.map((value): InputSource => {
    const constant = value === '' ? undefined : constants.get(value);
    return value === '' ? { kind: 'omitted' } : constant !== undefined ? { kind: 'constant', value: constant } : { kind: 'runtime', layout: input.layout };
  });
  return convGeometry(folded, sources, input) === undefined ? undefined : folded;
}

function isDefaultDomain(node: OnnxNode): boolean {
  return node.domain === '' || node.domain === 'ai.onnx';
}

/** A Pad's [top, left, bottom, right] when it pads a 4-D value's spatial axes only, with zeros, by non-negative constants. */
function zeroSpatialPads(pad: OnnxNode, opset: number, constants: ReadonlyMap<string, LaidTensor>): [number, number, number, number] | undefined {
  const mode = pad.attributes['mode'];
  if (mode !== undefined && !(mode.kind === 'string' && mode.value === 'constant')) return undefined;
  let pads: number[] | undefined;
  let value: number | undefined;
  if (opset < 11) {
    const attribute = pad.attributes['pads'] ?? pad.attributes['paddings'];
    const given = pad.attributes['value'];
    pads = attribute?.kind === 'ints' ? attribute.value : undefined;
    value = given === undefined ? 0 : given.kind === 'float' ? given.value : undefined;
  } else {
    const [, padsInput = '', valueInput = '', axesInput = ''] = pad.inputs;
    if (axesInput !== '' || padsInput === '') return undefined;
    pads = constantInts(constants.get(padsInput));
    value = valueInput === '' ? 0 : constantNumber(constants.get(valueInput));
  }
  if (value !== 0 || pads?.length !== 8) return undefined;
  const [batchBefore, channelsBefore, top, left, batchAfter, channelsAfter, bottom, right] = pads as [number, number, number, number, number, number, number, number];
  if (batchBefore !== 0 || channelsBefore !== 0 || batchAfter !== 0 || channelsAfter !== 0) return undefined;
  return top < 0 || left < 0 || bottom < 0 || right < 0 ? undefined : [top, left, bottom, right];
}

/** A Conv that pads nothing itself: no pads (or zeros) and no auto_pad other than NOTSET or VALID. */
function hasNoPads(conv: OnnxNode): boolean {
  const autoPad = conv.attributes['auto_pad'];
  if (autoPad !== undefined && !(autoPad.kind === 'string' && (autoPad.value === 'NOTSET' || autoPad.value === 'VALID'))) return false;
  const pads = conv.attributes['pads'];
  return pads === undefined || (pads.kind === 'ints' && pads.value.every((value) => value === 0));
}

function isGraphOutput(model: OnnxModel, value: string): boolean {
  return model.graph.outputs.some((output) => output.name === value);
}

/**
 * An image value of four dims that an op gives in ONNX's layout (a
 * Reshape's: PyTorch's GroupNorm below opset 18, a channel shuffle, a pixel
 * shuffle by reshapes) is stored NHWC like a convolution's: the CAM
 * methods, the hooks and the ONNX Runtime trunk read every 4-D layer output
 * as NHWC, and a map at such a layer was computed on transposed axes,
 * silently. Ops take either layout, so only the layer boundary changes.
 */
function storedAsImages(outputs: LaidTensor[], readsImage: boolean): LaidTensor[] {
  if (!readsImage) return outputs;
  return outputs.map((output) => {
    if (output.layout !== 'onnx' || output.tensor.rank !== 4 || output.tensor.dtype !== 'float32') return output;
    const tensor = toLayout(output, 'nhwc');
    output.tensor.dispose();
    return { tensor, layout: 'nhwc' };
  });
}

function runChecked(node: OnnxNode, inputs: (LaidTensor | undefined)[], opset: number, file: string, shapesOnly: boolean): LaidTensor[] {
  try {
    return tf.tidy(() => {
      const outputs = runNode(node, inputs, opset, { shapesOnly });
      if (outputs.length < node.outputs.length) throw new CamvizError(`node '${node.name}' (${node.opType}) gives ${outputs.length} outputs; the graph names ${node.outputs.length}`);
      // A pass-through output gets its own tensor: each value is disposed once.
      return outputs.map((output) => (inputs.some((value) => value?.tensor === output.tensor) ? { ...output, tensor: tf.clone(output.tensor) } : output)) as unknown as tf.TensorContainer;
    }) as unknown as LaidTensor[];
  } catch (error) {
    if (error instanceof CamvizError) throw error.file === undefined ? new CamvizError(error.message, { file }) : error;
    // ONNX (NCHW) shapes, as the user knows the graph.
    const shapes = inputs.map((input) => (input === undefined ? '-' : `[${onnxShape(input).join(', ')}]`)).join(', ');
    throw new CamvizError(`node '${node.name}' (${node.opType}) fails at load on inputs of shapes ${shapes}: ${oneLine((error as Error).message)}`, { file });
  }
}

/** Runs `make`, naming `file` in a CamvizError that names none. */
function withFile<T>(make: () => T, file: string): T {
  try {
    return make();
  } catch (error) {
    if (error instanceof CamvizError && error.file === undefined) throw new CamvizError(error.message, { file });
    throw error;
  }
}

function planOf(
  node: OnnxNode,
  index: number,
  outputs: LaidTensor[],
  probes: Map<string, LaidTensor>,
  constantOf: (value: string) => LaidTensor | undefined,
  used: Set<string>,
): PlannedLayer {
  const runtimeInputs: string[] = [];
  const sources = node.inputs.map((value): InputSource => {
    if (value === '') return { kind: 'omitted' };
    const constant = constantOf(value);
    if (constant !== undefined) return { kind: 'constant', value: constant };
    runtimeInputs.push(value);
    return { kind: 'runtime', layout: probes.get(value)!.layout };
  });
  // The first dim is the batch (see planLayers); a scalar has none.
  const outputShapes = outputs.map((output) => output.tensor.shape.map((dim, axis): number | null => (axis === 0 ? null : dim)));
  const first = outputs[0]!;
  const firstShape = outputShapes[0]!;
  const onnxShape = first.layout === 'nhwc' ? [0, 3, 1, 2].map((axis) => firstShape[axis]!) : [...firstShape];
  const firstRuntime = runtimeInputs[0] === undefined ? undefined : probes.get(runtimeInputs[0]);
  const conv = node.opType === 'Conv' && firstRuntime !== undefined && first.layout === 'nhwc' ? convGeometry(node, sources, firstRuntime) : undefined;
  // Only a Conv on an NHWC value is what tfjs-layers calls Conv2D (the executor fuses it on that value as it is).
  const keras = conv !== undefined && firstRuntime?.layout === 'nhwc';
  const maxValue = node.opType === 'Clip' ? clipMax(node, constantOf) : undefined;
  const dense = node.opType === 'Gemm' ? denseGeometry(node, sources) : undefined;
  const className = conv !== undefined && keras ? (conv.depthwise ? 'DepthwiseConv2D' : 'Conv2D') : dense !== undefined ? 'Dense' : kerasClassName(node, constantOf, firstRuntime?.tensor.rank ?? 0);
  return {
    node,
    name: layerName(node, index, used),
    className,
    ...(conv === undefined ? {} : { conv }),
    ...(dense === undefined ? {} : { dense }),
    ...(maxValue === undefined ? {} : { maxValue }),
    sources,
    runtimeInputs,
    outputLayouts: outputs.map((output) => output.layout),
    outputShapes,
    onnxShape,
  };
}

function assemble(
  model: OnnxModel,
  input: OnnxImageInput,
  size: { height: number; width: number },
  opset: number,
  plans: PlannedLayer[],
  constants: Map<string, LaidTensor>,
  file: string,
): BuiltOnnxModel {
  // Kernels in tfjs' layout the model owns, each made on its first read: Conv layers' and Dense layers'.
  const kernels = new Set<tf.Tensor>();
  // The constants layers read: they stay with the model.
  const kept = new Set<tf.Tensor>();
  const convKernels = new ConvKernels(kernels, kept);
  try {
    const built = plans.map((plan) => withConvKernel(plan, convKernels));
    // camviz feeds RGB: a one-channel graph reads the mean of the three channels.
    const inputTensor = tfl.input({ shape: [size.height, size.width, 3], name: 'input' });
    const graphInput = input.channels === 1 ? (new ChannelMeanLayer({ name: 'input_gray' }).apply(inputTensor) as tfl.SymbolicTensor) : inputTensor;
    const layers = built.map((plan) => ({ layer: new OnnxNodeLayer({ name: plan.name, plan, opset, kernels }), reads: plan.runtimeInputs, writes: plan.node.outputs }));
    const views = layerViews(plans, constants);
    for (const { layer } of layers) {
      const view = views.get(layer.name);
      if (view !== undefined) setGridView(layer, view);
    }
    const outputs = model.graph.outputs.map((output) => output.name);
    const missing = (key: string): Error => new CamvizError(`graph output '${key}' does not depend on the input`, { file });
    const layersModel = wireLayersModel(inputTensor, new Map([[input.name, graphInput]]), layers, outputs, 'onnx', missing, file);
    // Only the constants that layers read stay, and Conv weights until their kernels are made: the rest were shape arithmetic.
    for (const plan of built) for (const source of plan.sources) if (source.kind === 'constant') kept.add(source.value.tensor);
    for (const value of constants.values()) if (!kept.has(value.tensor) && !convKernels.awaits(value.tensor)) value.tensor.dispose();
    return {
      layersModel,
      ...namesOf(model, plans, views),
      onnxShapes: new Map(plans.map((plan) => [plan.name, plan.onnxShape])),
      nodeNames: new Map(plans.map((plan) => [plan.name, plan.node.name || plan.name])),
      dispose: () => {
        for (const tensor of [...kept, ...kernels, ...convKernels.awaited()]) tensor.dispose();
      },
    };
  } catch (error) {
    for (const kernel of kernels) kernel.dispose();
    throw error;
  }
}

/**
 * The plan as its layer holds it: a Conv's ONNX-layout weights (input 1)
 * replaced by its kernel in tfjs' layout, made on first read (ConvKernels).
 */
function withConvKernel(plan: PlannedLayer, kernels: ConvKernels): LayerPlan {
  const { conv, ...rest } = plan;
  if (conv === undefined) return rest;
  const { weights: _weights, ...geometry } = conv;
  const sources = plan.sources.map((source, i): InputSource => (i === 1 ? { kind: 'kernel' } : source));
  const weightsAsStored = (): tf.Tensor | undefined => (conv.weights.isDisposed ? undefined : conv.weights);
  return { ...rest, conv: { ...geometry, kernel: kernels.reader(conv), kernelShape: tfjsKernelShape(conv), weightsAsStored }, sources };
}

/**
 * A model's Conv kernels in tfjs' layout, each made on its first read: by
 * a pass on tfjs, the CAM method or ONNX Runtime's closed-form head. With
 * ONNX Runtime running the passes most are never made, and their weights
 * never reach the wasm heap (the initializers are the cpu backend's: see
 * buildOnnxModel); making them at load cost MobileNet v1 about 25 ms of
 * transposes and 35 ms of copies into the heap. Convs that read the same
 * weights the same way share one kernel (by weights tensor and view). The
 * ONNX-layout weights are freed once every kernel made from them is made,
 * unless a layer reads them as a constant (`kept`): the model then holds
 * its weights once, as before the kernels were lazy.
 */
class ConvKernels {
  private readonly readers = new Map<string, () => tf.Tensor>();
  /** ONNX-layout weights -> how many of their kernels are not made yet. */
  private readonly pending = new Map<tf.Tensor, number>();

  constructor(
    /** Where made kernels go (the model owns and frees them). */
    private readonly made: Set<tf.Tensor>,
    private readonly kept: ReadonlySet<tf.Tensor>,
  ) {}

  /** What reads the kernel of `conv`, making it the first time. */
  reader(conv: ConvGeometry): () => tf.Tensor {
    const key = `${conv.weights.id}:${conv.depthwise ? `depthwise/${conv.channels}` : 'conv'}`;
    let read = this.readers.get(key);
    if (read !== undefined) return read;
    let kernel: tf.Tensor | undefined;
    this.pending.set(conv.weights, (this.pending.get(conv.weights) ?? 0) + 1);
    read = () => {
      if (kernel === undefined) {
        // Kept: the first read may come inside a tidy (a pass), whose end must not free it.
        kernel = tf.keep(tfjsKernel(conv));
        this.made.add(kernel);
        this.release(conv.weights);
      }
      return kernel;
    };
    this.readers.set(key, read);
    return read;
  }

  /** Whether `weights` still wait for a kernel to be made from them. */
  awaits(weights: tf.Tensor): boolean {
    return this.pending.has(weights);
  }

  /** The weights still waiting for a kernel (freed with the model). */
  awaited(): tf.Tensor[] {
    return [...this.pending.keys()];
  }

  private release(weights: tf.Tensor): void {
    const left = (this.pending.get(weights) ?? 1) - 1;
    if (left > 0) {
      this.pending.set(weights, left);
      return;
    }
    this.pending.delete(weights);
    if (!this.kept.has(weights)) weights.dispose();
  }
}

/** The names users may give, the module of each layer, and the default CAM target. */
function namesOf(model: OnnxModel, plans: PlannedLayer[], views: ReadonlyMap<string, GridView>): Pick<BuiltOnnxModel, 'layerNames' | 'modules' | 'defaultLayer' | 'noDefaultLayer'> {
  const graphOutputs = model.graph.outputs.map((output) => output.name);
  const named = plans.map((plan) => ({ name: plan.node.name, inputs: plan.runtimeInputs, outputs: plan.node.outputs }));
  const layerNames = new Map<string, string>();
  const modules = new Map<string, string>();
  for (const [name, index] of nodeNameIndex(named, graphOutputs)) {
    const layer = plans[index]!.name;
    if (name !== layer) layerNames.set(name, layer);
    if (!name.startsWith('/') && named[index]!.name.startsWith('/') && !named[index]!.outputs.includes(name) && !modules.has(layer)) modules.set(layer, name);
  }
  // A folded Pad's node and output names still resolve: to the Conv that now does its padding.
  for (const plan of plans) {
    for (const name of [plan.foldedPad?.name ?? '', ...(plan.foldedPad?.outputs ?? [])]) if (name !== '' && name !== plan.name && !layerNames.has(name)) layerNames.set(name, plan.name);
  }
  const defaultLayer = defaultLayerOf(plans, layerNames) ?? tokenDefaultLayer(plans, views, modules);
  const noDefaultLayer = defaultLayer === undefined ? tokenHeadReason(plans) : undefined;
  return { layerNames, modules, defaultLayer, ...(noDefaultLayer === undefined ? {} : { noDefaultLayer }) };
}

const GLOBAL_POOLING = new Set(['GlobalAveragePooling2D', 'GlobalMaxPooling2D']);

/** Window pooling that a classifier head may start with: PyTorch's AdaptiveAvgPool2d to a fixed size exports as AveragePool (AlexNet's and VGG's `avgpool`). */
const WINDOW_POOLING = new Set(['AveragePool', 'MaxPool']);

/**
 * The default CAM target, as pytorch-grad-cam users pick it: the output of
 * the last top-level module before the classifier head (`layer4` of a
 * ResNet, `features` of VGG, MobileNet v2, EfficientNet and SqueezeNet,
 * whose classifier holds its own convolution). The head starts at the
 * global pooling nearest the output, else (AlexNet, VGG) at the flatten
 * nearest the output; a module of window pooling alone just before it
 * (`avgpool`) belongs to the head. Where an op outside every module comes
 * between that module and the head (DenseNet's `F.relu(features,
 * inplace=True)`), the value the head reads: what pytorch-grad-cam's hook
 * on `model.features` sees there, the ReLU being in place. Without module
 * scopes, the 4-D value the head reads.
 */
function defaultLayerOf(plans: PlannedLayer[], layerNames: ReadonlyMap<string, string>): string | undefined {
  const headAt = headStartOf(plans);
  if (headAt < 0) return undefined;
  const head = plans[headAt]!;
  const headModules = new Set([topModule(head.node.name)]);
  let pooled = feedingPlan(plans, head);
  for (let i = headAt - 1; i >= 0; i--) {
    const plan = plans[i]!;
    const module = topModule(plan.node.name);
    if (module === undefined || headModules.has(module)) continue;
    if (plans.every((other) => topModule(other.node.name) !== module || WINDOW_POOLING.has(other.className))) {
      headModules.add(module);
      if (pooled === plan) pooled = feedingPlan(plans, plan);
      continue;
    }
    const output = plans.find((other) => other.name === layerNames.get(module));
    if (!isSpatial(output)) break;
    if (pooled !== undefined && pooled !== output && topModule(pooled.node.name) === undefined && isSpatial(pooled)) return pooled.name;
    return module;
  }
  return pooled !== undefined && isSpatial(pooled) ? pooled.name : undefined;
}

/**
 * Per tfjs layer name, how a CAM reads the layer's output (grid-views.ts):
 * a token grid, or a channels-last map where the value is stored as if
 * NCHW (a value stored as ONNX holds it is read as it is, already NHWC).
 */
function layerViews(plans: readonly PlannedLayer[], constants: ReadonlyMap<string, LaidTensor>): Map<string, GridView> {
  const byValue = gridViews(plans, constants);
  const views = new Map<string, GridView>();
  for (const plan of plans) {
    const view = byValue.get(plan.node.outputs[0] ?? '');
    if (plan.node.outputs.length !== 1 || view === undefined) continue;
    if (view.kind === 'tokens' || plan.outputLayouts[0] === 'nhwc') views.set(plan.name, view);
  }
  return views;
}

/** Ops through which a classifier reads some tokens of a sequence (ViT's class token, a mean of the tokens), not the sequence. */
const TOKEN_SELECTIONS = new Set(['Gather', 'Slice', 'ReduceMean', 'ReduceSum', 'ReduceMax']);

/**
 * A vision transformer's default CAM target, where the classifier reads
 * token sequences: pytorch-grad-cam's, the last block's first LayerNorm
 * (`ln_1` of torchvision's last encoder layer, timm's `blocks[-1].norm1`),
 * found as the last token grid that an op mixing tokens reads (the
 * attention): the tokens of every later layer are only carried to the
 * classifier, whose selection of the class token is no such op. As the
 * module whose output it is, when there is one.
 */
function tokenDefaultLayer(plans: readonly PlannedLayer[], views: ReadonlyMap<string, GridView>, modules: ReadonlyMap<string, string>): string | undefined {
  const readers = new Map<string, OnnxNode[]>();
  for (const plan of plans) for (const value of plan.runtimeInputs) readers.set(value, [...(readers.get(value) ?? []), plan.node]);
  const viewed = (value: string): boolean => plans.some((plan) => plan.node.outputs[0] === value && views.get(plan.name)?.kind === 'tokens');
  for (let i = plans.length - 1; i >= 0; i--) {
    const plan = plans[i]!;
    const output = plan.node.outputs[0] ?? '';
    if (views.get(plan.name)?.kind !== 'tokens') continue;
    const mixing = (readers.get(output) ?? []).some((reader) => !TOKEN_SELECTIONS.has(reader.opType) && !reader.outputs.some(viewed));
    if (!mixing) continue;
    const read = linearInput(plans, plan) ?? plan;
    return modules.get(read.name) ?? read.name;
  }
  return undefined;
}

/**
 * The layer whose tokens a Linear reads (a MatMul by a constant, and its
 * bias Add), when `plan` is that Linear's output: timm's attention reads
 * norm1 through its qkv Linear before mixing tokens (torchvision's
 * transposes norm1's output first), and pytorch-grad-cam's target there
 * is norm1.
 */
function linearInput(plans: readonly PlannedLayer[], plan: PlannedLayer): PlannedLayer | undefined {
  const producer = (of: PlannedLayer): PlannedLayer | undefined => (of.runtimeInputs.length === 1 ? plans.find((other) => other.node.outputs[0] === of.runtimeInputs[0]) : undefined);
  const product = plan.node.opType === 'Add' ? producer(plan) : plan;
  return product?.node.opType === 'MatMul' ? producer(product) : undefined;
}

/**
 * Why a model whose classifier reads token sequences (3-D [N, tokens, C]
 * layers after its last 4-D value) that have no grid camviz can trace to a
 * patch embedding (grid-views.ts) has no default CAM target: Grad-CAM reads
 * tokens only as a grid, and the last 4-D layer is not what Grad-CAM users
 * explain. Undefined for any other model (a ViT's tokens have a grid: its
 * default is `tokenDefaultLayer`).
 */
function tokenHeadReason(plans: PlannedLayer[]): string | undefined {
  let lastSpatial = -1;
  plans.forEach((plan, i) => {
    if (isSpatial(plan)) lastSpatial = i;
  });
  if (lastSpatial < 0) return undefined;
  const tokens = plans
    .slice(lastSpatial + 1)
    .reverse()
    .find((plan) => plan.outputShapes[0]?.length === 3 && (plan.outputShapes[0][1] ?? 0) > 1);
  if (tokens === undefined) return undefined;
  const shape = `[${tokens.outputShapes[0]!.map((dim) => dim ?? '?').join(', ')}]`;
  return `the model has no default CAM target: its last layers are token sequences (${tokens.name}: ${shape}, a transformer's), with no grid camviz can trace to a patch embedding (a Conv's map flattened into the tokens); give --layer with a 4-D layer (camviz layers lists them)`;
}

/** Where the classifier head starts: the global pooling nearest the output, else the Flatten (or Reshape) nearest it that makes a feature map a vector; -1 for none. */
function headStartOf(plans: PlannedLayer[]): number {
  const isFlatten = (plan: PlannedLayer): boolean => (plan.className === 'Flatten' || plan.className === 'Reshape') && plan.outputShapes[0]?.length === 2 && isSpatial(feedingPlan(plans, plan));
  const lastIndex = (test: (plan: PlannedLayer) => boolean): number => {
    for (let i = plans.length - 1; i >= 0; i--) if (test(plans[i]!)) return i;
    return -1;
  };
  const pooling = lastIndex((plan) => GLOBAL_POOLING.has(plan.className));
  return pooling >= 0 ? pooling : lastIndex(isFlatten);
}

/** The plan whose output `plan` reads first. */
function feedingPlan(plans: PlannedLayer[], plan: PlannedLayer): PlannedLayer | undefined {
  const read = plan.runtimeInputs[0];
  return read === undefined ? undefined : plans.find((candidate) => candidate.node.outputs.includes(read));
}

function isSpatial(plan: PlannedLayer | undefined): boolean {
  const shape = plan?.outputShapes[0];
  return shape !== undefined && shape.length === 4 && (shape[1] ?? 2) * (shape[2] ?? 2) > 1 && plan!.outputLayouts[0] === 'nhwc';
}
