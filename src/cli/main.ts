/**
 * The command line: a thin shell over the library. This module imports only
 * commander; each command's module (and TensorFlow.js) loads when that
 * command runs, so `--help` starts fast.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { describeError, exitCodeOf } from '../errors.js';

const packageJson = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
export const VERSION = packageJson.version;

/** Options every model-using command takes. */
export function addModelOptions(command: Command): Command {
  return command
    .option('-m, --model <model>', 'zoo name, model folder or model.json (layers or graph model), or http(s) URL', 'mobilenet_v1_0.75_224')
    .addOption(
      new Option('-b, --backend <backend>', 'TensorFlow.js backend (env CAMVIZ_BACKEND)').choices(['auto', 'gpu', 'native', 'wasm', 'cpu']),
    )
    .addOption(new Option('--preprocess <name>', 'pixel preprocessing (default: from the model\'s metadata)').choices(['tf', 'torch', 'caffe', 'unit', 'none']))
    .option('--labels <file>', 'class labels: JSON list or object, Keras class index, or text with one per line')
    .option('--size <size>', 'model input size: 224 or WIDTHxHEIGHT (default: the model\'s)');
}

/** Options every image-reading command takes. */
export function addImageOptions(command: Command, resizeHelp: string): Command {
  return command
    .addOption(new Option('--resize <mode>', `fit images to the model input: ${resizeHelp}`).choices(['stretch', 'crop', 'pad']).default('stretch'))
    .option('--background <colour>', 'colour to flatten transparency onto and to pad with', '#ffffff')
    .option('--max-pixels <n>', 'refuse larger images before decoding them (0 = no limit)', '100000000')
    .option('--glob <pattern>', 'in folders, only files whose relative path matches, e.g. "**/*.jpg"');
}

function buildProgram(setExitCode: (code: number) => void): Command {
  /** Wraps a command's runner: its result is the exit code. */
  const act =
    <A extends unknown[]>(run: (...args: A) => Promise<number>) =>
    async (...args: A): Promise<void> => {
      setExitCode(await run(...args));
    };
  const program = new Command('camviz')
    .description('See what a convolutional network looks at: feature maps and class-activation maps for TensorFlow.js models.')
    .version(VERSION, '-V, --version')
    .option('-v, --verbose', 'show stack traces with errors')
    .showHelpAfterError('(camviz --help for usage)')
    .addHelpText(
      'after',
      `
Examples:
  camviz predict photo.jpg
  camviz gradcam photo.jpg --class 281                 # ImageNet 281: tabby cat
  camviz gradcam photos/ --class "tabby cat" --out out/
  camviz fmap photo.jpg --layer conv_pw_5_relu
  camviz layers --model shapes

Exit codes: 0 success, 1 a failure (e.g. an unreadable image), 2 a usage error.`,
    );

  program
    .command('doctor')
    .description('list the backends and versions, and which backend "auto" picks')
    .option('--json', 'print JSON')
    .action(
      act(async (options: { json?: boolean }) => {
        const { runDoctor } = await import('./doctor.js');
        return runDoctor(options);
      }),
    );

  addModelOptions(
    program
      .command('layers')
      .description('list the model\'s layers: class, output shape, parameters, CAM targets and the default')
      .option('--json', 'print JSON: [{name, className, outputShape, params, camTarget, default}]')
      .addHelpText('after', '\nExamples:\n  camviz layers\n  camviz layers --model shapes --json'),
  ).action(
    act(async (options: Record<string, unknown>) => {
      const { runLayers } = await import('./layers.js');
      return runLayers(options);
    }),
  );

  const predict = addModelOptions(
    program
      .command('predict')
      .description('classify images (files or folders)')
      .argument('<inputs...>', 'image files or folders')
      .option('-k, --top <k>', 'how many classes to show', '5')
      .option('--json', 'print JSON: [{input, predictions: [{index, label, probability}]}]')
      .addHelpText('after', '\nExamples:\n  camviz predict cat.jpg\n  camviz predict photos/ --top 1 --json'),
  );
  addImageOptions(predict, resizeHelp()).action(
    act(async (inputs: string[], options: Record<string, unknown>) => {
      const { runPredict } = await import('./predict.js');
      return runPredict(inputs, options);
    }),
  );

  return program;
}

function resizeHelp(): string {
  return 'stretch (ignore aspect), crop (centre crop), pad (letterbox); bilinear (triangle) filter, antialiased when shrinking, like PIL BILINEAR';
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  let exitCode = 0;
  const program = buildProgram((code) => {
    exitCode = code;
  });
  program.exitOverride();
  const verbose = argv.includes('-v') || argv.includes('--verbose');
  try {
    await program.parseAsync(argv as string[]);
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version are not errors; commander has printed the usage problem.
      return error.exitCode === 0 ? 0 : 2;
    }
    process.stderr.write(`camviz: ${describeError(error)}\n`);
    if (verbose && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    return exitCodeOf(error);
  }
}

