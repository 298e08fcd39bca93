/**
 * ONNX ops that move, select or make values rather than compute on them:
 * shape ops (Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Expand, Tile),
 * joining and cutting (Concat, Split, Slice, Pad, Gather, GatherElements),
 * constants and shape arithmetic (Constant, Shape, Size, ConstantOfShape, Range, Cast),
 * and the inference no-ops (Identity, Dropout). Concat, Split, Slice and Pad
 * keep an 'nhwc' input's layout by remapping their axes; the rest work on
 * the ONNX layout. Everything differentiable is built from ops that have
 * tfjs gradients (slice, gather, pad, mirrorPad, concat, reshape, transpose,
 * broadcastTo, tile): strided slices and edge pads are gathers, because
 * tfjs has no gradient for stridedSlice.
 */
import * as tf from '../../../engine/tf.js';
import { maxSplittingTies, minSplittingTies } from '../../../engine/max-gradients.js';
import { CamvizError } from '../../../util/errors.js';
import { NCHW_TO_NHWC, laid, onnxShape, permuted, storedAxis, toLayout, type LaidTensor, type Layout } from '../layout.js';
import {
  attrFloat,
  attrInt,
  attrInts,
  attrString,
  checkedShape,
  constantInts,
  dtypeOfOnnxCode,
  normalizeAxis,
  required,
  tensorFromOnnx,
  unsupported,
  zerosStandIn,
  type OpContext,
  type OpFunction,
} from './common.js';

type Inputs = (LaidTensor | undefined)[];

const onnxInput = (ctx: OpContext, inputs: Inputs, index: number): tf.Tensor => toLayout(required(ctx, inputs, index), 'onnx');

/** A list of ints given as an attribute before `inputSince`, as an input from it. */
function intsAttrOrInput(ctx: OpContext, inputs: Inputs, name: string, inputIndex: number, inputSince: number): number[] | undefined {
  return ctx.opset < inputSince ? attrInts(ctx, name) : constantInts(inputs[inputIndex]);
}

// ------------------------------------------------------------ pass-through and constants

const identity: OpFunction = (ctx, inputs) => [required(ctx, inputs, 0)];

function dropout(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = required(ctx, inputs, 0);
  // Training mode with ratio 0 drops nothing: torchvision 0.14's Swin calls F.dropout(attn, p=0.0) without `training`, which exports as that.
  if (dropoutTrains(ctx, inputs) && dropoutRatio(ctx, inputs) !== 0) throw unsupported(ctx, 'training mode');
  const wantsMask = (ctx.node.outputs[1] ?? '') !== '';
  return wantsMask ? [x, laid(tf.cast(tf.onesLike(x.tensor), 'bool'), x.layout)] : [x];
}

/** The share of elements a training Dropout zeroes: an input from opset 12 (default 0.5), an attribute before. */
function dropoutRatio(ctx: OpContext, inputs: Inputs): number {
  if (ctx.opset >= 12) return Number(inputs[1]?.tensor.dataSync()[0] ?? 0.5);
  return attrFloat(ctx, 'ratio', 0.5);
}

/** From opset 12 a runtime input says so; opsets up to 6 had is_test (0: training); 7 to 11 only infer. */
function dropoutTrains(ctx: OpContext, inputs: Inputs): boolean {
  if (ctx.opset >= 12) return (constantInts(inputs[2])?.[0] ?? 0) !== 0;
  return attrInt(ctx, 'is_test', 1) === 0;
}

function constant(ctx: OpContext): LaidTensor[] {
  const attrs = ctx.node.attributes;
  const value = attrs['value'];
  if (value?.kind === 'tensor') return [laid(tensorFromOnnx(value.value))];
  const single = attrs['value_float'] ?? attrs['value_int'];
  if (single?.kind === 'float') return [laid(tf.scalar(single.value, 'float32'))];
  if (single?.kind === 'int') return [laid(tf.scalar(single.value, 'int32'))];
  const list = attrs['value_floats'] ?? attrs['value_ints'];
  if (list?.kind === 'floats') return [laid(tf.tensor1d(list.value, 'float32'))];
  if (list?.kind === 'ints') return [laid(tf.tensor1d(list.value, 'int32'))];
  throw unsupported(ctx, `no value, value_float(s) or value_int(s) (${Object.keys(attrs).join(', ') || 'no attributes'})`);
}

