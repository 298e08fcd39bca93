/**
 * ONNX Einsum (opset 12): the whole equation grammar of ONNX's spec and
 * its reference implementation (numpy.einsum): explicit (`->`) and implicit
 * outputs, letters of either case, a letter repeated within one operand
 * (a diagonal), letters summed away, `...` broadcasting numpy's way (and
 * summed, PyTorch's way, where an explicit output leaves it out), spaces
 * anywhere, any number of operands.
 *
 * Every dim of every operand gets a label (its letter; the ellipsis' dims
 * right-aligned labels of their own), and the einsum is decomposed into tf
 * ops that tfjs differentiates: a gather per repeated letter, a sum per
 * letter no other operand or the output has, then the operands contracted
 * left to right, each pair as one batched matMul (or a broadcasting mul
 * when nothing is summed), and one final transpose to the output's order.
 *
 * Layout: an 'nhwc' operand is read as stored, its labels permuted (no
 * transpose); a 4-D output is stored 'nhwc' like every 4-D image value, so
 * 'bchw,dc->bdhw' on an 'nhwc' input is one matMul with no transpose.
 */
import { wasmMatMul } from '../../../engine/wasm-matmul.js';
import * as tf from '../../../engine/tf.js';
import { CamvizError } from '../../../util/errors.js';
import { printable } from '../../../util/text.js';
import { NCHW_TO_NHWC, laid, permuted, type LaidTensor, type Layout } from '../layout.js';
import { attrString, checkedShape, required, zerosStandIn, type OpContext, type OpFunction } from './common.js';

type Inputs = (LaidTensor | undefined)[];

/** A letter as written, or `...k`: the ellipsis' k-th dim, counted from the left of the widest ellipsis. */
type Label = string;

/** A term as written: its letters in order, '...' where the ellipsis is. */
type Term = string[];

const ELLIPSIS = '...';

interface Equation {
  inputs: Term[];
  /** undefined in implicit mode (no `->`). */
  output: Term | undefined;
}

/** A tensor whose stored dims carry labels. */
interface Labelled {
  tensor: tf.Tensor;
  labels: Label[];
}

type Fail = (problem: string) => CamvizError;

function einsum(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const written = attrString(ctx, 'equation', '');
  const fail: Fail = (problem) => new CamvizError(`ONNX node '${ctx.node.name}' (Einsum): equation '${printable(written)}': ${problem}`);
  const operands = ctx.node.inputs.map((_, i) => required(ctx, inputs, i));
  const equation = parseEquation(written, operands.length, fail);
  const dtype = commonDtype(operands, fail);
  const ellipsisRank = widestEllipsis(equation.inputs, operands, fail);
  const labelled = operands.map((operand, i): Labelled => ({ tensor: operand.tensor, labels: storedLabels(equation.inputs[i]!, operand, ellipsisRank) }));
  const sizes = labelSizes(labelled, fail);
  const output = outputLabels(equation, ellipsisRank);
  const layout: Layout = output.length === 4 ? 'nhwc' : 'onnx';
  const stored = layout === 'nhwc' ? NCHW_TO_NHWC.map((axis) => output[axis]!) : output;
  const shape = checkedShape(ctx, stored.map((label) => sizes.get(label)!), dtype, layout);
  if (ctx.shapesOnly === true) return [laid(zerosStandIn(shape, dtype, ctx, layout), layout)];
  const result = contractAll(ctx, labelled.map(withoutRepeats), output);
  return [laid(arranged(result, stored), layout)];
}

// ------------------------------------------------------------ the equation

/** The equation's terms, checked against the grammar and the operand count; spaces dropped (ONNX allows them anywhere). */
function parseEquation(written: string, operandCount: number, fail: Fail): Equation {
  const equation = written.replaceAll(' ', '');
  if (equation === '') throw fail('the equation is empty');
  const sides = equation.split('->');
  if (sides.length > 2) throw fail("more than one '->'");
  const inputs = sides[0]!.split(',').map((term, i) => parseTerm(term, `operand ${i}`, fail));
  if (inputs.length !== operandCount) throw fail(`${inputs.length} terms for ${operandCount} inputs`);
  const output = sides[1] === undefined ? undefined : parseTerm(sides[1], 'the output', fail);
  if (output !== undefined) checkOutput(output, inputs, fail);
  return { inputs, output };
}

