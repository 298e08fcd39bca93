/**
 * The small networks the targets tests compute by hand: a trunk `conv`
 * (1x1, no bias, linear) on a side x side image, so that its activations
 * are A_k(p) = sum_i kernel[i][k] x_i(p), and heads on it. Each test file
 * gives its own weights; the shapes of the networks are shared here.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

/** The trunk's size and 1x1 kernel: kernel[input channel][k]. */
export interface TrunkSpec {
  readonly side: number;
  readonly kernel: readonly (readonly number[])[];
}

interface Trunk {
  readonly input: tfl.SymbolicTensor;
  readonly features: tfl.SymbolicTensor;
  /** Sets the trunk's kernel: call once the model is built. */
  readonly setKernel: () => void;
}

const channelsOf = (spec: TrunkSpec): { inputs: number; filters: number } => ({ inputs: spec.kernel.length, filters: spec.kernel[0]!.length });

function trunk(spec: TrunkSpec): Trunk {
  const { inputs, filters } = channelsOf(spec);
  const input = tfl.input({ shape: [spec.side, spec.side, inputs] });
  const conv = tfl.layers.conv2d({ filters, kernelSize: 1, useBias: false, name: 'conv' });
  const setKernel = (): void => conv.setWeights([tf.tensor4d(spec.kernel.flat(), [1, 1, inputs, filters])]);
  return { input, features: conv.apply(input) as tfl.SymbolicTensor, setKernel };
}

const pooled = (features: tfl.SymbolicTensor): tfl.SymbolicTensor => tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(features) as tfl.SymbolicTensor;

/** GAP -> Dense 1 `logit`, sigmoid; weights[k]. */
export function sigmoidModel(spec: TrunkSpec, weights: readonly number[]): tfl.LayersModel {
  const { input, features, setKernel } = trunk(spec);
  const dense = tfl.layers.dense({ units: 1, activation: 'sigmoid', useBias: false, name: 'logit' });
  const model = tfl.model({ inputs: input, outputs: dense.apply(pooled(features)) as tfl.SymbolicTensor });
  setKernel();
  dense.setWeights([tf.tensor2d(weights.slice(), [weights.length, 1])]);
  return model;
}

/** GAP -> Dense `probs` (softmax) and Dense `value` (linear), two outputs; weights[k][unit]. */
export function twoOutputModel(spec: TrunkSpec, probsWeights: readonly (readonly number[])[], valueWeights: readonly (readonly number[])[]): tfl.LayersModel {
  const { input, features, setKernel } = trunk(spec);
  const gap = pooled(features);
  const probs = tfl.layers.dense({ units: probsWeights[0]!.length, activation: 'softmax', useBias: false, name: 'probs' });
  const value = tfl.layers.dense({ units: valueWeights[0]!.length, useBias: false, name: 'value' });
  const model = tfl.model({ inputs: input, outputs: [probs.apply(gap) as tfl.SymbolicTensor, value.apply(gap) as tfl.SymbolicTensor] });
  setKernel();
  probs.setWeights([tf.tensor2d(probsWeights.map((row) => row.slice()))]);
  value.setWeights([tf.tensor2d(valueWeights.map((row) => row.slice()))]);
  return model;
}

/** A 1x1-conv segmentation head `seg`, softmax over its classes; weights[k][class]. */
export function segmentationModel(spec: TrunkSpec, weights: readonly (readonly number[])[]): tfl.LayersModel {
  const { input, features, setKernel } = trunk(spec);
  const classes = weights[0]!.length;
  const seg = tfl.layers.conv2d({ filters: classes, kernelSize: 1, useBias: false, activation: 'softmax', name: 'seg' });
  const model = tfl.model({ inputs: input, outputs: seg.apply(features) as tfl.SymbolicTensor });
  setKernel();
  seg.setWeights([tf.tensor4d(weights.flat(), [1, 1, channelsOf(spec).filters, classes])]);
  return model;
}

/** A pooled embedding `gap` before a Dense softmax classifier `logits`; weights[k][class]. */
export function embeddingModel(spec: TrunkSpec, weights: readonly (readonly number[])[]): tfl.LayersModel {
  const { input, features, setKernel } = trunk(spec);
  const logits = tfl.layers.dense({ units: weights[0]!.length, activation: 'softmax', useBias: false, name: 'logits' });
  const model = tfl.model({ inputs: input, outputs: logits.apply(pooled(features)) as tfl.SymbolicTensor });
  setKernel();
  logits.setWeights([tf.tensor2d(weights.map((row) => row.slice()))]);
  return model;
}

/** A backbone: the trunk's feature map through a ReLU `features`, no class head. */
export function backboneModel(spec: TrunkSpec): tfl.LayersModel {
  const { input, features, setKernel } = trunk(spec);
  const model = tfl.model({ inputs: input, outputs: tfl.layers.reLU({ name: 'features' }).apply(features) as tfl.SymbolicTensor });
  setKernel();
  return model;
}
