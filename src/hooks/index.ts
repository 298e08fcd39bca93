export {
  registerForwardPreHook,
  registerForwardHook,
  registerFullBackwardHook,
  registerGradientHook,
  withHooks,
  withHooksSync,
  hookGradient,
  type HookHandle,
  type HookSpec,
} from './hooks.js';
export type { ForwardHook, ForwardPreHook, FullBackwardHook, GradientHook, Layer, Tensors } from './registry.js';
export { backward, forward, disposeValues, type BackwardCallOptions, type LayerRef } from './backward.js';
export type { BackwardResult, ForwardValues, ModelInputs, Objective } from './backward.js';
