/**
 * Finds the kernels a backward pass needs that the wasm backend lacks.
 *
 * Runs tf.grad on the wasm backend for random-weight MobileNet v1/v2-,
 * ResNet- and VGG-style tfjs-layers models (w.r.t. the input and w.r.t. an
 * intermediate activation) and for single fused/unfused ops. A missing
 * kernel stops a backward pass at the first miss, so each miss is recorded
 * and bridged with a temporary proxy that runs the cpu backend's kernel on
 * copied data; the pass is then retried until it completes. The result is the
 * full list of missing kernels per case, not just the first.
 *
 *   node dist/scripts/find-missing-grad-kernels.js            stock wasm
 *   node dist/scripts/find-missing-grad-kernels.js --camviz   with camviz's kernels
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import '@tensorflow/tfjs-backend-cpu';
import { registerWasmGradientKernels } from '../src/engine/wasm-kernels.js';

type Scalar = tf.Scalar;
type Sym = tfl.SymbolicTensor;
/** A stage owns its layers; applying it twice shares their weights. */
type Stage = (x: Sym) => Sym;

interface ModelSpec {
  name: string;
  inputShape: [number, number, number];
  stages: Stage[];
  /** Index of the stage whose output is the "intermediate activation". */
  cutAfter: number;
}

const MISSING = /Kernel '(\w+)' not registered for backend 'wasm'/;
const proxied = new Set<string>();

// ---------------------------------------------------------------- models

function convBnRelu6(filters: number, kernelSize: number, strides: number): Stage {
  const conv = tfl.layers.conv2d({ filters, kernelSize, strides, padding: 'same', useBias: false });
  const bn = tfl.layers.batchNormalization({});
  const act = tfl.layers.reLU({ maxValue: 6 });
  return (x) => act.apply(bn.apply(conv.apply(x))) as Sym;
}

/** MobileNet v1 block: ZeroPadding + depthwise (stride 2, valid) or depthwise 'same', then pointwise. */
function mobilenetV1Block(filters: number, strides: number, depthMultiplier = 1): Stage {
  const pad = strides === 2 ? tfl.layers.zeroPadding2d({ padding: [[0, 1], [0, 1]] }) : undefined;
  const dw = tfl.layers.depthwiseConv2d({
    kernelSize: 3, strides, depthMultiplier, padding: strides === 2 ? 'valid' : 'same', useBias: false,
  });
  const bn1 = tfl.layers.batchNormalization({});
  const act1 = tfl.layers.reLU({ maxValue: 6 });
  const pw = tfl.layers.conv2d({ filters, kernelSize: 1, useBias: false });
  const bn2 = tfl.layers.batchNormalization({});
  const act2 = tfl.layers.activation({ activation: 'relu6' });
  return (x) => {
    const padded = pad !== undefined ? (pad.apply(x) as Sym) : x;
    const y = act1.apply(bn1.apply(dw.apply(padded))) as Sym;
    return act2.apply(bn2.apply(pw.apply(y))) as Sym;
  };
}

/** MobileNet v2 inverted residual: expand, depthwise, project, add when shapes match. */
function invertedResidual(inChannels: number, outChannels: number, strides: number, expansion: number): Stage {
  const expand = convBnRelu6(inChannels * expansion, 1, 1);
  const dw = tfl.layers.depthwiseConv2d({ kernelSize: 3, strides, padding: 'same', useBias: true, activation: 'relu6' });
  const project = tfl.layers.conv2d({ filters: outChannels, kernelSize: 1, useBias: false });
  const bn = tfl.layers.batchNormalization({});
  const add = tfl.layers.add();
  return (x) => {
    const y = bn.apply(project.apply(dw.apply(expand(x)))) as Sym;
    return strides === 1 && inChannels === outChannels ? (add.apply([x, y]) as Sym) : y;
  };
}