/** Letters and at most one ellipsis; anything else is refused, naming it. */
function parseTerm(term: string, what: string, fail: Fail): Term {
  const parts = term.split(ELLIPSIS);
  if (parts.length > 2) throw fail(`more than one '...' in ${what}`);
  const letters = parts.map((part) => [...part]);
  const bad = letters.flat().find((char) => !/^[A-Za-z]$/.test(char));
  if (bad !== undefined) throw fail(`'${printable(bad)}' in ${what} (terms hold letters and one '...')`);
  return letters.length === 1 ? letters[0]! : [...letters[0]!, ELLIPSIS, ...letters[1]!];
}

function checkOutput(output: Term, inputs: Term[], fail: Fail): void {
  const seen = new Set<string>();
  for (const letter of output) {
    if (seen.has(letter)) throw fail(`'${letter}' more than once in the output`);
    seen.add(letter);
    if (letter !== ELLIPSIS && !inputs.some((term) => term.includes(letter))) throw fail(`output letter '${letter}' is in no input term`);
  }
}

/**
 * The output's labels. Implicit mode: the ellipsis' dims first, then the
 * letters that appear exactly once in the equation, in ASCII order
 * (upper case before lower case), as ONNX and numpy define it.
 */
function outputLabels(equation: Equation, ellipsisRank: number): Label[] {
  const ellipsisLabels = Array.from({ length: ellipsisRank }, (_, k) => `${ELLIPSIS}${k}`);
  if (equation.output === undefined) {
    const letters = equation.inputs.flat().filter((letter) => letter !== ELLIPSIS);
    const once = [...new Set(letters)].filter((letter) => letters.indexOf(letter) === letters.lastIndexOf(letter));
    return [...ellipsisLabels, ...once.sort()];
  }
  // Without '...' in the output its dims are summed like any label the output lacks: PyTorch's rule and the spec's
  // ("a summation over all the indices ... that do not occur in the output-term"); numpy and ONNX Runtime refuse it.
  return equation.output.flatMap((letter) => (letter === ELLIPSIS ? ellipsisLabels : [letter]));
}

// ------------------------------------------------------------ operands

/** ONNX requires one element type; tfjs would fail on the first mixed op, unnamed. */
function commonDtype(operands: LaidTensor[], fail: Fail): tf.DataType {
  const dtypes = [...new Set(operands.map((operand) => operand.tensor.dtype))];
  if (dtypes.length !== 1 || dtypes[0] === 'bool' || dtypes[0] === 'string') throw fail(`operands of type ${dtypes.join(' and ')} (one numeric type is required)`);
  return dtypes[0]!;
}

/**
 * How many dims the ellipsis stands for: the most over the operands. ONNX's
 * spec asks for one width (its shape inference and ONNX Runtime refuse
 * others), but numpy and PyTorch broadcast fewer from the right, agreeing
 * on the values, and torch.onnx.export writes such equations as they are.
 */
function widestEllipsis(terms: Term[], operands: LaidTensor[], fail: Fail): number {
  return terms.reduce((widest, term, i) => {
    const rank = operands[i]!.tensor.rank;
    const letters = term.filter((letter) => letter !== ELLIPSIS).length;
    const hasEllipsis = term.includes(ELLIPSIS);
    if (hasEllipsis ? rank < letters : rank !== letters) throw fail(`operand ${i} has rank ${rank} but its term '${term.join('')}' has ${letters} letters${hasEllipsis ? ' and an ellipsis' : ''}`);
    return Math.max(widest, rank - letters);
  }, 0);
}

/** The labels of an operand's stored dims: its ONNX dims' labels, permuted as an 'nhwc' value stores them. */
function storedLabels(term: Term, operand: LaidTensor, ellipsisRank: number): Label[] {
  const letters = term.filter((letter) => letter !== ELLIPSIS).length;
  const ellipsisDims = operand.tensor.rank - letters;
  const onnx = term.flatMap((letter) => (letter === ELLIPSIS ? Array.from({ length: ellipsisDims }, (_, k) => `${ELLIPSIS}${ellipsisRank - ellipsisDims + k}`) : [letter]));
  return operand.layout === 'nhwc' ? NCHW_TO_NHWC.map((axis) => onnx[axis]!) : onnx;
}

