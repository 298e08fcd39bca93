/**
 * Option definitions shared by the commands. Only commander is imported
 * here, so that `camviz --help` does not load TensorFlow.js.
 */
import { availableParallelism } from 'node:os';
import { type Command, Option } from 'commander';
import { BACKEND_CHOICES } from '../engine/backend-choices.js';
import { RESIZE_MODES } from '../image/geometry.js';
import { PREPROCESS_NAMES } from '../image/preprocess-names.js';
import { TASK_DEFAULTS } from '../tasks/defaults.js';

/** Options every model-using command takes. */
export function addModelOptions(command: Command): Command {
  return command
    .option('-m, --model <model>', 'zoo name, model folder or model.json (layers or graph model), or http(s) URL', 'mobilenet_v1_0.75_224')
    .addOption(
      new Option('-b, --backend <backend>', 'TensorFlow.js backend (env CAMVIZ_BACKEND)').choices(BACKEND_CHOICES),
    )
    .addOption(new Option('--preprocess <name>', 'pixel preprocessing (default: from the model\'s metadata)').choices(PREPROCESS_NAMES))
    .option('--labels <file>', 'class labels: JSON list or object, Keras class index, or text with one per line')
    .option('--size <size>', 'model input size: 224 or WIDTHxHEIGHT (default: the model\'s)');
}

/** Options every image-reading command takes. */
export function addImageOptions(command: Command, resizeHelp: string): Command {
  return command
    .addOption(new Option('--resize <mode>', `fit images to the model input: ${resizeHelp}`).choices(RESIZE_MODES).default(TASK_DEFAULTS.image.resize))
    .option('--background <colour>', 'colour to flatten transparency onto and to pad with', TASK_DEFAULTS.image.background)
    .option('--max-pixels <n>', 'refuse larger images before decoding them (0 = no limit)', String(TASK_DEFAULTS.image.maxPixels))
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
    .option('-j, --jobs <n>', 'worker threads (each loads its own model)', String(availableParallelism()))
    .option('--batch-size <n>', 'images per forward pass', String(TASK_DEFAULTS.batchSize))
    .option('--shard <i/n|auto>', 'process only shard i of n of the sorted inputs (auto: from CI variables, see README)')
    .option('--shard-count <n>', 'the job count for --shard auto when the CI gives only an index (Kubernetes)')
    .option('--fail-fast', 'stop at the first failing image')
    .option('-q, --quiet', 'no progress output')
    .addOption(new Option('--json', 'print results as JSON on stdout'));
}

