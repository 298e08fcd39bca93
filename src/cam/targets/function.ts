/**
 * A user's objective as a target (the library's "any objective function",
 * as pytorch-grad-cam's targets are callables on one image's output): a
 * function of the forward values and a row that returns that row's Y.
 */
import * as tf from '../../engine/tf.js';
import type { ForwardValues } from '../../executor/network.js';
import type { GraphNode } from '../../executor/graph.js';
import { type Target, type TargetRecord, rowCount } from './target.js';

/** Y of row `row` of `values` (a scalar built from them, so that it can be differentiated). */
export type TargetFunction = (values: ForwardValues, row: number) => tf.Scalar;

export class FunctionTarget implements Target {
  readonly kind = 'function';

  /** @param layers layers the function reads from `values.layers` */
  constructor(
    private readonly fn: TargetFunction,
    readonly layers: readonly GraphNode[] = [],
  ) {}

  /** One unit: [rows, 1]. */
  scores(values: ForwardValues): tf.Tensor2D {
    const rows = Array.from({ length: rowCount(values) }, (_, row) => tf.reshape(this.fn(values, row), []));
    return tf.reshape(tf.stack(rows), [-1, 1]) as tf.Tensor2D;
  }

  units(): number {
    return 1;
  }

  describe(): TargetRecord {
    return { kind: this.kind };
  }
}
