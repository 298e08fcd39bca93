/**
 * The `--engine` choices: which engine runs a model's passes. Apart from the
 * loaders (which load TensorFlow.js or ONNX Runtime) so that the command
 * line can list them without loading either.
 */
import { UsageError } from '../util/errors.js';

/**
 * `auto`: ONNX Runtime where it loads and the model has an ONNX form (its
 * trunk), else tfjs; `tfjs`: TensorFlow.js only; `onnxruntime`: ONNX Runtime
 * or a usage error.
 */
export const ENGINE_CHOICES = ['auto', 'tfjs', 'onnxruntime'] as const;
export type EngineChoice = (typeof ENGINE_CHOICES)[number];

/** `value` as an engine choice (undefined: auto); `source` names where it came from in the error. */
export function parseEngineChoice(value: string | undefined, source = 'engine'): EngineChoice {
  const choice = (value ?? 'auto').toLowerCase();
  if ((ENGINE_CHOICES as readonly string[]).includes(choice)) return choice as EngineChoice;
  throw new UsageError(`${source} '${value}' is not an engine: choose one of ${ENGINE_CHOICES.join(', ')}`);
}

/** The engine chosen by `--engine` (or LoadOptions.engine), else `CAMVIZ_ENGINE`, else auto. */
export function requestedEngine(flag?: string, env: NodeJS.ProcessEnv = process.env): EngineChoice {
  if (flag !== undefined) return parseEngineChoice(flag);
  return parseEngineChoice(env['CAMVIZ_ENGINE'], 'CAMVIZ_ENGINE');
}
