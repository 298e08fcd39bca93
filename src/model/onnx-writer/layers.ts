/**
 * One converter per Keras layer class (and per TF op of an imported graph
 * model that has no Keras view): the ONNX nodes that compute the layer's
 * outputs from its inputs. Every 4-D value is NCHW in ONNX (the engine
 * feeds the NHWC input transposed, once), so weights are transposed here,
 * channel axes are mapped to 1, and anything that depends on memory order
 * (Flatten, Reshape) goes through NHWC as tfjs does. Values of other ranks
 * keep camviz's layout.
 */
import type { Layer } from '../../executor/graph.js';
import { computedDilations } from '../../executor/fusion.js';
import { isTfjsLayersOwn } from '../../engine/tfl.js';
import { kerasCropOffset } from '../center-crop-slice.js';
import { CamvizError, type CamvizErrorOptions } from '../../util/errors.js';
import { type GraphBuilder, batchNormAffine, foldIntoConv, samePadding, transpose, type ChannelAffine } from './builder.js';
import type { OnnxAttribute } from './proto-writer.js';
import { type TfNode, boolAttr, floatAttr, intsAttr, stringAttr } from '../tfgraph/graph-def.js';

/** A model the ONNX writer cannot express (a layer, or its input); the ONNX Runtime engine falls back to tfjs for it. */
export class OnnxWriteError extends CamvizError {
  constructor(message: string, options: CamvizErrorOptions = {}) {
    super(message, options);
    this.name = 'OnnxWriteError';
  }

  /** The same error naming the model's file (the writer sees only the model). */
  withFile(file: string): OnnxWriteError {
    return new OnnxWriteError(this.message, { file, cause: this });
  }
}

/** A layer the ONNX writer cannot express. */
export class UnsupportedLayerError extends OnnxWriteError {
  constructor(
    /** The layer's path in the executor graph. */
    readonly layerPath: string,
    readonly className: string,
    readonly detail?: string,
    options: CamvizErrorOptions = {},
  ) {
    super(`the ONNX writer does not support layer ${layerPath} (${className}${detail === undefined ? '' : `: ${detail}`})`, options);
    this.name = 'UnsupportedLayerError';
  }

  override withFile(file: string): UnsupportedLayerError {
    return new UnsupportedLayerError(this.layerPath, this.className, this.detail, { file, cause: this });
  }
}

/** An ONNX value a converter reads: its name, and camviz's shape of it without the batch axis. */
export interface ConverterInput {
  readonly name: string;
  readonly dims: readonly number[];
}

export interface ConverterContext {
  readonly layer: Layer;
  /** The layer's path: error messages, and the name of its (last) output. */
  readonly path: string;
  readonly inputs: readonly ConverterInput[];
  /** camviz's shape of each output, without the batch axis. */
  readonly outputDims: readonly (readonly number[])[];
  readonly builder: GraphBuilder;
  /** A BatchNormalization that follows this convolution and is folded into it (see canFoldBatchNorm). */
  readonly foldedBatchNorm?: Layer;
  /** The name of the (last) output: the folded BatchNorm's path when there is one. */
  readonly outputHint: string;
}

export interface Converted {
  /** The ONNX value of each output. */
  readonly outputs: readonly string[];
  /** For a layer with a built-in activation: its input (camviz's `<key>:pre`). */
  readonly preActivation?: string;
}

type Converter = (context: ConverterContext) => Converted;

interface VariableView {
  read(): { dataSync(): Float32Array | Int32Array | Uint8Array; shape: number[] };
}

interface ConvView {
  kernel?: VariableView;
  depthwiseKernel?: VariableView;
  pointwiseKernel?: VariableView;
  bias?: VariableView | null;
  strides: number[];
  padding: string;
  dataFormat: string;
  kernelSize: number[];
  activation: { getClassName(): string };
}

interface BatchNormView {
  axis: number | number[];
  epsilon: number;
  center: boolean;
  scale: boolean;
  gamma?: VariableView;
  beta?: VariableView;
  movingMean: VariableView;
  movingVariance: VariableView;
}

interface PoolView {
  poolSize: number[];
  strides: number[];
  padding: string;
  dataFormat: string;
}

/** The data of a weight, copied (a backend may hand out its own storage) with its shape. */
function weight(variable: VariableView | null | undefined, context: ConverterContext, what: string): { data: Float32Array; shape: number[] } {
  if (variable == null) throw unsupported(context, `no ${what} weight`);
  const tensor = variable.read();
  return { data: new Float32Array(tensor.dataSync()), shape: [...tensor.shape] };
}

/** A layer's bias: tfjs-layers sets `bias` to null without one (an imported graph node's view has no `useBias`). */
function biasOf(layer: ConvView, context: ConverterContext): Float32Array | undefined {
  return layer.bias == null ? undefined : weight(layer.bias, context, 'bias').data;
}

function unsupported(context: ConverterContext, detail: string): UnsupportedLayerError {
  return new UnsupportedLayerError(context.path, context.layer.getClassName(), detail);
}

function onlyInput(context: ConverterContext): ConverterInput {
  if (context.inputs.length !== 1) throw unsupported(context, `${context.inputs.length} inputs`);
  return context.inputs[0]!;
}

/** The input of a 2-D spatial layer: [H, W, C] in camviz, NCHW in ONNX. */
function imageInput(context: ConverterContext, dataFormat: string | undefined): ConverterInput {
  const input = onlyInput(context);
  if (dataFormat !== undefined && dataFormat !== 'channelsLast') throw unsupported(context, `data format ${dataFormat}`);
  if (input.dims.length !== 3) throw unsupported(context, `input of rank ${input.dims.length + 1}, expected 4`);
  return input;
}

function pair(value: number | number[]): [number, number] {
  return Array.isArray(value) ? [value[0]!, value[1] ?? value[0]!] : [value, value];
}

/** pads [top, left, bottom, right] for TF's "same" or "valid" padding. */
function padsOf(context: ConverterContext, padding: string, input: ConverterInput, kernel: [number, number], strides: [number, number], dilations: [number, number]): number[] {
  if (padding === 'valid') return [0, 0, 0, 0];
  if (padding !== 'same') throw unsupported(context, `padding ${padding}`);
  const [top, bottom] = samePadding(input.dims[0]!, kernel[0], strides[0], dilations[0]);
  const [left, right] = samePadding(input.dims[1]!, kernel[1], strides[1], dilations[1]);
  return [top, left, bottom, right];
}

function convAttributes(pads: number[], kernel: [number, number], strides: [number, number], dilations: [number, number], group: number): OnnxAttribute[] {
  return [
    { name: 'kernel_shape', ints: kernel },
    { name: 'strides', ints: strides },
    { name: 'dilations', ints: dilations },
    { name: 'pads', ints: pads },
    { name: 'group', int: group },
  ];
}

