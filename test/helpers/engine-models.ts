/**
 * Models for the engine tests: a small ONNX classifier that both engines
 * run, and the same with a defect ONNX Runtime refuses but camviz's importer
 * does not mind.
 */
import { type TestNode, imageInputValue, onnxModelBytes } from './onnx.js';

/**
 * A small classifier: Conv 3x3 -> Relu -> GlobalAveragePool -> Flatten ->
 * Gemm. `reluAttribute` adds an attribute Relu does not have.
 */
export function tinyClassifier(reluAttribute = false): Uint8Array {
  const nodes: TestNode[] = [
    { opType: 'Conv', inputs: ['input', 'w', 'b'], outputs: ['conv'], name: 'conv', attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }] },
    { opType: 'Relu', inputs: ['conv'], outputs: ['relu'], name: 'relu', ...(reluAttribute ? { attributes: [{ name: 'not_a_relu_attribute', i: 1 }] } : {}) },
    { opType: 'GlobalAveragePool', inputs: ['relu'], outputs: ['gap'], name: 'gap' },
    { opType: 'Flatten', inputs: ['gap'], outputs: ['flat'], name: 'flat' },
    { opType: 'Gemm', inputs: ['flat', 'fw', 'fb'], outputs: ['logits'], name: 'fc', attributes: [{ name: 'transB', i: 1 }] },
  ];
  return onnxModelBytes({
    nodes,
    inputs: [imageInputValue(16)],
    outputs: [{ name: 'logits', shape: ['batch', 2] }],
    initializers: [
      { name: 'w', dims: [4, 3, 3, 3], values: Array.from({ length: 108 }, (_, i) => Math.sin(i * 0.7)) },
      { name: 'b', dims: [4], values: [0.1, -0.1, 0.2, 0] },
      { name: 'fw', dims: [2, 4], values: [1, -1, 0.5, 2, -0.5, 1, 1, -1] },
      { name: 'fb', dims: [2], values: [0, 0.1] },
    ],
  });
}

