/**
 * The command line: a thin shell over the library. This module imports only
 * commander; each command's module (and TensorFlow.js) loads when that
 * command runs, so `--help` starts fast (and a one-image run's model files
 * are read meanwhile: readModelAhead).
 */
import { Command, CommanderError, Option } from 'commander';
import { OPTION_LIMITS, addBatchOptions, addEngineOption, addImageOptions, addModelOptions, addOptionAlias, collectValues } from './options.js';
import { METHOD_NAMES, SCORE_KINDS, TARGET_KINDS, canonicalMethod, tfjsOnlyMethodReason } from '../cam/names.js';
import { type EngineChoice, requestedEngine } from '../engine/engine-choices.js';
import { PAIR_BY } from '../batch/compare.js';
import { isOneFile } from '../batch/inputs.js';
import { COLORMAPS } from '../render/colormap.js';
import { METRIC_NAMES, METRIC_STEPS } from '../metrics/names.js';
import { CAM_DEFAULTS, FMAP_DEFAULTS, PREDICT_DEFAULTS } from '../tasks/defaults.js';
import type { CamTaskOptions } from '../tasks/types.js';
import { describeError, exitCodeOf } from '../util/errors.js';
import { VERSION } from '../util/version.js';

/** How every command that reads images ends; --help of the program and of those commands lists it. */
const EXIT_CODES_HELP =
  'Exit codes: 0 success, 1 a failure (e.g. an unreadable image; the other images finish), 2 a usage error, ' +
  '130 stopped by SIGINT (Ctrl-C), 143 by SIGTERM, 129 by SIGHUP (the finished images and the manifest are kept).';

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
    // One line per error, as for every other camviz error, with the way to help on it.
    .configureOutput({ outputError: (text, write) => write(`camviz: ${text.replace(/^error: /, '').trimEnd()} (see --help)\n`) })
    // Before the subcommands are added, so that they inherit it: usage errors
    // then reach main() as exceptions and exit with 2.
    .exitOverride()
    .addHelpText(
      'after',
      `
Examples:
  camviz predict photo.jpg
  camviz gradcam photo.jpg --class 281                 # ImageNet 281: tabby cat
  camviz gradcam photos/ --class "tabby cat" --out out/
  camviz fmap photo.jpg --layer conv_pw_5_relu
  camviz layers --model shapes

${EXIT_CODES_HELP}`,
    );

  program
    .command('doctor')
    .description('list the backends and versions, and which backend "auto" picks')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExamples:\n  camviz doctor\n  camviz doctor --json   # for CI logs\n\nExit 0 when at least one backend works.')
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
      .option('-k, --top <k>', 'how many classes to show (also --top-k)', String(PREDICT_DEFAULTS.top))
      .option('-o, --out <dir>', 'also write manifest.json there (one record per input, with its predictions or error)')
      .addHelpText(
        'after',
        `\nExamples:\n  camviz predict cat.jpg\n  camviz predict photos/ --top 1 --json\n  camviz predict photos/ --out results/   # results/manifest.json for CI\n\n--json prints [{input, predictions: [{index, label, probability}]}].\n\n${EXIT_CODES_HELP}`,
      ),
  );
  // cam's spelling, so that one habit works for both commands.
  addOptionAlias(predict, '--top-k <k>', 'top');
  addBatchOptions(addImageOptions(addEngineOption(predict), resizeHelp()), false).action(
    act(async (inputs: string[], options: Record<string, unknown>) => {
      await readModelAhead(inputs, options);
      const { runPredict } = await import('./predict.js');
      return runPredict(inputs, options);
    }),
  );

  const camCommand = (name: string, description: string, fixedMethod?: string): void => {
    const command = program.command(name).description(description).argument('<inputs...>', 'image files or folders');
    if (fixedMethod === undefined) {
      command.option('--method <name>', `${METHOD_NAMES.join(', ')} (gradcam++ = gradcampp)`, CAM_DEFAULTS.method);
    }
    command
      .option('-c, --class <class>', 'class index or name (unique part of a label); several: comma-separated or repeated (default: top 1)', collectValues)
      .option('-k, --top-k <k>', 'explain each image\'s k most probable classes (also --top)')
      .option('-l, --layer <layer>', 'target layer; several (comma-separated or repeated) give per-layer maps normalised and averaged (default: see camviz layers)', collectValues)
      .addOption(new Option('--score <kind>', 'differentiate the pre-softmax score (logit) or the probability (prob is the target prob)').choices(SCORE_KINDS).default(CAM_DEFAULTS.score))
      .addOption(
        new Option(
          '--target <kind>',
          'what the map explains: class (the logit of the class), prob (its softmax probability), sigmoid (the logit of a binary or multi-label unit; class neg: a single-unit head\'s negative class), ' +
            'output (a unit of a model output), region (a segmentation class summed over a box or mask), similarity (to a reference image); default: sigmoid for a sigmoid head, else class',
        ).choices(TARGET_KINDS),
      )
      .option('--output <name>', 'the model output (name or index) of --target output or region (default: the first)')
      .option('--unit <k>', 'the scalar unit of --target output\'s output (default 0 when it has one unit)')
      .option('--region <x0,y0,x1,y1>', '--target region: the box, in original image pixels (x1, y1 excluded)')
      .option('--mask <png>', '--target region: a mask image, not black inside (rescaled to each image when its size differs)')
      .option('--reference <image>', '--target similarity: the image to compare with')
      .option('--embedding <layer>', '--target similarity: the layer whose output (averaged over space if 4-D) is the embedding (default: the input of the score layer, i.e. the penultimate features; a model without class head: its output)')
      .option('--aug-smooth', 'average over horizontal flips x input multipliers 0.9, 1, 1.1 (pytorch-grad-cam aug_smooth)')
      .option('--eigen-smooth', 'first principal component of the weighted activations instead of their sum')
      .addOption(new Option('--colormap <name>', 'heatmap colours').choices(COLORMAPS).default(CAM_DEFAULTS.colormap))
      .option('--alpha <a>', 'heatmap weight in the blend (0-1)', String(CAM_DEFAULTS.alpha))
      .option('--heatmap-only', 'write the coloured map alone, not blended')
      .option('--raw', 'also write the map at feature resolution (after ReLU, before normalisation) as float32 .npy [h, w]; guided methods: their gradient image [H, W, 3]')
      .option('--metrics [list]', `faithfulness metrics per map, with a random-map baseline: ${METRIC_NAMES.join(',')} (bare: all); in --json and the manifest`)
      .option('--metric-steps <n>', `steps of the deletion and insertion curves (${METRIC_STEPS.min}-${METRIC_STEPS.max}, default ${METRIC_STEPS.default})`)
      .addHelpText(
        'after',
        `
Outputs: <out>/<stem>.<method>.<class>.png (and .npy with --raw), mirroring input folders, plus manifest.json;
other targets: <stem>.<method>.<class>.neg.png (sigmoid --class neg), .output.<output>.<unit>.png, .region.<class>.png, .similarity.png.
The map is upsampled bilinearly (half-pixel centres, like cv2.resize) to the original image, min-max normalised, coloured and blended.
--json prints [{input, method, layer, class: {index, label}, target: {kind, ...}, score, probability, peak: {x, y}, png, npy?}]
(score is the target's value; probability is null for targets without one: output, region, similarity).

Examples:
  camviz ${name} cat.jpg --class 281${fixedMethod ? '' : ' --method gradcampp'}
  camviz ${name} photos/ --class "tabby cat" --out out/ --report
  camviz ${name} cat.jpg --top-k 3 --layer conv_pw_11_relu --layer conv_pw_13_relu --json
  camviz ${name} scan.png --model binary/ --class neg                # a single-unit sigmoid head's negative class
  camviz ${name} street.png --model seg/ --target region --class 3 --region 40,60,200,220
  camviz ${name} cat.jpg --target similarity --reference other-cat.jpg

${EXIT_CODES_HELP}`,
      );
    // predict's spelling, so that one habit works for both commands.
    addOptionAlias(command, '--top <k>', 'topK');
    addBatchOptions(addImageOptions(addEngineOption(addModelOptions(command)), resizeHelp()), true).action(
      act(async (inputs: string[], options: Record<string, unknown>) => {
        const camOptions = fixedMethod === undefined ? options : { ...options, method: fixedMethod };
        const { runCam, camTaskFromFlags } = await import('./cam.js');
        if (!(await runsPlanned(inputs, () => camTaskFromFlags(camOptions)))) await readModelAhead(inputs, camOptions);
        return runCam(inputs, camOptions);
      }),
    );
  };
  camCommand('cam', 'class activation maps with any method (--method)');
  camCommand('gradcam', 'Grad-CAM heatmaps blended over the images (camviz cam --method gradcam)', 'gradcam');

  const fmap = program
    .command('fmap')
    .description('feature maps of layers as grid PNGs (torchvision make_grid, each channel normalised)')
    .argument('<inputs...>', 'image files or folders')
    .option('-l, --layer <layer>', 'layer to show; several: comma-separated or repeated', collectValues)
    .option('--all-conv', 'every convolution layer with a spatial output (not 1x1 classifier heads)')
    .option('--max-channels <n>', 'show only the first n channels')
    .option('--nrow <n>', 'tiles per row (default: ceil(sqrt(channels)))')
    .option('--padding <px>', `pixels between tiles (at most ${OPTION_LIMITS.padding.max})`, String(FMAP_DEFAULTS.padding))
    .option('--tile-size <px>', `enlarge small maps (nearest) until tiles are at least this big (at most ${OPTION_LIMITS.tileSize.max})`, String(FMAP_DEFAULTS.tileSize))
    .addOption(new Option('--colormap <name>', 'tile colours').choices(COLORMAPS).default(FMAP_DEFAULTS.colormap))
    .option('--raw', 'also write the activation as float32 .npy [H, W, C]')
    .option('--tensorboard <logdir>', 'also write the grids to a TensorBoard event file (tag "feature map in <layer>")')
    .option('--step <n>', 'TensorBoard step of the first image (then one per image)', '0')
    .addHelpText(
      'after',
      `
Outputs: <out>/<stem>.<layer>.fmap.png with a .fmap.json legend (layer, shape, channel order, tile positions).
--json prints [{input, layer, shape: [H, W, C], png, json, npy?}].

Examples:
  camviz fmap cat.jpg --layer conv_pw_5_relu
  camviz fmap cat.jpg --all-conv --max-channels 64 --tensorboard runs/

${EXIT_CODES_HELP}`,
    );
  addBatchOptions(addImageOptions(addEngineOption(addModelOptions(fmap)), resizeHelp()), true).action(
    act(async (inputs: string[], options: Record<string, unknown>) => {
      await readModelAhead(inputs, options);
      const { runFmap } = await import('./fmap.js');
      return runFmap(inputs, options);
    }),
  );

  program
    .command('merge')
    .description('join the output folders of a sharded run (--shard) into one folder with one manifest.json')
    .argument('<outdirs...>', 'the shard output folders (each with its manifest.json)')
    .requiredOption('-o, --out <dir>', 'the merged output folder (may be one of the shard folders)')
    .option('--report', 'write index.html even if no shard had one (it is written when any shard had one)')
    .option('-q, --quiet', 'no summary line')
    .option('--json', 'print {manifest, report?, shard, summary, copied} as JSON on stdout')
    .addHelpText(
      'after',
      `
Refuses (exit 2) shards that differ in command, model or options (apart from --shard), or that share an input.
Exit code 0 when every merged input is ok, 1 when any failed.

Examples:
  camviz merge shard-1/ shard-2/ shard-3/ --out merged/
  camviz merge out-*/ --out out-1/ --report`,
    )
    .action(
      act(async (outdirs: string[], options: { out: string; report?: boolean; quiet?: boolean; json?: boolean }) => {
        const { runMerge } = await import('./merge.js');
        return runMerge(outdirs, options);
      }),
    );

  program
    .command('compare')
    .description('compare the maps of two cam runs (e.g. old and new model): a CI gate on attention')
    .argument('<a>', 'the first output folder (camviz cam --raw; may be merged shards)')
    .argument('<b>', 'the second output folder, with the same inputs')
    .option('--min-corr <r>', 'fail when a pair\'s Pearson correlation is below r (-1 to 1)')
    .option('--min-iou <x>', 'fail when a pair\'s IoU of the top-20% regions is below x (0 to 1)')
    .option('--max-peak-shift <px>', 'fail when a pair\'s peaks are more than px original pixels apart')
    .option('--max-top1-changes <n>', 'fail when more than n inputs change their top-1 prediction')
    .addOption(new Option('--pair-by <how>', 'pair maps of the same class, or the k-th class of each run (runs that explain different classes)').choices(PAIR_BY).default('class'))
    .option('-o, --out <dir>', 'where compare.json (and compare.html) go (default: b)')
    .option('--report', 'also write compare.html: A | B | difference per pair, worst first')
    .option('-q, --quiet', 'no summary line or offender list')
    .option('--json', 'print compare.json on stdout')
    .addHelpText(
      'after',
      `
Pairs each (input, method, class) present in both runs and measures the top-1 prediction change, the score change,
the Pearson correlation of the --raw maps (the coarser resized bilinearly to the finer), the IoU of their top-20% cells
and the peak shift in original pixels. Writes compare.json (per-pair metrics, thresholds, summary, offenders worst first).
Exit codes: 0 every threshold holds, 1 a threshold fails (one summary line, then the offenders, worst first)
or an input failed in a run, 2 a usage error or folders that do not match (other inputs, no pair in common, no --raw map).

Examples:
  camviz compare old/ new/ --min-corr 0.8
  camviz compare old/ new/ --min-corr 0.8 --min-iou 0.5 --max-top1-changes 0 --report
  camviz compare circle/ star/ --pair-by rank --min-corr 0.8`,
    )
    .action(
      act(async (a: string, b: string, options: Record<string, unknown>) => {
        const { runCompare } = await import('./compare.js');
        return runCompare(a, b, options);
      }),
    );

  program
    .command('metrics')
    .description('summarise the faithfulness metrics of a cam run (--metrics): mean ± sd per method and class, beside a random map\'s')
    .argument('<folder>', 'the output folder of camviz cam --metrics (may be merged shards)')
    .option('--json', 'print the summary as JSON and write metrics.json in the folder')
    .option('-q, --quiet', 'no line naming metrics.json')
    .addHelpText(
      'after',
      `
With a truth.json beside the inputs (fixtures/shapes/truth.json's format: boxes per image and class), also the pointing game:
per method, how often the map's peak lies in its class's box.

Examples:
  camviz cam photos/ --metrics --out out/ && camviz metrics out/
  camviz cam fixtures/shapes --model shapes --metrics deletion,insertion --out out/ && camviz metrics out/ --json`,
    )
    .action(
      act(async (folder: string, options: { json?: boolean; quiet?: boolean }) => {
        const { runMetricsSummary } = await import('./metrics.js');
        return runMetricsSummary(folder, options);
      }),
    );

  return program;
}