/** The ONNX axis of camviz's `axis` of a value with `rank` dims (batch included). */
export function onnxAxis(axis: number, rank: number): number {
  const positive = axis < 0 ? axis + rank : axis;
  if (rank !== 4) return positive;
  return [0, 2, 3, 1][positive]!;
}

function batchNormOf(layer: Layer): BatchNormView {
  return layer as unknown as BatchNormView;
}

/** A BatchNormalization over the last axis (the channels), the only kind that folds or maps per channel. */
function isChannelBatchNorm(layer: Layer, rank: number): boolean {
  if (layer.getClassName() !== 'BatchNormalization') return false;
  const axis = batchNormOf(layer).axis;
  const axes = Array.isArray(axis) ? axis : [axis];
  return axes.length === 1 && (axes[0] === -1 || axes[0] === rank - 1);
}

function affineOf(layer: Layer): ChannelAffine {
  const bn = batchNormOf(layer);
  const read = (variable: VariableView | undefined): ArrayLike<number> | undefined => variable?.read().dataSync();
  return batchNormAffine({
    gamma: bn.scale ? read(bn.gamma) : undefined,
    beta: bn.center ? read(bn.beta) : undefined,
    mean: bn.movingMean.read().dataSync(),
    variance: bn.movingVariance.read().dataSync(),
    epsilon: bn.epsilon,
  });
}

/** Whether `batchNorm`, reading `conv`'s 4-D output, can fold into its weights. */
export function canFoldBatchNorm(conv: Layer, batchNorm: Layer): boolean {
  const name = conv.getClassName();
  if (name !== 'Conv2D' && name !== 'DepthwiseConv2D' && name !== 'SeparableConv2D') return false;
  const view = conv as unknown as ConvView;
  return view.activation.getClassName() === 'linear' && view.dataFormat === 'channelsLast' && isChannelBatchNorm(batchNorm, 4);
}

/**
 * The ONNX value of `activation` (a tfjs activation class name) applied to
 * `x`; `channelAxis` is where softmax normalizes. Linear returns `x`.
 */
function activate(context: ConverterContext, activation: string, x: string, channelAxis: number, hint: string): string {
  const b = context.builder;
  const unary = (opType: string, attributes: OnnxAttribute[] = []): string => b.op(opType, [x], attributes, hint);
  switch (activation) {
    case 'linear':
      return x;
    case 'relu':
      return unary('Relu');
    case 'relu6':
      return b.op('Clip', [x, b.floats(`${hint}/min`, [], [0]), b.floats(`${hint}/max`, [], [6])], [], hint);
    case 'sigmoid':
      return unary('Sigmoid');
    case 'hardSigmoid':
      return unary('HardSigmoid', [{ name: 'alpha', float: 0.2 }, { name: 'beta', float: 0.5 }]);
    case 'tanh':
      return unary('Tanh');
    case 'softmax':
      return unary('Softmax', [{ name: 'axis', int: channelAxis }]);
    case 'logSoftmax':
      return unary('LogSoftmax', [{ name: 'axis', int: channelAxis }]);
    case 'elu':
      return unary('Elu', [{ name: 'alpha', float: 1 }]);
    case 'selu':
      // tfjs' constants (SELU_SCALEALPHA / SELU_SCALE), as ONNX's alpha and gamma.
      return unary('Selu', [{ name: 'alpha', float: 1.7580993408473768 / 1.0507009873554805 }, { name: 'gamma', float: 1.0507009873554805 }]);
    case 'softplus':
      return unary('Softplus');
    case 'softsign':
      return unary('Softsign');
    case 'swish':
      return b.op('Mul', [x, b.op('Sigmoid', [x], [], `${hint}/sigmoid`)], [], hint);
    case 'mish': {
      const softplus = b.op('Softplus', [x], [], `${hint}/softplus`);
      return b.op('Mul', [x, b.op('Tanh', [softplus], [], `${hint}/tanh`)], [], hint);
    }
    case 'gelu': {
      // x * 0.5 * (1 + erf(x / sqrt(2))), as tfjs computes it.
      const erf = b.op('Erf', [b.op('Div', [x, b.floats(`${hint}/sqrt2`, [], [Math.SQRT2])], [], `${hint}/scaled`)], [], `${hint}/erf`);
      const cdf = b.op('Mul', [b.op('Add', [erf, b.floats(`${hint}/one`, [], [1])], [], `${hint}/erf_plus_1`), b.floats(`${hint}/half`, [], [0.5])], [], `${hint}/cdf`);
      return b.op('Mul', [x, cdf], [], hint);
    }
    case 'gelu_new': {
      // 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3))), as tfjs computes it.
      const cube = b.op('Mul', [x, b.op('Mul', [x, x], [], `${hint}/square`)], [], `${hint}/cube`);
      const inner = b.op('Add', [x, b.op('Mul', [cube, b.floats(`${hint}/c`, [], [0.044715])], [], `${hint}/cubic_term`)], [], `${hint}/inner`);
      const tanh = b.op('Tanh', [b.op('Mul', [inner, b.floats(`${hint}/k`, [], [Math.sqrt(2 / Math.PI)])], [], `${hint}/scaled`)], [], `${hint}/tanh`);
      const half = b.op('Mul', [x, b.floats(`${hint}/half`, [], [0.5])], [], `${hint}/half_x`);
      return b.op('Mul', [half, b.op('Add', [tanh, b.floats(`${hint}/one`, [], [1])], [], `${hint}/tanh_plus_1`)], [], hint);
    }
    default:
      throw unsupported(context, `activation ${activation}`);
  }
}

/** A convolution's activation, after its ONNX output `pre`: the layer's outputs. */
function withActivation(context: ConverterContext, activation: string, pre: string, channelAxis: number): Converted {
  if (activation === 'linear') return { outputs: [pre] };
  return { outputs: [activate(context, activation, pre, channelAxis, context.outputHint)], preActivation: pre };
}

/** Bias, folded with the BatchNorm that follows when there is one. */
function foldedWeights(context: ConverterContext, weights: Float32Array, bias: Float32Array | undefined): { weights: Float32Array; bias: Float32Array | undefined } {
  if (context.foldedBatchNorm === undefined) return { weights, bias };
  return foldIntoConv(weights, bias, affineOf(context.foldedBatchNorm));
}

function convNode(context: ConverterContext, x: string, weights: { data: Float32Array; dims: number[] }, bias: Float32Array | undefined, attributes: OnnxAttribute[], hint: string): string {
  const b = context.builder;
  const inputs = [x, b.floats(`${hint}/weights`, weights.dims, weights.data)];
  if (bias !== undefined) inputs.push(b.floats(`${hint}/bias`, [bias.length], bias));
  return b.op('Conv', inputs, attributes, hint);
}

