/**
 * Writing TF.js graph models (model.json with `format: 'graph-model'`, a
 * GraphDef `modelTopology.node[]` and one weights file) for tests: nodes as
 * the TF.js converter writes them, constants as weights.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';

export interface GraphNodeSpec {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, unknown>;
}

export interface GraphWeight {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32';
  data: ArrayLike<number>;
}

const TF_DTYPE = { float32: 'DT_FLOAT', int32: 'DT_INT32' } as const;

/** Attribute values as the converter's JSON holds them. */
export const attr = {
  float: { type: 'DT_FLOAT' },
  ints: (values: number[]) => ({ list: { i: values.map(String) } }),
  string: (value: string) => ({ s: Buffer.from(value).toString('base64') }),
  strings: (values: string[]) => ({ list: { s: values.map((value) => Buffer.from(value).toString('base64')) } }),
  bool: (value: boolean) => ({ b: value }),
  number: (value: number) => ({ f: value }),
  int: (value: number) => ({ i: String(value) }),
};

/** A float32 Placeholder of `shape` (-1 for unknown dims). */
export function placeholder(name: string, shape: number[]): GraphNodeSpec {
  return { name, op: 'Placeholder', attr: { dtype: attr.float, shape: { shape: { dim: shape.map((size) => ({ size: String(size) })) } } } };
}

/** A Conv2D / DepthwiseConv2dNative attribute set: NHWC, `padding`, `strides`. */
export function convAttrs(padding: 'SAME' | 'VALID', stride = 1): Record<string, unknown> {
  return { T: attr.float, strides: attr.ints([1, stride, stride, 1]), padding: attr.string(padding), data_format: attr.string('NHWC'), dilations: attr.ints([1, 1, 1, 1]) };
}

/** Writes model.json and weights.bin into `folder`; each weight becomes a Const node. */
export async function writeGraphModel(folder: string, nodes: readonly GraphNodeSpec[], weights: readonly GraphWeight[]): Promise<string> {
  const constNodes = weights.map((weight) => ({
    name: weight.name,
    op: 'Const',
    attr: {
      dtype: { type: TF_DTYPE[weight.dtype] },
      value: { tensor: { dtype: TF_DTYPE[weight.dtype], tensorShape: { dim: weight.shape.map((size) => ({ size: String(size) })) } } },
    },
  }));
  const json = {
    format: 'graph-model',
    generatedBy: 'camviz tests',
    convertedBy: null,
    modelTopology: { node: [...constNodes, ...nodes], library: {}, versions: { producer: 1 } },
    weightsManifest: [{ paths: ['weights.bin'], weights: weights.map(({ name, shape, dtype }) => ({ name, shape, dtype })) }],
  };
  const bytes = Buffer.concat(
    weights.map((weight) => Buffer.from((weight.dtype === 'int32' ? Int32Array.from(weight.data) : Float32Array.from(weight.data)).buffer)),
  );
  await writeFile(join(folder, 'model.json'), JSON.stringify(json));
  await writeFile(join(folder, 'weights.bin'), bytes);
  return folder;
}

interface LayerConfig {
  strides?: number[];
  padding?: string;
  activation?: string;
  useBias?: boolean;
  targetShape?: number[];
  epsilon?: number;
}

/** The Keras block a layer belongs to (`conv_pw_13_bn` -> `conv_pw_13`), as a TF name scope. */
const scopeOf = (layer: string): string => `MobilenetV1/${layer.replace(/_(bn|relu)$/, '')}`;

/**
 * A chain-shaped layers model (MobileNet v1) as GraphDef nodes and weights:
 * one node per operation of each Keras layer, BatchNorm as
 * FusedBatchNormV3, nodes in name scopes `MobilenetV1/<block>`.
 */
export function layersAsGraph(model: tfl.LayersModel): { nodes: GraphNodeSpec[]; weights: GraphWeight[] } {
  const nodes: GraphNodeSpec[] = [placeholder('input', [-1, 224, 224, 3])];
  const weights: GraphWeight[] = [];
  let current = 'input';
  const add = (name: string, op: string, inputs: string[], nodeAttr: Record<string, unknown>): void => {
    nodes.push({ name, op, input: [current, ...inputs], attr: nodeAttr });
    current = name;
  };
  const weight = (name: string, tensor: tf.Tensor): string => {
    weights.push({ name, shape: tensor.shape, dtype: 'float32', data: tensor.dataSync() });
    return name;
  };
  for (const layer of model.layers.slice(1)) {
    const config = layer.getConfig() as LayerConfig;
    const scope = scopeOf(layer.name);
    const values = layer.getWeights();
    switch (layer.getClassName()) {
      case 'Conv2D':
      case 'DepthwiseConv2D': {
        const depthwise = layer.getClassName() === 'DepthwiseConv2D';
        const padding = config.padding === 'same' ? 'SAME' : 'VALID';
        add(`${scope}/${depthwise ? 'depthwise' : 'Conv2D'}`, depthwise ? 'DepthwiseConv2dNative' : 'Conv2D', [weight(`${scope}/weights`, values[0]!)], convAttrs(padding, config.strides![0]));
        if (config.useBias === true) add(`${scope}/BiasAdd`, 'BiasAdd', [weight(`${scope}/biases`, values[1]!)], { T: attr.float, data_format: attr.string('NHWC') });
        break;
      }
      case 'BatchNormalization': {
        const [gamma, beta, mean, variance] = values;
        const inputs = [weight(`${scope}/BatchNorm/gamma`, gamma!), weight(`${scope}/BatchNorm/beta`, beta!), weight(`${scope}/BatchNorm/moving_mean`, mean!), weight(`${scope}/BatchNorm/moving_variance`, variance!)];
        add(`${scope}/BatchNorm/FusedBatchNormV3`, 'FusedBatchNormV3', inputs, { T: attr.float, U: attr.float, epsilon: attr.number(config.epsilon!), is_training: attr.bool(false), data_format: attr.string('NHWC') });
        break;
      }
      case 'Activation':
        if (config.activation === 'relu6') add(`${scope}/Relu6`, 'Relu6', [], { T: attr.float });
        else if (config.activation === 'softmax') add(`${scope}/Softmax`, 'Softmax', [], { T: attr.float });
        else throw new Error(`activation ${config.activation} of ${layer.name} is not translated`);
        break;
      case 'GlobalAveragePooling2D':
        weights.push({ name: `${scope}/axes`, shape: [2], dtype: 'int32', data: [1, 2] });
        add(`${scope}/Mean`, 'Mean', [`${scope}/axes`], { T: attr.float, keep_dims: attr.bool(false), Tidx: { type: 'DT_INT32' } });
        break;
      case 'Reshape': {
        const shape = [-1, ...config.targetShape!];
        weights.push({ name: `${scope}/shape`, shape: [shape.length], dtype: 'int32', data: shape });
        add(`${scope}/Reshape`, 'Reshape', [`${scope}/shape`], { T: attr.float, Tshape: { type: 'DT_INT32' } });
        break;
      }
      case 'Dropout':
        add(`${scope}/Identity`, 'Identity', [], { T: attr.float });
        break;
      default:
        throw new Error(`layer ${layer.name} (${layer.getClassName()}) is not translated`);
    }
  }
  add('MobilenetV1/Predictions', 'Identity', [], { T: attr.float });
  return { nodes, weights };
}
