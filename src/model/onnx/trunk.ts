/**
 * The OnnxTrunk of an ONNX file as camviz loaded it: ONNX Runtime runs the
 * file's own graph, and each value of the executor's graph is the ONNX
 * value its layer computes. The import (build.ts) made one layer per ONNX
 * node that computes on the image, whose outputs in order are the node's
 * outputs; a value stored 'nhwc' is NCHW in ONNX. Constants folded at load
 * and folded Pads have no layer, hence no graph key.
 *
 * ONNX Runtime fetches graph outputs only: `withOutputs` appends a second
 * GraphProto holding only `output` entries to the file's bytes, which
 * protobuf merges into the first (repeated fields append), so the weights
 * are not re-encoded. ORT needs no type on these outputs (it infers them).
 * The trunk keeps no bytes: `withOutputs` reads the file again for each
 * session made (a few per run), where keeping them would hold a copy of the
 * file, as large as the model's weights, in every worker for the whole run.
 */
import { closeSync, realpathSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { CamvizError } from '../../util/errors.js';
import { openRegularFileSync, readSyncFromStart } from '../../util/read-whole-file.js';
import type { LayerGraph } from '../../executor/graph.js';
import type { OnnxTrunk, OnnxValue } from '../../executor/onnx-trunk.js';
import { OrtModelRejectedError } from '../../executor/ort.js';
import { ImportedNodeLayer } from '../graph-import/node-layer.js';
import { forgetFingerprint, namesFileSync } from '../file-fingerprints.js';
import { onnxCacheDir } from '../onnx-writer/cache-limit.js';
import type { OnnxExternalData } from './read.js';
import { createReader, embeddedEnd, forEachField, lengthDelimitedField, readString } from './proto.js';

/** ModelProto.graph, GraphProto.output, ValueInfoProto.name (ONNX IR field numbers). */
const MODEL_GRAPH = 7;
const GRAPH_OUTPUT = 12;
const VALUE_INFO_NAME = 1;

/** What an ONNX node layer's plan tells about its node (see build.ts PlannedLayer). */
interface OnnxNodePlan {
  readonly node: { readonly outputs: readonly string[] };
  readonly runtimeInputs: readonly string[];
  readonly outputLayouts: readonly string[];
}

function onnxPlanOf(layer: unknown): OnnxNodePlan | undefined {
  if (!(layer instanceof ImportedNodeLayer)) return undefined;
  const plan = layer.plan as Partial<OnnxNodePlan>;
  return Array.isArray(plan.node?.outputs) && Array.isArray(plan.runtimeInputs) && Array.isArray(plan.outputLayouts) ? (plan as OnnxNodePlan) : undefined;
}

/**
 * The trunk of the ONNX file `file` (whose sha256 at load was `sha256`),
 * built by camviz as `graph` for an input of `size`. The file is not read
 * here: a session made from the saved optimised graph (or ahead, in a
 * worker) never needs its bytes; `withOutputs` reads them for each session
 * made from the file, and refuses them when they are not the file loaded.
 * A graph that takes one channel is refused: camviz feeds ONNX Runtime its
 * RGB input as it is.
 */
export async function onnxTrunkOf(file: string, sha256: string, graph: LayerGraph, size: { height: number; width: number }, externalData?: OnnxExternalData): Promise<OnnxTrunk> {
  const values = valuesOf(graph);
  const inputKey = graph.inputKeys[0];
  const input = inputKey === undefined ? undefined : values.get(inputKey);
  if (input === undefined || graph.inputKeys.length !== 1) {
    throw new OrtModelRejectedError('camviz feeds ONNX Runtime a 3-channel image; this graph takes another input', file);
  }
  return {
    // With external data, the key covers the weights there too: a saved optimised graph holds them.
    cacheKey: `${externalData?.fingerprint ?? sha256}:${size.height}x${size.width}`,
    input,
    inputSize: { height: size.height, width: size.width },
    ...(externalData === undefined ? {} : { externalDataFolder: externalData.folder }),
    valueOf: (key) => values.get(key),
    withOutputs: (names) => {
      const bytes = loadedFileWithOutputs(file, sha256, names);
      if (externalData !== undefined) checkExternalData(externalData);
      return bytes;
    },
  };
}

/**
 * Refuses external data files that are no longer those the model was loaded
 * from (written, replaced, a link turned elsewhere): ONNX Runtime opens them
 * by their locations again when it makes a session from the bytes, and its
 * session, saved under the fingerprint of what camviz read, must hold those
 * weights.
 */
function checkExternalData(externalData: OnnxExternalData): void {
  for (const { path, identity } of externalData.files) {
    if (!namesFileSync(path, identity)) throw new CamvizError('the ONNX file\'s external data changed since it was loaded', { file: path });
  }
}

/**
 * The bytes of `file`, checked to be the file loaded (whose sha256 was
 * `sha256`), with `names` appended as graph outputs (those that are not
 * outputs already). Read synchronously (`withOutputs` returns the bytes)
 * into a buffer with room for the appended outputs, so that appending them
 * copies no file (a fresh 14 MB copy costs MobileNet v1 about 45 ms of page
 * faults on this kind of VM).
 */
function loadedFileWithOutputs(file: string, sha256: string, names: readonly string[]): Uint8Array {
  const room = graphOutputsTail(names).length;
  const { bytes, size } = readWithRoom(file, room);
  const model = bytes.subarray(0, size);
  if (createHash('sha256').update(model).digest('hex') !== sha256) {
    // The file changed, or the fingerprint recorded by its identity was wrong: either way the next run hashes it (awaited by the event loop).
    void forgetFingerprint(onnxCacheDir(), realPathOf(file));
    throw new CamvizError('the ONNX file changed since it was loaded', { file });
  }
  const outputs = new Set(graphOutputNames(model));
  const tail = graphOutputsTail(names.filter((name) => !outputs.has(name)));
  bytes.set(tail, size);
  return bytes.subarray(0, size + tail.length);
}

function realPathOf(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return file;
  }
}