/** The layer's geometry, with the dilation it computes with (tfjs-layers' own DepthwiseConv2D ignores its rate). */
function spatialGeometry(conv: ConvView): { kernel: [number, number]; strides: [number, number]; dilations: [number, number] } {
  return { kernel: pair(conv.kernelSize), strides: pair(conv.strides), dilations: computedDilations(conv) };
}

/** The name of a convolution's own output: the layer's, unless an activation follows inside the layer. */
function convHint(context: ConverterContext, conv: ConvView): string {
  return conv.activation.getClassName() === 'linear' ? context.outputHint : `${context.path}/pre_activation`;
}

const conv2d: Converter = (context) => {
  const conv = context.layer as unknown as ConvView;
  const x = imageInput(context, conv.dataFormat);
  const { kernel, strides, dilations } = spatialGeometry(conv);
  const hwio = weight(conv.kernel, context, 'kernel');
  const [kh, kw, cin, cout] = hwio.shape as [number, number, number, number];
  if (cin !== x.dims[2]) throw unsupported(context, `kernel of ${cin} input channels for ${x.dims[2]} (grouped convolution)`);
  const oihw = transpose(hwio.data, hwio.shape, [3, 2, 0, 1]);
  const bias = biasOf(conv, context);
  const folded = foldedWeights(context, oihw, bias);
  const pads = padsOf(context, conv.padding, x, kernel, strides, dilations);
  const out = convNode(context, x.name, { data: folded.weights, dims: [cout, cin, kh, kw] }, folded.bias, convAttributes(pads, kernel, strides, dilations, 1), convHint(context, conv));
  return withActivation(context, conv.activation.getClassName(), out, 1);
};

/** Depthwise kernel [kh, kw, C, M] as ONNX grouped-conv weights [C*M, 1, kh, kw] (output channel c*M + m). */
function depthwiseWeights(kernel: { data: Float32Array; shape: number[] }): { data: Float32Array; dims: number[] } {
  const [kh, kw, channels, multiplier] = kernel.shape as [number, number, number, number];
  return { data: transpose(kernel.data, kernel.shape, [2, 3, 0, 1]), dims: [channels * multiplier, 1, kh, kw] };
}

const depthwiseConv2d: Converter = (context) => {
  const conv = context.layer as unknown as ConvView;
  const x = imageInput(context, conv.dataFormat);
  const { kernel, strides, dilations } = spatialGeometry(conv);
  const weights = depthwiseWeights(weight(conv.depthwiseKernel, context, 'depthwise kernel'));
  const bias = biasOf(conv, context);
  const folded = foldedWeights(context, weights.data, bias);
  const pads = padsOf(context, conv.padding, x, kernel, strides, dilations);
  const attributes = convAttributes(pads, kernel, strides, dilations, x.dims[2]!);
  const out = convNode(context, x.name, { data: folded.weights, dims: weights.dims }, folded.bias, attributes, convHint(context, conv));
  return withActivation(context, conv.activation.getClassName(), out, 1);
};

const separableConv2d: Converter = (context) => {
  const conv = context.layer as unknown as ConvView;
  const x = imageInput(context, conv.dataFormat);
  const { kernel, strides, dilations } = spatialGeometry(conv);
  const depthwise = depthwiseWeights(weight(conv.depthwiseKernel, context, 'depthwise kernel'));
  const pads = padsOf(context, conv.padding, x, kernel, strides, dilations);
  const middle = convNode(context, x.name, depthwise, undefined, convAttributes(pads, kernel, strides, dilations, x.dims[2]!), `${context.path}/depthwise`);
  const pointwise = weight(conv.pointwiseKernel, context, 'pointwise kernel');
  const [, , cin, cout] = pointwise.shape as [number, number, number, number];
  const bias = biasOf(conv, context);
  const folded = foldedWeights(context, transpose(pointwise.data, pointwise.shape, [3, 2, 0, 1]), bias);
  const ones: [number, number] = [1, 1];
  const out = convNode(context, middle, { data: folded.weights, dims: [cout, cin, 1, 1] }, folded.bias, convAttributes([0, 0, 0, 0], ones, ones, ones, 1), convHint(context, conv));
  return withActivation(context, conv.activation.getClassName(), out, 1);
};

/**
 * Keras' Conv2DTranspose as ONNX ConvTranspose. TF's output is the input
 * times the stride ("same"), plus max(dilated kernel - stride, 0)
 * ("valid"); its "same" crop is the padding of the convolution from that
 * output back to the input, and the rows a kernel smaller than its stride
 * never reaches are output_padding (zeros, at the end, as TF leaves them).
 * Dilated with the rate the layer computes with (tfjs-layers' own ignores
 * it; camviz's loader gives Keras' a class that applies it).
 */
const conv2dTranspose: Converter = (context) => {
  const conv = context.layer as unknown as ConvView;
  const x = imageInput(context, conv.dataFormat);
  const { kernel, strides, dilations } = spatialGeometry(conv);
  const [outHeight, outWidth] = context.outputDims[0]! as [number, number, number];
  const pads = padsOf(context, conv.padding, { name: x.name, dims: [outHeight, outWidth] }, kernel, strides, dilations) as [number, number, number, number];
  const [top, left, bottom, right] = pads;
  const reached = (size: number, axis: 0 | 1, before: number, after: number): number => (size - 1) * strides[axis] + (kernel[axis] - 1) * dilations[axis] + 1 - before - after;
  const outputPadding = [outHeight - reached(x.dims[0]!, 0, top, bottom), outWidth - reached(x.dims[1]!, 1, left, right)];
  // tfjs' kernel [kh, kw, out, in]; ConvTranspose's [in, out, kh, kw].
  const hwoi = weight(conv.kernel, context, 'kernel');
  const [kh, kw, cout, cin] = hwoi.shape as [number, number, number, number];
  const attributes: OnnxAttribute[] = [
    { name: 'kernel_shape', ints: kernel },
    { name: 'strides', ints: strides },
    { name: 'dilations', ints: dilations },
    { name: 'pads', ints: pads },
    { name: 'output_padding', ints: outputPadding },
  ];
  const b = context.builder;
  const hint = convHint(context, conv);
  const inputs = [x.name, b.floats(`${hint}/weights`, [cin, cout, kh, kw], transpose(hwoi.data, hwoi.shape, [3, 2, 0, 1]))];
  const bias = biasOf(conv, context);
  if (bias !== undefined) inputs.push(b.floats(`${hint}/bias`, [bias.length], bias));
  return withActivation(context, conv.activation.getClassName(), b.op('ConvTranspose', inputs, attributes, hint), 1);
};

