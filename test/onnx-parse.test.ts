/**
 * The ONNX parser (src/model/onnx/parse.ts, read.ts): the shared ONNX
 * exports against their sidecar JSON and against the `onnx` Python package,
 * ONNX's conformance tensors against `onnx.numpy_helper`, models built byte
 * by byte here (with an encoder of our own, independent of protobufjs) for
 * every attribute and data kind, and hostile files: each refused with one
 * line naming the file, without allocating what it declares.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { bytesOf, MAX_TENSOR_BYTES, parseOnnxModel, parseOnnxModelWithExternalData, parseOnnxTensor } from '../src/model/onnx/parse.js';
import { readOnnxFile } from '../src/model/onnx/read.js';
import type { OnnxModel, OnnxTensor, OnnxTensorData } from '../src/model/onnx/types.js';
import { CamvizError } from '../src/util/errors.js';
import { asset } from './helpers/assets.js';
import { expectCamvizError } from './helpers/errors.js';
import { fifoReleasedAfter, noise, skipWithoutFifos } from './helpers/files.js';
import { findPython } from './helpers/python.js';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-onnx-parse-'));
after(() => rm(workDir, { recursive: true, force: true }));

const onnxAssets = asset('onnx');
const skipWithoutOnnxAssets = existsSync(join(onnxAssets, 'resnet18.onnx'))
  ? false
  : `shared ONNX assets not found at ${onnxAssets} (set CAMVIZ_SHARED_ASSETS)`;
const conformanceDir = '/usr/share/libonnx-testdata/data/node';
const skipWithoutConformance = existsSync(conformanceDir)
  ? false
  : `ONNX conformance tests not found at ${conformanceDir} (apt-get install -y libonnx-testdata)`;
const pythonWithOnnx = findPython('onnx');
const skipWithoutPythonOnnx = pythonWithOnnx === null ? 'no Python with the onnx package (apt-get install -y python3-onnx)' : false;

// ------------------------------------------------------------------ a protobuf encoder of our own

type Bytes = number[];
const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_BYTES = 2;
const WIRE_FIXED32 = 5;

function varint(value: number | bigint): Bytes {
  // Negative values are sign-extended to 64 bits (10 bytes), as protobuf writes int32/int64.
  let rest = BigInt.asUintN(64, BigInt(value));
  const out: Bytes = [];
  do {
    const low = Number(rest & 0x7fn);
    rest >>= 7n;
    out.push(rest === 0n ? low : low | 0x80);
  } while (rest !== 0n);
  return out;
}
const key = (field: number, wire: number): Bytes => varint((field << 3) | wire);
const int = (field: number, value: number | bigint): Bytes => [...key(field, WIRE_VARINT), ...varint(value)];
const len = (field: number, payload: Bytes | Uint8Array): Bytes => [...key(field, WIRE_BYTES), ...varint(payload.length), ...payload];
const str = (field: number, text: string): Bytes => len(field, [...Buffer.from(text, 'utf8')]);
const float32 = (field: number, value: number): Bytes => [...key(field, WIRE_FIXED32), ...fixed32(value)];
function fixed32(value: number): Bytes {
  const bytes = Buffer.alloc(4);
  bytes.writeFloatLE(value);
  return [...bytes];
}
const double64 = (field: number, value: number): Bytes => [...key(field, WIRE_FIXED64), ...fixed64(value)];
function fixed64(value: number): Bytes {
  const bytes = Buffer.alloc(8);
  bytes.writeDoubleLE(value);
  return [...bytes];
}
const packedVarints = (field: number, values: (number | bigint)[]): Bytes => len(field, values.flatMap((v) => varint(v)));

/** TensorProto.DataType codes. */
const T = { float: 1, uint8: 2, int8: 3, uint16: 4, int16: 5, int32: 6, int64: 7, string: 8, bool: 9, float16: 10, double: 11, uint32: 12, uint64: 13, bfloat16: 16 };

interface TensorSpec {
  name?: string;
  dims: (number | bigint)[];
  type: number;
  raw?: Uint8Array | Bytes;
  /** Extra encoded fields (typed data, external data...). */
  fields?: Bytes;
}
function tensorProto(spec: TensorSpec): Bytes {
  return [
    ...spec.dims.flatMap((dim) => int(1, dim)),
    ...int(2, spec.type),
    ...(spec.name === undefined ? [] : str(8, spec.name)),
    ...(spec.raw === undefined ? [] : len(9, spec.raw)),
    ...(spec.fields ?? []),
  ];
}
const externalEntry = (k: string, v: string): Bytes => len(13, [...str(1, k), ...str(2, v)]);
function externalTensor(name: string, dims: number[], entries: [string, string][]): Bytes {
  return tensorProto({ name, dims, type: T.float, fields: [...entries.flatMap(([k, v]) => externalEntry(k, v)), ...int(14, 1)] });
}

/** AttributeProto.AttributeType codes. */
const A = { float: 1, int: 2, string: 3, tensor: 4, graph: 5, floats: 6, ints: 7, strings: 8, tensors: 9 };
const attribute = (name: string, type: number, value: Bytes): Bytes => [...str(1, name), ...int(20, type), ...value];

interface NodeSpec {
  name?: string;
  op: string;
  inputs: string[];
  outputs: string[];
  domain?: string;
  attributes?: Bytes[];
}
function nodeProto(spec: NodeSpec): Bytes {
  return [
    ...spec.inputs.flatMap((input) => str(1, input)),
    ...spec.outputs.flatMap((output) => str(2, output)),
    ...(spec.name === undefined ? [] : str(3, spec.name)),
    ...str(4, spec.op),
    ...(spec.domain === undefined ? [] : str(7, spec.domain)),
    ...(spec.attributes ?? []).flatMap((a) => len(5, a)),
  ];
}