/**
 * Each label's size. A letter repeated within one operand must have one
 * size there; across operands sizes must match or be 1, which broadcasts
 * (numpy's and PyTorch's rule).
 */
function labelSizes(operands: Labelled[], fail: Fail): Map<Label, number> {
  const sizes = new Map<Label, number>();
  const describe = (label: Label): string => (label.startsWith(ELLIPSIS) ? `the ellipsis' dim ${label.slice(ELLIPSIS.length)}` : `'${label}'`);
  operands.forEach(({ tensor, labels }, i) => {
    const own = new Map<Label, number>();
    labels.forEach((label, axis) => {
      const size = tensor.shape[axis]!;
      const before = own.get(label);
      if (before !== undefined && before !== size) throw fail(`${describe(label)} is ${before} and ${size} in operand ${i}`);
      own.set(label, size);
      const elsewhere = sizes.get(label);
      if (elsewhere !== undefined && elsewhere !== size && elsewhere !== 1 && size !== 1) throw fail(`${describe(label)} is ${size} in operand ${i} but ${elsewhere} in an earlier operand`);
      sizes.set(label, Math.max(elsewhere ?? size, size));
    });
  });
  return sizes;
}

// ------------------------------------------------------------ computing

/**
 * A letter repeated within an operand ('ii->i', 'bii->b') reads the
 * diagonal: the repeated dims moved last and merged into one of n^k
 * elements, of which a gather keeps those at multiples of 1 + n + ... +
 * n^(k-1). The gather's gradient scatters back to the diagonal.
 */
function withoutRepeats(operand: Labelled): Labelled {
  const repeated = operand.labels.find((label, axis) => operand.labels.indexOf(label) !== axis);
  if (repeated === undefined) return operand;
  const { tensor, labels } = operand;
  const axes = labels.flatMap((label, axis) => (label === repeated ? [axis] : []));
  const others = labels.flatMap((label, axis) => (label === repeated ? [] : [axis]));
  const size = tensor.shape[axes[0]!]!;
  const step = axes.reduce((sum, _, k) => sum + size ** k, 0);
  const merged = tf.reshape(permuted(tensor, [...others, ...axes]), [...others.map((axis) => tensor.shape[axis]!), size ** axes.length]);
  const diagonal = tf.gather(merged, tf.range(0, size * step, step, 'int32'), others.length);
  return withoutRepeats({ tensor: diagonal, labels: [...others.map((axis) => labels[axis]!), repeated] });
}

/** The sum over `labels` of `operand` (those it has). */
function summedOver(operand: Labelled, labels: ReadonlySet<Label>): Labelled {
  const axes = operand.labels.flatMap((label, axis) => (labels.has(label) ? [axis] : []));
  if (axes.length === 0) return operand;
  return { tensor: tf.sum(operand.tensor, axes), labels: operand.labels.filter((label) => !labels.has(label)) };
}

/**
 * The operands contracted left to right. Before its turn, each operand is
 * summed over the labels that only it has and the output has not (the
 * sum distributes over the product), so each pair's product holds only
 * labels the output or a later operand needs.
 */
function contractAll(ctx: OpContext, operands: Labelled[], output: Label[]): Labelled {
  const neededAfter = (index: number): Set<Label> => new Set([...output, ...operands.slice(index + 1).flatMap((operand) => operand.labels)]);
  const alone = (index: number): Set<Label> => {
    const needed = new Set([...neededAfter(index), ...operands.slice(0, index).flatMap((operand) => operand.labels)]);
    return new Set(operands[index]!.labels.filter((label) => !needed.has(label)));
  };
  let result = summedOver(operands[0]!, alone(0));
  for (let i = 1; i < operands.length; i++) result = contractPair(ctx, result, summedOver(operands[i]!, alone(i)), neededAfter(i));
  return result;
}

