/**
 * The wasm gradient kernels against the cpu backend's kernels on identical
 * inputs, and whole-model input gradients on wasm against cpu.
 *
 * Tensors belong to a backend, so every comparison copies plain arrays
 * across: build inputs from a seeded generator, run on wasm, read back,
 * switch to cpu, run the cpu kernel, compare.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import '@tensorflow/tfjs-backend-cpu';
import { registerWasmGradientKernels, wasmGradientKernelNames } from '../src/engine/wasm-kernels.js';
import { mulberry32 } from './helpers/numeric.js';

const TOLERANCE = 1e-4;

type Shape4 = [number, number, number, number];
type Pad = 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;

interface HostTensor {
  shape: number[];
  values: Float32Array;
}

before(async () => {
  tf.enableProdMode();
  await import('@tensorflow/tfjs-backend-wasm');
  assert.ok(await tf.setBackend('wasm'));
  registerWasmGradientKernels();
});

after(async () => {
  await tf.setBackend('wasm');
});

// ------------------------------------------------------------------ helpers

function randomHost(shape: number[], random: () => number): HostTensor {
  const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < values.length; i++) values[i] = random() * 2 - 1;
  return { shape, values };
}

/** max|a - b| / max(|b|, tiny). */
function relativeError(actual: Float32Array, expected: Float32Array): number {
  assert.equal(actual.length, expected.length, 'sizes differ');
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i]! - expected[i]!));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  return diff / Math.max(scale, 1e-30);
}

/** Runs one kernel on `backend` with inputs copied from host arrays; checks it leaves no tensor behind. */
async function runKernelOn(
  backend: 'wasm' | 'cpu', kernelName: string, inputs: Record<string, HostTensor>, attrs: tf.NamedAttrMap,
): Promise<HostTensor> {
  assert.ok(await tf.setBackend(backend));
  const tensorsBefore = tf.memory().numTensors;
  const dataBefore = tf.backend().numDataIds();
  const named: tf.NamedTensorMap = {};
  for (const [name, host] of Object.entries(inputs)) named[name] = tf.tensor(host.values, host.shape, 'float32');
  const out = tf.engine().runKernel<tf.Tensor>(kernelName, named, attrs);
  const result = { shape: out.shape, values: out.dataSync() as Float32Array };
  out.dispose();
  for (const t of Object.values(named)) t.dispose();
  assert.equal(tf.memory().numTensors, tensorsBefore, `${kernelName} on ${backend} leaked tensors`);
  assert.equal(tf.backend().numDataIds(), dataBefore, `${kernelName} on ${backend} leaked backend data`);
  return result;
}

async function assertMatchesCpu(
  kernelName: string, inputs: Record<string, HostTensor>, attrs: tf.NamedAttrMap, label: string,
  reference?: () => Promise<HostTensor>,
): Promise<number> {
  const actual = await runKernelOn('wasm', kernelName, inputs, attrs);
  const expected = reference !== undefined ? await reference() : await runKernelOn('cpu', kernelName, inputs, attrs);
  assert.deepEqual(actual.shape, expected.shape, `${label}: shape`);
  const error = relativeError(actual.values, expected.values);
  assert.ok(error <= TOLERANCE, `${label}: relative error ${error.toExponential(2)}`);
  return error;
}

function forwardOutShape(
  xShape: Shape4, filterShape: Shape4, strides: number | [number, number], pad: Pad, dilations: number,
  depthwise: boolean, dimRoundingMode?: 'floor' | 'round' | 'ceil',
): number[] {
  return tf.backend_util.computeConv2DInfo(xShape, filterShape, strides, dilations, pad, dimRoundingMode, depthwise).outShape;
}

