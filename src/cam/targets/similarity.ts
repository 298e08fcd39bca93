/**
 * Embedding and backbone models (SimilarityToConceptTarget): Y is the
 * cosine similarity between the image's embedding and a reference
 * embedding ("what makes these two look alike"). The embedding is a
 * layer's output, averaged over its spatial axes when it is a 4-D feature
 * map, flattened otherwise.
 */
import * as tf from '../../engine/tf.js';
import type { Executor } from '../../executor/executor.js';
import type { GraphNode } from '../../executor/graph.js';
import { type ForwardValues, disposeValues } from '../../executor/network.js';
import { type Target, type TargetRecord, flatRows, rowCount } from './target.js';

export class SimilarityTarget implements Target {
  readonly kind = 'similarity';
  readonly layers: readonly GraphNode[];

  /**
   * @param embedding the layer whose (pooled) output is the embedding
   * @param reference the reference image's embedding (see `embeddingOf`)
   * @param referenceName the reference image, for the manifest
   */
  constructor(
    readonly embedding: GraphNode,
    readonly reference: Float32Array,
    readonly referenceName = '',
  ) {
    this.layers = [embedding];
  }

  /** One unit: the cosine similarity [rows, 1]. */
  scores(values: ForwardValues): tf.Tensor2D {
    const embeddings = pooledEmbeddings(values, this.embedding);
    if (embeddings.shape[1] !== this.reference.length) {
      throw new Error(`embedding of ${embeddings.shape[1]} values, reference of ${this.reference.length}`);
    }
    const reference = tf.tensor2d(this.reference, [this.reference.length, 1]);
    const dots = tf.matMul(embeddings, reference);
    const norms = tf.mul(tf.sqrt(tf.sum(tf.square(embeddings), 1, true)), tf.sqrt(tf.sum(tf.square(reference))));
    return tf.div(dots, tf.maximum(norms, 1e-12)) as tf.Tensor2D;
  }

  /** One unit: the similarity. */
  units(): number {
    return 1;
  }

  describe(): TargetRecord {
    return { kind: this.kind, embedding: this.embedding.path, ...(this.referenceName === '' ? {} : { reference: this.referenceName }) };
  }
}

/** The embeddings of a forward pass's rows [rows, features]. */
function pooledEmbeddings(values: ForwardValues, node: GraphNode): tf.Tensor2D {
  const output = values.layers.get(node.path);
  if (output === undefined) throw new Error(`the embedding layer ${node.path} did not run`);
  return output.rank === 4 ? (tf.mean(output, [1, 2]) as tf.Tensor2D) : flatRows(output, rowCount(values));
}

/** The embedding of the first image of `input` at layer `node`: a reference for SimilarityTarget. */
export async function embeddingOf(network: Executor, input: tf.Tensor, node: GraphNode): Promise<Float32Array> {
  const values = await network.forward(input, { layers: [node] });
  try {
    return Float32Array.from(tf.tidy(() => tf.slice(pooledEmbeddings(values, node), [0, 0], [1, -1]).dataSync()));
  } finally {
    disposeValues(values);
  }
}
