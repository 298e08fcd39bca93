/**
 * PyTorch-style hooks for tfjs-layers layers.
 *
 * A hooked layer gets an own `call` property that wraps the prototype's
 * `call`; `model.predict`, `model.apply`, nested models and camviz's graph
 * executor all run layers through `call`, so hooks fire everywhere, once per
 * call (a layer applied twice fires twice). When the last hook of a layer is
 * removed the own property is deleted again, leaving the layer exactly as it
 * was: with no hooks there is no wrapper and no cost.
 *
 * Gradient-side hooks are identities with a custom gradient
 * (`tf.customGrad`), so they fire inside any tfjs differentiation, on any
 * backend.
 *
 * Tensors and lifetimes: tfjs has no garbage collector for tensor memory and
 * `model.predict` runs layers inside `tf.tidy`, so a tensor a hook receives
 * is disposed after the call. A hook that keeps one must keep a copy:
 * `tf.keep(output.clone())`, and dispose it later. Tensors are immutable:
 * PyTorch's in-place `grad *= 2` has no equivalent; return the new tensor
 * instead and it replaces the old one.
 */
import * as tf from '../engine/tf.js';
import {
  type ForwardHook,
  type ForwardPreHook,
  type FullBackwardHook,
  type GradientHook,
  type Layer,
  type LayerHooks,
  type Tensors,
  forgetHooks,
  hookCount,
  hooksFor,
  hooksOf,
} from './registry.js';

export type { ForwardHook, ForwardPreHook, FullBackwardHook, GradientHook, Layer, Tensors };

export interface HookHandle {
  /** Unregisters the hook; calling it twice is harmless. */
  remove(): void;
  readonly id: number;
}

type CallFunction = (inputs: Tensors, kwargs: Record<string, unknown>) => Tensors;

interface Patch {
  hadOwnCall: boolean;
  ownCall: CallFunction | undefined;
}

const patches = new WeakMap<Layer, Patch>();
let nextHookId = 1;

export function registerForwardPreHook(layer: Layer, hook: ForwardPreHook): HookHandle {
  return register(layer, (hooks) => hooks.pre, hook);
}

/** Options of `registerForwardHook`. */
export interface ForwardHookOptions {
  /**
   * The hook only looks: it returns nothing (returning a value throws).
   * ONNX Runtime then still runs the model, fetching the values the hook
   * sees and calling it after its pass, in the layers' order, where any
   * other hook sends the call to tfjs, which runs each hooked layer itself.
   */
  readonly observeOnly?: boolean;
}

export function registerForwardHook(layer: Layer, hook: ForwardHook, options: ForwardHookOptions = {}): HookHandle {
  const handle = register(layer, (hooks) => hooks.forward, hook);
  if (options.observeOnly === true) hooksFor(layer).observing.add(handle.id);
  return handle;
}

export function registerFullBackwardHook(layer: Layer, hook: FullBackwardHook): HookHandle {
  return register(layer, (hooks) => hooks.backward, hook);
}

/**
 * A hook on the gradient of what `layer` produces (PyTorch's
 * `output.register_hook(...)` from a forward hook, registered once for
 * every call of the layer).
 */
export function registerGradientHook(layer: Layer, hook: GradientHook): HookHandle {
  return register(layer, (hooks) => hooks.gradient, hook);
}

function register<T>(layer: Layer, table: (hooks: LayerHooks) => Map<number, T>, hook: T): HookHandle {
  const hooks = hooksFor(layer);
  const id = nextHookId++;
  table(hooks).set(id, hook);
  patch(layer);
  return {
    id,
    remove: () => {
      if (!table(hooks).delete(id)) return;
      hooks.observing.delete(id);
      if (hookCount(hooks) === 0) {
        unpatch(layer);
        forgetHooks(layer);
      }
    },
  };
}

function patch(layer: Layer): void {
  if (patches.has(layer)) return;
  const hadOwnCall = Object.prototype.hasOwnProperty.call(layer, 'call');
  const view = layer as unknown as { call: CallFunction };
  const ownCall = hadOwnCall ? view.call : undefined;
  const original = view.call;
  patches.set(layer, { hadOwnCall, ownCall });
  view.call = function hookedCall(this: Layer, inputs: Tensors, kwargs: Record<string, unknown>): Tensors {
    return runHooked(layer, (x) => original.call(this, x, kwargs), inputs);
  };
}