/** ResNet basic block with BN, ReLU and a projection shortcut when needed. */
function resnetBlock(inChannels: number, filters: number, strides: number): Stage {
  const c1 = tfl.layers.conv2d({ filters, kernelSize: 3, strides, padding: 'same', useBias: false });
  const b1 = tfl.layers.batchNormalization({});
  const r1 = tfl.layers.activation({ activation: 'relu' });
  const c2 = tfl.layers.conv2d({ filters, kernelSize: 3, padding: 'same', useBias: false });
  const b2 = tfl.layers.batchNormalization({});
  const project = strides !== 1 || inChannels !== filters
    ? tfl.layers.conv2d({ filters, kernelSize: 1, strides, useBias: false })
    : undefined;
  const add = tfl.layers.add();
  const r2 = tfl.layers.reLU();
  return (x) => {
    const y = b2.apply(c2.apply(r1.apply(b1.apply(c1.apply(x))))) as Sym;
    const shortcut = project !== undefined ? (project.apply(x) as Sym) : x;
    return r2.apply(add.apply([shortcut, y])) as Sym;
  };
}

function stem(filters: number): Stage {
  const pad = tfl.layers.zeroPadding2d({ padding: 3 });
  const conv = tfl.layers.conv2d({ filters, kernelSize: 7, strides: 2, useBias: true });
  const bn = tfl.layers.batchNormalization({});
  const act = tfl.layers.leakyReLU({ alpha: 0.1 });
  const pool = tfl.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' });
  return (x) => pool.apply(act.apply(bn.apply(conv.apply(pad.apply(x))))) as Sym;
}

function vggBlock(filters: number, convs: number): Stage {
  const layers = Array.from({ length: convs }, () =>
    tfl.layers.conv2d({ filters, kernelSize: 3, padding: 'same', activation: 'relu' }),
  );
  const pool = tfl.layers.maxPooling2d({ poolSize: 2, strides: 2 });
  return (x) => pool.apply(layers.reduce<Sym>((y, l) => l.apply(y) as Sym, x)) as Sym;
}

/** Two branches concatenated (Inception/SqueezeNet style), then average pooling. */
function concatBlock(filters: number): Stage {
  const a = tfl.layers.conv2d({ filters, kernelSize: 1, activation: 'relu' });
  const b = tfl.layers.conv2d({ filters, kernelSize: 3, padding: 'same', activation: 'relu' });
  const cat = tfl.layers.concatenate();
  const pool = tfl.layers.averagePooling2d({ poolSize: 2, strides: 2, padding: 'valid' });
  return (x) => pool.apply(cat.apply([a.apply(x) as Sym, b.apply(x) as Sym])) as Sym;
}

function gapHead(channels: number, classes: number): Stage {
  const gap = tfl.layers.globalAveragePooling2d({});
  const drop = tfl.layers.dropout({ rate: 0.2 });
  const reshape = tfl.layers.reshape({ targetShape: [1, 1, channels] });
  const conv = tfl.layers.conv2d({ filters: classes, kernelSize: 1 });
  const flat = tfl.layers.flatten();
  const softmax = tfl.layers.softmax();
  return (x) => softmax.apply(flat.apply(conv.apply(reshape.apply(drop.apply(gap.apply(x)))))) as Sym;
}

function denseHead(classes: number): Stage {
  const flat = tfl.layers.flatten();
  const d1 = tfl.layers.dense({ units: 16, activation: 'relu' });
  const drop = tfl.layers.dropout({ rate: 0.5 });
  const d2 = tfl.layers.dense({ units: classes, activation: 'softmax' });
  return (x) => d2.apply(drop.apply(d1.apply(flat.apply(x)))) as Sym;
}

function modelSpecs(): ModelSpec[] {
  return [
    {
      name: 'mobilenet-v1-like', inputShape: [32, 32, 3], cutAfter: 2,
      stages: [convBnRelu6(8, 3, 2), mobilenetV1Block(16, 1), mobilenetV1Block(16, 2, 2),
        mobilenetV1Block(24, 1), gapHead(24, 5)],
    },
    {
      name: 'mobilenet-v2-like', inputShape: [32, 32, 3], cutAfter: 2,
      stages: [convBnRelu6(8, 3, 2), invertedResidual(8, 8, 1, 2), invertedResidual(8, 12, 2, 3),
        invertedResidual(12, 12, 1, 3), gapHead(12, 5)],
    },
    {
      name: 'resnet-like', inputShape: [33, 33, 3], cutAfter: 1,
      stages: [stem(8), resnetBlock(8, 8, 1), resnetBlock(8, 16, 2), concatBlock(8), gapHead(16, 5)],
    },
    {
      name: 'vgg-like', inputShape: [32, 32, 3], cutAfter: 1,
      stages: [vggBlock(8, 2), vggBlock(16, 2), vggBlock(16, 1), denseHead(5)],
    },
  ];
}