/** A tensor ValueInfoProto; a dim is a number (dim_value), a string (dim_param) or null (neither). */
function valueInfo(name: string, elemType: number, dims: (number | string | null)[] | undefined): Bytes {
  const dimProtos = (dims ?? []).map((dim) => len(1, dim === null ? [] : typeof dim === 'number' ? int(1, dim) : str(2, dim)));
  const tensorType = [...int(1, elemType), ...(dims === undefined ? [] : len(2, dimProtos.flat()))];
  return [...str(1, name), ...len(2, len(1, tensorType))];
}

interface GraphSpec {
  name?: string;
  nodes: Bytes[];
  initializers?: Bytes[];
  inputs?: Bytes[];
  outputs?: Bytes[];
  valueInfo?: Bytes[];
}
function graphProto(spec: GraphSpec): Bytes {
  return [
    ...spec.nodes.flatMap((node) => len(1, node)),
    ...str(2, spec.name ?? 'g'),
    ...(spec.initializers ?? []).flatMap((t) => len(5, t)),
    ...(spec.inputs ?? []).flatMap((v) => len(11, v)),
    ...(spec.outputs ?? []).flatMap((v) => len(12, v)),
    ...(spec.valueInfo ?? []).flatMap((v) => len(13, v)),
  ];
}
function modelProto(graph: Bytes, { irVersion = 8, opsets = [['', 13]] as [string, number][] } = {}): Uint8Array {
  return Uint8Array.from([
    ...int(1, irVersion),
    ...str(2, 'camviz-test'),
    ...str(3, '1'),
    ...opsets.flatMap(([domain, version]) => len(8, [...str(1, domain), ...int(2, version)])),
    ...len(7, graph),
  ]);
}

/** x -> Relu -> y, with `initializers` alongside: the smallest valid model. */
function modelWithInitializers(initializers: Bytes[]): Uint8Array {
  return modelProto(
    graphProto({
      nodes: [nodeProto({ name: 'relu', op: 'Relu', inputs: ['x'], outputs: ['y'] })],
      initializers,
      inputs: [valueInfo('x', T.float, [1, 2])],
      outputs: [valueInfo('y', T.float, [1, 2])],
    }),
  );
}

const floatBytes = (values: number[]): Uint8Array => new Uint8Array(Float32Array.from(values).buffer);
const initializer = (model: OnnxModel, name: string): OnnxTensor => {
  const tensor = model.graph.initializers.get(name);
  assert.ok(tensor !== undefined, `initializer ${name}`);
  return tensor;
};

// ------------------------------------------------------------------ models built byte by byte

