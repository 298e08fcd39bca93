/**
 * The importer core that the ONNX and TF.js graph importers share: a model
 * file's graph becomes a tfjs-layers functional model of camviz's own
 * layers, one per node (or group of nodes) that computes on the image, so
 * that the executor, hooks, fmap, CAM methods, predict and layers work on
 * it unchanged. Each format plans its layers (what a node reads, its output
 * shapes at load, the Keras class it shows) and says how one runs; the
 * layer base and the wiring into a model are here.
 */
import { CamvizError } from '../../util/errors.js';
import * as tfl from '../../engine/tfl.js';

/** What an imported node layer shows the executor and the CAM methods, fixed at load. */
export interface NodeLayerPlan {
  /** The Keras class of the same semantics where there is one (ReLU, Softmax, GlobalAveragePooling2D...), else the format's op name. */
  readonly className: string;
  /** Per output, its shape with the batch dim null (as planned at load). */
  readonly outputShapes: readonly (number | null)[][];
}

/** A layer computing one node of an imported graph; subclasses implement `call`. */
export abstract class ImportedNodeLayer<Plan extends NodeLayerPlan> extends tfl.LayerClass {
  readonly plan: Plan;

  constructor(name: string, plan: Plan) {
    super({ name, trainable: false });
    this.plan = plan;
  }

  /** The executor's fusion, score location and CAM methods read the class. */
  override getClassName(): string {
    return this.plan.className;
  }

  override computeOutputShape(): (number | null)[] | (number | null)[][] {
    const shapes = this.plan.outputShapes;
    return shapes.length === 1 ? [...shapes[0]!] : shapes.map((shape) => [...shape]);
  }
}

/** One layer to apply: the value keys it reads (its inputs, in order) and writes (its outputs, in order). */
export interface WiredLayer {
  readonly layer: tfl.layers.Layer;
  readonly reads: readonly string[];
  readonly writes: readonly string[];
}

/**
 * The functional model of `layers` (in run order) on `input`, whose value
 * key is `inputKey`; `outputs` are the graph's output keys. `missing` makes
 * the error for an output that does not depend on the input; `file` is
 * named by the error for a graph too deep to build.
 */
export function wireLayersModel(
  input: tfl.SymbolicTensor,
  values: Map<string, tfl.SymbolicTensor>,
  layers: Iterable<WiredLayer>,
  outputs: readonly string[],
  name: string,
  missing: (key: string) => Error,
  file: string,
): tfl.LayersModel {
  let wired = 0;
  for (const { layer, reads, writes } of layers) {
    wired++;
    const inputs = reads.map((key) => values.get(key)!);
    const applied = layer.apply(inputs.length === 1 ? inputs[0]! : inputs);
    const written = Array.isArray(applied) ? applied : [applied];
    writes.forEach((key, i) => values.set(key, written[i] as tfl.SymbolicTensor));
  }
  const symbolic = outputs.map((key) => {
    const value = values.get(key);
    if (value === undefined) throw missing(key);
    return value;
  });
  try {
    return tfl.model({ inputs: input, outputs: symbolic.length === 1 ? symbolic[0]! : symbolic, name });
  } catch (error) {
    // tfjs-layers walks the graph recursively: a chain of some thousands of layers overflows the stack, which said only "Maximum call stack size exceeded".
    if (error instanceof RangeError) throw new CamvizError(`the graph is too deep for tfjs-layers to build: ${wired} layers, whose longest chain runs out of stack`, { file });
    throw error;
  }
}
