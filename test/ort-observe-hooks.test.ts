/**
 * Observe-only forward hooks on the ONNX Runtime executor
 * (src/executor/ort.ts observedNodes, src/hooks/hooks.ts): ORT still runs
 * the passes (the layer's tfjs `call` never runs), fetching what the hooks
 * see and firing them after its pass with the values the Network's run
 * gives them; each fires once per pass; an observe-only hook that returns
 * a value is an error on both engines; any other hook, a hooked layer that
 * reads the model's input, and the tape after the sources send the call to
 * the Network. Skips when onnxruntime-node does not load.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../src/engine/backend.js';
import { loadOnnxRuntime } from '../src/engine/onnxruntime.js';
import { type CamvizModel, loadModel } from '../src/model/load.js';
import { onnxTrunkOf } from '../src/model/onnx/trunk.js';
import { type OrtExecutor, createOrtExecutor } from '../src/executor/ort.js';
import { type ForwardValues, type Objective, type ScoreTerm, disposeValues } from '../src/executor/network.js';
import type { GraphNode } from '../src/executor/graph.js';
import { type ForwardHook, type HookHandle, registerForwardHook, registerForwardPreHook, withHooks } from '../src/hooks/index.js';
import { maxAbsDifference } from './helpers/numeric.js';
import { onnxModelBytes } from './helpers/onnx.js';
import { CHANNELS, SIZE, randoms, tinyByHand, tinyModel } from './helpers/tiny-onnx.js';

const ort = loadOnnxRuntime();
const skip: string | false = ort.available ? false : `onnxruntime-node does not load: ${ort.reason}`;

interface Seen {
  inputs: Float32Array[];
  output: Float32Array;
}

describe('observe-only forward hooks on ONNX Runtime (the tiny Conv/Relu/GAP/Gemm graph)', { skip }, () => {
  let folder: string;
  let model: CamvizModel;
  let executor: OrtExecutor;
  let input: tf.Tensor4D;
  let hand: { conv: Float64Array; scores: Float64Array };
  const node = (name: string): GraphNode => executor.graph.findNodes(name).at(-1)!;

  before(async () => {
    await useBackend('wasm');
    folder = await mkdtemp(join(tmpdir(), 'camviz-ort-observe-'));
    const path = join(folder, 'tiny.onnx');
    await writeFile(path, onnxModelBytes(tinyModel()));
    model = await loadModel(path, { preprocess: 'none' });
    const network = model.network();
    executor = await createOrtExecutor(network, await onnxTrunkOf(path, model.meta.sha256, network.graph, model.meta.inputSize), { file: path });
    input = tf.tensor4d(randoms(2 * SIZE * SIZE * 3, 21), [2, SIZE, SIZE, 3]);
    hand = tinyByHand(input.dataSync() as Float32Array, 2);
  });
  after(async () => {
    input?.dispose();
    model?.dispose();
    await rm(folder, { recursive: true, force: true });
  });

  /** Registers `hook` (observe-only unless said otherwise) on the layer of `name`, and counts the layer's tfjs calls. */
  function watch(name: string, observeOnly = true, hook?: ForwardHook): { seen: Seen[]; tfjsCalls: () => number; handle: HookHandle } {
    const layer = node(name).layer;
    const seen: Seen[] = [];
    const handle = registerForwardHook(
      layer,
      hook ??
        ((_layer, inputs, output) => {
          seen.push({ inputs: inputs.map((tensor) => Float32Array.from(tensor.dataSync())), output: Float32Array.from((output as tf.Tensor).dataSync()) });
        }),
      { observeOnly },
    );
    // The hook's wrapper is the layer's own `call`: counting its calls counts tfjs running the layer.
    const view = layer as unknown as { call: (...args: unknown[]) => unknown };
    const hooked = view.call;
    let calls = 0;
    view.call = function counted(this: unknown, ...args: unknown[]): unknown {
      calls++;
      return hooked.apply(this, args);
    };
    return { seen, tfjsCalls: () => calls, handle };
  }

  const closeTo = (actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void => {
    const difference = maxAbsDifference(actual, expected);
    assert.ok(difference <= 1e-5, `${what}: differs by ${difference}`);
  };
  const relu = (values: Float64Array): Float64Array => values.map((value) => Math.max(value, 0));

  test('forward: ORT runs it (no tfjs call of the layer) and the hook sees the relu\'s input and output once, as on the Network', async () => {
    const onOrt = watch('relu');
    try {
      const values = await executor.forward(input);
      disposeValues(values);
      assert.equal(onOrt.tfjsCalls(), 0, 'the layer did not run on tfjs');
      assert.equal(onOrt.seen.length, 1);
      closeTo(onOrt.seen[0]!.inputs[0]!, hand.conv, 'input (the conv output) vs hand');
      closeTo(onOrt.seen[0]!.output, relu(hand.conv), 'output vs hand');
      const onNetwork = await executor.network.forward(input);
      disposeValues(onNetwork);
      assert.equal(onOrt.tfjsCalls(), 1, 'the Network runs the layer');
      assert.equal(onOrt.seen.length, 2);
      closeTo(onOrt.seen[0]!.output, onOrt.seen[1]!.output, 'ORT vs the Network');
    } finally {
      onOrt.handle.remove();
    }
  });

  test('Grad-CAM\'s closed form: ORT runs the pass, hooks on the relu and the pooling fire once each, the objective is not taped', async () => {
    const onRelu = watch('relu');
    const onPool = watch('pool');
    const terms: ScoreTerm[] = [{ image: 1, classIndex: 2, weight: 1 }];
    const closedOnly: Objective = Object.assign(
      (): tf.Scalar => {
        throw new Error('taped');
      },
      { scoreTerms: () => terms },
    );
    try {
      const result = await executor.backward(input, [closedOnly], { sources: [node('relu')] });
      disposeValues(result.values);
      tf.dispose(result.gradients.flat());
      assert.deepEqual([onRelu.tfjsCalls(), onPool.tfjsCalls()], [0, 0]);
      assert.deepEqual([onRelu.seen.length, onPool.seen.length], [1, 1]);
      closeTo(onPool.seen[0]!.inputs[0]!, relu(hand.conv), 'the pooling\'s input vs hand');
      assert.equal(onPool.seen[0]!.output.length, 2 * CHANNELS);
    } finally {
      onRelu.handle.remove();
      onPool.handle.remove();
    }
  });

  test('the tape after the sources, a hook that is not observe-only, another kind of hook: the Network runs the layer, the hook fires once', async () => {
    const taped: Objective = (values: ForwardValues) => tf.tidy(() => tf.sum(values.scores));
    const cases: [string, () => { tfjsCalls: () => number; remove: () => void; fired: () => number }, (values?: unknown) => Promise<void>][] = [
      ['taped objective', () => wrap(watch('relu')), async () => finish(await executor.backward(input, [taped], { sources: [node('relu')] }))],
      ['replacing hook', () => wrap(watch('relu', false)), async () => disposeValues(await executor.forward(input))],
      [
        'a pre-hook beside an observer',
        () => {
          const watched = wrap(watch('relu'));
          const pre = registerForwardPreHook(node('pool').layer, () => undefined);
          return { ...watched, remove: () => (watched.remove(), pre.remove()) };
        },
        async () => disposeValues(await executor.forward(input)),
      ],
    ];
    for (const [what, start, run] of cases) {
      const watched = start();
      try {
        await run();
        assert.equal(watched.tfjsCalls(), 1, `${what}: the Network ran the layer`);
        assert.equal(watched.fired(), 1, `${what}: the hook fired once`);
      } finally {
        watched.remove();
      }
    }
  });

  test('an observer on the conv, which reads the model\'s input: ORT runs it, the hook gets the call\'s input tensor as tfjs gives it; forwardHost (data, no tensor) makes one', async () => {
    const watched = watch('conv');
    try {
      disposeValues(await executor.forward(input));
      assert.equal(watched.tfjsCalls(), 0, 'the layer did not run on tfjs');
      assert.equal(watched.seen.length, 1);
      assert.deepEqual(Array.from(watched.seen[0]!.inputs[0]!), Array.from(input.dataSync()), 'the input as given');
      closeTo(watched.seen[0]!.output, hand.conv, 'output vs hand');
      // ORT cannot fetch the model's input: host data goes through a tensor of it, and so still to ORT.
      assert.equal(executor.hostInputLayout(SIZE, SIZE), undefined);
      const nhwc = Float32Array.from(input.dataSync());
      disposeValues(await executor.forwardHost(nhwc, 'same', [2, SIZE, SIZE, 3]));
      assert.equal(watched.tfjsCalls(), 0, 'the layer did not run on tfjs');
      assert.equal(watched.seen.length, 2);
      assert.deepEqual(Array.from(watched.seen[1]!.inputs[0]!), Array.from(input.dataSync()));
    } finally {
      watched.handle.remove();
    }
  });

  test('forwardHost (Score-CAM\'s passes, NCHW data): the hook fires once a call, with the values forward gives it', async () => {
    const watched = watch('relu');
    try {
      const layout = executor.hostInputLayout(SIZE, SIZE);
      assert.equal(layout, 'nchw', 'ORT takes the host data');
      const nhwc = input.dataSync() as Float32Array;
      const nchw = new Float32Array(nhwc.length);
      for (let b = 0; b < 2; b++) for (let p = 0; p < SIZE * SIZE; p++) for (let c = 0; c < 3; c++) nchw[(b * 3 + c) * SIZE * SIZE + p] = nhwc[(b * SIZE * SIZE + p) * 3 + c]!;
      disposeValues(await executor.forwardHost(nchw, 'nchw', [2, SIZE, SIZE, 3]));
      assert.equal(watched.tfjsCalls(), 0, 'the layer did not run on tfjs');
      assert.equal(watched.seen.length, 1);
      closeTo(watched.seen[0]!.output, relu(hand.conv), 'output vs hand');
    } finally {
      watched.handle.remove();
    }
  });

  test('withHooks with observeOnly: ORT runs the passes; neither the values fetched for the hooks nor what a hook makes and does not keep is left behind', async () => {
    const layer = node('relu').layer;
    let fired = 0;
    const view = layer as unknown as { call: (...args: unknown[]) => unknown };
    const before = tf.memory().numTensors;
    let tfjsCalls = 0;
    // The hook makes a tensor and keeps none: tfjs runs a layer's hooks inside a tidy, and so must ORT's firing.
    const observer = (_layer: unknown, _inputs: unknown, output: unknown): void => {
      fired++;
      tf.mean(output as tf.Tensor);
    };
    await withHooks([{ layer, forward: observer, observeOnly: true }], async () => {
      const hooked = view.call;
      view.call = function counted(this: unknown, ...args: unknown[]): unknown {
        tfjsCalls++;
        return hooked.apply(this, args);
      };
      for (let i = 0; i < 3; i++) disposeValues(await executor.forward(input));
    });
    assert.equal(fired, 3);
    assert.equal(tfjsCalls, 0, 'the layer did not run on tfjs');
    assert.equal(tf.memory().numTensors, before);
  });

  test('an observe-only hook that returns a value is an error, on ORT and on the Network', async () => {
    const returning: ForwardHook = (_layer, _inputs, output) => output;
    const watched = watch('relu', true, returning);
    try {
      await assert.rejects(executor.forward(input), /observe-only forward hook on .* returned a value/);
      await assert.rejects(executor.network.forward(input), /observe-only forward hook on .* returned a value/);
    } finally {
      watched.handle.remove();
    }
  });
});

function wrap(watched: { seen: Seen[]; tfjsCalls: () => number; handle: HookHandle }): { tfjsCalls: () => number; remove: () => void; fired: () => number } {
  return { tfjsCalls: watched.tfjsCalls, remove: () => watched.handle.remove(), fired: () => watched.seen.length };
}

function finish(result: { values: ForwardValues; gradients: tf.Tensor[][] }): void {
  disposeValues(result.values);
  tf.dispose(result.gradients.flat());
}