/** Keras' Dense: over the features of a [batch, features] value, else over the last axis (the channels of a 4-D value, as ConvNeXt's pointwise layers). */
const dense: Converter = (context) => {
  const layer = context.layer as unknown as ConvView;
  const x = onlyInput(context);
  const b = context.builder;
  const hint = convHint(context, layer);
  // Gemm's and MatMul's B is tfjs' kernel as it is: [in, out].
  const kernel = weight(layer.kernel, context, 'kernel');
  const [features, units] = kernel.shape as [number, number];
  const bias = biasOf(layer, context);
  let out: string;
  if (x.dims.length === 3) {
    // NCHW in ONNX: the kernel over the channels is a 1x1 convolution.
    const ones: [number, number] = [1, 1];
    const weights = { data: transpose(kernel.data, [1, 1, features, units], [3, 2, 0, 1]), dims: [units, features, 1, 1] };
    out = convNode(context, x.name, weights, bias, convAttributes([0, 0, 0, 0], ones, ones, ones, 1), hint);
  } else if (x.dims.length === 1) {
    const inputs = [x.name, b.floats(`${context.path}/kernel`, kernel.shape, kernel.data)];
    if (bias !== undefined) inputs.push(b.floats(`${context.path}/bias`, [bias.length], bias));
    out = b.op('Gemm', inputs, [], hint);
  } else {
    // Other ranks keep camviz's layout: the last axis is the features.
    const product = b.op('MatMul', [x.name, b.floats(`${context.path}/kernel`, kernel.shape, kernel.data)], [], bias === undefined ? hint : `${context.path}/product`);
    out = bias === undefined ? product : b.op('Add', [product, b.floats(`${context.path}/bias`, [bias.length], bias)], [], hint);
  }
  return withActivation(context, layer.activation.getClassName(), out, onnxAxis(-1, x.dims.length + 1));
};

const batchNormalization: Converter = (context) => {
  const x = onlyInput(context);
  const rank = x.dims.length + 1;
  if (!isChannelBatchNorm(context.layer, rank)) throw unsupported(context, 'normalizes another axis than the last');
  const { scale, shift } = affineOf(context.layer);
  // Per channel: [C, 1, 1] broadcasts over NCHW's H and W; [C] over the last axis otherwise.
  const dims = rank === 4 ? [scale.length, 1, 1] : [scale.length];
  const b = context.builder;
  const scaled = b.op('Mul', [x.name, b.floats(`${context.path}/scale`, dims, scale)], [], `${context.path}/scaled`);
  return { outputs: [b.op('Add', [scaled, b.floats(`${context.path}/shift`, dims, shift)], [], context.outputHint)] };
};

interface LayerNormView {
  axis: number | number[];
  epsilon: number;
  gamma: VariableView | null;
  beta: VariableView | null;
}

/**
 * A per-position parameter of `layer` over `axes` (camviz's axes of a value
 * of `rank` dims), broadcast as tfjs does (its data reshaped to the input's
 * rank, 1 on the other axes), in ONNX's layout without the batch axis.
 */
function broadcastParameter(context: ConverterContext, variable: VariableView | null, what: string, input: ConverterInput, axes: readonly number[]): { data: Float32Array; dims: number[] } {
  const parameter = weight(variable, context, what);
  const dims = input.dims.map((dim, i) => (axes.includes(i + 1) ? dim : 1));
  if (dims.length !== 3) return { data: parameter.data, dims };
  return { data: transpose(parameter.data, [1, ...dims], [0, 3, 1, 2]), dims: [dims[2]!, dims[0]!, dims[1]!] };
}

/** Keras' LayerNormalization: (x - mean) / sqrt(variance + epsilon) * gamma + beta over its axes, as tfjs' moments and batchNorm compute it (opset 13 has no LayerNormalization op). */
const layerNormalization: Converter = (context) => {
  const x = onlyInput(context);
  const rank = x.dims.length + 1;
  const layer = context.layer as unknown as LayerNormView;
  const axes = (Array.isArray(layer.axis) ? layer.axis : [layer.axis]).map((axis) => (axis < 0 ? axis + rank : axis));
  if (axes.some((axis) => axis <= 0 || axis >= rank)) throw unsupported(context, `normalizes over axes [${axes.join(', ')}] (the batch axis, or outside the input)`);
  const reduce = [{ name: 'axes', ints: axes.map((axis) => onnxAxis(axis, rank)) }];
  const b = context.builder;
  const path = context.path;
  const mean = b.op('ReduceMean', [x.name], reduce, `${path}/mean`);
  const centred = b.op('Sub', [x.name, mean], [], `${path}/centred`);
  const variance = b.op('ReduceMean', [b.op('Mul', [centred, centred], [], `${path}/squared`)], reduce, `${path}/variance`);
  const deviation = b.op('Sqrt', [b.op('Add', [variance, b.floats(`${path}/epsilon`, [], [layer.epsilon])], [], `${path}/variance_epsilon`)], [], `${path}/deviation`);
  const parameter = (variable: VariableView | null, what: string): string => {
    const { data, dims } = broadcastParameter(context, variable, what, x, axes);
    return b.floats(`${path}/${what}`, dims, data);
  };
  const normalized = b.op('Div', [centred, deviation], [], layer.gamma == null && layer.beta == null ? context.outputHint : `${path}/normalized`);
  const scaled = layer.gamma == null ? normalized : b.op('Mul', [normalized, parameter(layer.gamma, 'gamma')], [], layer.beta == null ? context.outputHint : `${path}/scaled`);
  return { outputs: [layer.beta == null ? scaled : b.op('Add', [scaled, parameter(layer.beta, 'beta')], [], context.outputHint)] };
};

const activationLayer: Converter = (context) => {
  const x = onlyInput(context);
  const name = (context.layer as unknown as ConvView).activation.getClassName();
  return { outputs: [activate(context, name, x.name, onnxAxis(-1, x.dims.length + 1), context.outputHint)] };
};

const relu: Converter = (context) => {
  const x = onlyInput(context);
  const maxValue = (context.layer as unknown as { maxValue?: number | null }).maxValue;
  if (maxValue == null) return { outputs: [context.builder.op('Relu', [x.name], [], context.outputHint)] };
  const b = context.builder;
  const bounds = [b.floats(`${context.path}/min`, [], [0]), b.floats(`${context.path}/max`, [], [maxValue])];
  return { outputs: [b.op('Clip', [x.name, ...bounds], [], context.outputHint)] };
};

const leakyRelu: Converter = (context) => {
  const x = onlyInput(context);
  const alpha = (context.layer as unknown as { alpha: number }).alpha;
  return { outputs: [context.builder.op('LeakyRelu', [x.name], [{ name: 'alpha', float: alpha }], context.outputHint)] };
};

const eluLayer: Converter = (context) => {
  const x = onlyInput(context);
  const alpha = (context.layer as unknown as { alpha: number }).alpha;
  return { outputs: [context.builder.op('Elu', [x.name], [{ name: 'alpha', float: alpha }], context.outputHint)] };
};