/** The whole file, in a buffer `room` bytes longer than it. */
function readWithRoom(file: string, room: number): { bytes: Buffer; size: number } {
  let fd: number | undefined;
  try {
    // Not waiting for a FIFO's writer: a file swapped for one since the load is refused (EINVAL), not read without end.
    const opened = openRegularFileSync(file);
    fd = opened.fd;
    const capacity = Number(opened.stats.size);
    const bytes = Buffer.allocUnsafe(capacity + room);
    // Up to the size at open: a file that shrank or grew since differs from the one loaded, which the hash tells.
    return { bytes, size: readSyncFromStart(fd, bytes, capacity) };
  } catch (error) {
    throw unreadable(file, error);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function unreadable(file: string, error: unknown): CamvizError {
  return new CamvizError(`cannot read the ONNX file again (${(error as NodeJS.ErrnoException).code ?? String(error)})`, { file, cause: error });
}

/** Graph key -> ONNX value, for every value a node layer computes and for the image input. */
function valuesOf(graph: LayerGraph): Map<string, OnnxValue> {
  const values = new Map<string, OnnxValue>();
  for (const node of graph.nodes) {
    const plan = onnxPlanOf(node.layer);
    if (plan === undefined) continue;
    node.outputs.forEach((key, i) => {
      const name = plan.node.outputs[i];
      if (name !== undefined && name !== '') values.set(key, { name, layout: plan.outputLayouts[i] === 'nhwc' ? 'nchw' : 'same' });
    });
    // The image input, as the first layer that reads it names it.
    node.inputs.forEach((key, i) => {
      const name = plan.runtimeInputs[i];
      if (graph.inputKeys.includes(key) && name !== undefined && !values.has(key)) values.set(key, { name, layout: 'nchw' });
    });
  }
  return values;
}

/** The names of the graph's outputs, read from the bytes (everything else skipped). */
export function graphOutputNames(bytes: Uint8Array): string[] {
  const names: string[] = [];
  const reader = createReader(bytes);
  forEachField(reader, bytes.length, (field, wireType) => {
    if (field !== MODEL_GRAPH) return false;
    const graphEnd = embeddedEnd(reader, field, wireType);
    forEachField(reader, graphEnd, (graphField, graphWire) => {
      if (graphField !== GRAPH_OUTPUT) return false;
      const end = embeddedEnd(reader, graphField, graphWire);
      forEachField(reader, end, (infoField, infoWire) => {
        if (infoField !== VALUE_INFO_NAME) return false;
        names.push(readString(reader, infoField, infoWire));
        return true;
      });
      return true;
    });
    return true;
  });
  return names;
}

/** A ModelProto holding only a graph with `names` as its outputs: appended to a model's bytes, protobuf merges it in. Empty for no name. */
function graphOutputsTail(names: readonly string[]): Uint8Array {
  const unique = [...new Set(names)];
  if (unique.length === 0) return new Uint8Array(0);
  const utf8 = new TextEncoder();
  const outputs = unique.map((name) => lengthDelimitedField(GRAPH_OUTPUT, lengthDelimitedField(VALUE_INFO_NAME, utf8.encode(name))));
  return lengthDelimitedField(MODEL_GRAPH, Buffer.concat(outputs));
}
