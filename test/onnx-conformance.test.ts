/**
 * ONNX's own backend node tests (Debian's libonnx-testdata) through the op
 * library, on cpu and wasm: zero failures among the claimed ops, the
 * claim covers what torchvision's classifiers export to (issue 11), and
 * every resampling, instance normalisation, transposed convolution, pixel
 * shuffle, LRN, along-an-axis, Einsum, ScatterND and pooling test passes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { DEFAULT_CONFORMANCE_DIR, runConformance } from '../scripts/onnx-conformance.js';
import { SUPPORTED_OPS } from '../src/model/onnx/interpret.js';
import { forEachBackend } from './helpers/backends.js';

const skipWithoutTestData: string | false = existsSync(DEFAULT_CONFORMANCE_DIR)
  ? false
  : `ONNX conformance tests not found at ${DEFAULT_CONFORMANCE_DIR} (apt-get install -y libonnx-testdata)`;

/** Issue 11's op list. */
const REQUIRED_OPS = [
  'Conv', 'BatchNormalization', 'Gemm', 'MatMul', 'Relu', 'Clip', 'LeakyRelu', 'Sigmoid', 'HardSigmoid', 'HardSwish', 'Erf',
  'Add', 'Sub', 'Mul', 'Div', 'Concat', 'Split', 'Slice', 'Reshape', 'Transpose', 'Flatten', 'Squeeze', 'Unsqueeze',
  'GlobalAveragePool', 'GlobalMaxPool', 'AveragePool', 'MaxPool', 'ReduceMean', 'ReduceSum', 'ReduceMax', 'Pad', 'Softmax',
  'LogSoftmax', 'Dropout', 'Identity', 'LayerNormalization', 'Constant', 'Shape', 'Gather', 'Cast', 'ConstantOfShape',
  'Expand', 'Tanh', 'Exp', 'Log', 'Sqrt', 'Pow', 'Neg', 'Abs', 'Min', 'Max', 'Sum', 'Mean', 'Equal', 'Less', 'Greater',
  'Where', 'Not', 'Range', 'ReduceL2', 'Gelu',
];

/** Claimed ops that this ONNX test data (ONNX 1.12, opsets up to 17) has no test for (covered by test/onnx-ops.test.ts instead). */
const NOT_IN_TEST_DATA = new Set(['Gelu', 'Mish', 'GroupNormalization']);

/**
 * Resampling and instance normalisation tests, which must all pass (none
 * skipped by a refusal), but for the Resize attributes camviz refuses
 * (newer ONNX test data has them): antialias and keep_aspect_ratio_policy.
 */
const RESAMPLING_TESTS = /^test_(resize|upsample|instancenorm)_/;
const KNOWN_RESAMPLING_REFUSALS = /antialias|not_larger|not_smaller/;

/**
 * The decoder, pixel-shuffle, normalisation, along-an-axis, Einsum and
 * ScatterND ops, whose tests must all pass but for the 3-D ConvTranspose
 * camviz refuses.
 */
const DECODER_TESTS = /^test_(convtranspose|depthtospace|spacetodepth|lrn|sign|round|sin|cos|isnan|isinf|cumsum|argmax|argmin|hardmax|gather_elements|einsum|scatternd)(_|$)/;
const KNOWN_DECODER_REFUSALS = /^test_convtranspose_3d$/;

/** The pools' tests (1-D, 2-D and 3-D), which must all pass but for MaxPool's Indices output, which camviz refuses. */
const POOL_TESTS = /^test_(maxpool|averagepool)_/;
const KNOWN_POOL_REFUSALS = /^test_maxpool_with_argmax_/;

test('the claimed ops include every op issue 11 lists', () => {
  assert.deepEqual(REQUIRED_OPS.filter((op) => !SUPPORTED_OPS.includes(op)), []);
});

forEachBackend(() => {
  test('every conformance test of a claimed op passes, and every claimed op is exercised', { skip: skipWithoutTestData }, () => {
    const summary = runConformance();
    const failures = summary.results.filter((result) => result.status === 'failed').map((result) => `${result.test}: ${result.detail}`);
    assert.deepEqual(failures, []);
    assert.equal(summary.passed + summary.skipped, summary.results.length);
    const exercised = new Set(summary.results.filter((result) => result.status === 'passed').flatMap((result) => result.ops));
    assert.deepEqual(SUPPORTED_OPS.filter((op) => !exercised.has(op) && !NOT_IN_TEST_DATA.has(op)), []);
    // Skips name their reason: an unclaimed op or what the op library refused.
    for (const result of summary.results.filter((r) => r.status === 'skipped')) assert.notEqual(result.detail, '', result.test);
  });

  test('every Resize, Upsample and InstanceNormalization test passes, but for the attributes camviz refuses', { skip: skipWithoutTestData }, () => {
    const resampling = runConformance().results.filter((result) => RESAMPLING_TESTS.test(result.test));
    // Debian's test data (ONNX 1.12) has 26 of them.
    assert.ok(resampling.length >= 26, `${resampling.length} resampling tests`);
    const unexpected = resampling.filter((result) => result.status !== (KNOWN_RESAMPLING_REFUSALS.test(result.test) ? 'skipped' : 'passed'));
    assert.deepEqual(unexpected.map((result) => `${result.test}: ${result.status} ${result.detail}`), []);
  });

  test('every ConvTranspose, DepthToSpace, SpaceToDepth, LRN, CumSum, ArgMax/ArgMin, Hardmax, GatherElements, Einsum, ScatterND and elementwise test passes, but for 3-D ConvTranspose', { skip: skipWithoutTestData }, () => {
    const decoder = runConformance().results.filter((result) => DECODER_TESTS.test(result.test));
    // Debian's test data (ONNX 1.12) has 85 of them (5 Einsum, 3 ScatterND).
    assert.ok(decoder.length >= 85, `${decoder.length} decoder tests`);
    const unexpected = decoder.filter((result) => result.status !== (KNOWN_DECODER_REFUSALS.test(result.test) ? 'skipped' : 'passed'));
    assert.deepEqual(unexpected.map((result) => `${result.test}: ${result.status} ${result.detail}`), []);
    // The refusals are the op library's, naming what it does not support.
    for (const result of decoder.filter((r) => r.status === 'skipped')) assert.match(result.detail, /ConvTranspose .*: 3-D data \(only 1-D and 2-D are supported\)/);
  });

  test('every MaxPool and AveragePool test passes, 1-D and 3-D too, but for the Indices output', { skip: skipWithoutTestData }, () => {
    const pools = runConformance().results.filter((result) => POOL_TESTS.test(result.test));
    // Debian's test data (ONNX 1.12) has 28 of them (2 1-D, 2 3-D).
    assert.ok(pools.length >= 28, `${pools.length} pool tests`);
    const unexpected = pools.filter((result) => result.status !== (KNOWN_POOL_REFUSALS.test(result.test) ? 'skipped' : 'passed'));
    assert.deepEqual(unexpected.map((result) => `${result.test}: ${result.status} ${result.detail}`), []);
  });
});
