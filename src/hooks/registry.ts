/**
 * The per-layer hook tables. Kept apart from the patching code so that the
 * graph executor can ask "is this layer hooked?" without importing the
 * hook machinery.
 */
import type * as tf from '../engine/tf.js';
import type * as tfl from '../engine/tfl.js';

export type Layer = tfl.layers.Layer;
export type Tensors = tf.Tensor | tf.Tensor[];

/**
 * `(layer, inputs) => inputs | void`: observe or replace a layer's inputs.
 * `inputs` is always a list (PyTorch's tuple), one tensor per layer input.
 */
export type ForwardPreHook = (layer: Layer, inputs: tf.Tensor[]) => tf.Tensor[] | tf.Tensor | void;
/**
 * `(layer, inputs, output) => output | void`: observe or replace a layer's
 * output (a tensor, or a list for multi-output layers).
 */
export type ForwardHook = (layer: Layer, inputs: tf.Tensor[], output: Tensors) => Tensors | void;
/**
 * `(layer, gradInputs, gradOutputs) => gradInputs | void`, as PyTorch's
 * full backward hook. An entry is null where no gradient flows (PyTorch's
 * None).
 */
export type FullBackwardHook = (
  layer: Layer,
  gradInputs: (tf.Tensor | null)[],
  gradOutputs: (tf.Tensor | null)[],
) => (tf.Tensor | null)[] | void;
/** `(grad) => grad | void`: observe or replace the gradient of a layer's output. */
export type GradientHook = (grad: tf.Tensor) => tf.Tensor | void;

export interface LayerHooks {
  pre: Map<number, ForwardPreHook>;
  forward: Map<number, ForwardHook>;
  backward: Map<number, FullBackwardHook>;
  gradient: Map<number, GradientHook>;
  /** The ids of the forward hooks registered as observe-only (they return nothing). */
  observing: Set<number>;
}

const hooksByLayer = new WeakMap<Layer, LayerHooks>();

export function hooksOf(layer: Layer): LayerHooks | undefined {
  return hooksByLayer.get(layer);
}

export function hooksFor(layer: Layer): LayerHooks {
  let hooks = hooksByLayer.get(layer);
  if (hooks === undefined) {
    hooks = { pre: new Map(), forward: new Map(), backward: new Map(), gradient: new Map(), observing: new Set() };
    hooksByLayer.set(layer, hooks);
  }
  return hooks;
}

export function forgetHooks(layer: Layer): void {
  hooksByLayer.delete(layer);
}

export function hookCount(hooks: LayerHooks): number {
  return hooks.pre.size + hooks.forward.size + hooks.backward.size + hooks.gradient.size;
}

/** True when any hook is registered on the layer. */
export function isHooked(layer: Layer): boolean {
  const hooks = hooksByLayer.get(layer);
  return hooks !== undefined && hookCount(hooks) > 0;
}

/**
 * True when the layer's hooks are all observe-only forward hooks: an engine
 * that does not run the layer through tfjs (ONNX Runtime) may call them
 * with the values it computed, after its pass.
 */
export function onlyObserved(layer: Layer): boolean {
  const hooks = hooksByLayer.get(layer);
  return hooks !== undefined && hookCount(hooks) > 0 && hooks.forward.size === hookCount(hooks) && [...hooks.forward.keys()].every((id) => hooks.observing.has(id));
}
