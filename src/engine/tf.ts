/**
 * TensorFlow.js, loaded with `require`. The packages are CommonJS bundles
 * of several megabytes; importing them from an ES module makes Node lex
 * them for their export names first, which costs about 0.6 s at start-up.
 * Code imports `* as tf from '../tf.js'` and gets the same values and types
 * as from '@tensorflow/tfjs-core' (add a value here when you need one).
 */
import { createRequire } from 'node:module';
import type * as Core from '@tensorflow/tfjs-core';

export type * from '@tensorflow/tfjs-core';

const require = createRequire(import.meta.url);
const core = require('@tensorflow/tfjs-core') as typeof Core;
// The pure-JS backend is always there: the last resort.
require('@tensorflow/tfjs-backend-cpu');

/** The Tensor class as a value (for instanceof); `tf.Tensor` is the type. */
export const TensorClass = core.Tensor;

/** What a backend that keeps tensors in its own memory offers (tfjs-backend-wasm: its heap). */
interface HeapBackend {
  typedArrayFromHeap(tensor: Core.Tensor): Core.TypedArray;
  readonly dataIdMap: { has(dataId: object): boolean };
}

function isHeapBackend(backend: unknown): backend is HeapBackend {
  const candidate = backend as Partial<HeapBackend> | null;
  return typeof candidate?.typedArrayFromHeap === 'function' && typeof candidate.dataIdMap?.has === 'function';
}

/**
 * A numeric tensor's values, without the copy `dataSync()` makes on the
 * wasm backend (there a view on its heap). Reading a model's weights this way
 * costs a fifth of the time: the copy lands in fresh memory, and page faults
 * dominate. The view is valid only until the next tfjs call (the heap may
 * grow and move): read it at once, never keep or write it.
 */
export function peekValues(tensor: Core.Tensor): Core.TypedArray {
  if (tensor.dtype === 'string' || tensor.dtype === 'complex64') throw new Error(`peekValues reads numeric tensors, not ${tensor.dtype}`);
  const backend: unknown = core.backend();
  // The tensor must live on the current backend: data moved to another stays where tfjs put it.
  if (isHeapBackend(backend) && backend.dataIdMap.has(tensor.dataId)) return backend.typedArrayFromHeap(tensor);
  return tensor.dataSync() as Core.TypedArray;
}

/** The arrays tensors were made from by `tensorOfHost`: a tensor never changes, so each stays equal to its tensor. */
const hostArrays = new WeakMap<Core.Tensor, Float32Array>();

/**
 * A float32 tensor of `values` that keeps them at hand for `hostValues`,
 * where `dataSync()` would copy them back out of the backend: 0.4-0.5 ms for
 * a 224x224 RGB input on wasm, per image, when ONNX Runtime runs the model.
 * The caller gives `values` up: writing them afterwards would make the two
 * differ.
 */
export function tensorOfHost(values: Float32Array, shape: number[]): Core.Tensor {
  const tensor = core.tensor(values, shape, 'float32');
  hostArrays.set(tensor, values);
  return tensor;
}

/** The values `tensorOfHost` made `tensor` from; undefined for any other tensor. */
export function hostValues(tensor: Core.Tensor): Float32Array | undefined {
  return hostArrays.get(tensor);
}

export const {
  // Kernel names
  BatchMatMul,
  ClipByValue,
  Conv2D,
  Conv2DBackpropFilter,
  Conv2DBackpropInput,
  DepthwiseConv2dNative,
  DepthwiseConv2dNativeBackpropFilter,
  DepthwiseConv2dNativeBackpropInput,
  Max,
  MaxPool,
  Min,
  Prod,
  Relu6,
  UnsortedSegmentSum,
  // Functions and namespaces
  add,
  addN,
  backend,
  backend_util,
  batchNorm,
  cast,
  concat,
  cumprod,
  customGrad,
  conv2d,
  depthwiseConv2d,
  dispose,
  div,
  enableProdMode,
  engine,
  env,
  fill,
  fused,
  getBackend,
  getGradient,
  getKernel,
  greater,
  image,
  keep,
  matMul,
  max,
  maximum,
  mean,
  moments,
  memory,
  min,
  mul,
  notEqual,
  ones,
  oneHot,
  pad,
  randomNormal,
  randomUniform,
  range,
  ready,
  registerBackend,
  registerGradient,
  registerKernel,
  relu,
  removeBackend,
  reshape,
  reverse,
  scalar,
  serialization,
  setBackend,
  slice,
  softmax,
  split,
  sqrt,
  square,
  stridedSlice,
  sub,
  sum,
  tensor,
  tensor1d,
  tensor2d,
  tensor3d,
  tensor4d,
  tidy,
  transpose,
  unregisterGradient,
  unregisterKernel,
  unstack,
  util,
  valueAndGrads,
  where,
  zeros,
  zerosLike,
} = core;

// The ONNX op library (src/model/onnx/ops) needs these as well.
export const {
  abs,
  any,
  argMax,
  argMin,
  avgPool,
  broadcast_util,
  broadcastTo,
  ceil,
  clipByValue,
  clone,
  conv2dTranspose,
  cos,
  cumsum,
  equal,
  erf,
  exp,
  expm1,
  expandDims,
  floor,
  gather,
  greaterEqual,
  isInf,
  isNaN,
  leakyRelu,
  less,
  lessEqual,
  log,
  logSoftmax,
  logSumExp,
  logicalAnd,
  logicalNot,
  logicalOr,
  logicalXor,
  maxPool,
  minimum,
  mirrorPad,
  mod,
  neg,
  onesLike,
  pool,
  pow,
  prod,
  reciprocal,
  round,
  rsqrt,
  sigmoid,
  sign,
  sin,
  softplus,
  squeeze,
  stack,
  step,
  tanh,
  tile,
} = core;