const softmaxLayer: Converter = (context) => {
  const x = onlyInput(context);
  // An imported TF Softmax node has no axis: TF normalizes the last.
  const axis = (context.layer as unknown as { axis?: number | number[] }).axis ?? -1;
  const axes = Array.isArray(axis) ? axis : [axis];
  if (axes.length !== 1) throw unsupported(context, `softmax over ${axes.length} axes`);
  const onnx = onnxAxis(axes[0]!, x.dims.length + 1);
  return { outputs: [context.builder.op('Softmax', [x.name], [{ name: 'axis', int: onnx }], context.outputHint)] };
};

const prelu: Converter = (context) => {
  const x = onlyInput(context);
  const alpha = weight((context.layer as unknown as { alpha?: VariableView }).alpha, context, 'alpha');
  // alpha has the input's shape without the batch (1 on shared axes): [H, W, C] of a 4-D value becomes [C, H, W].
  const slope = x.dims.length === 3 ? { data: transpose(alpha.data, [1, ...alpha.shape], [0, 3, 1, 2]), dims: [alpha.shape[2]!, alpha.shape[0]!, alpha.shape[1]!] } : { data: alpha.data, dims: alpha.shape };
  const b = context.builder;
  return { outputs: [b.op('PRelu', [x.name, b.floats(`${context.path}/slope`, slope.dims, slope.data)], [], context.outputHint)] };
};

const thresholdedRelu: Converter = (context) => {
  const x = onlyInput(context);
  const theta = (context.layer as unknown as { theta: number }).theta;
  return { outputs: [context.builder.op('ThresholdedRelu', [x.name], [{ name: 'alpha', float: theta }], context.outputHint)] };
};

/** camviz's axis of each ONNX axis of a value of `rank` dims (the inverse of onnxAxis). */
function camvizAxes(rank: number): number[] {
  return rank === 4 ? [0, 3, 1, 2] : Array.from({ length: rank }, (_, axis) => axis);
}

const permute: Converter = (context) => {
  const x = onlyInput(context);
  const rank = x.dims.length + 1;
  // Output axis j of camviz's value is input axis dims[j]; both ends are in ONNX's layout of their rank.
  const perm = [0, ...(context.layer as unknown as { dims: number[] }).dims];
  const onnxPerm = camvizAxes(rank).map((axis) => onnxAxis(perm[axis]!, rank));
  return { outputs: [context.builder.op('Transpose', [x.name], [{ name: 'perm', ints: onnxPerm }], context.outputHint)] };
};

/** Dropout and noise layers are the identity at inference: the output is the input's value. */
const identity: Converter = (context) => ({ outputs: [onlyInput(context).name] });

const zeroPadding2d: Converter = (context) => {
  const layer = context.layer as unknown as { padding: [[number, number], [number, number]]; dataFormat: string };
  const x = imageInput(context, layer.dataFormat);
  const [[top, bottom], [left, right]] = layer.padding;
  const pads = context.builder.int64s(`${context.path}/pads`, [0, 0, top, left, 0, 0, bottom, right]);
  return { outputs: [context.builder.op('Pad', [x.name, pads], [], context.outputHint)] };
};

/** A MaxPool / AveragePool node for TF's pooling of `x` (window, strides, "same" or "valid"). */
function poolNode(context: ConverterContext, opType: 'MaxPool' | 'AveragePool', x: ConverterInput, kernel: [number, number], strides: [number, number], padding: string): Converted {
  const pads = padsOf(context, padding, x, kernel, strides, [1, 1]);
  // TF's average pooling divides by the pixels inside the image: ONNX's count_include_pad = 0 (the default).
  const attributes: OnnxAttribute[] = [
    { name: 'kernel_shape', ints: kernel },
    { name: 'strides', ints: strides },
    { name: 'pads', ints: pads },
  ];
  return { outputs: [context.builder.op(opType, [x.name], attributes, context.outputHint)] };
}

function pooling(opType: 'MaxPool' | 'AveragePool'): Converter {
  return (context) => {
    const pool = context.layer as unknown as PoolView;
    return poolNode(context, opType, imageInput(context, pool.dataFormat), pair(pool.poolSize), pair(pool.strides), pool.padding);
  };
}

/** The input of a 1-D layer: [steps, channels] in camviz, kept so in ONNX. */
function sequenceInput(context: ConverterContext, dataFormat: string | undefined): ConverterInput {
  const input = onlyInput(context);
  if (dataFormat !== undefined && dataFormat !== 'channelsLast') throw unsupported(context, `data format ${dataFormat}`);
  if (input.dims.length !== 2) throw unsupported(context, `input of rank ${input.dims.length + 1}, expected 3`);
  return input;
}

/** [batch, steps, channels] as ONNX's 1-D [batch, channels, steps] for Conv and pooling, or back. */
function stepsSwapped(context: ConverterContext, x: string, hint: string): string {
  return context.builder.op('Transpose', [x], [{ name: 'perm', ints: [0, 2, 1] }], hint);
}

/** pads [before, after] along the steps for TF's "same" or "valid" padding (padsOf, with a second axis of 1). */
function stepPads(context: ConverterContext, padding: string, input: ConverterInput, kernel: number, stride: number, dilation: number): number[] {
  const [before, , after] = padsOf(context, padding, { name: input.name, dims: [input.dims[0]!, 1] }, [kernel, 1], [stride, 1], [dilation, 1]);
  return [before!, after!];
}

/** Keras' Conv1D on [batch, steps, channels]: a 1-D ONNX Conv between two transposes. */
const conv1d: Converter = (context) => {
  const conv = context.layer as unknown as ConvView;
  const x = sequenceInput(context, conv.dataFormat);
  const [kernel] = pair(conv.kernelSize);
  const [stride] = pair(conv.strides);
  const [dilation] = computedDilations(conv);
  const pads = stepPads(context, conv.padding, x, kernel, stride, dilation);
  // tfjs' kernel [k, in, out] as ONNX's [out, in, k] (a 4-D [1, k, in, out] transposed: [out, in, 1, k] is the same memory).
  const wio = weight(conv.kernel, context, 'kernel');
  const [, cin, cout] = wio.shape as [number, number, number];
  const weights = { data: transpose(wio.data, [1, ...wio.shape], [3, 2, 0, 1]), dims: [cout, cin, kernel] };
  const attributes: OnnxAttribute[] = [
    { name: 'kernel_shape', ints: [kernel] },
    { name: 'strides', ints: [stride] },
    { name: 'dilations', ints: [dilation] },
    { name: 'pads', ints: pads },
  ];
  const convolved = convNode(context, stepsSwapped(context, x.name, `${context.path}/channels_first`), weights, biasOf(conv, context), attributes, `${context.path}/convolved`);
  const out = stepsSwapped(context, convolved, convHint(context, conv));
  return withActivation(context, conv.activation.getClassName(), out, 2);
};