interface ConvCase {
  x: Shape4;
  filter: [number, number];
  strides: number | [number, number];
  pad: Pad;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/** Odd and even sizes, 1x1 / 3x3 / even filters, strides 1 and 2, every padding kind. */
function convCases(): ConvCase[] {
  const cases: ConvCase[] = [];
  const sizes: Array<[number, number, number]> = [[1, 7, 7], [2, 8, 6], [1, 9, 10]];
  const filters: Array<[number, number]> = [[3, 3], [1, 1], [2, 3], [5, 5]];
  const pads: Pad[] = ['same', 'valid', [[0, 0], [1, 2], [0, 1], [0, 0]]];
  for (const [n, h, w] of sizes) {
    for (const filter of filters) {
      for (const strides of [1, 2] as const) {
        for (const pad of pads) cases.push({ x: [n, h, w, 3], filter, strides, pad });
      }
    }
  }
  cases.push({ x: [1, 8, 8, 3], filter: [3, 3], strides: 2, pad: 1, dimRoundingMode: 'ceil' });
  cases.push({ x: [1, 8, 8, 3], filter: [3, 3], strides: 2, pad: 1, dimRoundingMode: 'floor' });
  cases.push({ x: [1, 7, 9, 3], filter: [3, 3], strides: [2, 1], pad: 'same' });
  cases.push({ x: [1, 3, 3, 3], filter: [1, 1], strides: 1, pad: [[0, 0], [0, 2], [1, 0], [0, 0]] });
  return cases;
}

function describe(c: ConvCase, extra = ''): string {
  return `x ${c.x.join('x')} f ${c.filter.join('x')} s ${String(c.strides)} pad ${JSON.stringify(c.pad)}` +
    `${c.dimRoundingMode !== undefined ? ` ${c.dimRoundingMode}` : ''}${extra}`;
}

// ------------------------------------------------------------- kernel tests

test('registration: the kernels exist on wasm and a second call changes nothing', () => {
  const before = wasmGradientKernelNames.map((name) => tf.getKernel(name, 'wasm')?.kernelFunc);
  for (const f of before) assert.equal(typeof f, 'function');
  registerWasmGradientKernels();
  const afterCall = wasmGradientKernelNames.map((name) => tf.getKernel(name, 'wasm')?.kernelFunc);
  assert.deepEqual(afterCall, before);
});

test('Conv2DBackpropFilter matches cpu', async () => {
  const random = mulberry32(1);
  let worst = 0;
  for (const c of convCases()) {
    const outChannels = 4;
    const filterShape: Shape4 = [c.filter[0], c.filter[1], c.x[3], outChannels];
    const dyShape = forwardOutShape(c.x, filterShape, c.strides, c.pad, 1, false, c.dimRoundingMode);
    const inputs = { x: randomHost(c.x, random), dy: randomHost(dyShape, random) };
    const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', dimRoundingMode: c.dimRoundingMode, filterShape } as unknown as tf.NamedAttrMap;
    worst = Math.max(worst, await assertMatchesCpu(tf.Conv2DBackpropFilter, inputs, attrs, describe(c)));
  }
  console.log(`Conv2DBackpropFilter: worst relative error ${worst.toExponential(2)}`);
});

test('Conv2DBackpropInput (replacement) matches cpu', async () => {
  const random = mulberry32(2);
  let worst = 0;
  for (const c of convCases()) {
    const filterShape: Shape4 = [c.filter[0], c.filter[1], c.x[3], 4];
    const dyShape = forwardOutShape(c.x, filterShape, c.strides, c.pad, 1, false, c.dimRoundingMode);
    const inputs = { dy: randomHost(dyShape, random), filter: randomHost(filterShape, random) };
    const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', dimRoundingMode: c.dimRoundingMode, inputShape: c.x } as unknown as tf.NamedAttrMap;
    worst = Math.max(worst, await assertMatchesCpu(tf.Conv2DBackpropInput, inputs, attrs, describe(c)));
  }
  console.log(`Conv2DBackpropInput: worst relative error ${worst.toExponential(2)}`);
});

test('conv backprop kernels with NCHW data match cpu', async () => {
  const random = mulberry32(3);
  const xShape: Shape4 = [2, 3, 9, 8];
  const filterShape: Shape4 = [3, 3, 3, 5];
  for (const pad of ['same', 'valid', [[0, 0], [0, 0], [2, 1], [0, 1]]] as Pad[]) {
    const nhwc = forwardOutShape([2, 9, 8, 3], filterShape, 2, Array.isArray(pad) ? [[0, 0], pad[2]!, pad[3]!, [0, 0]] : pad, 1, false);
    const dyShape = [nhwc[0]!, nhwc[3]!, nhwc[1]!, nhwc[2]!];
    const x = randomHost(xShape, random);
    const dy = randomHost(dyShape, random);
    const filter = randomHost(filterShape, random);
    const common = { strides: 2, pad, dataFormat: 'NCHW' };
    await assertMatchesCpu(tf.Conv2DBackpropFilter, { x, dy }, { ...common, filterShape } as unknown as tf.NamedAttrMap, `filter NCHW ${JSON.stringify(pad)}`);
    await assertMatchesCpu(tf.Conv2DBackpropInput, { dy, filter }, { ...common, inputShape: xShape } as unknown as tf.NamedAttrMap, `input NCHW ${JSON.stringify(pad)}`);
  }
});

interface DepthwiseCase extends ConvCase {
  multiplier: number;
  dilation: number;
}

function depthwiseCases(): DepthwiseCase[] {
  const cases: DepthwiseCase[] = [];
  for (const c of convCases()) {
    if (c.filter[0] === 5) continue;
    for (const multiplier of [1, 2]) cases.push({ ...c, multiplier, dilation: 1 });
  }
  for (const [h, w] of [[7, 7], [8, 9]] as const) {
    for (const pad of ['same', 'valid'] as const) {
      for (const multiplier of [1, 2]) {
        cases.push({ x: [2, h, w, 3], filter: [3, 3], strides: 1, pad, multiplier, dilation: 2 });
        cases.push({ x: [1, h, w, 2], filter: [2, 3], strides: 1, pad, multiplier, dilation: 2 });
      }
    }
  }
  return cases;
}

/** A depthwise filter with (dilation - 1) zeros between taps: dilation 1 with it equals dilation d without. */
function dilateFilter(filter: HostTensor, dilation: number): HostTensor {
  const [fh, fw, c, m] = filter.shape as Shape4;
  const dh = (fh - 1) * dilation + 1;
  const dw = (fw - 1) * dilation + 1;
  const values = new Float32Array(dh * dw * c * m);
  for (let i = 0; i < fh; i++) {
    for (let j = 0; j < fw; j++) {
      for (let k = 0; k < c * m; k++) values[((i * dilation) * dw + j * dilation) * c * m + k] = filter.values[(i * fw + j) * c * m + k]!;
    }
  }
  return { shape: [dh, dw, c, m], values };
}

/** The taps at multiples of `dilation` of a gradient for the zero-dilated filter. */
function undilateFilter(grad: HostTensor, filterShape: Shape4, dilation: number): HostTensor {
  const [fh, fw, c, m] = filterShape;
  const dw = grad.shape[1]!;
  const values = new Float32Array(fh * fw * c * m);
  for (let i = 0; i < fh; i++) {
    for (let j = 0; j < fw; j++) {
      for (let k = 0; k < c * m; k++) values[(i * fw + j) * c * m + k] = grad.values[((i * dilation) * dw + j * dilation) * c * m + k]!;
    }
  }
  return { shape: filterShape, values };
}

// The cpu depthwise backprop kernels accept `dilations` but their loops
// ignore it, so for dilation > 1 the reference is the cpu kernel at
// dilation 1 with the zeros written into the filter.
test('DepthwiseConv2dNativeBackpropInput matches cpu', async () => {
  const random = mulberry32(4);
  let worst = 0;
  for (const c of depthwiseCases()) {
    const filterShape: Shape4 = [c.filter[0], c.filter[1], c.x[3], c.multiplier];
    const dyShape = forwardOutShape(c.x, filterShape, c.strides, c.pad, c.dilation, true, c.dimRoundingMode);
    const dy = randomHost(dyShape, random);
    const filter = randomHost(filterShape, random);
    const attrs = (dilations: number): tf.NamedAttrMap => ({
      strides: c.strides, pad: c.pad, dilations, dimRoundingMode: c.dimRoundingMode, inputShape: c.x,
    } as unknown as tf.NamedAttrMap);
    const reference = c.dilation === 1
      ? undefined
      : () => runKernelOn('cpu', tf.DepthwiseConv2dNativeBackpropInput, { dy, filter: dilateFilter(filter, c.dilation) }, attrs(1));
    const label = describe(c, ` m${c.multiplier} d${c.dilation}`);
    worst = Math.max(worst, await assertMatchesCpu(tf.DepthwiseConv2dNativeBackpropInput, { dy, filter }, attrs(c.dilation), label, reference));
  }
  console.log(`DepthwiseConv2dNativeBackpropInput: worst relative error ${worst.toExponential(2)}`);
});

test('DepthwiseConv2dNativeBackpropFilter matches cpu', async () => {
  const random = mulberry32(5);
  let worst = 0;
  for (const c of depthwiseCases()) {
    const filterShape: Shape4 = [c.filter[0], c.filter[1], c.x[3], c.multiplier];
    const dyShape = forwardOutShape(c.x, filterShape, c.strides, c.pad, c.dilation, true, c.dimRoundingMode);
    const x = randomHost(c.x, random);
    const dy = randomHost(dyShape, random);
    const attrs = (dilations: number, shape: number[]): tf.NamedAttrMap => ({
      strides: c.strides, pad: c.pad, dilations, dimRoundingMode: c.dimRoundingMode, filterShape: shape,
    } as unknown as tf.NamedAttrMap);
    const reference = c.dilation === 1 ? undefined : async () => {
      const [fh, fw, channels, multiplier] = filterShape;
      const dilatedShape = [(fh - 1) * c.dilation + 1, (fw - 1) * c.dilation + 1, channels, multiplier];
      const grad = await runKernelOn('cpu', tf.DepthwiseConv2dNativeBackpropFilter, { x, dy }, attrs(1, dilatedShape));
      return undilateFilter(grad, filterShape, c.dilation);
    };
    const label = describe(c, ` m${c.multiplier} d${c.dilation}`);
    worst = Math.max(worst, await assertMatchesCpu(tf.DepthwiseConv2dNativeBackpropFilter, { x, dy }, attrs(c.dilation, filterShape), label, reference));
  }
  console.log(`DepthwiseConv2dNativeBackpropFilter: worst relative error ${worst.toExponential(2)}`);
});

// ------------------------------------------------- through the fused ops

/** d sum(fused op(x, filter, bias) * weights) / d (x, filter, bias) on `backend`, as host arrays. */
async function fusedGradientsOn(
  backend: 'wasm' | 'cpu', op: 'conv2d' | 'depthwiseConv2d', activation: tf.fused.Activation, strides: number,
  pad: 'same' | 'valid', host: { x: HostTensor; filter: HostTensor; bias: HostTensor; weights: HostTensor },
): Promise<HostTensor[]> {
  assert.ok(await tf.setBackend(backend));
  const tensorsBefore = tf.memory().numTensors;
  const [x, filter, bias, weights] = [host.x, host.filter, host.bias, host.weights].map((h) => tf.tensor(h.values, h.shape));
  const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor): tf.Scalar => {
    const args = { x: a as tf.Tensor4D, filter: b as tf.Tensor4D, bias: c, strides, pad, activation, leakyreluAlpha: 0.2 };
    const y = op === 'conv2d' ? tf.fused.conv2d(args) : tf.fused.depthwiseConv2d(args);
    return tf.sum(tf.mul(y, weights!));
  };
  const grads = tf.grads(f)([x!, filter!, bias!]);
  const result = grads.map((g) => ({ shape: g.shape, values: g.dataSync() as Float32Array }));
  tf.dispose([...grads, x!, filter!, bias!, weights!]);
  assert.equal(tf.memory().numTensors, tensorsBefore, `${backend}: fused ${op} gradient leaked tensors`);
  return result;
}