function shape(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const dims = onnxShape(required(ctx, inputs, 0));
  const clampIndex = (index: number): number => Math.min(Math.max(index < 0 ? index + dims.length : index, 0), dims.length);
  const start = clampIndex(attrInt(ctx, 'start', 0));
  const end = clampIndex(attrInt(ctx, 'end', dims.length));
  return [laid(tf.tensor1d(dims.slice(start, Math.max(start, end)), 'int32'))];
}

const size: OpFunction = (ctx, inputs) => [laid(tf.scalar(required(ctx, inputs, 0).tensor.size, 'int32'))];

function constantOfShape(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const dims = constantInts(required(ctx, inputs, 0)) ?? [];
  const value = ctx.node.attributes['value'];
  if (value === undefined) return [laid(tf.zeros(checkedShape(ctx, dims, 'float32'), 'float32'))];
  if (value.kind !== 'tensor') throw unsupported(ctx, 'value is not a tensor');
  const filler = tensorFromOnnx(value.value);
  const [first] = filler.dataSync();
  return [laid(tf.fill(checkedShape(ctx, dims, filler.dtype), Number(first ?? 0), filler.dtype))];
}

function range(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const [start, limit, delta] = [0, 1, 2].map((i) => required(ctx, inputs, i).tensor);
  const dtype = start!.dtype;
  const [a, b, d] = [start!, limit!, delta!].map((t) => Number(t.dataSync()[0]));
  if (d === 0) throw new CamvizError(`ONNX node '${ctx.node.name}' (Range): delta is 0`);
  const [count] = checkedShape(ctx, [Math.max(Math.ceil((b! - a!) / d!), 0)], dtype);
  // start + i·delta for each i, as ONNX defines it (not a running sum).
  const values = tf.add(tf.mul(tf.range(0, count, 1, 'float32'), d!), a!);
  return [laid(dtype === 'int32' ? tf.cast(values, 'int32') : values)];
}

function cast(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = required(ctx, inputs, 0);
  const to = attrInt(ctx, 'to', 1);
  const dtype = dtypeOfOnnxCode(to);
  if (dtype === undefined) throw unsupported(ctx, `cast to ONNX type ${to}`);
  // A bool becomes 4 bytes an element.
  checkedShape(ctx, x.tensor.shape, dtype);
  if (x.tensor.dtype === 'float32' && dtype === 'int32') {
    // C casts truncate toward zero, and so does ONNX.
    return [laid(tf.cast(tf.mul(tf.sign(x.tensor), tf.floor(tf.abs(x.tensor))), 'int32'), x.layout)];
  }
  return [laid(tf.cast(x.tensor, dtype), x.layout)];
}

// ------------------------------------------------------------ shape ops

function reshape(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = onnxInput(ctx, inputs, 0);
  const requested = ctx.opset < 5 ? attrInts(ctx, 'shape') ?? [] : constantInts(required(ctx, inputs, 1)) ?? [];
  const allowZero = attrInt(ctx, 'allowzero', 0) === 1;
  const dims = requested.map((dim, i) => (dim === 0 && !allowZero ? x.shape[i]! : dim));
  return [laid(tf.reshape(x, dims))];
}

function flatten(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = onnxInput(ctx, inputs, 0);
  const axis = attrInt(ctx, 'axis', 1);
  const split = axis < 0 ? axis + x.rank : axis;
  if (split < 0 || split > x.rank) throw new CamvizError(`ONNX node '${ctx.node.name}' (Flatten): axis ${axis} is out of range for rank ${x.rank}`);
  const outer = x.shape.slice(0, split).reduce((a, b) => a * b, 1);
  const inner = x.shape.slice(split).reduce((a, b) => a * b, 1);
  return [laid(tf.reshape(x, [outer, inner]))];
}

