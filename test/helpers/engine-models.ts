/**
 * Models for the engine tests: a small ONNX classifier that both engines
 * run, and the same with a defect ONNX Runtime refuses but camviz's importer
 * does not mind.
 */
import { type TestDim, type TestNode, imageInputValue, onnxModelBytes } from './onnx.js';

/**
 * A small classifier: Conv 3x3 -> Relu -> GlobalAveragePool -> Flatten ->
 * Gemm, on a 16x16 input. `reluAttribute` adds an attribute Relu does not
 * have; 'reshape-to-batch-1' flattens with a Reshape to [1, 4], so that
 * the model takes one image at a time though its input's batch is
 * dynamic; `sides` are the input's [height, width] as declared.
 */
export function tinyClassifier(reluAttribute = false, flatten: 'flatten' | 'reshape-to-batch-1' = 'flatten', sides: [TestDim, TestDim] = [16, 16]): Uint8Array {
  const nodes: TestNode[] = [
    { opType: 'Conv', inputs: ['input', 'w', 'b'], outputs: ['conv'], name: 'conv', attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }] },
    { opType: 'Relu', inputs: ['conv'], outputs: ['relu'], name: 'relu', ...(reluAttribute ? { attributes: [{ name: 'not_a_relu_attribute', i: 1 }] } : {}) },
    { opType: 'GlobalAveragePool', inputs: ['relu'], outputs: ['gap'], name: 'gap' },
    // 'reshape-to-batch-1': what PyTorch's x.view(1, -1) exports; the input still says any batch.
    flatten === 'flatten'
      ? { opType: 'Flatten', inputs: ['gap'], outputs: ['flat'], name: 'flat' }
      : { opType: 'Reshape', inputs: ['gap', 'one_row'], outputs: ['flat'], name: 'flat' },
    { opType: 'Gemm', inputs: ['flat', 'fw', 'fb'], outputs: ['logits'], name: 'fc', attributes: [{ name: 'transB', i: 1 }] },
  ];
  return onnxModelBytes({
    nodes,
    inputs: [{ ...imageInputValue(16), shape: ['batch', 3, ...sides] }],
    outputs: [{ name: 'logits', shape: ['batch', 2] }],
    initializers: [
      { name: 'w', dims: [4, 3, 3, 3], values: Array.from({ length: 108 }, (_, i) => Math.sin(i * 0.7)) },
      { name: 'b', dims: [4], values: [0.1, -0.1, 0.2, 0] },
      { name: 'fw', dims: [2, 4], values: [1, -1, 0.5, 2, -0.5, 1, 1, -1] },
      { name: 'fb', dims: [2], values: [0, 0.1] },
      ...(flatten === 'flatten' ? [] : [{ name: 'one_row', dims: [2], dataType: 7, values: [1, 4] }]),
    ],
  });
}