/** MaxPooling1D / AveragePooling1D: a 1-D ONNX pool between two transposes (TF's averages count only the steps inside, as ONNX's default). */
function pooling1d(opType: 'MaxPool' | 'AveragePool'): Converter {
  return (context) => {
    const pool = context.layer as unknown as PoolView;
    const x = sequenceInput(context, undefined);
    const [size] = pair(pool.poolSize);
    const [stride] = pair(pool.strides);
    const attributes: OnnxAttribute[] = [
      { name: 'kernel_shape', ints: [size] },
      { name: 'strides', ints: [stride] },
      { name: 'pads', ints: stepPads(context, pool.padding, x, size, stride, 1) },
    ];
    const pooled = context.builder.op(opType, [stepsSwapped(context, x.name, `${context.path}/channels_first`)], attributes, `${context.path}/pooled`);
    return { outputs: [stepsSwapped(context, pooled, context.outputHint)] };
  };
}

/** The TF node of a layer imported from a TF.js graph model (src/model/tfgraph). */
function tfNodeOf(context: ConverterContext): TfNode {
  const node = (context.layer as unknown as { plan?: { node?: TfNode } }).plan?.node;
  if (node === undefined) throw unsupported(context, 'not a TF graph node');
  return node;
}

/** TF's MaxPool / AvgPool node (NHWC; ksize and strides [1, h, w, 1]). */
function tfPooling(opType: 'MaxPool' | 'AveragePool'): Converter {
  return (context) => {
    const node = tfNodeOf(context);
    const ksize = intsAttr(node, 'ksize') ?? [];
    const strides = intsAttr(node, 'strides') ?? [];
    const format = stringAttr(node, 'data_format') ?? 'NHWC';
    const spatialOnly = (values: number[]): boolean => values.length === 4 && values[0] === 1 && values[3] === 1;
    if (format !== 'NHWC' || !spatialOnly(ksize) || !spatialOnly(strides)) throw unsupported(context, `pooling window [${ksize.join(', ')}], strides [${strides.join(', ')}], ${format}`);
    const x = imageInput(context, undefined);
    return poolNode(context, opType, x, [ksize[1]!, ksize[2]!], [strides[1]!, strides[2]!], (stringAttr(node, 'padding') ?? '').toLowerCase());
  };
}

function globalPooling(opType: 'GlobalAveragePool' | 'GlobalMaxPool'): Converter {
  return (context) => {
    const layer = context.layer as unknown as { dataFormat: string };
    const x = imageInput(context, layer.dataFormat);
    const b = context.builder;
    const keepsDims = context.outputDims[0]!.length === 3;
    if (keepsDims) return { outputs: [b.op(opType, [x.name], [], context.outputHint)] };
    const pooled = b.op(opType, [x.name], [], `${context.path}/pooled`);
    return { outputs: [b.op('Flatten', [pooled], [{ name: 'axis', int: 1 }], context.outputHint)] };
  };
}

/** GlobalAveragePooling1D / GlobalMaxPooling1D: [batch, steps, features] (camviz's layout) reduced over the steps. */
function globalPooling1d(opType: 'ReduceMean' | 'ReduceMax'): Converter {
  return (context) => {
    const x = onlyInput(context);
    if (x.dims.length !== 2) throw unsupported(context, `input of rank ${x.dims.length + 1}, expected 3`);
    const attributes: OnnxAttribute[] = [{ name: 'axes', ints: [1] }, { name: 'keepdims', int: 0 }];
    return { outputs: [context.builder.op(opType, [x.name], attributes, context.outputHint)] };
  };
}

/**
 * A 4-D value in camviz's NHWC memory order: a Transpose of the NCHW value,
 * unless H and W are 1 (then both orders are the same memory).
 */
function inNhwcOrder(context: ConverterContext, x: ConverterInput): string {
  if (x.dims.length !== 3 || (x.dims[0] === 1 && x.dims[1] === 1)) return x.name;
  return context.builder.op('Transpose', [x.name], [{ name: 'perm', ints: [0, 2, 3, 1] }], `${context.path}/nhwc`);
}

const flatten: Converter = (context) => {
  const x = onlyInput(context);
  return { outputs: [context.builder.op('Flatten', [inNhwcOrder(context, x)], [{ name: 'axis', int: 1 }], context.outputHint)] };
};

const reshape: Converter = (context) => {
  const x = onlyInput(context);
  const target = context.outputDims[0]!;
  const b = context.builder;
  const source = inNhwcOrder(context, x);
  // 0 copies the batch dimension.
  const shapeOf = (dims: readonly number[]): string => b.int64s(`${context.path}/shape`, [0, ...dims]);
  if (target.length !== 3) return { outputs: [b.op('Reshape', [source, shapeOf(target)], [], context.outputHint)] };
  const [height, width, channels] = target as [number, number, number];
  if (height === 1 && width === 1) return { outputs: [b.op('Reshape', [source, shapeOf([channels, 1, 1])], [], context.outputHint)] };
  const nhwc = b.op('Reshape', [source, shapeOf(target)], [], `${context.path}/reshaped`);
  return { outputs: [b.op('Transpose', [nhwc], [{ name: 'perm', ints: [0, 3, 1, 2] }], context.outputHint)] };
};

/** TF's elementwise activations (nodes without a Keras view) as the tfjs activation of the same meaning. */
function tfActivation(activation: string): Converter {
  return (context) => {
    const x = onlyInput(context);
    return { outputs: [activate(context, activation, x.name, onnxAxis(-1, x.dims.length + 1), context.outputHint)] };
  };
}

const tfLeakyRelu: Converter = (context) => {
  const x = onlyInput(context);
  // TF's default slope when the attribute is absent.
  const alpha = floatAttr(tfNodeOf(context), 'alpha') ?? 0.2;
  return { outputs: [context.builder.op('LeakyRelu', [x.name], [{ name: 'alpha', float: alpha }], context.outputHint)] };
};

/**
 * TF's ResizeBilinear / ResizeNearestNeighbor as ONNX Resize to the node's
 * output size (the batch taken from the value's shape), sampling where
 * tfjs' kernels do: corners aligned (nearest: rounded, halves up), half
 * pixels (nearest: TF's floor of (x + 0.5) / scale), or neither (floor).
 */
function tfResize(mode: 'linear' | 'nearest'): Converter {
  return (context) => {
    const node = tfNodeOf(context);
    const x = imageInput(context, undefined);
    const alignCorners = boolAttr(node, 'align_corners') === true;
    const halfPixel = boolAttr(node, 'half_pixel_centers') === true;
    if (alignCorners && halfPixel) throw unsupported(context, 'align_corners with half_pixel_centers');
    const transform = alignCorners ? 'align_corners' : !halfPixel ? 'asymmetric' : mode === 'linear' ? 'half_pixel' : 'tf_half_pixel_for_nn';
    const attributes: OnnxAttribute[] = [{ name: 'mode', string: mode }, { name: 'coordinate_transformation_mode', string: transform }];
    if (mode === 'nearest') attributes.push({ name: 'nearest_mode', string: alignCorners ? 'round_prefer_ceil' : 'floor' });
    return { outputs: [resizedToOutput(context, x.name, attributes)] };
  };
}