function transpose(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = required(ctx, inputs, 0);
  const rank = x.tensor.rank;
  const perm = attrInts(ctx, 'perm') ?? [...Array(rank).keys()].reverse();
  // An 'nhwc' input: ONNX dim d is stored at NCHW_TO_NHWC.indexOf(d), so one transpose does both.
  const stored = x.layout === 'nhwc' ? perm.map((dim) => storedAxis(dim, 'nhwc')) : perm;
  if (rank !== 4) return [laid(tf.transpose(x.tensor, stored))];
  // A 4-D output is stored NHWC (as the importer stores every 4-D image
  // value): the input's storage permuted by `stored` after NCHW_TO_NHWC.
  // Where that is the identity (NHWC -> NCHW as an exporter writes it), it
  // costs nothing and keeps the following convolutions in tfjs' layout,
  // where they fuse; where it moves only size-1 dims (Keras' Reshape to
  // [N, 1, 1, C] then a Transpose to NCHW), a reshape.
  const toNhwc = NCHW_TO_NHWC.map((axis) => stored[axis]!);
  if (toNhwc.every((axis, i) => axis === i)) return [laid(tf.clone(x.tensor), 'nhwc')];
  return [laid(permuted(x.tensor, toNhwc), 'nhwc')];
}

function squeeze(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = onnxInput(ctx, inputs, 0);
  const axes = intsAttrOrInput(ctx, inputs, 'axes', 1, 13)?.map((axis) => normalizeAxis(ctx, axis, x.rank));
  const keep = x.shape.filter((dim, i) => (axes === undefined ? dim !== 1 : !axes.includes(i)));
  return [laid(tf.reshape(x, keep))];
}

function unsqueeze(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = onnxInput(ctx, inputs, 0);
  const given = intsAttrOrInput(ctx, inputs, 'axes', 1, 13) ?? [];
  const rank = x.rank + given.length;
  const axes = given.map((axis) => normalizeAxis(ctx, axis, rank));
  const dims: number[] = [];
  let next = 0;
  for (let i = 0; i < rank; i++) dims.push(axes.includes(i) ? 1 : x.shape[next++]!);
  return [laid(tf.reshape(x, dims))];
}

function expand(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = onnxInput(ctx, inputs, 0);
  const wanted = constantInts(required(ctx, inputs, 1)) ?? [];
  const dims = checkedShape(ctx, tf.broadcast_util.assertAndGetBroadcastShape(x.shape, wanted), x.dtype);
  // Image data grown in the planning pass: only the shape matters (a value up to the limit, never written).
  if (ctx.shapesOnly === true) return [laid(zerosStandIn(dims, x.dtype))];
  const grown = x.rank < dims.length ? tf.reshape(x, [...Array<number>(dims.length - x.rank).fill(1), ...x.shape]) : x;
  return [laid(tf.broadcastTo(grown, dims))];
}

function tile(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = onnxInput(ctx, inputs, 0);
  const repeats = constantInts(required(ctx, inputs, 1)) ?? [];
  if (repeats.length !== x.rank) throw new CamvizError(`ONNX node '${ctx.node.name}' (Tile): ${repeats.length} repeats for rank ${x.rank}`);
  const dims = checkedShape(ctx, x.shape.map((dim, i) => dim * repeats[i]!), x.dtype);
  if (ctx.shapesOnly === true) return [laid(zerosStandIn(dims, x.dtype))];
  return [laid(tf.tile(x, repeats))];
}

// ------------------------------------------------------------ joining and cutting