test('gradients of tf.fused.conv2d / depthwiseConv2d (x, filter, bias) on wasm equal cpu', async () => {
  const random = mulberry32(6);
  let worst = 0;
  for (const op of ['conv2d', 'depthwiseConv2d'] as const) {
    for (const activation of ['linear', 'relu', 'relu6', 'leakyrelu'] as const) {
      for (const [strides, pad, size] of [[1, 'same', 7], [2, 'valid', 8], [2, 'same', 9]] as const) {
        for (const multiplier of op === 'conv2d' ? [5] : [1, 2]) {
          const x = randomHost([2, size, size, 3], random);
          const filter = randomHost([3, 3, 3, multiplier], random);
          const outChannels = op === 'conv2d' ? multiplier : 3 * multiplier;
          const bias = randomHost([outChannels], random);
          const outShape = forwardOutShape([2, size, size, 3], [3, 3, 3, multiplier], strides, pad, 1, op !== 'conv2d');
          const weights = randomHost(outShape, random);
          const host = { x, filter, bias, weights };
          const onWasm = await fusedGradientsOn('wasm', op, activation, strides, pad, host);
          const onCpu = await fusedGradientsOn('cpu', op, activation, strides, pad, host);
          onWasm.forEach((g, i) => {
            const error = relativeError(g.values, onCpu[i]!.values);
            worst = Math.max(worst, error);
            assert.ok(error <= TOLERANCE, `${op} ${activation} s${strides} ${pad} m${multiplier} input ${i}: ${error.toExponential(2)}`);
          });
        }
      }
    }
  }
  console.log(`fused ops: worst relative error of d/dx, d/dfilter, d/dbias ${worst.toExponential(2)}`);
});