/** ONNX Resize of the NCHW value `x` to the layer's output size, the batch as fed (sizes from the value's shape). */
function resizedToOutput(context: ConverterContext, x: string, attributes: OnnxAttribute[]): string {
  const b = context.builder;
  const path = context.path;
  const [height, width, channels] = context.outputDims[0]! as [number, number, number];
  const batch = b.op('Slice', [b.op('Shape', [x], [], `${path}/shape`), b.int64s(`${path}/batch_start`, [0]), b.int64s(`${path}/batch_end`, [1])], [], `${path}/batch`);
  const sizes = b.op('Concat', [batch, b.int64s(`${path}/chw`, [channels, height, width])], [{ name: 'axis', int: 0 }], `${path}/sizes`);
  return b.op('Resize', [x, '', '', sizes], attributes, context.outputHint);
}

/** A TF binary op of two computed values (a constant operand is not the layer's input). */
function tfBinary(opType: string): Converter {
  return (context) => {
    const inputs = mergeInputs(context);
    if (inputs.length !== 2) throw unsupported(context, `${inputs.length} inputs`);
    return { outputs: [context.builder.op(opType, inputs, [], context.outputHint)] };
  };
}

/** Inputs of a merge layer, which must all have the same rank (so the same ONNX layout). */
function mergeInputs(context: ConverterContext): string[] {
  const rank = context.inputs[0]?.dims.length;
  if (context.inputs.length < 2) throw unsupported(context, `${context.inputs.length} computed input (a constant operand is not supported)`);
  if (context.inputs.some((input) => input.dims.length !== rank)) throw unsupported(context, 'inputs of different ranks');
  return context.inputs.map((input) => input.name);
}

/** A merge as one variadic op (Sum, Mean, Max, Min), or a binary one for two inputs. */
function variadicMerge(binary: string | undefined, variadic: string): Converter {
  return (context) => {
    const inputs = mergeInputs(context);
    const opType = inputs.length === 2 && binary !== undefined ? binary : variadic;
    return { outputs: [context.builder.op(opType, inputs, [], context.outputHint)] };
  };
}

const multiply: Converter = (context) => {
  const inputs = mergeInputs(context);
  let product = inputs[0]!;
  inputs.slice(1).forEach((input, i) => {
    const last = i === inputs.length - 2;
    product = context.builder.op('Mul', [product, input], [], last ? context.outputHint : `${context.path}/product`);
  });
  return { outputs: [product] };
};

const concatenate: Converter = (context) => {
  const inputs = mergeInputs(context);
  const rank = context.inputs[0]!.dims.length + 1;
  const camvizAxis = (context.layer as unknown as { axis: number }).axis;
  // A TF ConcatV2 may also join a value computed from constants alone, or one value twice (a layer reads each once): not among the layer's inputs.
  const along = (camvizAxis < 0 ? camvizAxis + rank : camvizAxis) - 1;
  const joined = context.inputs.reduce((total, input) => total + input.dims[along]!, 0);
  if (joined !== context.outputDims[0]![along]) throw unsupported(context, `its inputs make ${joined} of its ${context.outputDims[0]![along]} along the axis (a constant or repeated operand is not supported)`);
  const axis = onnxAxis(camvizAxis, rank);
  return { outputs: [context.builder.op('Concat', inputs, [{ name: 'axis', int: axis }], context.outputHint)] };
};

/** tfjs' epsilon on a float32 backend (EPSILON_FLOAT32): the floor of Dot's L2 norms. */
const TFJS_EPSILON = 1e-7;

/** `x` divided by its L2 norm along `axis`, floored at tfjs' epsilon, as tfjs-layers' l2Normalize. */
function l2Normalized(context: ConverterContext, x: string, axis: number, hint: string): string {
  const b = context.builder;
  const squares = b.op('ReduceSumSquare', [x], [{ name: 'axes', ints: [axis] }], `${hint}/square_sum`);
  const floored = b.op('Max', [squares, b.floats(`${hint}/epsilon`, [], [TFJS_EPSILON])], [], `${hint}/floored`);
  return b.op('Div', [x, b.op('Sqrt', [floored], [], `${hint}/norm`)], [], hint);
}

/**
 * Keras' Dot of two values of rank 2 ([batch, 1] of their products' sums)
 * or 3 (a batched matrix product over the axes); tfjs-layers has no higher
 * rank. Values of these ranks keep camviz's layout.
 */
const dot: Converter = (context) => {
  const [first, second] = mergeInputs(context) as [string, string];
  const rank = context.inputs[0]!.dims.length + 1;
  if (context.inputs.length !== 2 || (rank !== 2 && rank !== 3)) throw unsupported(context, `${context.inputs.length} inputs of rank ${rank}`);
  const layer = context.layer as unknown as { axes: number | number[]; normalize: boolean };
  const axes = (Array.isArray(layer.axes) ? layer.axes : [layer.axes, layer.axes]).map((axis) => (axis < 0 ? axis + rank : axis));
  if (axes.some((axis) => axis <= 0)) throw unsupported(context, `axes [${axes.join(', ')}] include the batch axis`);
  const b = context.builder;
  const path = context.path;
  const [left, right] = layer.normalize ? [l2Normalized(context, first, axes[0]!, `${path}/left`), l2Normalized(context, second, axes[1]!, `${path}/right`)] : [first, second];
  if (rank === 2) return { outputs: [b.op('ReduceSum', [b.op('Mul', [left, right], [], `${path}/products`), b.int64s(`${path}/axes`, [1])], [], context.outputHint)] };
  // MatMul contracts the left's last axis with the right's middle one.
  const swapped = (value: string, hint: string): string => b.op('Transpose', [value], [{ name: 'perm', ints: [0, 2, 1] }], hint);
  const matLeft = axes[0] === 2 ? left : swapped(left, `${path}/left_t`);
  const matRight = axes[1] === 1 ? right : swapped(right, `${path}/right_t`);
  return { outputs: [b.op('MatMul', [matLeft, matRight], [], context.outputHint)] };
};

