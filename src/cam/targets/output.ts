/**
 * Regression and multi-output models: Y is one scalar unit of one model
 * output (its value as the model outputs it, flattened per image).
 */
import type * as tf from '../../engine/tf.js';
import type { Executor } from '../../executor/executor.js';
import type { ForwardValues } from '../../executor/network.js';
import { type Target, type TargetRecord, flatRows, rowCount, unitCount, valueShape } from './target.js';

export class OutputTarget implements Target {
  readonly kind = 'output';
  readonly layers = [];

  /**
   * @param outputIndex the output's position in the model's outputs
   * @param outputName its name, for the manifest
   */
  constructor(
    readonly outputIndex: number,
    readonly outputName: string,
  ) {}

  scores(values: ForwardValues): tf.Tensor2D {
    const output = values.outputs[this.outputIndex];
    if (output === undefined) throw new Error(`the model has ${values.outputs.length} outputs, not ${this.outputIndex + 1}`);
    return flatRows(output, rowCount(values));
  }

  /** The output's values per image, flattened. */
  units(network: Executor): number | undefined {
    const key = network.graph.outputKeys[this.outputIndex];
    return key === undefined ? undefined : unitCount(valueShape(network, key));
  }

  describe(unit: number): TargetRecord {
    return { kind: this.kind, output: this.outputName, unit };
  }
}