function unpatch(layer: Layer): void {
  const saved = patches.get(layer);
  if (saved === undefined) return;
  const view = layer as unknown as { call?: CallFunction };
  if (saved.hadOwnCall) view.call = saved.ownCall;
  else delete view.call;
  patches.delete(layer);
}

/**
 * Runs `call` (the layer's computation) inside the hooks registered on
 * `layer`. Exported for the graph executor, which runs a hooked nested
 * model's layers itself.
 */
export function runHooked(layer: Layer, call: (inputs: Tensors) => Tensors, inputs: Tensors): Tensors {
  const hooks = hooksOf(layer);
  if (hooks === undefined) return call(inputs);
  // Hooks always see a list; the layer gets the form it was called with.
  let inputList = Array.isArray(inputs) ? inputs : [inputs];
  for (const hook of [...hooks.pre.values()]) {
    const replaced = hook(layer, inputList);
    if (replaced !== undefined) inputList = Array.isArray(replaced) ? replaced : [replaced];
  }
  const backward = hooks.backward.size > 0 ? new BackwardHookState(layer, hooks) : undefined;
  const layerInputs = backward ? backward.wrapInputs(inputList) : inputList;
  let output = call(Array.isArray(inputs) || layerInputs.length !== 1 ? layerInputs : layerInputs[0]!);
  for (const [id, hook] of [...hooks.forward.entries()]) {
    const replaced = hook(layer, inputList, output);
    if (replaced !== undefined) output = hooks.observing.has(id) ? observerReturned(layer) : replaced;
  }
  if (backward) output = backward.wrapOutputs(output);
  if (hooks.gradient.size > 0) output = mapTensors(output, (tensor) => withGradientHooks(tensor, hooks.gradient));
  return output;
}

/**
 * Calls the observe-only forward hooks of `layer` with the values an engine
 * computed without running the layer through tfjs: ONNX Runtime's, after
 * its pass. Another hook registered while the pass ran (the engine chose
 * what to fetch before) is not called: the next pass decides with it.
 */
export function fireObservingHooks(layer: Layer, inputs: tf.Tensor[], output: Tensors): void {
  const hooks = hooksOf(layer);
  if (hooks === undefined) return;
  for (const [id, hook] of [...hooks.forward.entries()]) {
    if (hooks.observing.has(id) && hook(layer, inputs, output) !== undefined) observerReturned(layer);
  }
}

function observerReturned(layer: Layer): never {
  throw new Error(`an observe-only forward hook on ${layer.name} returned a value: register it without observeOnly to replace the output`);
}

/**
 * Applies gradient hooks to `tensor`: the returned tensor equals it, and the
 * gradient flowing back through it passes every hook in registration order.
 */
export function withGradientHooks(tensor: tf.Tensor, hooks: ReadonlyMap<number, GradientHook>): tf.Tensor {
  return identityWithGradient(tensor, (grad) => {
    let current = grad;
    for (const hook of [...hooks.values()]) {
      const replaced = hook(current);
      if (replaced !== undefined) current = checkedReplacement(replaced, current, 'a gradient hook');
    }
    return current;
  });
}

/** Runs the gradient hooks registered on `layer`, if any. */
export function layerGradientHooks(layer: Layer): ReadonlyMap<number, GradientHook> | undefined {
  const hooks = hooksOf(layer);
  return hooks !== undefined && hooks.gradient.size > 0 ? hooks.gradient : undefined;
}

function identityWithGradient(tensor: tf.Tensor, onGradient: (grad: tf.Tensor) => tf.Tensor): tf.Tensor {
  const identity = tf.customGrad((x) => ({
    value: (x as tf.Tensor).clone(),
    gradFunc: (dy: tf.Tensor) => onGradient(dy),
  }));
  return identity(tensor);
}

/**
 * One layer call's full-backward-hook bookkeeping, as PyTorch's
 * `BackwardHook`: an identity on the outputs records the output gradients,
 * an identity on the inputs receives the input gradients and runs the hooks,
 * whose return value replaces them. Several inputs are packed into one
 * identity so that the hook sees all input gradients at once.
 */
class BackwardHookState {
  private readonly gradOutputs: (tf.Tensor | null)[] = [];
  private outputCount = 0;

  constructor(
    private readonly layer: Layer,
    private readonly hooks: LayerHooks,
  ) {}