// ---------------------------------------------------------- end-to-end tests

type Sym = tfl.SymbolicTensor;

/** MobileNet v1/v2-like: conv-BN-ReLU6, depthwise (multipliers 1 and 2) + pointwise, residual add, GAP + dense. */
function mobilenetLike(): tfl.LayersModel {
  const input = tfl.input({ shape: [20, 19, 3] });
  const convBnRelu6 = (x: Sym, filters: number, kernelSize: number, strides: number): Sym =>
    tfl.layers.reLU({ maxValue: 6 }).apply(tfl.layers.batchNormalization({}).apply(
      tfl.layers.conv2d({ filters, kernelSize, strides, padding: 'same', useBias: false }).apply(x))) as Sym;
  const depthwise = (x: Sym, strides: number, depthMultiplier: number): Sym => {
    const padded = strides === 2 ? tfl.layers.zeroPadding2d({ padding: [[0, 1], [0, 1]] }).apply(x) as Sym : x;
    return tfl.layers.activation({ activation: 'relu6' }).apply(tfl.layers.batchNormalization({}).apply(
      tfl.layers.depthwiseConv2d({ kernelSize: 3, strides, depthMultiplier, padding: strides === 2 ? 'valid' : 'same', useBias: false })
        .apply(padded))) as Sym;
  };
  let x = convBnRelu6(input, 8, 3, 2);
  x = convBnRelu6(depthwise(x, 1, 1), 8, 1, 1);
  const expanded = depthwise(convBnRelu6(x, 16, 1, 1), 1, 2);
  const projected = tfl.layers.batchNormalization({}).apply(
    tfl.layers.conv2d({ filters: 8, kernelSize: 1, useBias: false }).apply(expanded)) as Sym;
  x = tfl.layers.add().apply([x, projected]) as Sym;
  x = convBnRelu6(depthwise(x, 2, 1), 12, 1, 1);
  x = tfl.layers.globalAveragePooling2d({}).apply(x) as Sym;
  x = tfl.layers.dropout({ rate: 0.3 }).apply(x) as Sym;
  const output = tfl.layers.dense({ units: 6, activation: 'softmax' }).apply(x) as Sym;
  return tfl.model({ inputs: input, outputs: output });
}