const upSampling2d: Converter = (context) => {
  const layer = context.layer as unknown as { size: number[]; interpolation: string; dataFormat: string };
  const x = imageInput(context, layer.dataFormat);
  const [sh, sw] = pair(layer.size);
  const b = context.builder;
  // tfjs resizes without align-corners or half-pixel centres: ONNX's "asymmetric" transform.
  const attributes: OnnxAttribute[] =
    layer.interpolation === 'nearest'
      ? [{ name: 'mode', string: 'nearest' }, { name: 'coordinate_transformation_mode', string: 'asymmetric' }, { name: 'nearest_mode', string: 'floor' }]
      : [{ name: 'mode', string: 'linear' }, { name: 'coordinate_transformation_mode', string: 'asymmetric' }];
  const scales = b.floats(`${context.path}/scales`, [4], [1, 1, sh, sw]);
  return { outputs: [b.op('Resize', [x.name, '', scales], attributes, context.outputHint)] };
};

/** The rows [top, bottom) and columns [left, right) of an NCHW value: the layer's output. */
function spatialSlice(context: ConverterContext, x: string, [top, left]: [number, number], [bottom, right]: [number, number]): Converted {
  const b = context.builder;
  const inputs = [x, b.int64s(`${context.path}/starts`, [top, left]), b.int64s(`${context.path}/ends`, [bottom, right]), b.int64s(`${context.path}/axes`, [2, 3])];
  return { outputs: [b.op('Slice', inputs, [], context.outputHint)] };
}

const cropping2d: Converter = (context) => {
  const layer = context.layer as unknown as { cropping: [[number, number], [number, number]]; dataFormat: string };
  const x = imageInput(context, layer.dataFormat);
  const [[top, bottom], [left, right]] = layer.cropping;
  return spatialSlice(context, x.name, [top, left], [x.dims[0]! - bottom, x.dims[1]! - right]);
};

/**
 * CenterCrop: a Slice. camviz's loader gives Keras' layers a class that
 * slices at Keras' offsets (model/center-crop-slice.ts); tfjs-layers' own
 * is written from tfjs' offsets. tfjs samples the
 * crop with cropAndResize's nearest neighbours over the box from offset o
 * to o + L of a side of n, which land at o + i - o/n + i(n - L)/(n(L - 1)):
 * within (-1/2, 1/2) of o + i, since o = floor((n - L) / 2) (1 when that
 * is 0 and n = L + 1), so they round to exactly the crop (a side of 1
 * samples the box's middle, o + 1/2 - (2o + 1)/(2n): o too). A target larger
 * than the input along either axis is refused: tfjs-layers 4.22 then hands
 * its resize the list of inputs and fails, so there is no value to equal.
 */
const centerCrop: Converter = (context) => {
  const x = imageInput(context, undefined);
  const layer = context.layer as unknown as { height: number; width: number };
  const [inHeight, inWidth] = x.dims as [number, number, number];
  if (layer.height > inHeight || layer.width > inWidth) throw unsupported(context, `a target of ${layer.height}x${layer.width} larger than its ${inHeight}x${inWidth} input, which tfjs-layers fails to resize`);
  // camviz's loader gives Keras' layers a class that slices at Keras' offsets; tfjs-layers' own starts a crop one column wider than it at the second column.
  const top = kerasCropOffset(inHeight, layer.height);
  const widthOffset = kerasCropOffset(inWidth, layer.width);
  const left = isTfjsLayersOwn(context.layer, 'CenterCrop') && inWidth !== layer.width && widthOffset === 0 ? 1 : widthOffset;
  return spatialSlice(context, x.name, [top, left], [top + layer.height, left + layer.width]);
};

const rescaling: Converter = (context) => {
  const x = onlyInput(context);
  const layer = context.layer as unknown as { scale: number; offset: number };
  const b = context.builder;
  const scaled = b.op('Mul', [x.name, b.floats(`${context.path}/scale`, [], [layer.scale])], [], `${context.path}/scaled`);
  return { outputs: [b.op('Add', [scaled, b.floats(`${context.path}/offset`, [], [layer.offset])], [], context.outputHint)] };
};

/** The converter of each supported Keras class (tfjs-layers' getClassName()). */
export const CONVERTERS: ReadonlyMap<string, Converter> = new Map<string, Converter>([
  ['Conv2D', conv2d],
  ['DepthwiseConv2D', depthwiseConv2d],
  ['SeparableConv2D', separableConv2d],
  ['Conv2DTranspose', conv2dTranspose],
  ['Conv1D', conv1d],
  ['Dense', dense],
  ['BatchNormalization', batchNormalization],
  ['LayerNormalization', layerNormalization],
  ['Activation', activationLayer],
  ['ReLU', relu],
  ['LeakyReLU', leakyRelu],
  ['ELU', eluLayer],
  ['Softmax', softmaxLayer],
  ['PReLU', prelu],
  ['ThresholdedReLU', thresholdedRelu],
  ['Permute', permute],
  ['Dropout', identity],
  ['SpatialDropout1D', identity],
  ['GaussianNoise', identity],
  ['GaussianDropout', identity],
  ['AlphaDropout', identity],
  ['ZeroPadding2D', zeroPadding2d],
  ['MaxPooling2D', pooling('MaxPool')],
  ['AveragePooling2D', pooling('AveragePool')],
  ['MaxPooling1D', pooling1d('MaxPool')],
  ['AveragePooling1D', pooling1d('AveragePool')],
  ['GlobalAveragePooling2D', globalPooling('GlobalAveragePool')],
  ['GlobalMaxPooling2D', globalPooling('GlobalMaxPool')],
  ['GlobalAveragePooling1D', globalPooling1d('ReduceMean')],
  ['GlobalMaxPooling1D', globalPooling1d('ReduceMax')],
  ['Flatten', flatten],
  ['Reshape', reshape],
  ['Add', variadicMerge('Add', 'Sum')],
  ['Average', variadicMerge(undefined, 'Mean')],
  ['Maximum', variadicMerge(undefined, 'Max')],
  ['Minimum', variadicMerge(undefined, 'Min')],
  ['Multiply', multiply],
  ['Concatenate', concatenate],
  ['Dot', dot],
  ['UpSampling2D', upSampling2d],
  ['Cropping2D', cropping2d],
  ['CenterCrop', centerCrop],
  ['Rescaling', rescaling],
  // TF ops of an imported TF.js graph model that have no Keras view (src/model/tfgraph/keras.ts), over computed values only.
  // ('Add', 'Maximum' and 'Minimum' are Keras' merges above.)
  ['AddV2', variadicMerge('Add', 'Sum')],
  ['Mul', multiply],
  ['MaxPool', tfPooling('MaxPool')],
  ['AvgPool', tfPooling('AveragePool')],
  ['Sub', tfBinary('Sub')],
  ['RealDiv', tfBinary('Div')],
  ['Tanh', tfActivation('tanh')],
  ['Elu', tfActivation('elu')],
  ['Selu', tfActivation('selu')],
  ['Softplus', tfActivation('softplus')],
  ['LeakyRelu', tfLeakyRelu],
  ['ResizeBilinear', tfResize('linear')],
  ['ResizeNearestNeighbor', tfResize('nearest')],
]);