function chain(stages: Stage[], input: Sym): Sym {
  return stages.reduce<Sym>((y, stage) => stage(y), input);
}

interface Case {
  name: string;
  run: () => void;
}

function modelCases(spec: ModelSpec): Case[] {
  const input = tfl.input({ shape: spec.inputShape });
  const full = tfl.model({ inputs: input, outputs: chain(spec.stages, input) });
  const mid = chain(spec.stages.slice(0, spec.cutAfter + 1), input);
  const head = tfl.model({ inputs: input, outputs: mid });
  const tailInput = tfl.input({ shape: mid.shape.slice(1) as number[] });
  const tail = tfl.model({ inputs: tailInput, outputs: chain(spec.stages.slice(spec.cutAfter + 1), tailInput) });
  const score = (m: tfl.LayersModel, t: tf.Tensor): Scalar =>
    tf.sum(tf.slice(m.apply(t, { training: false }) as tf.Tensor, [0, 1], [-1, 1]));
  const image = (): tf.Tensor => tf.randomUniform([1, ...spec.inputShape], -1, 1, 'float32', 7);
  return [
    {
      name: `${spec.name}: d score / d input`,
      run: () => { tf.grad((x: tf.Tensor) => score(full, x))(image()); },
    },
    {
      name: `${spec.name}: d score / d activation (${mid.shape.join('x')})`,
      run: () => {
        const activation = head.apply(image(), { training: false }) as tf.Tensor;
        tf.grad((a: tf.Tensor) => score(tail, a))(activation);
      },
    },
  ];
}

function opCases(): Case[] {
  const x = (h: number, c: number): tf.Tensor4D => tf.randomNormal([2, h, h, c], 0, 1, 'float32', 3);
  const cases: Case[] = [];
  for (const activation of ['linear', 'relu', 'relu6', 'leakyrelu'] as const) {
    for (const [strides, pad] of [[1, 'same'], [2, 'valid']] as const) {
      cases.push({
        name: `fused.conv2d ${activation} s${strides} ${pad} (x, filter, bias)`,
        run: () => {
          const f = tf.randomNormal([3, 3, 4, 6]);
          const b = tf.randomNormal([6]);
          tf.grads((xx: tf.Tensor, ff: tf.Tensor, bb: tf.Tensor) => tf.sum(tf.fused.conv2d({
            x: xx as tf.Tensor4D, filter: ff as tf.Tensor4D, bias: bb, strides, pad, activation, leakyreluAlpha: 0.2,
          })))([x(7, 4), f, b]);
        },
      });
      for (const multiplier of [1, 2]) {
        cases.push({
          name: `fused.depthwiseConv2d ${activation} s${strides} ${pad} m${multiplier} (x, filter, bias)`,
          run: () => {
            const f = tf.randomNormal([3, 3, 4, multiplier]);
            const b = tf.randomNormal([4 * multiplier]);
            tf.grads((xx: tf.Tensor, ff: tf.Tensor, bb: tf.Tensor) => tf.sum(tf.fused.depthwiseConv2d({
              x: xx as tf.Tensor4D, filter: ff as tf.Tensor4D, bias: bb, strides, pad, activation, leakyreluAlpha: 0.2,
            })))([x(7, 4), f, b]);
          },
        });
      }
    }
  }
  cases.push({
    name: 'fused.matMul relu + bias (a, b, bias)',
    run: () => {
      tf.grads((a: tf.Tensor, b: tf.Tensor, bias: tf.Tensor) => tf.sum(tf.fused.matMul({
        a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias, activation: 'relu',
      })))([tf.randomNormal([2, 5]), tf.randomNormal([5, 3]), tf.randomNormal([3])]);
    },
  });
  cases.push({
    name: 'conv2d dilation 2 (x only)',
    run: () => { tf.grad((xx: tf.Tensor) => tf.sum(tf.conv2d(xx as tf.Tensor4D, tf.randomNormal([3, 3, 4, 5]), 1, 'same', 'NHWC', 2)))(x(9, 4)); },
  });
  cases.push({
    name: 'depthwiseConv2d dilation 2 (x only)',
    run: () => { tf.grad((xx: tf.Tensor) => tf.sum(tf.depthwiseConv2d(xx as tf.Tensor4D, tf.randomNormal([3, 3, 4, 2]), 1, 'same', 'NHWC', 2)))(x(9, 4)); },
  });
  return cases;
}