/** ResNet-like: padded 7x7/2 stem, BN, max pool, basic blocks with projection shortcut, concat, avg pool, dense. */
function resnetLike(): tfl.LayersModel {
  const input = tfl.input({ shape: [24, 23, 3] });
  let x = tfl.layers.zeroPadding2d({ padding: 3 }).apply(input) as Sym;
  x = tfl.layers.conv2d({ filters: 8, kernelSize: 7, strides: 2, useBias: false }).apply(x) as Sym;
  x = tfl.layers.reLU().apply(tfl.layers.batchNormalization({}).apply(x)) as Sym;
  x = tfl.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }).apply(x) as Sym;
  const block = (y: Sym, filters: number, strides: number): Sym => {
    const conv = (z: Sym, s: number): Sym => tfl.layers.batchNormalization({}).apply(
      tfl.layers.conv2d({ filters, kernelSize: 3, strides: s, padding: 'same', useBias: false }).apply(z)) as Sym;
    const body = conv(tfl.layers.activation({ activation: 'relu' }).apply(conv(y, strides)) as Sym, 1);
    const shortcut = strides === 1 ? y : tfl.layers.batchNormalization({}).apply(
      tfl.layers.conv2d({ filters, kernelSize: 1, strides, useBias: false }).apply(y)) as Sym;
    return tfl.layers.reLU().apply(tfl.layers.add().apply([shortcut, body])) as Sym;
  };
  x = block(block(x, 8, 1), 12, 2);
  const side = tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu' }).apply(x) as Sym;
  x = tfl.layers.concatenate().apply([x, side]) as Sym;
  x = tfl.layers.averagePooling2d({ poolSize: 2, strides: 2 }).apply(x) as Sym;
  x = tfl.layers.flatten().apply(x) as Sym;
  x = tfl.layers.dense({ units: 10, activation: 'relu' }).apply(x) as Sym;
  const output = tfl.layers.dense({ units: 5 }).apply(x) as Sym;
  return tfl.model({ inputs: input, outputs: output });
}

/** Non-trivial weights: BN statistics away from identity, biases non-zero. */
function randomWeights(model: tfl.LayersModel, random: () => number): HostTensor[] {
  return model.weights.map((w) => {
    const host = randomHost(w.shape as number[], random);
    const isVariance = w.name.includes('moving_variance');
    const isGamma = w.name.includes('gamma');
    const scale = w.shape.length >= 2 ? Math.sqrt(3 / (w.shape.slice(0, -1) as number[]).reduce((a, b) => a * b, 1)) : 0.2;
    for (let i = 0; i < host.values.length; i++) {
      const v = host.values[i]!;
      host.values[i] = isVariance ? 0.5 + Math.abs(v) : isGamma ? 1 + 0.3 * v : scale * v;
    }
    return host;
  });
}