describe('parseOnnxModel on models built byte by byte', () => {
  test('model fields, opsets, value infos and initializers listed as inputs (IR 3)', () => {
    const bytes = modelProto(
      graphProto({
        name: 'main',
        nodes: [nodeProto({ name: 'add', op: 'Add', inputs: ['x', 'w'], outputs: ['y'], domain: 'ai.onnx' })],
        initializers: [tensorProto({ name: 'w', dims: [2], type: T.float, raw: floatBytes([1.5, -2]) })],
        inputs: [valueInfo('x', T.float, ['batch', 2]), valueInfo('w', T.float, [2])],
        outputs: [valueInfo('y', T.float, [null, 2])],
        valueInfo: [valueInfo('unranked', T.int64, undefined), valueInfo('scalar', T.bfloat16, [])],
      }),
      { irVersion: 3, opsets: [['ai.onnx', 11], ['com.microsoft', 1]] },
    );
    const model = parseOnnxModel(bytes, 'built.onnx');
    assert.equal(model.irVersion, 3);
    assert.equal(model.producerName, 'camviz-test');
    assert.equal(model.producerVersion, '1');
    assert.deepEqual([...model.opsets], [['', 11], ['com.microsoft', 1]]);
    assert.equal(model.graph.name, 'main');
    // Before IR 4 initializers were listed as inputs too: they are not something to feed.
    assert.deepEqual(model.graph.inputs, [{ name: 'x', type: 'float32', shape: ['batch', 2] }]);
    assert.deepEqual(model.graph.outputs, [{ name: 'y', type: 'float32', shape: [null, 2] }]);
    assert.deepEqual(model.graph.valueInfo, [
      { name: 'unranked', type: 'int64', shape: undefined },
      // bfloat16 is not an element type camviz reads: the type is unknown, the shape still known.
      { name: 'scalar', type: undefined, shape: [] },
    ]);
    assert.deepEqual(model.graph.nodes, [
      { name: 'add', opType: 'Add', domain: '', inputs: ['x', 'w'], outputs: ['y'], attributes: {} },
    ]);
    assert.deepEqual(initializer(model, 'w'), { name: 'w', type: 'float32', dims: [2], data: Float32Array.from([1.5, -2]) });
  });

  test('attributes of every kind, a subgraph, and int64 values beyond 2^53 clamped', () => {
    const INT64_MAX = 2n ** 63n - 1n;
    const INT64_MIN = -(2n ** 63n);
    const body = graphProto({
      name: 'then_branch',
      nodes: [nodeProto({ name: 'inner', op: 'Identity', inputs: ['x'], outputs: ['z'] })],
      outputs: [valueInfo('z', T.float, [2])],
    });
    const attributes = [
      attribute('alpha', A.float, float32(2, 0.25)),
      attribute('axis', A.int, int(3, -1)),
      attribute('big', A.int, int(3, INT64_MAX)),
      attribute('mode', A.string, len(4, [...Buffer.from('nearest ✓', 'utf8')])),
      attribute('value', A.tensor, len(5, tensorProto({ dims: [2], type: T.int64, fields: packedVarints(7, [7, INT64_MIN]) }))),
      attribute('then_branch', A.graph, len(6, body)),
      // floats packed, ints unpacked (both encodings are legal for repeated scalars)
      attribute('scales', A.floats, len(7, [...fixed32(1), ...fixed32(0.5)])),
      attribute('ends', A.ints, [...int(8, 3), ...int(8, INT64_MAX), ...int(8, INT64_MIN), ...int(8, -2)]),
      attribute('names', A.strings, [...len(9, [...Buffer.from('a')]), ...len(9, [])]),
      // No `type` field (old writers): the kind comes from the value that is set.
      [...str(1, 'untyped'), ...int(3, 5)],
      // A float attribute whose value is 0 may be omitted by the writer.
      attribute('beta', A.float, []),
    ];
    const bytes = modelProto(
      graphProto({
        nodes: [nodeProto({ name: 'if', op: 'If', inputs: ['cond'], outputs: ['y'], attributes })],
        inputs: [valueInfo('cond', T.bool, [])],
        outputs: [valueInfo('y', T.float, [2])],
      }),
    );
    const node = parseOnnxModel(bytes, 'attributes.onnx').graph.nodes[0];
    assert.ok(node !== undefined);
    const attrs = node.attributes;
    assert.deepEqual(attrs['alpha'], { kind: 'float', value: 0.25 });
    assert.deepEqual(attrs['axis'], { kind: 'int', value: -1 });
    assert.deepEqual(attrs['big'], { kind: 'int', value: Number.MAX_SAFE_INTEGER });
    assert.deepEqual(attrs['mode'], { kind: 'string', value: 'nearest ✓' });
    assert.deepEqual(attrs['value'], {
      kind: 'tensor',
      value: { name: '', type: 'int64', dims: [2], data: BigInt64Array.from([7n, INT64_MIN]) },
    });
    assert.deepEqual(attrs['scales'], { kind: 'floats', value: [1, 0.5] });
    assert.deepEqual(attrs['ends'], { kind: 'ints', value: [3, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, -2] });
    assert.deepEqual(attrs['names'], { kind: 'strings', value: ['a', ''] });
    assert.deepEqual(attrs['untyped'], { kind: 'int', value: 5 });
    assert.deepEqual(attrs['beta'], { kind: 'float', value: 0 });
    const branch = attrs['then_branch'];
    assert.equal(branch?.kind, 'graph');
    assert.equal(branch.kind === 'graph' && branch.value.name, 'then_branch');
    assert.deepEqual(branch.kind === 'graph' && branch.value.nodes.map((n) => n.opType), ['Identity']);
  });

  test('tensor data of every element type, from raw_data and from the typed fields', () => {
    const raw = (values: number[], Kind: { from(values: number[]): { buffer: ArrayBufferLike } }): Uint8Array =>
      new Uint8Array(Kind.from(values).buffer);
    const tensors: [Bytes, OnnxTensorData][] = [
      [tensorProto({ name: 'f32_typed', dims: [3], type: T.float, fields: len(4, [1, -0.5, 3e-8].flatMap(fixed32)) }), Float32Array.from([1, -0.5, 3e-8])],
      // float_data written unpacked, one value per field
      [tensorProto({ name: 'f32_unpacked', dims: [2], type: T.float, fields: [...float32(4, 2), ...float32(4, -4)] }), Float32Array.from([2, -4])],
      [tensorProto({ name: 'f64_typed', dims: [2], type: T.double, fields: len(10, [0.1, -1e300].flatMap(fixed64)) }), Float64Array.from([0.1, -1e300])],
      [tensorProto({ name: 'f64_unpacked', dims: [1], type: T.double, fields: double64(10, -0.25) }), Float64Array.from([-0.25])],
      [tensorProto({ name: 'i8_typed', dims: [3], type: T.int8, fields: packedVarints(5, [-128, 127, -1]) }), Int8Array.from([-128, 127, -1])],
      [tensorProto({ name: 'u8_typed', dims: [2], type: T.uint8, fields: packedVarints(5, [255, 0]) }), Uint8Array.from([255, 0])],
      [tensorProto({ name: 'i16_typed', dims: [2], type: T.int16, fields: packedVarints(5, [-32768, 300]) }), Int16Array.from([-32768, 300])],
      [tensorProto({ name: 'u16_typed', dims: [1], type: T.uint16, fields: packedVarints(5, [65535]) }), Uint16Array.from([65535])],
      [tensorProto({ name: 'i32_typed', dims: [2, 1], type: T.int32, fields: packedVarints(5, [-2147483648, 2147483647]) }), Int32Array.from([-2147483648, 2147483647])],
      // float16 in int32_data: the bits (0x3c00 is 1.0, 0xc000 is -2.0)
      [tensorProto({ name: 'f16_typed', dims: [2], type: T.float16, fields: packedVarints(5, [0x3c00, 0xc000]) }), Uint16Array.from([0x3c00, 0xc000])],
      [tensorProto({ name: 'bool_typed', dims: [3], type: T.bool, fields: packedVarints(5, [1, 0, 1]) }), Uint8Array.from([1, 0, 1])],
      [tensorProto({ name: 'i64_typed', dims: [2], type: T.int64, fields: packedVarints(7, [-(2n ** 62n) - 3n, 2n ** 53n + 1n]) }), BigInt64Array.from([-(2n ** 62n) - 3n, 2n ** 53n + 1n])],
      [tensorProto({ name: 'u32_typed', dims: [1], type: T.uint32, fields: packedVarints(11, [4294967295]) }), Uint32Array.from([4294967295])],
      [tensorProto({ name: 'u64_typed', dims: [1], type: T.uint64, fields: packedVarints(11, [2n ** 64n - 1n]) }), BigUint64Array.from([2n ** 64n - 1n])],
      [tensorProto({ name: 'str_typed', dims: [2], type: T.string, fields: [...len(6, [...Buffer.from('héllo')]), ...len(6, [])] }), ['héllo', '']],
      [tensorProto({ name: 'f32_raw', dims: [2, 2], type: T.float, raw: raw([1, 2, 3, 4], Float32Array) }), Float32Array.from([1, 2, 3, 4])],
      [tensorProto({ name: 'i64_raw', dims: [1], type: T.int64, raw: new Uint8Array(BigInt64Array.from([-5n]).buffer) }), BigInt64Array.from([-5n])],
      [tensorProto({ name: 'f16_raw', dims: [1], type: T.float16, raw: [0x00, 0x3c] }), Uint16Array.from([0x3c00])],
      [tensorProto({ name: 'bool_raw', dims: [2], type: T.bool, raw: [1, 0] }), Uint8Array.from([1, 0])],
      [tensorProto({ name: 'empty', dims: [0, 3], type: T.float }), new Float32Array(0)],
      [tensorProto({ name: 'scalar', dims: [], type: T.int32, fields: packedVarints(5, [42]) }), Int32Array.from([42])],
    ];
    const model = parseOnnxModel(modelWithInitializers(tensors.map(([proto]) => proto)), 'types.onnx');
    for (const [proto, expected] of tensors) {
      const name = parseOnnxTensor(Uint8Array.from(proto), 'one tensor').name;
      assert.deepEqual(initializer(model, name).data, expected, name);
    }
  });

  test('the weights are copied out of the file bytes, not views into them', () => {
    const bytes = modelWithInitializers([tensorProto({ name: 'w', dims: [2], type: T.float, raw: floatBytes([1, 2]) })]);
    const data = initializer(parseOnnxModel(bytes, 'copy.onnx'), 'w').data as Float32Array;
    assert.notEqual(data.buffer, bytes.buffer);
    bytes.fill(0);
    assert.deepEqual(data, Float32Array.from([1, 2]));
  });

  test('adopted bytes: raw data at every offset from its element boundary read as views where the field prefix leaves room to move them, copies elsewhere; the same values', () => {
    const values = (count: number, seed: number): number[] => Array.from({ length: count }, (_, i) => Math.fround(Math.sin(i * 0.7 + seed) * 100));
    const tensors: { name: string; proto: Bytes; expected: OnnxTensorData }[] = [];
    // Names of 1 to 8 characters shift where each raw_data starts: every offset from 4- and 8-byte boundaries occurs.
    for (let pad = 1; pad <= 8; pad++) {
      for (const count of [3, 31, 32, 100]) {
        const f32 = Float32Array.from(values(count, pad));
        const f64 = Float64Array.from(values(count, pad + 0.5));
        const i64 = BigInt64Array.from(values(count, pad).map((value) => BigInt(Math.round(value * 1e6)) * 3_000_000_000n));
        for (const [kind, type, data] of [['f32', T.float, f32], ['f64', T.double, f64], ['i64', T.int64, i64]] as const) {
          const name = `${kind}_${count}_${'x'.repeat(pad)}`;
          tensors.push({ name, proto: tensorProto({ name, dims: [count], type, raw: new Uint8Array(data.buffer) }), expected: data });
        }
      }
    }
    const bytes = modelWithInitializers(tensors.map(({ proto }) => proto));
    const copied = parseOnnxModel(Uint8Array.from(bytes), 'copied.onnx');
    const adopted = parseOnnxModelWithExternalData(bytes, 'adopted.onnx', { adoptBytes: true }).model;
    let views = 0;
    for (const { name, expected } of tensors) {
      const data = initializer(adopted, name).data as Exclude<OnnxTensorData, string[]>;
      assert.deepEqual(data, expected, `${name}: adopted`);
      assert.deepEqual(initializer(copied, name).data, expected, `${name}: copied`);
      if (data.buffer === bytes.buffer) views++;
    }
    // Every float32 of 32 values and more (a two-byte length prefix: room for any move of up to 3 bytes) is a view.
    const roomy = tensors.filter(({ name }) => /^f32_(32|100)_/.test(name)).map(({ name }) => initializer(adopted, name).data as Float32Array);
    assert.ok(roomy.every((data) => data.buffer === bytes.buffer), 'float32 tensors of 128 bytes and more are views of the file');
    assert.ok(views < tensors.length, 'some tensors (short prefixes, 8-byte elements far off their boundary) are copied');
  });

  test('adopted bytes: tensors in attributes (several a node, decoded after the node), in a subgraph\'s initializers and in a Constant read as the copies do', () => {
    const raw = (count: number, seed: number): Uint8Array => new Uint8Array(Float32Array.from({ length: count }, (_, i) => Math.fround(Math.cos(i + seed) * 7)).buffer);
    // Names of 1 to 4 characters move each tensor's raw_data off the 4-byte boundary by every amount.
    const tensorAttribute = (name: string, count: number, seed: number): Bytes => attribute(name, A.tensor, len(5, tensorProto({ name: 'x'.repeat(1 + (seed % 4)), dims: [count], type: T.float, raw: raw(count, seed) })));
    const body = graphProto({
      name: 'body',
      nodes: [nodeProto({ name: 'inner', op: 'Identity', inputs: ['w'], outputs: ['z'] })],
      initializers: [tensorProto({ name: 'w', dims: [50], type: T.float, raw: raw(50, 9) })],
      outputs: [valueInfo('z', T.float, [50])],
    });
    const bytes = modelProto(
      graphProto({
        nodes: [
          nodeProto({ name: 'c', op: 'Constant', inputs: [], outputs: ['k'], attributes: [tensorAttribute('value', 40, 1)] }),
          nodeProto({
            name: 'many',
            op: 'Custom',
            domain: 'test',
            inputs: ['x'],
            outputs: ['y'],
            attributes: [tensorAttribute('a', 33, 2), attribute('n', A.int, int(3, 5)), tensorAttribute('b', 64, 3), tensorAttribute('c', 35, 4), attribute('g', A.graph, len(6, body))],
          }),
        ],
        inputs: [valueInfo('x', T.float, [1, 2])],
        outputs: [valueInfo('y', T.float, [1, 2])],
      }),
      { opsets: [['', 13], ['test', 1]] },
    );
    const copied = parseOnnxModel(Uint8Array.from(bytes), 'copied.onnx');
    const adopted = parseOnnxModelWithExternalData(bytes, 'adopted.onnx', { adoptBytes: true }).model;
    assert.deepEqual(adopted, copied);
    const tensorOf = (model: OnnxModel, node: number, name: string): OnnxTensor => {
      const value = model.graph.nodes[node]!.attributes[name];
      assert.ok(value?.kind === 'tensor', `${name} is a tensor attribute`);
      return value.value;
    };
    assert.ok(['a', 'b', 'c'].some((name) => (tensorOf(adopted, 1, name).data as Float32Array).buffer === bytes.buffer), 'attribute tensors are read in place');
  });
});

