export {
  registerForwardPreHook,
  registerForwardHook,
  registerFullBackwardHook,
  registerGradientHook,
  withHooks,
  withHooksSync,
  hookGradient,
  type ForwardHookOptions,
  type HookHandle,
  type HookSpec,
} from './hooks.js';
export type { ForwardHook, ForwardPreHook, FullBackwardHook, GradientHook, Layer, Tensors } from './registry.js';
