/**
 * Option definitions shared by the commands. Only commander is imported
 * here, so that `camviz --help` does not load TensorFlow.js.
 */
import { type Command, Option } from 'commander';
import { BACKEND_CHOICES } from '../engine/backend-choices.js';
import { ENGINE_CHOICES } from '../engine/engine-choices.js';
import { RESIZE_MODES } from '../image/geometry.js';
import { PREPROCESS_HELP, PREPROCESS_NAMES } from '../image/preprocess-names.js';
import { TASK_DEFAULTS } from '../tasks/defaults.js';

/**
 * Bounds of the numeric options whose values size memory or output, so that
 * a typo gets a usage error stating the limit instead of an internal error
 * (wasm "memory access out of bounds", a libvips out-of-memory, "Invalid
 * typed array length") after the model has loaded.
 */
export const OPTION_LIMITS = {
  /**
   * --size, pixels a side. Below 8 the embedded model's three 2x2 poolings
   * leave an empty map, and no CNN sees anything in fewer pixels (MobileNet
   * needs 32 for one cell at stride 32). At 4096 a MobileNet forward pass
   * already takes over 2 GB of memory (wasm's heap cannot exceed 4 GB) and a
   * minute.
   */
  size: { min: 8, max: 4096 },
  /**
   * --batch-size. Memory grows with it (MobileNet Grad-CAM, 224 px: about
   * 4 MB an image) while speed does not (32 images: 7.0 s at 4, 8.9 s at 32).
   */
  batchSize: { max: 64 },
  /**
   * fmap --tile-size and --padding: at both maxima the largest grid of
   * MobileNet v1 1.0 (7x7x1024: 32 x 32 tiles of 259 pixels) is 87
   * megapixels, below the 100-megapixel input cap (--max-pixels' default).
   * Wider layers can exceed it: --max-channels bounds those.
   */
  tileSize: { max: 256 },
  padding: { max: 32 },
} as const;

/**
 * The parser of an option that may be repeated: each occurrence adds its
 * value. (A variadic option, `<values...>`, would also take the inputs that
 * follow it: `--class 281 cat.jpg` would leave no input.)
 */
export function collectValues(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/**
 * A second spelling of an option, hidden from --help (whose text for the
 * option names it): `flags` sets `attribute` as the option itself would, the
 * last of the two on the command line winning.
 */
export function addOptionAlias(command: Command, flags: string, attribute: string): Command {
  const alias = new Option(flags).hideHelp();
  command.addOption(alias);
  command.on(`option:${alias.name()}`, (value: string) => command.setOptionValueWithSource(attribute, value, 'cli'));
  return command;
}

/** Options every model-using command takes. */
export function addModelOptions(command: Command): Command {
  return command
    .option('-m, --model <model>', 'zoo name, model folder or model.json (layers or graph model), or http(s) URL', 'mobilenet_v1_0.75_224')
    .addOption(
      new Option('-b, --backend <backend>', 'TensorFlow.js backend (env CAMVIZ_BACKEND)').choices(BACKEND_CHOICES),
    )
    .addOption(new Option('--preprocess <name>', `pixel preprocessing (default: from the model's metadata): ${PREPROCESS_NAMES.map((name) => `${name} = ${PREPROCESS_HELP[name]}`).join('; ')}`).choices(PREPROCESS_NAMES))
    .option('--labels <file>', 'class labels: JSON list or object, Keras class index, or text with one per line')
    .option('--size <size>', `model input size: 224 or WIDTHxHEIGHT, ${OPTION_LIMITS.size.min}-${OPTION_LIMITS.size.max} a side (default: the model's)`);
}

/**
 * `--engine`, for the commands that run the model's passes (not `layers`,
 * which only reads the graph).
 */
export function addEngineOption(command: Command): Command {
  return command.addOption(
    new Option('--engine <engine>', 'what runs the passes: auto = ONNX Runtime where it loads and the model is ONNX, else tfjs (env CAMVIZ_ENGINE; see README "Engines")').choices(ENGINE_CHOICES),
  );
}

/** Options every image-reading command takes. */
export function addImageOptions(command: Command, resizeHelp: string): Command {
  return command
    .addOption(new Option('--resize <mode>', `fit images to the model input: ${resizeHelp}`).choices(RESIZE_MODES).default(TASK_DEFAULTS.image.resize))
    .option('--background <colour>', 'colour to flatten transparency onto and to pad with', TASK_DEFAULTS.image.background)
    .option('--max-pixels <n>', 'refuse larger images before decoding them (0 = no limit)', String(TASK_DEFAULTS.image.maxPixels))
    .option(
      '--max-overlay-side <n>',
      'decode longer images shrunk to this long side: maps are drawn on, and the model sees, that picture (0 = full resolution)',
      String(TASK_DEFAULTS.image.maxOverlaySide),
    )
    .option('--glob <pattern>', 'in folders, only files whose relative path matches, e.g. "**/*.jpg"');
}

/** Folder-run options: the CI use. */
export function addBatchOptions(command: Command, writesFiles: boolean): Command {
  if (writesFiles) {
    command
      .option('-o, --out <dir>', 'output folder; outputs mirror the input tree', 'camviz-out')
      .option('--skip-existing', 'resume: keep inputs whose outputs an earlier run (manifest.json) already wrote')
      .option('--report', 'also write index.html, a static page of every result')
      .option('--png-compression <level>', 'PNG zlib level 0-9: 1 is fastest (OpenCV\'s default), 9 smallest', String(TASK_DEFAULTS.pngCompression));
  }
  return command
    .option('-j, --jobs <n>', 'worker threads, each with its own model (default: 1 where ONNX Runtime may run the model, its session then using every core; else the number of cores)')
    .option('--batch-size <n>', `images per forward pass (at most ${OPTION_LIMITS.batchSize.max})`, String(TASK_DEFAULTS.batchSize))
    .option('--shard <i/n|auto>', 'process only shard i of n of the sorted inputs (auto: from CI variables, see README)')
    .option('--shard-count <n>', 'the job count for --shard auto when the CI gives only an index (Kubernetes)')
    .option('--fail-fast', 'stop at the first failing image')
    .option('-q, --quiet', 'no progress output')
    .addOption(new Option('--json', 'print results as JSON on stdout'));
}