// ------------------------------------------------------- discovery loop

/** Runs `kernelName` on the cpu backend with copies of the wasm inputs. */
function registerCpuProxy(kernelName: string): void {
  tf.registerKernel({
    kernelName,
    backendName: 'wasm',
    kernelFunc: ({ inputs, attrs, backend }) => {
      const cpu = tf.findBackend('cpu') as tf.KernelBackend;
      const wasm = backend as tf.KernelBackend & {
        makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number, values?: tf.backend_util.BackendValues): tf.TensorInfo;
      };
      const cpuInputs: Record<string, tf.TensorInfo> = {};
      for (const [name, info] of Object.entries(inputs)) {
        if (info === undefined) continue;
        const values = wasm.readSync(info.dataId);
        cpuInputs[name] = { dataId: cpu.write(values, info.shape, info.dtype), shape: info.shape, dtype: info.dtype };
      }
      const kernel = tf.getKernel(kernelName, 'cpu');
      const out = kernel.kernelFunc({ inputs: cpuInputs, attrs: attrs ?? {}, backend: cpu });
      const outs = Array.isArray(out) ? out : [out];
      const results = outs.map((o) => {
        const values = cpu.readSync(o.dataId);
        cpu.disposeData(o.dataId);
        return wasm.makeOutput(o.shape, o.dtype, undefined, values);
      });
      for (const info of Object.values(cpuInputs)) cpu.disposeData(info.dataId);
      return Array.isArray(out) ? results : results[0]!;
    },
  });
  proxied.add(kernelName);
}

interface Outcome {
  missing: string[];
  error?: string;
}

function discover(c: Case): Outcome {
  const missing: string[] = [];
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      tf.tidy(c.run);
      return { missing };
    } catch (error) {
      const message = (error as Error).message;
      const kernel = MISSING.exec(message)?.[1];
      if (kernel === undefined) return { missing, error: message.split('\n')[0] ?? message };
      missing.push(kernel);
      if (!proxied.has(kernel)) registerCpuProxy(kernel);
    }
  }
  return { missing, error: 'gave up after 20 missing kernels' };
}

async function main(): Promise<void> {
  tf.enableProdMode();
  await import('@tensorflow/tfjs-backend-wasm');
  await tf.setBackend('cpu'); // initialise the proxy target first
  if (!(await tf.setBackend('wasm'))) throw new Error('wasm backend failed to initialise');
  const withCamviz = process.argv.includes('--camviz');
  if (withCamviz) registerWasmGradientKernels();
  console.log(`wasm backend, ${withCamviz ? 'with' : 'without'} camviz gradient kernels\n`);
  const union = new Map<string, Set<string>>();
  const otherFailures: string[] = [];
  const cases = [...modelSpecs().flatMap(modelCases), ...opCases()];
  for (const c of cases) {
    // Proxies from earlier cases would hide this case's misses.
    for (const k of proxied) tf.unregisterKernel(k, 'wasm');
    proxied.clear();
    const before = tf.memory().numTensors;
    const outcome = discover(c);
    const leaked = tf.memory().numTensors - before;
    const status = outcome.error !== undefined ? `ERROR ${outcome.error}` : 'ok';
    const miss = outcome.missing.length > 0 ? `missing: ${outcome.missing.join(', ')}` : 'nothing missing';
    console.log(`${c.name}\n    ${miss}; ${status}${leaked !== 0 ? `; ${leaked} tensors left` : ''}`);
    if (outcome.error !== undefined) otherFailures.push(`${c.name}: ${outcome.error}`);
    for (const k of outcome.missing) {
      const users = union.get(k) ?? new Set<string>();
      users.add(c.name.split(':')[0]!.split(' ')[0]!);
      union.set(k, users);
    }
  }
  console.log('\nMissing on wasm, with the models/ops that need them:');
  if (union.size === 0) console.log('  none');
  for (const [k, users] of union) console.log(`  ${k}: ${[...users].join(', ')}`);
  if (otherFailures.length > 0) {
    console.log('\nFailures that are not missing kernels (tfjs-core refuses before any kernel runs):');
    for (const f of otherFailures) console.log(`  ${f}`);
  }
}

await main();