/** Every input in one layout: 'nhwc' when some input has it and all are 4-D. */
function commonLayout(values: LaidTensor[]): { tensors: tf.Tensor[]; layout: Layout } {
  const layout: Layout = values.some((value) => value.layout === 'nhwc') && values.every((value) => value.tensor.rank === 4) ? 'nhwc' : 'onnx';
  return { tensors: values.map((value) => toLayout(value, layout)), layout };
}

function concat(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const present = inputs.filter((value): value is LaidTensor => value !== undefined);
  const { tensors, layout } = commonLayout(present);
  const rank = tensors[0]!.rank;
  const axis = storedAxis(normalizeAxis(ctx, attrInt(ctx, 'axis', 0), rank), layout);
  // tfjs' concat rejects empty pieces on some backends; they add nothing.
  const pieces = tensors.filter((tensor) => tensor.size > 0);
  if (pieces.length > 0 && pieces.every((piece) => piece.dtype === pieces[0]!.dtype)) {
    // The concat's own checks of the shapes, without the concat: many pieces may add up to a huge value.
    const shapes = pieces.map((piece) => piece.shape);
    tf.backend_util.assertParamsConsistent(shapes, axis);
    const joined = checkedShape(ctx, tf.backend_util.computeOutShape(shapes, axis), pieces[0]!.dtype, layout);
    if (ctx.shapesOnly === true) return [laid(zerosStandIn(joined, pieces[0]!.dtype), layout)];
  }
  return [laid(pieces.length === 0 ? tf.clone(tensors[0]!) : tf.concat(pieces, axis), layout)];
}

function split(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = required(ctx, inputs, 0);
  const rank = x.tensor.rank;
  const axis = normalizeAxis(ctx, attrInt(ctx, 'axis', 0), rank);
  const stored = storedAxis(axis, x.layout);
  const length = x.tensor.shape[stored]!;
  const outputs = ctx.node.outputs.length;
  let sizes = intsAttrOrInput(ctx, inputs, 'split', 1, 13);
  if (sizes === undefined || sizes.length === 0) {
    const parts = ctx.opset >= 18 ? attrInt(ctx, 'num_outputs', outputs) : outputs;
    // Opset 18: pieces of ceil(length / parts), the last one smaller.
    const piece = ctx.opset >= 18 ? Math.ceil(length / parts) : length / parts;
    if (!Number.isInteger(piece)) throw new CamvizError(`ONNX node '${ctx.node.name}' (Split): ${length} does not split into ${parts} equal parts`);
    sizes = Array.from({ length: parts }, (_, i) => Math.max(0, Math.min(piece, length - i * piece)));
  }
  if (sizes.reduce((a, b) => a + b, 0) !== length) throw new CamvizError(`ONNX node '${ctx.node.name}' (Split): sizes ${sizes.join(',')} do not add up to ${length}`);
  let offset = 0;
  return sizes.map((piece) => {
    const begin = x.tensor.shape.map((_, i) => (i === stored ? offset : 0));
    const extent = x.tensor.shape.map((dim, i) => (i === stored ? piece : dim));
    offset += piece;
    return laid(tf.slice(x.tensor, begin, extent), x.layout);
  });
}

interface AxisSlice {
  axis: number;
  start: number;
  /** Exclusive; -1 with a negative step means "through index 0". */
  end: number;
  step: number;
}

/** ONNX Slice's clamping of one axis. */
function clampSlice(axis: number, start: number, end: number, step: number, dim: number): AxisSlice {
  const wrap = (index: number): number => (index < 0 ? index + dim : index);
  const clamp = (index: number, low: number, high: number): number => Math.min(Math.max(index, low), high);
  if (step > 0) return { axis, start: clamp(wrap(start), 0, dim), end: clamp(wrap(end), 0, dim), step };
  return { axis, start: clamp(wrap(start), 0, dim - 1), end: clamp(wrap(end), -1, dim - 1), step };
}