async function inputGradientOn(
  backend: 'wasm' | 'cpu', build: () => tfl.LayersModel, weights: HostTensor[] | undefined, image: HostTensor, classIndex: number,
): Promise<{ grad: HostTensor; weights: HostTensor[] }> {
  assert.ok(await tf.setBackend(backend));
  const tensorsBefore = tf.memory().numTensors;
  const model = build();
  const hostWeights = weights ?? randomWeights(model, mulberry32(11));
  const values = hostWeights.map((w) => tf.tensor(w.values, w.shape));
  model.setWeights(values);
  tf.dispose(values);
  const x = tf.tensor(image.values, image.shape);
  const scoreOf = (input: tf.Tensor): tf.Scalar => tf.tidy(() => {
    const out = model.apply(input, { training: false }) as tf.Tensor;
    return tf.sum(tf.slice(out, [0, classIndex], [-1, 1]));
  });
  const grad = tf.grad(scoreOf)(x);
  const result = { shape: grad.shape, values: grad.dataSync() as Float32Array };
  tf.dispose([grad, x]);
  model.dispose();
  assert.equal(tf.memory().numTensors, tensorsBefore, `${backend}: the backward pass leaked tensors`);
  return { grad: result, weights: hostWeights };
}

for (const [name, build, inputShape] of [
  ['MobileNet-like', mobilenetLike, [2, 20, 19, 3]],
  ['ResNet-like', resnetLike, [1, 24, 23, 3]],
] as const) {
  test(`end to end: d score / d input of a ${name} model on wasm equals cpu`, async () => {
    const image = randomHost([...inputShape], mulberry32(21));
    const onWasm = await inputGradientOn('wasm', build, undefined, image, 1);
    const onCpu = await inputGradientOn('cpu', build, onWasm.weights, image, 1);
    const error = relativeError(onWasm.grad.values, onCpu.grad.values);
    const magnitude = onCpu.grad.values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    assert.ok(magnitude > 1e-6, 'the reference gradient is all zeros: the test would prove nothing');
    console.log(`${name}: input gradient relative error ${error.toExponential(2)} (max |grad| ${magnitude.toExponential(2)})`);
    assert.ok(error <= TOLERANCE, `${name}: relative error ${error.toExponential(2)}`);
  });
}

test('UnsortedSegmentSum matches cpu, directly and as the gradient of tf.gather (repeated indices, axes 0 and 1)', async () => {
  const random = mulberry32(7);
  const values = randomHost([6, 3, 4], random).values;
  const ids = [2, 0, 2, 4, 1, 2];
  const run = async (backend: 'wasm' | 'cpu'): Promise<Float32Array[]> => {
    assert.ok(await tf.setBackend(backend));
    const before = tf.memory().numTensors;
    const results = tf.tidy(() => {
      const x = tf.tensor3d(values, [6, 3, 4]);
      const direct = tf.unsortedSegmentSum(x, tf.tensor1d(ids, 'int32'), 5);
      const weights = tf.tensor3d(Array.from({ length: 5 * 3 * 4 }, (_, i) => Math.sin(i)), [5, 3, 4]);
      const byRows = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, tf.tensor1d([0, 0, 3, 5, 1], 'int32'), 0), weights)))(x);
      const byColumns = tf.grad((t: tf.Tensor) => tf.sum(tf.gather(t, tf.tensor1d([2, 2, 0], 'int32'), 1)))(x);
      return [direct, byRows, byColumns].map((tensor) => tensor.dataSync() as Float32Array);
    });
    assert.equal(tf.memory().numTensors, before, `leak on ${backend}`);
    return results;
  };
  const onWasm = await run('wasm');
  const onCpu = await run('cpu');
  onWasm.forEach((actual, i) => assert.ok(relativeError(actual, onCpu[i]!) <= TOLERANCE, `case ${i}: ${relativeError(actual, onCpu[i]!)}`));
  // By hand for the direct case: segment 2 sums rows 0, 2 and 5.
  for (let k = 0; k < 12; k++) {
    const expected = values[k]! + values[2 * 12 + k]! + values[5 * 12 + k]!;
    assert.ok(Math.abs(onWasm[0]![2 * 12 + k]! - expected) < 1e-5);
  }
});
