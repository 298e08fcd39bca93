/**
 * Elementwise ONNX ops: activations, arithmetic with numpy broadcasting,
 * comparisons, and the variadic Min/Max/Sum/Mean. They keep the 'nhwc'
 * layout when every 4-D operand of more than one element has it; a
 * lower-rank operand is then broadcast to rank 4 the ONNX way (right
 * aligned) and transposed like the others.
 */
import * as tf from '../../../engine/tf.js';
import { elementwiseSplittingTies } from '../../../engine/max-gradients.js';
import { laid, reshapeSuffices, toLayout, type LaidTensor, type Layout } from '../layout.js';
import { attrFloat, attrInt, attrString, checkedShape, constantNumber, required, unsupported, zerosStandIn, type OpContext, type OpFunction } from './common.js';

/**
 * The operands stored in one layout that makes their broadcast right. The
 * choice depends on ranks and on which dims are 1 apart from the batch, not
 * on the batch size: the model builder plans layouts from a batch-1 run.
 */
export function alignOperands(values: LaidTensor[]): { tensors: tf.Tensor[]; layout: Layout } {
  const rank = Math.max(...values.map((value) => value.tensor.rank));
  const nhwc =
    rank === 4 &&
    values.some((value) => value.layout === 'nhwc') &&
    values.every((value) => value.tensor.rank < 4 || reshapeSuffices(value, 'nhwc'));
  if (!nhwc) return { tensors: values.map((value) => toLayout(value, 'onnx')), layout: 'onnx' };
  const tensors = values.map((value) => {
    if (value.layout === 'nhwc') return value.tensor;
    const { tensor } = value;
    const rank4 = tensor.rank === 4 ? tensor : tf.reshape(tensor, [...Array<number>(4 - tensor.rank).fill(1), ...tensor.shape]);
    return toLayout(laid(rank4, 'onnx'), 'nhwc');
  });
  return { tensors, layout: 'nhwc' };
}

/**
 * In the planning pass, zeros standing for the output of an elementwise op
 * that reads image data (common.ts, zerosStandIn): of the operands'
 * broadcast shape, with the type `compute` gives on one element of each,
 * which also makes the op's checks of its attributes and types. Undefined
 * when the op computes.
 */
function standIn(ctx: OpContext, operands: readonly tf.Tensor[], compute: (elements: tf.Tensor[]) => tf.Tensor, layout: Layout): tf.Tensor | undefined {
  const shape = broadcastShape(ctx, operands, layout);
  if (ctx.shapesOnly !== true) return undefined;
  return zerosStandIn(shape, compute(operands.map((tensor) => tf.zeros([1], tensor.dtype))).dtype);
}

/**
 * The operands' broadcast shape, with the op's own check of the broadcast,
 * refused above the per-tensor limit: operands of [N, 1] and [1, N] make
 * N² elements.
 */
function broadcastShape(ctx: OpContext, operands: readonly tf.Tensor[], layout: Layout): number[] {
  const shape = operands.map((tensor) => tensor.shape).reduce((a, b) => tf.broadcast_util.assertAndGetBroadcastShape(a, b));
  return checkedShape(ctx, shape, undefined, layout);
}

function unary(fn: (x: tf.Tensor, ctx: OpContext) => tf.Tensor): OpFunction {
  return (ctx, inputs) => {
    const x = required(ctx, inputs, 0);
    return [laid(standIn(ctx, [x.tensor], ([element]) => fn(element!, ctx), x.layout) ?? fn(x.tensor, ctx), x.layout)];
  };
}

/** Both operands required; the output has the type ONNX gives it. */
function binary(fn: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor): OpFunction {
  return (ctx, inputs) => {
    const { tensors, layout } = alignOperands([required(ctx, inputs, 0), required(ctx, inputs, 1)]);
    const [a, b] = tensors as [tf.Tensor, tf.Tensor];
    return [laid(standIn(ctx, [a, b], ([x, y]) => fn(x!, y!), layout) ?? fn(a, b), layout)];
  };
}