/**
 * A run that loads its model in this thread (one image file, or `--jobs
 * 1`) starts on it while the command's modules (tfjs, sharp) load: its
 * model files (a local TF.js model, `--model <folder>`, or an ONNX file)
 * are read, for the model's load to find them read; and when ONNX Runtime
 * may run it, the model's first session, as a previous run noted it, is
 * made in a worker meanwhile (model/session-ahead.ts), which then runs the
 * run's passes. Runs whose model loads in worker threads (`--jobs 2` and
 * more over a folder) are left as they are: each worker makes its own.
 */
async function readModelAhead(inputs: readonly string[], options: Record<string, unknown>): Promise<void> {
  if (!(await loadsModelInThisThread(inputs, options))) return;
  const model = options['model'];
  // CAMVIZ_SESSION_AHEAD=0: none (the worker's CPU is then left to the rest; on a loaded machine it gains nothing).
  if (mayRunOnOnnxRuntime(options) && process.env['CAMVIZ_SESSION_AHEAD'] !== '0') {
    sessionAhead = import('../model/session-ahead.js');
    await (await sessionAhead).startModelSessionAhead(typeof model === 'string' ? model : undefined);
  }
  if (typeof model !== 'string') return;
  // Each reads only a model of its kind: a TF.js folder or model.json, an .onnx file or a folder with model.onnx.
  const [{ readModelAhead: startReading }, { readOnnxAhead }] = await Promise.all([import('../model/io.js'), import('../model/onnx/file.js')]);
  void startReading(model);
  void readOnnxAhead(model);
}

