/**
 * Runs ONNX's own backend node tests (Debian's libonnx-testdata) through
 * camviz's op library: every test whose ops camviz claims must reproduce
 * the expected outputs (rtol 1e-3, atol 1e-5 as ONNX's backend tests; exact
 * for integers and booleans). Tests with an unclaimed op, or an attribute
 * combination the op library refuses, are listed as skipped with the
 * reason.
 *
 *   npm run onnx-conformance [-- [<folder of test folders>] [--backend cpu|wasm]]
 *
 * The cpu backend unless --backend says otherwise. Prints a table (test, ops, result) and `N passed, M failed, K skipped`;
 * exits 1 if any claimed test fails.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '../src/engine/tf.js';
import { parseBackendChoice, useBackend } from '../src/engine/backend.js';
import { describeError } from '../src/util/errors.js';
import { defaultOpset, interpretGraph, laid, supportedOp, tensorFromOnnx, toLayout, UnsupportedOpError, type LaidTensor, type Layout } from '../src/model/onnx/interpret.js';
import { parseOnnxModel, parseOnnxTensor } from '../src/model/onnx/parse.js';
import type { OnnxModel, OnnxTensor } from '../src/model/onnx/types.js';

export const DEFAULT_CONFORMANCE_DIR = '/usr/share/libonnx-testdata/data/node';
export const RTOL = 1e-3;
export const ATOL = 1e-5;

export type ConformanceStatus = 'passed' | 'failed' | 'skipped';

export interface ConformanceResult {
  test: string;
  ops: string[];
  status: ConformanceStatus;
  /** Why it failed or was skipped. */
  detail: string;
}

export interface ConformanceSummary {
  results: ConformanceResult[];
  passed: number;
  failed: number;
  skipped: number;
}

/** Run every test folder under `dir` (sorted by name). Needs a tfjs backend set. */
export function runConformance(dir: string = DEFAULT_CONFORMANCE_DIR): ConformanceSummary {
  const tests = readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && existsSync(join(dir, entry.name, 'model.onnx')))
    .map((entry) => entry.name)
    .sort();
  const results = tests.map((test) => runOne(join(dir, test), test));
  const count = (status: ConformanceStatus): number => results.filter((result) => result.status === status).length;
  return { results, passed: count('passed'), failed: count('failed'), skipped: count('skipped') };
}

function runOne(folder: string, test: string): ConformanceResult {
  let model: OnnxModel;
  try {
    model = parseOnnxModel(readFileSync(join(folder, 'model.onnx')), join(folder, 'model.onnx'));
  } catch (error) {
    return { test, ops: [], status: 'skipped', detail: `model not readable: ${describeError(error)}` };
  }
  const ops = [...new Set(model.graph.nodes.map((node) => node.opType))].sort();
  const opset = defaultOpset(model);
  const foreign = model.graph.nodes.filter((node) => node.domain !== '' && node.domain !== 'ai.onnx').map((node) => `${node.domain}.${node.opType}`);
  const unclaimed = [...new Set([...foreign, ...ops.filter((op) => !supportedOp(op, opset))])];
  if (unclaimed.length > 0) return { test, ops, status: 'skipped', detail: `unclaimed at opset ${opset}: ${unclaimed.join(', ')}` };
  const sets = readdirSync(folder)
    .filter((name) => name.startsWith('test_data_set_'))
    .sort();
  for (const set of sets) {
    const outcome = runDataSet(model, join(folder, set));
    if (outcome !== undefined) return { test, ops, ...outcome };
  }
  return { test, ops, status: 'passed', detail: '' };
}

/** undefined when the data set passes. */
function runDataSet(model: OnnxModel, folder: string): { status: ConformanceStatus; detail: string } | undefined {
  let inputs: OnnxTensor[];
  let expected: OnnxTensor[];
  try {
    inputs = readTensors(folder, 'input');
    expected = readTensors(folder, 'output');
  } catch (error) {
    // Sequence and optional values are not TensorProtos; camviz has no op that takes them.
    return { status: 'skipped', detail: `test data not readable as tensors: ${describeError(error)}` };
  }
  if (inputs.some((tensor) => tensor.type === 'string') || expected.some((tensor) => tensor.type === 'string')) {
    return { status: 'skipped', detail: 'string tensors' };
  }
  const given = model.graph.inputs.map((info, i) => ({ info, tensor: inputs.find((input) => input.name === info.name) ?? inputs[i] }));
  // Some tests store types camviz does not read (bfloat16) in another type's data.
  const mistyped = given.find(({ info, tensor }) => tensor !== undefined && info.type !== tensor.type);
  if (mistyped !== undefined) {
    return { status: 'skipped', detail: `input ${mistyped.info.name} is declared ${mistyped.info.type ?? 'of a type camviz does not read'} but stored as ${mistyped.tensor!.type}` };
  }
  // Each data set runs twice: as ONNX gives it, and with every 4-D input stored 'nhwc' (as camviz feeds images).
  for (const layout of ['onnx', 'nhwc'] as const) {
    const outcome = runWithLayout(model, given, expected, layout);
    if (outcome !== undefined) return { status: outcome.status, detail: `${layout} inputs: ${outcome.detail}` };
  }
  return undefined;
}