/** Min/Max/Sum/Mean over any number of operands. */
function variadic(fn: (tensors: tf.Tensor[]) => tf.Tensor): OpFunction {
  return (ctx, inputs) => {
    const present = inputs.filter((value): value is LaidTensor => value !== undefined);
    if (present.length === 0) throw unsupported(ctx, 'no inputs');
    const { tensors, layout } = alignOperands(present);
    return [laid(standIn(ctx, tensors, fn, layout) ?? fn(tensors), layout)];
  };
}

const fold = (step: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor) => (tensors: tf.Tensor[]): tf.Tensor =>
  tensors.slice(1).reduce(step, tf.clone(tensors[0]!));

/** ONNX Selu's defaults (the self-normalising constants). */
const SELU_ALPHA = 1.67326319217681884765625;
const SELU_GAMMA = 1.05070102214813232421875;

// These activations are sums of differentiable ops, not tf.where on a
// comparison: tfjs has no gradient for a comparison on the tape.

/**
 * x where x > 0, alpha (e^x - 1) elsewhere, as relu(x) + alpha (e^min(x,0) - 1):
 * e^x of a large x would be Infinity, and its share of the gradient NaN.
 */
function elu(x: tf.Tensor, alpha: number): tf.Tensor {
  return tf.add(tf.relu(x), tf.mul(tf.expm1(tf.minimum(x, 0)), alpha));
}

/** x where x > 0, slope * x elsewhere, as relu(x) - slope relu(-x); the slope broadcasts to x (ONNX's unidirectional broadcast). */
function prelu(x: tf.Tensor, slope: tf.Tensor): tf.Tensor {
  return tf.sub(tf.relu(x), tf.mul(slope, tf.relu(tf.neg(x))));
}

/** x where x > alpha, else 0: x times step(x - alpha), whose gradient is 0. */
function thresholdedRelu(x: tf.Tensor, alpha: number): tf.Tensor {
  return tf.mul(x, tf.step(tf.sub(x, alpha)));
}

function hardSigmoid(x: tf.Tensor, alpha: number, beta: number): tf.Tensor {
  return tf.clipByValue(tf.add(tf.mul(x, alpha), beta), 0, 1);
}

/** ONNX's integer Div truncates toward zero; tfjs' int32 div floors. */
function divide(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  if (a.dtype !== 'int32') return tf.div(a, b);
  const quotient = tf.div(tf.cast(a, 'float32'), tf.cast(b, 'float32'));
  return tf.cast(tf.mul(tf.sign(quotient), tf.floor(tf.abs(quotient))), 'int32');
}

/**
 * Mod: with fmod 0 (integers only in ONNX) the remainder takes the divisor's
 * sign, as Python's % and tf.mod; with fmod 1 the dividend's, as C's fmod.
 * Swin Transformer's export computes its window padding with it.
 */
function modulo(fmod: boolean): (a: tf.Tensor, b: tf.Tensor) => tf.Tensor {
  return (a, b) => {
    if (!fmod) return tf.mod(a, b);
    if (a.dtype === 'int32') return tf.sub(a, tf.mul(divide(a, b), b));
    return tf.sub(a, tf.mul(tf.mul(tf.sign(tf.div(a, b)), tf.floor(tf.abs(tf.div(a, b)))), b));
  };
}

function mod(ctx: OpContext, inputs: (LaidTensor | undefined)[]): LaidTensor[] {
  return binary(modulo(attrInt(ctx, 'fmod', 0) === 1))(ctx, inputs);
}

/** Pow's exponent may have another type than its base; the result has the base's. */
function power(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  if (a.dtype === 'int32') return tf.cast(tf.round(tf.pow(tf.cast(a, 'float32'), tf.cast(b, 'float32'))), 'int32');
  return tf.pow(a, tf.cast(b, a.dtype));
}

