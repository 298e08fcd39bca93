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

export const {
  // Kernel names
  Conv2D,
  Conv2DBackpropFilter,
  Conv2DBackpropInput,
  DepthwiseConv2dNative,
  DepthwiseConv2dNativeBackpropFilter,
  DepthwiseConv2dNativeBackpropInput,
  UnsortedSegmentSum,
  // Functions and namespaces
  add,
  addN,
  backend,
  backend_util,
  cast,
  concat,
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
  getKernel,
  greater,
  image,
  keep,
  matMul,
  max,
  maximum,
  mean,
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
  registerKernel,
  relu,
  removeBackend,
  reshape,
  reverse,
  scalar,
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
  unregisterKernel,
  util,
  valueAndGrads,
  where,
  zeros,
  zerosLike,
} = core;

// The ONNX op library (src/model/onnx/ops) needs these as well.
export const {
  abs,
  avgPool,
  broadcast_util,
  broadcastTo,
  ceil,
  clipByValue,
  clone,
  equal,
  erf,
  exp,
  expandDims,
  floor,
  gather,
  greaterEqual,
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
  squeeze,
  stack,
  tanh,
  tile,
} = core;
