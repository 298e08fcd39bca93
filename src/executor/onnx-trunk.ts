/**
 * A model as ONNX Runtime runs it: an ONNX graph, and where each value of
 * the executor's graph (`LayerGraph` tensor keys) lives in it. Importers
 * provide one (an ONNX file as it is; a TF.js model through camviz's ONNX
 * writer); the ONNX Runtime executor consumes it. Data only, so that the
 * executor needs nothing of the importers.
 */

/** How a value's data is laid out in ONNX relative to camviz's tensor of it. */
export type OnnxValueLayout =
  /** The same shape and order as camviz's tensor. */
  | 'same'
  /** camviz holds the 4-D value NHWC; ONNX holds it NCHW (transpose [0, 2, 3, 1] to get camviz's). */
  | 'nchw';

export interface OnnxValue {
  /** The ONNX value name (a node output or a graph input). */
  readonly name: string;
  readonly layout: OnnxValueLayout;
}

export interface OnnxTrunk {
  /** Identifies the graph and its input size, for session caches (e.g. sha256 and H×W). */
  readonly cacheKey: string;
  /** The ONNX input that takes camviz's NHWC input tensor (layout 'nchw': transposed to NCHW first). */
  readonly input: OnnxValue;
  /** The fixed input size of the graph (ONNX Runtime sessions are made per size). */
  readonly inputSize: { readonly height: number; readonly width: number };
  /** Where ONNX Runtime finds the external data of `withOutputs`' bytes (their locations are relative to it); absent: the model has none. */
  readonly externalDataFolder?: string;
  /** The ONNX value holding an executor graph tensor, or undefined when ONNX has no such value (e.g. fused away). */
  valueOf(key: string): OnnxValue | undefined;
  /**
   * The serialized ModelProto with these values added as graph outputs (ONNX
   * Runtime fetches graph outputs only). Values already outputs are not
   * added twice.
   */
  withOutputs(names: readonly string[]): Uint8Array;
}