function clip(ctx: OpContext, inputs: (LaidTensor | undefined)[]): LaidTensor[] {
  const x = required(ctx, inputs, 0);
  // Before opset 11, min and max are attributes; from 11 optional inputs.
  const min = ctx.opset < 11 ? attrFloat(ctx, 'min', -Infinity) : constantNumber(inputs[1]) ?? -Infinity;
  const max = ctx.opset < 11 ? attrFloat(ctx, 'max', Infinity) : constantNumber(inputs[2]) ?? Infinity;
  const standing = standIn(ctx, [x.tensor], ([element]) => element!, x.layout);
  if (standing !== undefined) return [laid(standing, x.layout)];
  // numpy.clip semantics when min > max: everything becomes max, of the input's type (ONNX's T).
  if (min > max) return [laid(tf.fill(x.tensor.shape, max, x.tensor.dtype), x.layout)];
  if (x.tensor.dtype === 'float32') return [laid(min === 0 ? reluClip(x.tensor, max) : tf.clipByValue(x.tensor, min, max), x.layout)];
  // wasm's integer clip mishandles infinite bounds: apply only the finite ones.
  let y = x.tensor;
  if (Number.isFinite(min)) y = tf.maximum(y, tf.scalar(min, y.dtype));
  if (Number.isFinite(max)) y = tf.minimum(y, tf.scalar(max, y.dtype));
  return [laid(y, x.layout)];
}

/**
 * A ReLU-like Clip (min 0: what PyTorch's ReLU6 / F.relu6 and tf2onnx's Relu6
 * export to) differentiated as ReLU6: no gradient where x sits on a bound,
 * as PyTorch's Hardtanh backward and TensorFlow's Relu6Grad give. tfjs'
 * clipByValue passes it at both bounds (torch.clamp's rule), which at
 * pre-activations exactly 0 or 6 (a zero receptive field, a saturated
 * input) differed from the PyTorch references.
 */
function reluClip(x: tf.Tensor, max: number): tf.Tensor {
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, save] = args as [tf.Tensor, tf.GradSaveFunc];
    // Saved, not captured: the caller may free the input before the backward pass.
    save([input]);
    const gradFunc = (dy: tf.Tensor, [kept]: tf.Tensor[]): tf.Tensor =>
      tf.where(tf.logicalAnd(tf.greater(kept!, 0), tf.less(kept!, max)), dy, tf.zerosLike(dy));
    return { value: tf.clipByValue(input, 0, max), gradFunc };
  })(x);
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

function gelu(x: tf.Tensor, ctx: OpContext): tf.Tensor {
  const approximate = attrString(ctx, 'approximate', 'none');
  if (approximate === 'tanh') {
    const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), SQRT_2_OVER_PI);
    return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
  }
  if (approximate !== 'none') throw unsupported(ctx, `approximate '${approximate}'`);
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
}

/** x · tanh(softplus(x)) (opset 18; YOLOv4's activation): tfjs' softplus is x itself for large x, so no overflow. */
function mish(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.tanh(tf.softplus(x)));
}

/** IsInf: infinities of the signs detect_negative and detect_positive ask for (both by default). */
function isInfinite(x: tf.Tensor, ctx: OpContext): tf.Tensor {
  const negative = attrInt(ctx, 'detect_negative', 1) === 1;
  const positive = attrInt(ctx, 'detect_positive', 1) === 1;
  if (!negative && !positive) return tf.zerosLike(tf.cast(x, 'bool'));
  const infinite = tf.isInf(x);
  if (negative && positive) return infinite;
  return tf.logicalAnd(infinite, positive ? tf.greater(x, 0) : tf.less(x, 0));
}

function where(ctx: OpContext, inputs: (LaidTensor | undefined)[]): LaidTensor[] {
  const operands = [required(ctx, inputs, 0), required(ctx, inputs, 1), required(ctx, inputs, 2)];
  const { tensors, layout } = alignOperands(operands);
  const [condition, a, b] = tensors as [tf.Tensor, tf.Tensor, tf.Tensor];
  const standing = standIn(ctx, tensors, ([c, x, y]) => tf.where(c!, x!, y!), layout);
  if (standing !== undefined) return [laid(standing, layout)];
  const shape = broadcastShape(ctx, tensors, layout);
  const grown = (t: tf.Tensor): tf.Tensor => (sameShape(t.shape, shape) ? t : tf.broadcastTo(t, shape));
  return [laid(tf.where(grown(condition), grown(a), grown(b)), layout)];
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((dim, i) => dim === b[i]);
}

