/**
 * The gradients TensorFlow defines, for the tfjs kernels that Keras files,
 * TF.js layers models and graph models run inside camviz's executor, where
 * tfjs' own differ or are missing:
 * - Max, Min, MaxPool where values tie (engine/max-gradients.ts);
 * - Conv2D and DepthwiseConv2dNative with dilation > 1, whose gradient tfjs
 *   refuses ("dilation rates greater than 1 are not yet supported in
 *   gradients"; engine/dilated-conv.ts), and the fused convolutions of a
 *   layer known to be dilated (`fusedDilatedConvGradConfig`);
 * - Relu6 at exactly 0 and 6: TensorFlow's Relu6Grad passes the gradient
 *   where 0 < x < 6, tfjs' where 0 < x <= 6; and Keras' ReLU(max_value=6),
 *   which TensorFlow computes as tf.nn.relu6 and tfjs-layers as
 *   clipByValue(relu(x), 0, 6), whose ClipByValue passes it at 6
 *   (`RELU6_CLIP_GRADIENT`, for that layer only: a clip_by_value's own
 *   gradient, in TensorFlow as in tfjs, passes it at both bounds).
 *
 * The executor runs each layer under `withTensorFlowGradients`, which
 * registers the rules for that synchronous call only and then puts back
 * what was there (tfjs reads a kernel's gradient when the op is recorded
 * on the tape, not when it is differentiated), so that tfjs is unchanged
 * for anything else that runs in the process.
 */
import * as tf from './tf.js';
import { DILATED_CONV_GRADIENTS } from './dilated-conv.js';
import { BATCH_MAT_MUL_GRADIENT } from './wasm-matmul.js';
import { MAX_GRADIENTS } from './max-gradients.js';
import { PROD_GRADIENT } from './prod-gradient.js';

/** dy where lower < x < upper (TensorFlow's Relu6Grad with lower 0 and upper 6), 0 elsewhere, at the bounds too. */
function insideOpenInterval(dy: tf.Tensor, x: tf.Tensor, lower: number, upper: number): tf.Tensor {
  return tf.tidy(() => tf.mul(dy, tf.cast(tf.logicalAnd(tf.greater(x, lower), tf.less(x, upper)), 'float32')));
}

/** TensorFlow's Relu6Grad for the Relu6 kernel: no gradient at 0 or at 6. */
const RELU6_GRADIENT: tf.GradConfig = {
  kernelName: tf.Relu6,
  inputsToSave: ['x'],
  gradFunc: (dy, saved) => {
    const [x] = saved as [tf.Tensor];
    return { x: () => insideOpenInterval(dy as tf.Tensor, x, 0, 6) };
  },
};

/**
 * TensorFlow's Relu6Grad for the ClipByValue(0, 6) of tfjs-layers' ReLU
 * layer with maxValue 6 (its input is relu(x): no gradient at 6, nor at 0,
 * where the relu's gradient is 0 anyway). Registered for that layer alone.
 */
export const RELU6_CLIP_GRADIENT: tf.GradConfig = {
  kernelName: tf.ClipByValue,
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved as [tf.Tensor];
    const { clipValueMin, clipValueMax } = attrs as unknown as { clipValueMin: number; clipValueMax: number };
    return { x: () => insideOpenInterval(dy as tf.Tensor, x, clipValueMin, clipValueMax) };
  },
};

/**
 * The rules every layer runs under: TensorFlow's, BatchMatMul's with
 * tfjs' values computed faster on wasm (wasm-matmul.ts; ONNX layers'
 * MatMul and Gemm too, which have no custom gradient of their own), and
 * Prod's, whose tfjs rule fails without tfjs' chained ops (prod-gradient.ts).
 */
export const TENSORFLOW_GRADIENTS: readonly tf.GradConfig[] = [
  ...MAX_GRADIENTS,
  ...DILATED_CONV_GRADIENTS,
  RELU6_GRADIENT,
  BATCH_MAT_MUL_GRADIENT,
  PROD_GRADIENT,
];

/**
 * Runs `run` (synchronous) with `rules` registered: ops of their kernels
 * recorded on a tape meanwhile are differentiated by them. What was
 * registered before is put back afterwards (a name with none before has
 * none again), whatever happens; calls nest.
 */
export function withTensorFlowGradients<T>(run: () => T, rules: readonly tf.GradConfig[] = TENSORFLOW_GRADIENTS): T {
  const previous = rules.map((config) => tf.getGradient(config.kernelName));
  for (const config of rules) tf.registerGradient(config);
  try {
    return run();
  } finally {
    // In reverse, so that a name given twice ends with what it had before the first.
    for (let i = rules.length - 1; i >= 0; i--) {
      const before = previous[i];
      if (before === undefined) tf.unregisterGradient(rules[i]!.kernelName);
      else tf.registerGradient(before);
    }
  }
}