/**
 * Σ over the labels `a` and `b` share and `kept` lacks, of a·b: a batched
 * matMul of a as [batch, M, K] by b as [batch, K, N], K the summed labels,
 * M and N the labels of a alone and of b alone. With nothing to sum, a
 * broadcasting mul (a matMul of 1x1 matrices would loop over the batch);
 * so too for integers, which tfjs' wasm backend cannot matMul.
 */
function contractPair(ctx: OpContext, a: Labelled, b: Labelled, kept: ReadonlySet<Label>): Labelled {
  const shared = a.labels.filter((label) => b.labels.includes(label));
  const batch = shared.filter((label) => kept.has(label));
  const summed = shared.filter((label) => !kept.has(label));
  const onlyA = a.labels.filter((label) => !shared.includes(label));
  const onlyB = b.labels.filter((label) => !shared.includes(label));
  const labels = [...batch, ...onlyA, ...onlyB];
  if (summed.length === 0 || a.tensor.dtype !== 'float32') return multipliedAndSummed(ctx, a, b, labels, summed);
  // Shared dims of size 1 against a larger one are broadcast first: the matMul's batch and K must match.
  const [wideA, wideB] = [broadcastShared(a, b, shared), broadcastShared(b, a, shared)];
  const dimsOf = (from: Labelled, of: Label[]): number[] => of.map((label) => from.tensor.shape[from.labels.indexOf(label)]!);
  const product = (dims: number[]): number => dims.reduce((total, dim) => total * dim, 1);
  const [batchDims, aDims, bDims] = [dimsOf(wideA, batch), dimsOf(wideA, onlyA), dimsOf(wideB, onlyB)];
  const [size, m, k, n] = [product(batchDims), product(aDims), product(dimsOf(wideA, summed)), product(bDims)];
  checkedShape(ctx, [size, m, n], a.tensor.dtype);
  const left = tf.reshape(arranged(wideA, [...batch, ...onlyA, ...summed]), [size, m, k]);
  const right = tf.reshape(arranged(wideB, [...batch, ...summed, ...onlyB]), [size, k, n]);
  return { tensor: tf.reshape(wasmMatMul(left, right), [...batchDims, ...aDims, ...bDims]), labels };
}

/** a·b broadcast over `labels` then `summed` (the whole product, checked against the per-tensor limit), summed over `summed`. */
function multipliedAndSummed(ctx: OpContext, a: Labelled, b: Labelled, labels: Label[], summed: Label[]): Labelled {
  const order = [...labels, ...summed];
  const left = arranged(a, order, order.map((label) => a.labels.includes(label)));
  const right = arranged(b, order, order.map((label) => b.labels.includes(label)));
  checkedShape(ctx, tf.broadcast_util.assertAndGetBroadcastShape(left.shape, right.shape), a.tensor.dtype);
  const product = tf.mul(left, right);
  return { tensor: summed.length === 0 ? product : tf.sum(product, summed.map((_, i) => labels.length + i)), labels };
}

/** `operand` with each of `shared`'s dims of size 1 broadcast to `other`'s size there. */
function broadcastShared(operand: Labelled, other: Labelled, shared: Label[]): Labelled {
  const shape = operand.labels.map((label, axis) => {
    const own = operand.tensor.shape[axis]!;
    return shared.includes(label) && own === 1 ? other.tensor.shape[other.labels.indexOf(label)]! : own;
  });
  if (shape.every((dim, axis) => dim === operand.tensor.shape[axis])) return operand;
  return { tensor: tf.broadcastTo(operand.tensor, shape), labels: operand.labels };
}

/**
 * `operand`'s tensor with its dims in the order of `order` (each label of
 * the operand once). With `present`, labels of `order` the operand lacks
 * (false there) become dims of size 1, for a broadcasting op.
 */
function arranged(operand: Labelled, order: Label[], present?: boolean[]): tf.Tensor {
  const own = order.filter((_, i) => present?.[i] ?? true);
  const moved = permuted(operand.tensor, own.map((label) => operand.labels.indexOf(label)));
  if (present === undefined || present.every(Boolean)) return moved;
  return tf.reshape(moved, order.map((label, i) => (present[i] === true ? operand.tensor.shape[operand.labels.indexOf(label)]! : 1)));
}

export const EINSUM_OPS: Record<string, OpFunction> = {
  Einsum: einsum,
};