export const ELEMENTWISE_OPS: Record<string, OpFunction> = {
  Relu: unary((x) => tf.relu(x)),
  LeakyRelu: unary((x, ctx) => tf.leakyRelu(x, attrFloat(ctx, 'alpha', 0.01))),
  Sigmoid: unary((x) => tf.sigmoid(x)),
  HardSigmoid: unary((x, ctx) => hardSigmoid(x, attrFloat(ctx, 'alpha', 0.2), attrFloat(ctx, 'beta', 0.5))),
  HardSwish: unary((x) => tf.mul(x, hardSigmoid(x, 1 / 6, 0.5))),
  Elu: unary((x, ctx) => elu(x, attrFloat(ctx, 'alpha', 1))),
  Selu: unary((x, ctx) => tf.mul(elu(x, attrFloat(ctx, 'alpha', SELU_ALPHA)), attrFloat(ctx, 'gamma', SELU_GAMMA))),
  PRelu: binary(prelu),
  ThresholdedRelu: unary((x, ctx) => thresholdedRelu(x, attrFloat(ctx, 'alpha', 1))),
  Softplus: unary((x) => tf.softplus(x)),
  Softsign: unary((x) => tf.div(x, tf.add(tf.abs(x), 1))),
  Tanh: unary((x) => tf.tanh(x)),
  Erf: unary((x) => tf.erf(x)),
  Gelu: unary(gelu),
  Mish: unary(mish),
  Exp: unary((x) => tf.exp(x)),
  Log: unary((x) => tf.log(x)),
  Sqrt: unary((x) => tf.sqrt(x)),
  Neg: unary((x) => tf.neg(x)),
  Abs: unary((x) => tf.abs(x)),
  Floor: unary((x) => tf.floor(x)),
  Ceil: unary((x) => tf.ceil(x)),
  // tfjs rounds half to even, as ONNX.
  Round: unary((x) => tf.round(x)),
  Sign: unary((x) => tf.sign(x)),
  Sin: unary((x) => tf.sin(x)),
  Cos: unary((x) => tf.cos(x)),
  IsNaN: unary((x) => tf.isNaN(x)),
  IsInf: unary(isInfinite),
  Reciprocal: unary((x) => tf.reciprocal(x)),
  Not: unary((x) => tf.logicalNot(x)),
  Clip: clip,
  Add: binary((a, b) => tf.add(a, b)),
  Sub: binary((a, b) => tf.sub(a, b)),
  Mul: binary((a, b) => tf.mul(a, b)),
  Div: binary(divide),
  Pow: binary(power),
  Mod: mod,
  Equal: binary((a, b) => tf.equal(a, b)),
  Less: binary((a, b) => tf.less(a, b)),
  LessOrEqual: binary((a, b) => tf.lessEqual(a, b)),
  Greater: binary((a, b) => tf.greater(a, b)),
  GreaterOrEqual: binary((a, b) => tf.greaterEqual(a, b)),
  And: binary((a, b) => tf.logicalAnd(a, b)),
  Or: binary((a, b) => tf.logicalOr(a, b)),
  Xor: binary((a, b) => tf.logicalXor(a, b)),
  Where: where,
  // torch.minimum / maximum (what export to Min / Max) give each tied operand an equal share; tf.minimum's goes to the first.
  Min: variadic((tensors) => elementwiseSplittingTies('min', tensors)),
  Max: variadic((tensors) => elementwiseSplittingTies('max', tensors)),
  Sum: variadic(fold((a, b) => tf.add(a, b))),
  Mean: variadic((tensors) => tf.div(fold((a, b) => tf.add(a, b))(tensors), tensors.length)),
};
