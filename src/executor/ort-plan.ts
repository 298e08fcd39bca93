/**
 * A planned ONNX Runtime pass (issue 12's cold start): what the ONNX
 * Runtime executor knows of a model's first session and of a target
 * layer's pooled linear head, as plain data (OrtExecutor.passPlan makes
 * it), and the pass run from that alone, without the executor, its graph,
 * the model's layers or tfjs: the session from the optimised graph a
 * previous run saved, the image fed in the graph input's layout, the
 * target's activations and the class scores fetched. tasks/planned-cam.ts
 * runs Grad-CAM on it.
 */
import { type OrtModule, type OrtSession, type OrtTensor, withSession } from '../engine/onnxruntime.js';
import type { PooledHead } from './closed-form.js';
import type { OnnxValueLayout } from './onnx-trunk.js';
import { transposeMatrices } from './transpose.js';

export interface OrtPassPlan {
  /** The executor's first session: its key (which names the saved optimised graph) and input. */
  readonly sessionKey: string;
  readonly inputName: string;
  /** 'nchw': the graph takes NCHW, and camviz's NHWC input is transposed first; 'same': NHWC as it is. */
  readonly inputLayout: OnnxValueLayout;
  readonly inputSize: { readonly height: number; readonly width: number };
  /** The target layer's activations, one of the session's outputs. */
  readonly activationName: string;
  /** Their channel axis as ONNX Runtime returns them: 1 (NCHW) or 3 (NHWC). */
  readonly channelAxis: 1 | 3;
  /** The class scores (pre-softmax), one of the session's outputs. */
  readonly scoresName: string;
  /** The model's own probabilities (its softmax output), one of the session's outputs; absent: a softmax of the scores. */
  readonly probabilitiesName?: string;
  /** The classifier from the pooled activations to the scores: W[k, c] at `k + c * channels` (no kernel: the identity). */
  readonly head: PooledHead;
}

/** One planned pass of one image. */
export interface PlannedPass {
  /** [1, a, b, c]: the channels on `plan.channelAxis`. */
  readonly activations: Float32Array;
  readonly dims: readonly [number, number, number, number];
  readonly scores: Float32Array;
  /** The model's own probabilities, when the plan names them. */
  readonly probabilities?: Float32Array;
}

/** No model bytes: a planned pass loads its session from the saved graph, or not at all. */
function noModel(): Uint8Array {
  throw new Error('the saved optimised graph of the planned session is missing or damaged');
}

/**
 * Runs `use` with the plan's session, made from the graph saved in
 * `folder` (one per process, as the executor's: engine/onnxruntime.ts);
 * rejects when that graph is missing or does not load.
 */
export function withPlannedSession<T>(ort: OrtModule, plan: OrtPassPlan, threads: number, folder: string, use: (session: OrtSession) => Promise<T>): Promise<T> {
  // One pass per process: a memory pattern planned from it would serve no second one (as sessions made ahead).
  return withSession(ort, plan.sessionKey, noModel, threads, use, folder, { memoryPattern: false });
}

/** One pass of `input` (the preprocessed image, NHWC [1, H, W, 3]) on the plan's session. */
export async function runPlannedPass(ort: OrtModule, plan: OrtPassPlan, threads: number, folder: string, input: Float32Array): Promise<PlannedPass> {
  const { height, width } = plan.inputSize;
  if (input.length !== height * width * 3) throw new Error(`a planned pass takes ${height * width * 3} input values, not ${input.length}`);
  const feed =
    plan.inputLayout === 'nchw'
      ? new ort.Tensor('float32', transposeMatrices(input, 1, height * width, 3), [1, 3, height, width])
      : new ort.Tensor('float32', input, [1, height, width, 3]);
  return withPlannedSession(ort, plan, threads, folder, async (session) => {
    const fetches = [plan.activationName, plan.scoresName, ...(plan.probabilitiesName === undefined ? [] : [plan.probabilitiesName])];
    const results = await session.run({ [plan.inputName]: feed }, fetches);
    try {
      const pass = checkedPass(plan, results[plan.activationName], results[plan.scoresName]);
      return plan.probabilitiesName === undefined ? pass : { ...pass, probabilities: checkedRow(plan, results[plan.probabilitiesName], 'probabilities') };
    } finally {
      for (const result of Object.values(results)) result.dispose();
    }
  });
}

/** The pass's values, copied out of ONNX Runtime's buffers, once their shapes are the plan's. */
function checkedPass(plan: OrtPassPlan, activations: OrtTensor | undefined, scores: OrtTensor | undefined): PlannedPass {
  if (activations?.type !== 'float32' || scores?.type !== 'float32') throw new Error('the planned session did not return float32 activations and scores');
  const [batch, a, b, c] = activations.dims;
  const channels = plan.channelAxis === 1 ? a : c;
  if (activations.dims.length !== 4 || batch !== 1 || channels !== plan.head.channels) {
    throw new Error(`the planned activations are [${activations.dims.join(', ')}], not one image of ${plan.head.channels} channels`);
  }
  return { activations: (activations.data as Float32Array).slice(), dims: [1, a!, b!, c!], scores: checkedRow(plan, scores, 'scores') };
}

/** One image's row of class values (any shape of one image and `classes` values: MobileNet v1's softmax is [1, 1, 1, 1001]), copied out. */
function checkedRow(plan: OrtPassPlan, tensor: OrtTensor | undefined, what: string): Float32Array {
  const data = tensor?.data;
  if (tensor?.type !== 'float32' || !(data instanceof Float32Array) || tensor.dims[0] !== 1 || data.length !== plan.head.classes) {
    throw new Error(`the planned ${what} are not one image of ${plan.head.classes} float32 classes`);
  }
  return data.slice();
}