/**
 * Whether a one-image cam run will run from its model's plan (tasks/cam-plan.ts),
 * which it reads, and whose session it starts making in this thread: then
 * nothing of the model is read ahead, nor a session made ahead in a
 * worker. Flags the task refuses are left to the command to report.
 */
async function runsPlanned(inputs: readonly string[], task: () => CamTaskOptions): Promise<boolean> {
  if (!isOneFile(inputs)) return false;
  let options: CamTaskOptions;
  try {
    options = task();
  } catch {
    return false;
  }
  const { plannable, readCamPlanAhead } = await import('../tasks/cam-plan.js');
  const plan = plannable(options) ? await readCamPlanAhead(options.model) : undefined;
  if (plan === undefined) return false;
  (await import('../tasks/planned-cam.js')).openPlannedSessionAhead(plan);
  return true;
}

/**
 * Whether the run will load its model in this thread, as the batch runner
 * decides it (batch/runner.ts workerCount): one image file is one batch,
 * and one job (`--jobs 1`, or the default's on ONNX Runtime or one core)
 * keeps every batch here. A folder or several files with more jobs may
 * still end up here (a single batch, a cap by memory): those only miss the
 * head start.
 */
async function loadsModelInThisThread(inputs: readonly string[], options: Record<string, unknown>): Promise<boolean> {
  if (isOneFile(inputs)) return true;
  const jobs = options['jobs'];
  if (typeof jobs === 'string') return /^\s*0*1\s*$/.test(jobs);
  const work = requestedWork(options);
  if (work === undefined) return false;
  const { defaultJobs } = await import('../batch/jobs.js');
  return defaultJobs(work.engine, work.tfjsOnly) === 1;
}

