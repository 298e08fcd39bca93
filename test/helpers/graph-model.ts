/**
 * Writing TF.js graph models (model.json with `format: 'graph-model'`, a
 * GraphDef `modelTopology.node[]` and one weights file) for tests: nodes as
 * the TF.js converter writes them, constants as weights.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

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