function slice(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = required(ctx, inputs, 0);
  const dims = onnxShape(x);
  const starts = (ctx.opset < 10 ? attrInts(ctx, 'starts') : constantInts(inputs[1])) ?? [];
  const ends = (ctx.opset < 10 ? attrInts(ctx, 'ends') : constantInts(inputs[2])) ?? [];
  const axes = (ctx.opset < 10 ? attrInts(ctx, 'axes') : constantInts(inputs[3])) ?? starts.map((_, i) => i);
  const steps = (ctx.opset < 10 ? undefined : constantInts(inputs[4])) ?? starts.map(() => 1);
  let result = x.tensor;
  const begin = result.shape.map(() => 0);
  const extent = [...result.shape];
  const strided: AxisSlice[] = [];
  starts.forEach((start, i) => {
    const axis = normalizeAxis(ctx, axes[i]!, dims.length);
    const step = steps[i]!;
    if (step === 0) throw new CamvizError(`ONNX node '${ctx.node.name}' (Slice): step 0`);
    const cut = clampSlice(storedAxis(axis, x.layout), start, ends[i]!, step, dims[axis]!);
    if (step === 1) {
      begin[cut.axis] = cut.start;
      extent[cut.axis] = Math.max(cut.end - cut.start, 0);
    } else strided.push(cut);
  });
  result = tf.slice(result, begin, extent);
  for (const cut of strided) result = tf.gather(result, tf.tensor1d(strideIndices(cut), 'int32'), cut.axis);
  return [laid(result, x.layout)];
}

function strideIndices({ start, end, step }: AxisSlice): number[] {
  const indices: number[] = [];
  for (let i = start; step > 0 ? i < end : i > end; i += step) indices.push(i);
  return indices;
}

function gather(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = onnxInput(ctx, inputs, 0);
  const indices = required(ctx, inputs, 1).tensor;
  const axis = normalizeAxis(ctx, attrInt(ctx, 'axis', 0), x.rank);
  const dim = x.shape[axis]!;
  // Many indices pick a slice each: the output may be far larger than the data.
  const dims = checkedShape(ctx, [...x.shape.slice(0, axis), ...indices.shape, ...x.shape.slice(axis + 1)], x.dtype);
  const wrapped = tf.where(tf.less(indices, 0), tf.add(indices, tf.scalar(dim, 'int32')), indices);
  const flat = tf.reshape(wrapped, [Math.max(wrapped.size, 0)]);
  const picked = tf.gather(x, tf.cast(flat, 'int32'), axis);
  return [laid(tf.reshape(picked, dims))];
}

/**
 * GatherElements: output[i][j][k] = data[indices[i][j][k]][j][k] for axis 0
 * (the index replaces the coordinate along `axis`), negative indices from
 * the end. One gather from the flattened data at each output element's flat
 * index, so the gradient reaches data through gather's.
 */
function gatherElements(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = onnxInput(ctx, inputs, 0);
  const indices = onnxInput(ctx, inputs, 1);
  if (indices.rank !== x.rank) throw new CamvizError(`ONNX node '${ctx.node.name}' (GatherElements): indices of rank ${indices.rank} for data of rank ${x.rank}`);
  const axis = normalizeAxis(ctx, attrInt(ctx, 'axis', 0), x.rank);
  const strides = x.shape.map((_, d) => x.shape.slice(d + 1).reduce((a, b) => a * b, 1));
  const dim = x.shape[axis]!;
  const along = tf.cast(indices, 'int32');
  // An index past its axis would read another row of the flattened data: refused, as ONNX requires (one boolean read back).
  const outside = tf.any(tf.logicalOr(tf.less(along, -dim), tf.greaterEqual(along, dim)));
  if (outside.dataSync()[0] === 1) throw new CamvizError(`ONNX node '${ctx.node.name}' (GatherElements): an index outside [-${dim}, ${dim - 1}] along axis ${axis}`);
  const wrapped = tf.where(tf.less(along, 0), tf.add(along, tf.scalar(dim, 'int32')), along);
  // Every other axis keeps the output element's own coordinate there.
  const flat = indices.shape.reduce<tf.Tensor>((sum, extent, d) => {
    if (d === axis) return tf.add(sum, tf.mul(wrapped, tf.scalar(strides[d]!, 'int32')));
    const coordinate = tf.reshape(tf.range(0, extent * strides[d]!, strides[d]!, 'int32'), indices.shape.map((size, i) => (i === d ? size : 1)));
    return tf.add(sum, coordinate);
  }, tf.zeros(indices.shape, 'int32'));
  const picked = tf.gather(tf.reshape(x, [x.size]), tf.reshape(flat, [flat.size]));
  return [laid(tf.reshape(picked, indices.shape))];
}

