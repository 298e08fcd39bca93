/**
 * The ONNX Runtime executor's own input buffers (src/executor/ort.ts,
 * hostInputBuffer and onnxFeed): a caller's buffer that goes through a
 * forward pass is given back once, by forwardHost, and never handed to two
 * takers. On the cpu backend a tensor made from an array reads back that
 * very array, so the pass's feed is the caller's own buffer there.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadOnnxRuntime } from '../src/engine/onnxruntime.js';
import { useBackend } from '../src/engine/backend.js';
import { createOrtExecutor } from '../src/executor/ort.js';
import { disposeValues } from '../src/executor/network.js';
import { registerForwardHook } from '../src/hooks/index.js';
import { loadModel } from '../src/model/load.js';
import { onnxTrunkOfModel } from '../src/model/onnx-writer/index.js';

const ort = loadOnnxRuntime();

test('a forwardHost buffer that goes through the tensor path (a hook on the input layer) comes back once', { skip: ort.available ? false : `onnxruntime-node does not load: ${ort.reason}` }, async () => {
  await useBackend('cpu');
  const model = await loadModel('shapes');
  const network = model.network();
  const executor = await createOrtExecutor(network, await onnxTrunkOfModel(model, { cache: false }));
  try {
    const { height, width } = model.meta.inputSize;
    const layout = executor.hostInputLayout(height, width);
    assert.ok(layout !== undefined, 'ONNX Runtime serves host input for this model');
    const size = 2 * height * width * 3;
    const buffer = executor.hostInputBuffer(size);
    for (let i = 0; i < size; i++) buffer[i] = (i % 97) / 97;
    // An observe-only hook on the layer that reads the model's input sends forwardHost through a tensor (as one registered during a Score-CAM run).
    const first = network.graph.nodes.find((node) => node.inputs.some((key) => network.graph.inputKeys.includes(key)))!;
    const handle = registerForwardHook(first.layer, () => undefined, { observeOnly: true });
    try {
      assert.equal(executor.hostInputLayout(height, width), undefined, 'the hook takes host input off ONNX Runtime');
      disposeValues(await executor.forwardHost(buffer, layout, [2, height, width, 3]));
    } finally {
      handle.remove();
    }
    const [a, b] = [executor.hostInputBuffer(size), executor.hostInputBuffer(size)];
    assert.equal(a, buffer, 'forwardHost gave its buffer back');
    assert.notEqual(b, buffer, 'only once: a second taker gets another buffer');
  } finally {
    await executor.dispose();
    model.dispose();
    await useBackend('wasm');
  }
});