  wrapInputs(list: tf.Tensor[]): tf.Tensor[] {
    if (list.length === 1) {
      return [identityWithGradient(list[0]!, (grad) => this.fire([grad])[0] ?? tf.zerosLike(grad))];
    }
    const sizes = list.map((tensor) => tensor.size);
    const packed = tf.concat(list.map((tensor) => tf.reshape(tensor, [-1])));
    const identity = identityWithGradient(packed, (grad) => {
      const gradInputs = tf.split(grad, sizes).map((part, i) => tf.reshape(part, list[i]!.shape));
      const replaced = this.fire(gradInputs);
      return tf.concat(replaced.map((part, i) => tf.reshape(part ?? tf.zerosLike(gradInputs[i]!), [-1])));
    });
    return tf.split(identity, sizes).map((part, i) => tf.reshape(part, list[i]!.shape));
  }

  wrapOutputs(output: Tensors): Tensors {
    const list = Array.isArray(output) ? output : [output];
    this.outputCount = list.length;
    const wrapped = list.map((tensor, i) =>
      identityWithGradient(tensor, (grad) => {
        this.gradOutputs[i] = grad;
        return grad;
      }),
    );
    return Array.isArray(output) ? wrapped : wrapped[0]!;
  }

  private fire(gradInputs: tf.Tensor[]): (tf.Tensor | null)[] {
    const gradOutputs = Array.from({ length: this.outputCount }, (_, i) => this.gradOutputs[i] ?? null);
    let current: (tf.Tensor | null)[] = gradInputs;
    for (const hook of [...this.hooks.backward.values()]) {
      const replaced = hook(this.layer, current, gradOutputs);
      if (replaced === undefined) continue;
      if (replaced.length !== current.length) {
        throw new Error(`a full backward hook on ${this.layer.name} returned ${replaced.length} gradients for ${current.length} inputs`);
      }
      current = replaced.map((grad, i) => (grad === null ? null : checkedReplacement(grad, gradInputs[i]!, 'a full backward hook')));
    }
    return current;
  }
}

function checkedReplacement(replacement: tf.Tensor, original: tf.Tensor, what: string): tf.Tensor {
  if (!tf.util.arraysEqual(replacement.shape, original.shape)) {
    throw new Error(`${what} returned a tensor of shape [${replacement.shape}] for a gradient of shape [${original.shape}]`);
  }
  return replacement;
}

function mapTensors(value: Tensors, fn: (tensor: tf.Tensor) => tf.Tensor): Tensors {
  return Array.isArray(value) ? value.map(fn) : fn(value);
}

/** Hooks to register for the duration of `withHooks`. */
export interface HookSpec {
  layer: Layer;
  pre?: ForwardPreHook;
  forward?: ForwardHook;
  /** `forward` is observe-only (see ForwardHookOptions). */
  observeOnly?: boolean;
  backward?: FullBackwardHook;
  gradient?: GradientHook;
}

/** Registers `specs`, runs `fn`, and removes the hooks even when `fn` throws. */
export async function withHooks<T>(specs: readonly HookSpec[], fn: () => T | Promise<T>): Promise<T> {
  const handles = registerAll(specs);
  try {
    return await fn();
  } finally {
    removeAll(handles);
  }
}

/** The synchronous form of `withHooks`. */
export function withHooksSync<T>(specs: readonly HookSpec[], fn: () => T): T {
  const handles = registerAll(specs);
  try {
    return fn();
  } finally {
    removeAll(handles);
  }
}

function registerAll(specs: readonly HookSpec[]): HookHandle[] {
  const handles: HookHandle[] = [];
  try {
    for (const spec of specs) {
      if (spec.pre) handles.push(registerForwardPreHook(spec.layer, spec.pre));
      if (spec.forward) handles.push(registerForwardHook(spec.layer, spec.forward, { observeOnly: spec.observeOnly === true }));
      if (spec.backward) handles.push(registerFullBackwardHook(spec.layer, spec.backward));
      if (spec.gradient) handles.push(registerGradientHook(spec.layer, spec.gradient));
    }
    return handles;
  } catch (error) {
    removeAll(handles);
    throw error;
  }
}

function removeAll(handles: readonly HookHandle[]): void {
  for (const handle of [...handles].reverse()) handle.remove();
}

/**
 * A gradient hook on a tensor inside a differentiated function (PyTorch's
 * `tensor.register_hook`). Tensors are immutable, so instead of hooking
 * `tensor` in place this returns an equal tensor to use in its stead.
 */
export function hookGradient(tensor: tf.Tensor, hook: GradientHook): tf.Tensor {
  return withGradientHooks(tensor, new Map([[0, hook]]));
}