/**
 * ScatterND's reductions: how the values landing on one element (data's,
 * then each update's in order) combine, the opset that brought each, and
 * the value a shorter list is padded with (which changes nothing).
 * PyTorch's `x.index_put_(..., accumulate=True)` exports to 'add'. Max and
 * min split the gradient evenly among tied values, as torch.scatter_reduce's
 * amax and amin do.
 */
const SCATTER_REDUCTIONS: Record<string, { since: number; reduce: (values: tf.Tensor) => tf.Tensor; identity: (dtype: tf.DataType) => number }> = {
  add: { since: 16, reduce: (values) => tf.sum(values, 1), identity: () => 0 },
  mul: { since: 16, reduce: (values) => rowProducts(values), identity: () => 1 },
  max: { since: 18, reduce: (values) => maxSplittingTies(values, [1], false), identity: (dtype) => (dtype === 'int32' ? -(2 ** 31) : -Infinity) },
  min: { since: 18, reduce: (values) => minSplittingTies(values, [1], false), identity: (dtype) => (dtype === 'int32' ? 2 ** 31 - 1 : Infinity) },
};

/**
 * Each row's product of [rows, width] values, halving the columns at each
 * step (left half times right half, an odd last column carried): log2(width)
 * Muls, where one per column made a hostile model's many updates on one
 * element thousands of ops and tape entries. Not tf.prod: tfjs' gradient of
 * it calls a chained method the core-only build lacks.
 */
function rowProducts(values: tf.Tensor): tf.Tensor {
  let columns = values;
  while (columns.shape[1]! > 1) {
    const width = columns.shape[1]!;
    const half = Math.floor(width / 2);
    const pairs = tf.mul(tf.slice(columns, [0, 0], [-1, half]), tf.slice(columns, [0, half], [-1, half]));
    columns = width % 2 === 0 ? pairs : tf.concat([pairs, tf.slice(columns, [0, width - 1], [-1, 1])], 1);
  }
  return tf.reshape(columns, [values.shape[0]!]);
}

/**
 * ScatterND: data with the slices that `indices` name replaced by
 * `updates` (reduction 'none', the last write winning), or combined with
 * them (add, mul, max, min: every update counts, duplicates too). Swin
 * Transformer's export builds its shifted windows' attention mask with it
 * (PyTorch's `mask[h, w] = count`). Where each output element's values
 * come from is worked out on the host; gathers from data and updates then
 * make the output, so the gradient reaches both through gather's.
 */