function runWithLayout(
  model: OnnxModel,
  given: { info: { name: string }; tensor: OnnxTensor | undefined }[],
  expected: OnnxTensor[],
  layout: Layout,
): { status: ConformanceStatus; detail: string } | undefined {
  const before = tf.memory().numTensors;
  const feeds = new Map<string, LaidTensor>();
  for (const { info, tensor } of given) if (tensor !== undefined) feeds.set(info.name, storedAs(tensorFromOnnx(tensor), layout));
  const fetches = model.graph.outputs.map((output) => output.name);
  try {
    const actual = interpretGraph(model, feeds, fetches);
    const problems = fetches.map((name, i) => {
      const value = actual.get(name)!;
      const want = expected.find((tensor) => tensor.name === name) ?? expected[i];
      const problem = want === undefined ? undefined : compare(value, want);
      value.tensor.dispose();
      return problem === undefined ? undefined : `${name}: ${problem}`;
    });
    const first = problems.find((problem) => problem !== undefined);
    if (first !== undefined) return { status: 'failed', detail: first };
  } catch (error) {
    return { status: error instanceof UnsupportedOpError ? 'skipped' : 'failed', detail: describeError(error) };
  } finally {
    for (const feed of feeds.values()) feed.tensor.dispose();
  }
  const leaked = tf.memory().numTensors - before;
  return leaked === 0 ? undefined : { status: 'failed', detail: `${leaked} tensors leaked` };
}

/** A fed value stored in `layout` when it is 4-D ('onnx' otherwise). */
function storedAs(tensor: tf.Tensor, layout: Layout): LaidTensor {
  if (layout === 'onnx' || tensor.rank !== 4) return laid(tensor);
  const stored = toLayout(laid(tensor), 'nhwc');
  tensor.dispose();
  return laid(stored, 'nhwc');
}

function readTensors(folder: string, kind: 'input' | 'output'): OnnxTensor[] {
  const files = readdirSync(folder).filter((name) => new RegExp(`^${kind}_\\d+\\.pb$`).test(name));
  files.sort((a, b) => Number(a.replace(/\D/g, '')) - Number(b.replace(/\D/g, '')));
  return files.map((name) => parseOnnxTensor(readFileSync(join(folder, name)), join(folder, name)));
}

const FLOAT_TYPES = new Set(['float32', 'float64', 'float16']);

/** undefined when `actual` matches `expected`; else what differs. */
export function compare(actual: LaidTensor, expected: OnnxTensor): string | undefined {
  const tensor = toLayout(actual, 'onnx');
  try {
    const shape = tensor.shape.join('x');
    if (shape !== expected.dims.join('x')) return `shape ${shape}, expected ${expected.dims.join('x')}`;
    const wantDtype = FLOAT_TYPES.has(expected.type) ? 'float32' : expected.type === 'bool' ? 'bool' : 'int32';
    if (tensor.dtype !== wantDtype) return `dtype ${tensor.dtype}, expected ${wantDtype} (ONNX ${expected.type})`;
    const got = tensor.dataSync();
    const want = tensorFromOnnx(expected);
    // Integers compare with the exact ONNX values (int64 included), floats after float32 rounding.
    const reference: ArrayLike<number | bigint> = wantDtype === 'float32' ? want.dataSync() : (expected.data as ArrayLike<number | bigint>);
    want.dispose();
    for (let i = 0; i < got.length; i++) {
      const a = Number(got[i]);
      const e = Number(reference[i]);
      const close = wantDtype === 'float32' ? Math.abs(a - e) <= ATOL + RTOL * Math.abs(e) || (Number.isNaN(a) && Number.isNaN(e)) || a === e : a === e;
      if (!close) return `element ${i} is ${a}, expected ${e}`;
    }
    return undefined;
  } finally {
    if (tensor !== actual.tensor) tensor.dispose();
  }
}

/** One row per test: test, ops, result (and why, unless it passed); then the totals. */
export function formatTable(summary: ConformanceSummary): string {
  const rows = summary.results.map((result) => [result.test, result.ops.join(' ') || '-', result.detail === '' ? result.status : `${result.status} (${result.detail})`] as const);
  const testWidth = Math.max(4, ...rows.map(([test]) => test.length));
  // A few expanded tests list a dozen ops: they overflow their row rather than widen every row.
  const opsWidth = Math.min(40, Math.max(3, ...rows.map(([, ops]) => ops.length)));
  const line = ([test, ops, result]: readonly [string, string, string]): string => `${test.padEnd(testWidth)}  ${ops.padEnd(opsWidth)}  ${result}`;
  const totals = `${summary.passed} passed, ${summary.failed} failed, ${summary.skipped} skipped`;
  return [line(['test', 'ops', 'result']), ...rows.map(line), totals].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const backendAt = argv.indexOf('--backend');
  const backend = backendAt >= 0 ? parseBackendChoice(argv[backendAt + 1]) : 'cpu';
  const dir = argv.find((arg, i) => !arg.startsWith('--') && (backendAt < 0 || i !== backendAt + 1)) ?? DEFAULT_CONFORMANCE_DIR;
  if (!existsSync(dir)) {
    console.error(`camviz: no ONNX conformance tests at ${dir} (apt-get install -y libonnx-testdata)`);
    return 2;
  }
  await useBackend(backend);
  const summary = runConformance(dir);
  console.log(formatTable(summary));
  return summary.failed > 0 ? 1 : 0;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = await main(process.argv.slice(2));
}