// ------------------------------------------------------------------ the shared exports

interface Sidecar {
  nodes: number;
  ops: Record<string, number>;
}
interface PythonInitializer {
  dims: number[];
  head: number[];
  sum: number;
}

/** Every initializer's dims, first values and float64 sum, as the onnx package reads them. */
function initializersByPython(path: string): Record<string, PythonInitializer> {
  const script = `
import json, sys, numpy as np, onnx
from onnx import numpy_helper
model = onnx.load(sys.argv[1])
out = {}
for t in model.graph.initializer:
    a = numpy_helper.to_array(t)
    out[t.name] = {'dims': list(t.dims), 'head': a.ravel()[:4].astype(float).tolist(), 'sum': float(a.astype(np.float64).sum())}
print(json.dumps(out))
`;
  const run = spawnSync(pythonWithOnnx ?? 'python3', ['-c', script, path], { encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.equal(run.status, 0, run.stderr);
  return JSON.parse(run.stdout) as Record<string, PythonInitializer>;
}

function numbersOf(data: OnnxTensorData): number[] {
  return Array.from(data as ArrayLike<number | bigint>, Number);
}

describe('the shared ONNX exports', { skip: skipWithoutOnnxAssets }, () => {
  const names = skipWithoutOnnxAssets ? [] : readdirSync(onnxAssets).filter((file) => file.endsWith('.onnx'));

  for (const file of names) {
    test(`${file}: nodes and op histogram as in its sidecar`, async () => {
      const model = await readOnnxFile(join(onnxAssets, file));
      const sidecar = JSON.parse(await readFile(join(onnxAssets, file.replace(/\.onnx$/, '.json')), 'utf8')) as Sidecar;
      assert.equal(model.graph.nodes.length, sidecar.nodes);
      const histogram: Record<string, number> = {};
      for (const node of model.graph.nodes) histogram[node.opType] = (histogram[node.opType] ?? 0) + 1;
      assert.deepEqual(histogram, sidecar.ops);
      assert.deepEqual(model.graph.inputs, [{ name: 'input', type: 'float32', shape: ['batch', 3, 224, 224] }]);
      assert.equal(model.graph.outputs[0]?.name, 'logits');
      assert.equal(model.opsets.get(''), 13);
    });

    test(`${file}: every initializer's dims and values as the onnx package reads them`, { skip: skipWithoutPythonOnnx }, async () => {
      const path = join(onnxAssets, file);
      const model = await readOnnxFile(path);
      const expected = initializersByPython(path);
      assert.deepEqual([...model.graph.initializers.keys()].sort(), Object.keys(expected).sort());
      for (const [name, reference] of Object.entries(expected)) {
        const tensor = initializer(model, name);
        assert.deepEqual(tensor.dims, reference.dims, name);
        const values = numbersOf(tensor.data);
        assert.equal(values.length, reference.dims.reduce((product, dim) => product * dim, 1), name);
        assert.deepEqual(values.slice(0, 4), reference.head, name);
        const sum = values.reduce((total, value) => total + value, 0);
        assert.ok(Math.abs(sum - reference.sum) <= 1e-9 * Math.max(1, Math.abs(reference.sum)), `${name}: sum ${sum} vs ${reference.sum}`);
      }
    });
  }

  test('resnet18.onnx: known weights (conv1 is 64x3x7x7 float32)', async () => {
    const model = await readOnnxFile(join(onnxAssets, 'resnet18.onnx'));
    const conv = model.graph.nodes.find((node) => node.name === '/conv1/Conv');
    assert.ok(conv !== undefined);
    const weight = initializer(model, conv.inputs[1] ?? '');
    assert.equal(weight.type, 'float32');
    assert.deepEqual(weight.dims, [64, 3, 7, 7]);
    assert.deepEqual(conv.attributes['kernel_shape'], { kind: 'ints', value: [7, 7] });
    assert.deepEqual(conv.attributes['strides'], { kind: 'ints', value: [2, 2] });
    assert.deepEqual(conv.attributes['pads'], { kind: 'ints', value: [3, 3, 3, 3] });
  });
});

// ------------------------------------------------------------------ conformance tensors

describe("ONNX's conformance test tensors", { skip: skipWithoutConformance || skipWithoutPythonOnnx }, () => {
  test('every .pb TensorProto reads as onnx.numpy_helper reads it (type, dims, sha256 of the values)', () => {
    // numpy_helper's arrays hashed: numbers as their little-endian bytes (float16 as bits), strings joined by NUL.
    const script = `
import glob, hashlib, json, sys, numpy as np, onnx
from onnx import numpy_helper
out = {}
for path in sorted(glob.glob(sys.argv[1] + '/*/test_data_set_0/*.pb')):
    t = onnx.TensorProto()
    try:
        t.ParseFromString(open(path, 'rb').read())
        if t.data_type in (0, 14, 15, 16) or t.data_type > 16 or t.HasField('segment'): continue
        a = numpy_helper.to_array(t)
    except Exception:
        continue
    if a.dtype == object:
        data = b'\\0'.join(s if isinstance(s, bytes) else s.encode() for s in a.ravel())
    else:
        data = np.ascontiguousarray(a).astype(a.dtype.newbyteorder('<')).tobytes()
    out[path] = ['string' if t.data_type == 8 else a.dtype.name, list(t.dims), hashlib.sha256(data).hexdigest()]
print(json.dumps(out))
`;
    const run = spawnSync(pythonWithOnnx ?? 'python3', ['-c', script, conformanceDir], { encoding: 'utf8', maxBuffer: 64 << 20 });
    assert.equal(run.status, 0, run.stderr);
    const expected = JSON.parse(run.stdout) as Record<string, [string, number[], string]>;
    const entries = Object.entries(expected);
    assert.ok(entries.length > 2000, `${entries.length} tensors compared`);
    const typesSeen = new Set<string>();
    for (const [path, [type, dims, sha256]] of entries) {
      const tensor = parseOnnxTensor(readFileSync(path), path);
      typesSeen.add(tensor.type);
      assert.equal(tensor.type, type, path);
      assert.deepEqual(tensor.dims, dims, path);
      const bytes = Array.isArray(tensor.data) ? Buffer.from(tensor.data.join('\0'), 'utf8') : bytesOf(tensor.data);
      assert.equal(createHash('sha256').update(bytes).digest('hex'), sha256, path);
    }
    for (const type of ['float32', 'float64', 'float16', 'int8', 'uint8', 'int32', 'int64', 'bool', 'string']) {
      assert.ok(typesSeen.has(type), `the conformance tensors include ${type}`);
    }
  });

  test('test_add: known values (3x4x5 float32 inputs, output = their sum)', async () => {
    const folder = join(conformanceDir, 'test_add', 'test_data_set_0');
    const [a, b, sum] = await Promise.all(
      ['input_0.pb', 'input_1.pb', 'output_0.pb'].map(async (name) => parseOnnxTensor(await readFile(join(folder, name)), name)),
    );
    assert.ok(a !== undefined && b !== undefined && sum !== undefined);
    assert.deepEqual(a.dims, [3, 4, 5]);
    const [x, y, z] = [a.data, b.data, sum.data] as Float32Array[];
    assert.ok(x !== undefined && y !== undefined && z !== undefined);
    for (let index = 0; index < 60; index++) assert.equal(z[index], Math.fround((x[index] ?? 0) + (y[index] ?? 0)));
    const model = parseOnnxModel(await readFile(join(conformanceDir, 'test_add', 'model.onnx')), 'test_add/model.onnx');
    assert.deepEqual(model.graph.nodes.map((node) => node.opType), ['Add']);
    assert.deepEqual(model.graph.inputs.map((input) => input.shape), [[3, 4, 5], [3, 4, 5]]);
  });
});

// ------------------------------------------------------------------ hostile files

/** The error a parse of `bytes` gives: one line, a CamvizError naming `source`. */
async function parseError(bytes: Uint8Array, source = 'bad.onnx'): Promise<string> {
  const error = await expectCamvizError(async () => parseOnnxModel(bytes, source));
  assert.equal(error.file, source);
  return error.message;
}

describe('hostile ONNX files', () => {
  const good = modelWithInitializers([tensorProto({ name: 'w', dims: [256], type: T.float, raw: floatBytes(new Array(256).fill(0.5)) })]);

  test('a truncated file, at every length, is one line naming the file', async () => {
    assert.equal(parseOnnxModel(good, 'good.onnx').graph.initializers.size, 1);
    for (let length = 0; length < good.length; length += 7) {
      const message = await parseError(good.subarray(0, length));
      assert.match(message, /^not a valid ONNX file: truncated or not protobuf \(.+\)$|^not an ONNX model: (no graph|the file is empty)$/, `${length}: ${message}`);
    }
  });

  test('random bytes, JSON text and a PNG are not ONNX', async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const message = await parseError(new Uint8Array(noise(64, 16, seed, 1)));
      assert.match(message, /^not a valid ONNX file|^not an ONNX model/);
    }
    assert.match(await parseError(Buffer.from('{"modelTopology": {}}')), /^not a valid ONNX file|^not an ONNX model/);
    assert.match(await parseError(Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex')), /^not a valid ONNX file|^not an ONNX model/);
  });

  test('bytes changed at random: each parses or is one line naming the file', async () => {
    const model = await readFile(join(conformanceDir, 'test_conv_with_strides_padding', 'model.onnx')).catch(() => Buffer.from(good));
    const changes = noise(3 * 400, 1, 7, 1);
    for (let trial = 0; trial < 400; trial++) {
      const bytes = Buffer.from(model);
      const [where, value, extra] = [changes[3 * trial] ?? 0, changes[3 * trial + 1] ?? 0, changes[3 * trial + 2] ?? 0];
      bytes[(where * 257 + extra) % bytes.length] = value;
      try {
        parseOnnxModel(bytes, 'changed.onnx');
      } catch (error) {
        assert.ok(error instanceof CamvizError, `trial ${trial}: ${String(error)}`);
        assert.equal(error.file, 'changed.onnx');
        assert.ok(!error.describe().includes('\n'));
      }
    }
  });

  test('a protobuf without a graph, or of IR version 2', async () => {
    assert.equal(await parseError(Uint8Array.from([...int(1, 8), ...str(2, 'x')])), 'not an ONNX model: no graph');
    // Refused before its graph is read: the terabyte tensor would be an error of its own.
    const hugeTensor = tensorProto({ name: 'huge', dims: [1e12], type: T.float, raw: [] });
    const old = modelProto(graphProto({ nodes: [], initializers: [hugeTensor] }), { irVersion: 2 });
    assert.equal(await parseError(old), 'unsupported ONNX IR version 2: camviz reads IR 3 and newer');
  });

  test('raw_data shorter (or longer) than its dims declare', async () => {
    const short = modelWithInitializers([tensorProto({ name: 'w', dims: [2, 3], type: T.float, raw: floatBytes([1, 2, 3]) })]);
    assert.equal(await parseError(short), "tensor 'w' has 12 bytes of raw_data, but its dims [2, 3] of float32 need 24");
    const long = modelWithInitializers([tensorProto({ name: 'w', dims: [1], type: T.float, raw: floatBytes([1, 2]) })]);
    assert.match(await parseError(long), /tensor 'w' has 8 bytes of raw_data/);
    const typed = modelWithInitializers([tensorProto({ name: 'w', dims: [3], type: T.int64, fields: packedVarints(7, [1, 2]) })]);
    assert.equal(await parseError(typed), "tensor 'w' stores 2 values, but its dims [3] declare 3");
  });

  test('dims declaring terabytes, or 1.5 GiB over a few bytes, are refused before any allocation', async () => {
    const terabytes = modelWithInitializers([tensorProto({ name: 'huge', dims: [1_000_000, 1_000_000], type: T.float, raw: floatBytes([1]) })]);
    assert.match(await parseError(terabytes), /^tensor 'huge' declares 1000000x1000000 float32 \(3\.64 TiB\), more than the 2 GiB camviz allows per tensor$/);
    // int64 dims beyond 2^53 too.
    const beyond = modelWithInitializers([tensorProto({ name: 'huge', dims: [2n ** 62n], type: T.uint8, raw: [1] })]);
    assert.match(await parseError(beyond), /^tensor 'huge' declares .* more than the 2 GiB camviz allows per tensor$/);
    // Under the per-tensor limit, but the bytes are not there: checked before allocating 1.5 GiB.
    const before = process.memoryUsage().arrayBuffers;
    const large = modelWithInitializers([tensorProto({ name: 'large', dims: [3, 128, 1024, 1024], type: T.float, raw: floatBytes([1]) })]);
    assert.match(await parseError(large), /^tensor 'large' has 4 bytes of raw_data, but its dims \[3, 128, 1024, 1024\] of float32 need 1610612736$/);
    const typed = modelWithInitializers([tensorProto({ name: 'large', dims: [3, 128, 1024, 1024], type: T.float, fields: len(4, fixed32(1)) })]);
    assert.match(await parseError(typed), /^tensor 'large' stores 1 values, but its dims/);
    assert.ok(process.memoryUsage().arrayBuffers - before < 64 << 20, 'nothing of the declared size was allocated');
    // Many tensors each under the limit, together over the model limit.
    const many = modelWithInitializers(
      [0, 1, 2].map((index) => externalTensor(`part${index}`, [MAX_TENSOR_BYTES / 4], [['location', 'w.bin']])),
    );
    const error = await expectCamvizError(() => readOnnxFileFrom(many, 'many'));
    assert.match(error.message, /^the model's tensors declare more than the 4 GiB camviz allows in total \(at tensor 'part2'\)$/);
    assert.equal(MAX_TENSOR_BYTES, 2 ** 31);
  });

  test('a value produced by two nodes, or a node output that is also a graph input', async () => {
    const twice = modelProto(
      graphProto({
        nodes: [
          nodeProto({ name: 'a', op: 'Relu', inputs: ['x'], outputs: ['y'] }),
          nodeProto({ name: 'b', op: 'Sigmoid', inputs: ['x'], outputs: ['y'] }),
        ],
        inputs: [valueInfo('x', T.float, [1])],
      }),
    );
    assert.equal(await parseError(twice), "value 'y' is produced twice: by node 'a' and by node 'b'");
    const shadow = modelProto(
      graphProto({ nodes: [nodeProto({ op: 'Relu', inputs: ['x'], outputs: ['x'] })], inputs: [valueInfo('x', T.float, [1])] }),
    );
    assert.equal(await parseError(shadow), "value 'x' is produced twice: by a graph input and by node 'Relu'");
  });

  test('element types and attribute kinds camviz does not read are named', async () => {
    const bfloat = modelWithInitializers([tensorProto({ name: 'b', dims: [1], type: T.bfloat16, raw: [0, 0] })]);
    assert.equal(await parseError(bfloat), "tensor 'b' has data type BFLOAT16, which camviz does not read");
    const tensors = modelProto(
      graphProto({ nodes: [nodeProto({ name: 'n', op: 'X', inputs: [], outputs: ['y'], attributes: [attribute('ts', A.tensors, [])] })] }),
    );
    assert.equal(await parseError(tensors), "attribute 'ts' of node 'n' is of type TENSORS, which camviz does not read");
  });

  test('subgraphs nested without end are refused, not a stack overflow', async () => {
    let graph = graphProto({ nodes: [] });
    for (let depth = 0; depth < 200; depth++) {
      graph = graphProto({ nodes: [nodeProto({ op: 'If', inputs: [], outputs: [], attributes: [attribute('then_branch', A.graph, len(6, graph))] })] });
    }
    assert.equal(await parseError(modelProto(graph)), 'subgraphs nested more than 32 deep: refused');
  });

  test('a model with external data needs its file', async () => {
    const bytes = modelWithInitializers([externalTensor('w', [2], [['location', 'w.bin']])]);
    assert.equal(await parseError(bytes), "tensor 'w' keeps its data in an external file (w.bin): read the model from its file");
  });
});

// ------------------------------------------------------------------ readOnnxFile and external data

let folderCount = 0;
/** Writes `bytes` as model.onnx in a fresh folder (with `files` beside it) and reads it back. */
async function readOnnxFileFrom(bytes: Uint8Array, name: string, files: Record<string, Uint8Array> = {}): Promise<OnnxModel> {
  const folder = join(workDir, `${name}-${folderCount++}`);
  await mkdir(folder, { recursive: true });
  for (const [file, content] of Object.entries(files)) await writeFile(join(folder, file), content);
  await writeFile(join(folder, 'model.onnx'), bytes);
  return readOnnxFile(join(folder, 'model.onnx'));
}

describe('readOnnxFile and external data', () => {
  const weights = floatBytes([1, 2, 3, 4, 5, 6]);

  test('tensors read from one external file at their offsets, and from a folder', async () => {
    const bytes = modelWithInitializers([
      externalTensor('a', [2], [['location', 'weights.bin'], ['offset', '0'], ['length', '8']]),
      externalTensor('b', [3], [['location', 'weights.bin'], ['offset', '12']]),
      externalTensor('c', [1], [['location', 'sub/more.bin'], ['offset', '4'], ['length', '4']]),
    ]);
    const folder = join(workDir, 'external-ok');
    await mkdir(join(folder, 'sub'), { recursive: true });
    await writeFile(join(folder, 'weights.bin'), weights);
    await writeFile(join(folder, 'sub', 'more.bin'), floatBytes([7, 8]));
    await writeFile(join(folder, 'model.onnx'), bytes);
    for (const path of [join(folder, 'model.onnx'), folder]) {
      const model = await readOnnxFile(path);
      assert.deepEqual(initializer(model, 'a').data, Float32Array.from([1, 2]));
      assert.deepEqual(initializer(model, 'b').data, Float32Array.from([4, 5, 6]));
      assert.deepEqual(initializer(model, 'c').data, Float32Array.from([8]));
    }
  });

  test('a location with a NUL or another control character is refused: ONNX Runtime reads it only up to the NUL', async () => {
    // 'w.bin\0../etc/x' would be w.bin to ONNX Runtime and etc/x (inside the folder) to a path join: two different files.
    const folder = join(workDir, 'nul-location');
    await mkdir(join(folder, 'etc'), { recursive: true });
    await writeFile(join(folder, 'w.bin'), weights);
    await writeFile(join(folder, 'etc', 'x'), weights);
    for (const location of ['w.bin\u0000../etc/x', 'w.bin\n']) {
      await writeFile(join(folder, 'model.onnx'), modelWithInitializers([externalTensor('w', [2], [['location', location]])]));
      const error = await expectCamvizError(() => readOnnxFile(join(folder, 'model.onnx')));
      assert.match(error.message, /^tensor 'w' has external data at a location with a control character \('w\.bin(\\x00\.\.\/etc\/x|\\n)'\): refused$/);
    }
  });

  test("escaping the model's folder by '..', by an absolute path, or by a symbolic link is refused", async () => {
    const outside = join(workDir, 'outside.bin');
    await writeFile(outside, weights);
    for (const location of ['../outside.bin', 'sub/../../outside.bin', outside]) {
      const bytes = modelWithInitializers([externalTensor('w', [2], [['location', location]])]);
      const error = await expectCamvizError(() => readOnnxFileFrom(bytes, 'escape'));
      assert.equal(error.message, `tensor 'w' has external data at '${location}', outside the model folder: refused`);
      assert.match(error.file ?? '', /model\.onnx$/);
    }
    const folder = join(workDir, 'link');
    await mkdir(folder);
    await symlink(outside, join(folder, 'w.bin'));
    await writeFile(join(folder, 'model.onnx'), modelWithInitializers([externalTensor('w', [2], [['location', 'w.bin']])]));
    const error = await expectCamvizError(() => readOnnxFile(join(folder, 'model.onnx')));
    assert.match(error.message, /^external data file links outside the model folder \(to .*outside\.bin\): refused$/);
    assert.equal(error.file, join(folder, 'w.bin'));
  });

  test('an external data file that is a FIFO is refused at once, not waited on for a writer', { skip: skipWithoutFifos, timeout: 30_000 }, async () => {
    const folder = join(workDir, 'fifo-data');
    await mkdir(folder);
    const released = fifoReleasedAfter(join(folder, 'w.bin'));
    await writeFile(join(folder, 'model.onnx'), modelWithInitializers([externalTensor('w', [2], [['location', 'w.bin']])]));
    const error = await expectCamvizError(() => readOnnxFile(join(folder, 'model.onnx')));
    assert.equal(error.message, 'external data file is not a regular file: refused');
    assert.equal(released(), false, 'refused without waiting for a writer');
    assert.equal(error.file, join(folder, 'w.bin'));
  });

  test('a link to a file inside the folder is followed', async () => {
    const folder = join(workDir, 'inner-link');
    await mkdir(join(folder, 'data'), { recursive: true });
    await writeFile(join(folder, 'data', 'real.bin'), weights);
    await symlink(join(folder, 'data', 'real.bin'), join(folder, 'w.bin'));
    await writeFile(join(folder, 'model.onnx'), modelWithInitializers([externalTensor('w', [2], [['location', 'w.bin']])]));
    assert.deepEqual(initializer(await readOnnxFile(folder), 'w').data, Float32Array.from([1, 2]));
  });

  test('an external file shorter than offset + length, or missing, names it', async () => {
    const bytes = modelWithInitializers([externalTensor('w', [4], [['location', 'w.bin'], ['offset', '12']])]);
    const error = await expectCamvizError(() => readOnnxFileFrom(bytes, 'short', { 'w.bin': weights }));
    assert.equal(error.message, "external data file is too short for tensor 'w': 24 bytes, the tensor needs bytes 12 to 28");
    assert.match(error.file ?? '', /w\.bin$/);
    const missing = await expectCamvizError(() => readOnnxFileFrom(bytes, 'missing'));
    assert.equal(missing.message, 'external data file missing');
    assert.match(missing.file ?? '', /w\.bin$/);
  });

  test('an external length that disagrees with the dims, or a malformed offset', async () => {
    const wrongLength = modelWithInitializers([externalTensor('w', [4], [['location', 'w.bin'], ['length', '8']])]);
    const error = await expectCamvizError(() => readOnnxFileFrom(wrongLength, 'length', { 'w.bin': weights }));
    assert.equal(error.message, "tensor 'w' has 8 bytes of external data, but its dims 4 of float32 need 16");
    const badOffset = modelWithInitializers([externalTensor('w', [1], [['location', 'w.bin'], ['offset', '-4']])]);
    const offsetError = await expectCamvizError(() => readOnnxFileFrom(badOffset, 'offset', { 'w.bin': weights }));
    assert.equal(offsetError.message, "tensor 'w' has an external data offset that is not a byte count: '-4'");
  });

  test('a missing file or a folder without model.onnx', async () => {
    const missing = await expectCamvizError(() => readOnnxFile(join(workDir, 'nope.onnx')));
    assert.equal(missing.message, 'model not found');
    const folder = join(workDir, 'empty-folder');
    await mkdir(folder);
    const empty = await expectCamvizError(() => readOnnxFile(folder));
    assert.equal(empty.message, 'model folder has no model.onnx');
    assert.ok(missing instanceof CamvizError);
  });

  test('a device is refused, not read without end', { skip: existsSync('/dev/zero') ? false : 'no /dev/zero here' }, async () => {
    const error = await expectCamvizError(() => readOnnxFile('/dev/zero'));
    assert.equal(error.message, 'model is not a regular file');
    assert.equal(error.file, '/dev/zero');
  });
});