function scatterND(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const data = onnxInput(ctx, inputs, 0);
  const indices = onnxInput(ctx, inputs, 1);
  const updates = onnxInput(ctx, inputs, 2);
  const reductionName = attrString(ctx, 'reduction', 'none');
  const reduction = SCATTER_REDUCTIONS[reductionName];
  if (reductionName !== 'none' && (reduction === undefined || ctx.opset < reduction.since)) throw unsupported(ctx, `reduction '${reductionName}'`);
  if (reduction !== undefined && data.dtype === 'bool') throw unsupported(ctx, `reduction '${reductionName}' of bool data`);
  const depth = indices.shape.at(-1) ?? 0;
  const sliceShape = data.shape.slice(depth);
  const expected = [...indices.shape.slice(0, -1), ...sliceShape];
  if (depth > data.rank || updates.rank !== expected.length || updates.shape.some((dim, i) => dim !== expected[i])) {
    throw new CamvizError(`ONNX node '${ctx.node.name}' (ScatterND): updates [${updates.shape.join(', ')}] for data [${data.shape.join(', ')}] and indices [${indices.shape.join(', ')}]`);
  }
  if (ctx.shapesOnly === true) return [laid(zerosStandIn(data.shape, data.dtype))];
  const count = indices.shape.slice(0, -1).reduce((a, b) => a * b, 1);
  const targets = scatterTargets(ctx, data.shape, constantInts(laid(indices)) ?? [], depth, count);
  const flatData = tf.reshape(data, [data.size]);
  const flatUpdates = tf.reshape(tf.cast(updates, data.dtype), [updates.size]);
  if (reduction === undefined) {
    // Each element's source: itself (i), or the update written there last (data's size + j).
    const sources = Int32Array.from({ length: data.size }, (_, i) => i);
    targets.forEach((target, update) => (sources[target] = data.size + update));
    return [laid(tf.reshape(tf.gather(tf.concat([flatData, flatUpdates]), tf.tensor1d(sources, 'int32')), data.shape))];
  }
  const landing = landingTable(ctx, data.size, targets, data.dtype);
  const pool = tf.concat([flatData, flatUpdates, tf.fill([1], reduction.identity(data.dtype), data.dtype)]);
  const combined = reduction.reduce(tf.reshape(tf.gather(pool, tf.tensor1d(landing.table, 'int32')), [landing.elements.length, landing.width]));
  // Elements no update lands on keep data's value; the others take their combined value (data's size + row).
  const sources = Int32Array.from({ length: data.size }, (_, i) => i);
  landing.elements.forEach((element, row) => (sources[element] = data.size + row));
  return [laid(tf.reshape(tf.gather(tf.concat([flatData, combined]), tf.tensor1d(sources, 'int32')), data.shape))];
}

/**
 * The elements of data (flat) that updates land on, in order of first
 * landing, and per element a row of `width` indices into [data, updates,
 * identity]: the element itself, the updates landing on it in their order
 * (data's size + j), then the identity slot for rows with fewer updates.
 */
function landingTable(ctx: OpContext, size: number, targets: Int32Array, dtype: tf.DataType): { elements: number[]; width: number; table: Int32Array } {
  const landed = new Map<number, number[]>();
  targets.forEach((target, update) => {
    const sources = landed.get(target);
    if (sources === undefined) landed.set(target, [size + update]);
    else sources.push(size + update);
  });
  const elements = [...landed.keys()];
  const width = 1 + [...landed.values()].reduce((most, sources) => Math.max(most, sources.length), 0);
  // Many updates on one element widen every row: bounded as any op's output.
  checkedShape(ctx, [elements.length, width], dtype);
  const table = new Int32Array(elements.length * width).fill(size + targets.length);
  elements.forEach((element, row) => {
    table[row * width] = element;
    landed.get(element)!.forEach((source, k) => (table[row * width + 1 + k] = source));
  });
  return { elements, width, table };
}

/** For each element of updates (flat), the element of data (flat) it lands on. */
function scatterTargets(ctx: OpContext, dims: readonly number[], indices: readonly number[], depth: number, count: number): Int32Array {
  const size = dims.reduce((a, b) => a * b, 1);
  const strides = dims.map((_, d) => dims.slice(d + 1).reduce((a, b) => a * b, 1));
  const sliceSize = depth === 0 ? size : strides[depth - 1]!;
  const targets = new Int32Array(count * sliceSize);
  for (let update = 0; update < count; update++) {
    let offset = 0;
    for (let d = 0; d < depth; d++) {
      const index = indices[update * depth + d]!;
      const dim = dims[d]!;
      if (index < -dim || index >= dim) throw new CamvizError(`ONNX node '${ctx.node.name}' (ScatterND): index ${index} outside [-${dim}, ${dim - 1}] on axis ${d}`);
      offset += (index < 0 ? index + dim : index) * strides[d]!;
    }
    for (let k = 0; k < sliceSize; k++) targets[update * sliceSize + k] = offset + k;
  }
  return targets;
}
// ------------------------------------------------------------ Pad