/** Set once a session may have been started ahead: the run closes what it did not take before it ends. */
let sessionAhead: Promise<typeof import('../model/session-ahead.js')> | undefined;

/**
 * The engine as the command will resolve it, and whether its method runs
 * wholly on tfjs; undefined for a wrong --engine, CAMVIZ_ENGINE or
 * --method, which the command reports with its other usage errors (nothing
 * starts ahead).
 */
function requestedWork(options: Record<string, unknown>): { engine: EngineChoice; tfjsOnly: boolean } | undefined {
  try {
    const engine = requestedEngine(typeof options['engine'] === 'string' ? options['engine'] : undefined);
    const method = typeof options['method'] === 'string' ? canonicalMethod(options['method']) : undefined;
    return { engine, tfjsOnly: method !== undefined && tfjsOnlyMethodReason(method) !== undefined };
  } catch {
    return undefined;
  }
}

/** Whether the command may run on ONNX Runtime: the engine is not tfjs, and the method does not run wholly on tfjs. */
function mayRunOnOnnxRuntime(options: Record<string, unknown>): boolean {
  const work = requestedWork(options);
  return work !== undefined && work.engine !== 'tfjs' && !work.tfjsOnly;
}

/** Ends the sessions made ahead that the run did not take: a worker must not be stopped inside ONNX Runtime by the process's exit. */
async function closeSessionsAhead(): Promise<void> {
  const module = await sessionAhead?.catch(() => undefined);
  await module?.closeSessionsAhead();
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
  const verbose = argv.includes('-v') || argv.includes('--verbose');
  tolerateClosedPipes();
  // Through the environment, so that worker threads record stacks too.
  if (verbose) process.env['CAMVIZ_VERBOSE'] = '1';
  try {
    await program.parseAsync(argv as string[]);
    await closeSessionsAhead();
    return exitCode;
  } catch (error) {
    await closeSessionsAhead();
    if (error instanceof CommanderError) {
      // Help and version are not errors; commander has printed the usage problem.
      return error.exitCode === 0 ? 0 : 2;
    }
    process.stderr.write(`camviz: ${describeError(error)}\n`);
    if (verbose && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    return exitCodeOf(error);
  }
}

/**
 * A reader that stops early (`camviz --help | head -1`, `camviz predict ... | head`)
 * closes the pipe; Node then raises EPIPE on the next write, which would end the
 * process with an unhandled-error trace. The run carries on without that stream
 * (its files are still written) and exits as it would have.
 */
function tolerateClosedPipes(): void {
  for (const stream of [process.stdout, process.stderr]) {
    if (stream.listenerCount('error') > 0) continue;
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE' && error.code !== 'ERR_STREAM_DESTROYED') throw error;
    });
  }
}
