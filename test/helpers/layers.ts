/**
 * What a test may observe of tfjs-layers objects, so that it can prove that
 * camviz's graph runner and hooks leave a model exactly as it found it; and
 * which gradient kernels the wasm backend lacks, so that backward tests skip
 * with a reason instead of failing.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

type Layer = tfl.layers.Layer;

export const CONV_GRADIENT_KERNELS = [tf.Conv2DBackpropInput, tf.Conv2DBackpropFilter];
export const DEPTHWISE_GRADIENT_KERNELS = [tf.DepthwiseConv2dNativeBackpropInput, tf.DepthwiseConv2dNativeBackpropFilter];

/** Gradient kernels a wasm backward pass through convolutions needs, if missing: a skip reason, else false. */
export function missingGradientKernels(kernels: readonly string[]): string | false {
  if (tf.getBackend() !== 'wasm') return false;
  const missing = kernels.filter((name) => tf.getKernel(name, 'wasm') === undefined);
  return missing.length === 0 ? false : `wasm lacks the ${missing.join(', ')} kernel (src/model/wasm-kernels.ts)`;
}

/**
 * What a test may observe of a layer object: own property names with their
 * descriptors (value identity), the lengths of its node lists (mutated in
 * place by symbolic calls), and the prototype's `call`.
 */
export interface LayerSnapshot {
  names: string[];
  descriptors: Map<string, PropertyDescriptor>;
  nodeCounts: [number, number];
  protoCall: unknown;
}

export function snapshotLayer(layer: Layer): LayerSnapshot {
  const names = Object.getOwnPropertyNames(layer);
  const view = layer as unknown as { inboundNodes: unknown[]; outboundNodes: unknown[] };
  return {
    names,
    descriptors: new Map(names.map((name) => [name, Object.getOwnPropertyDescriptor(layer, name)!])),
    nodeCounts: [view.inboundNodes.length, view.outboundNodes.length],
    protoCall: (Object.getPrototypeOf(layer) as { call: unknown }).call,
  };
}

export function assertUnchanged(layer: Layer, before: LayerSnapshot): void {
  const after = snapshotLayer(layer);
  assert.deepEqual(after.names, before.names, `${layer.name}: own property names changed`);
  for (const [name, descriptor] of before.descriptors) {
    const now = after.descriptors.get(name)!;
    for (const field of ['value', 'get', 'set', 'writable', 'enumerable', 'configurable'] as const) {
      assert.ok(Object.is(now[field], descriptor[field]), `${layer.name}.${name}: descriptor field ${field} changed`);
    }
  }
  assert.deepEqual(after.nodeCounts, before.nodeCounts, `${layer.name}: node lists changed`);
  assert.equal(after.protoCall, before.protoCall, `${layer.name}: the prototype's call changed`);
  assert.ok(!Object.prototype.hasOwnProperty.call(layer, 'call'), `${layer.name} has an own call`);
}

/** Every layer of `model`, including those inside nested models. */
export function allLayers(model: tfl.LayersModel): Layer[] {
  return model.layers.flatMap((layer) => (layer instanceof tfl.LayersModel ? [layer, ...allLayers(layer)] : [layer]));
}

/** Loads a layers model with tfjs' own in-memory handler: independent of camviz's loader, graph executor and fusion. */
export async function loadWithTfjs(modelDir: string): Promise<tfl.LayersModel> {
  const json = JSON.parse(await readFile(join(modelDir, 'model.json'), 'utf8')) as {
    modelTopology: object;
    weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  };
  const buffers = await Promise.all(json.weightsManifest.flatMap((group) => group.paths.map((path) => readFile(join(modelDir, path)))));
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer;
  const weightSpecs = json.weightsManifest.flatMap((group) => group.weights);
  return tfl.loadLayersModel(tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs, weightData }));
}

/**
 * Random but deterministic weights for every layer, nested ones included,
 * with BatchNorm statistics far from identity (gamma 0.5-1.5, beta and mean
 * around 0, variance 0.2-2), so that a wrong fold or a skipped layer shows.
 * Returns the next seed, for a caller that randomizes several models.
 */
export function randomizeWeights(model: tfl.LayersModel, seed: number, deviation = 0.5): number {
  let next = seed;
  for (const layer of allLayers(model)) {
    if (layer instanceof tfl.LayersModel) continue;
    const weights = layer.getWeights();
    if (weights.length === 0) continue;
    if (layer.getClassName() === 'BatchNormalization') {
      // gamma, beta, moving mean, moving variance.
      const [gamma, beta, mean, variance] = weights.map((w) => w.shape);
      layer.setWeights([
        tf.randomUniform(gamma!, 0.5, 1.5, 'float32', next++),
        tf.randomNormal(beta!, 0, 0.5, 'float32', next++),
        tf.randomNormal(mean!, 0, 0.5, 'float32', next++),
        tf.randomUniform(variance!, 0.2, 2, 'float32', next++),
      ]);
    } else {
      layer.setWeights(weights.map((w) => tf.randomNormal(w.shape, 0, deviation, 'float32', next++)));
    }
  }
  return next;
}