function pad(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = required(ctx, inputs, 0);
  const rank = x.tensor.rank;
  const mode = attrString(ctx, 'mode', 'constant');
  if (mode !== 'constant' && mode !== 'reflect' && mode !== 'edge') throw unsupported(ctx, `mode '${mode}'`);
  const pads = (ctx.opset < 11 ? attrInts(ctx, 'pads') ?? attrInts(ctx, 'paddings') : constantInts(inputs[1])) ?? [];
  const value = ctx.opset < 11 ? attrFloat(ctx, 'value', 0) : Number(inputs[2]?.tensor.dataSync()[0] ?? 0);
  const axes = ctx.opset >= 18 && inputs[3] !== undefined ? (constantInts(inputs[3]) ?? []).map((axis) => normalizeAxis(ctx, axis, rank)) : [...Array(rank).keys()];
  if (pads.length !== 2 * axes.length) throw new CamvizError(`ONNX node '${ctx.node.name}' (Pad): ${pads.length} pads for ${axes.length} axes`);
  // [before, after] per stored axis.
  const paddings: [number, number][] = x.tensor.shape.map(() => [0, 0]);
  axes.forEach((axis, i) => {
    paddings[storedAxis(axis, x.layout)] = [pads[i]!, pads[i + axes.length]!];
  });
  const dims = checkedShape(ctx, x.tensor.shape.map((dim, i) => dim + paddings[i]![0] + paddings[i]![1]), x.tensor.dtype, x.layout);
  if (ctx.shapesOnly === true) return [laid(zerosStandIn(dims, x.tensor.dtype), x.layout)];
  const cropped = cropNegative(x.tensor, paddings);
  const grow = paddings.map(([before, after]): [number, number] => [Math.max(before, 0), Math.max(after, 0)]);
  let result: tf.Tensor;
  if (mode === 'constant') result = tf.pad(cropped, grow, value);
  else if (mode === 'reflect') result = tf.mirrorPad(cropped, grow, 'reflect');
  else result = edgePad(cropped, grow);
  return [laid(result, x.layout)];
}

/** ONNX allows negative pads: they remove elements. */
function cropNegative(x: tf.Tensor, paddings: [number, number][]): tf.Tensor {
  if (paddings.every(([before, after]) => before >= 0 && after >= 0)) return x;
  const begin = paddings.map(([before]) => Math.max(-before, 0));
  const extent = x.shape.map((dim, i) => dim - begin[i]! - Math.max(-paddings[i]![1], 0));
  return tf.slice(x, begin, extent);
}

/** Edge padding repeats the border element: a gather with clamped indices per padded axis. */
function edgePad(x: tf.Tensor, paddings: [number, number][]): tf.Tensor {
  let result = x;
  paddings.forEach(([before, after], axis) => {
    if (before === 0 && after === 0) return;
    const dim = x.shape[axis]!;
    const indices = Array.from({ length: dim + before + after }, (_, i) => Math.min(Math.max(i - before, 0), dim - 1));
    result = tf.gather(result, tf.tensor1d(indices, 'int32'), axis);
  });
  return result;
}

export const TENSOR_OPS: Record<string, OpFunction> = {
  Identity: identity,
  Dropout: dropout,
  Constant: constant,
  Shape: shape,
  Size: size,
  ConstantOfShape: constantOfShape,
  Range: range,
  Cast: cast,
  Reshape: reshape,
  Flatten: flatten,
  Transpose: transpose,
  Squeeze: squeeze,
  Unsqueeze: unsqueeze,
  Expand: expand,
  Tile: tile,
  Concat: concat,
  Split: split,
  Slice: slice,
  Gather: gather,
  GatherElements: gatherElements,
  ScatterND: scatterND,
  Pad: pad,
};
