/**
 * The command line's choice lists are the library's constants: every list
 * `--help` shows equals the constant it comes from, so that a colormap,
 * method, backend or mode added to the library cannot be left out of the
 * command line (or one removed left in). And the modules `--help` loads stay
 * free of TensorFlow.js and sharp, which the constants were moved away from.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { METHOD_NAMES, SCORE_KINDS, TARGET_KINDS } from '../src/cam/names.js';
import { BACKEND_CHOICES } from '../src/engine/backend-choices.js';
import { ENGINE_CHOICES } from '../src/engine/engine-choices.js';
import { RESIZE_MODES } from '../src/image/geometry.js';
import { PREPROCESS_NAMES } from '../src/image/preprocess-names.js';
import { COLORMAPS } from '../src/render/colormap.js';
import { repoRoot } from './helpers/assets.js';
import { runCli } from './helpers/cli.js';

const MODEL_CHOICES = { '--backend': BACKEND_CHOICES, '--preprocess': PREPROCESS_NAMES };
// The commands that run the model's passes choose their engine; `layers` only reads the graph.
const IMAGE_CHOICES = { ...MODEL_CHOICES, '--engine': ENGINE_CHOICES, '--resize': RESIZE_MODES };
const CAM_CHOICES = { ...IMAGE_CHOICES, '--score': SCORE_KINDS, '--target': TARGET_KINDS, '--colormap': COLORMAPS };

/** Per command, every option that lists choices and the constant they must equal. */
const EXPECTED: Record<string, Record<string, readonly string[]>> = {
  layers: MODEL_CHOICES,
  predict: IMAGE_CHOICES,
  cam: CAM_CHOICES,
  gradcam: CAM_CHOICES,
  fmap: { ...IMAGE_CHOICES, '--colormap': COLORMAPS },
};

/** `camviz <command> --help`, on one line: commander wraps long option lines. */
async function helpOf(command: string): Promise<string> {
  const run = await runCli([command, '--help'], { cwd: repoRoot, timeoutMs: 60_000 });
  assert.equal(run.code, 0, `${command} --help: ${run.stderr}`);
  return run.stdout.replace(/\s+/g, ' ');
}

/** Every option of a help text that lists choices: flag -> the choices, in order. */
function choiceLists(help: string): Map<string, string[]> {
  const lists = new Map<string, string[]>();
  // The flag, its description (not running into the next option), then commander's `(choices: "a", "b"`.
  for (const match of help.matchAll(/(--[a-z-]+) <[a-z]+>((?:(?! --).)*?)\(choices: ((?:"[^"]*"(?:, )?)+)/g)) {
    const [, flag, , quoted] = match;
    assert.ok(flag !== undefined && quoted !== undefined);
    lists.set(flag, Array.from(quoted.matchAll(/"([^"]*)"/g), ([, choice]) => choice ?? ''));
  }
  return lists;
}

test('every --help choice list is the library constant', async () => {
  for (const [command, expected] of Object.entries(EXPECTED)) {
    const lists = choiceLists(await helpOf(command));
    assert.deepEqual([...lists.keys()].sort(), Object.keys(expected).sort(), `${command}: the options with choices`);
    for (const [flag, choices] of Object.entries(expected)) {
      assert.deepEqual(lists.get(flag), [...choices], `${command} ${flag}`);
    }
  }
});

test('cam --help lists every CAM method (aliases aside, --method is checked by the library)', async () => {
  const help = await helpOf('cam');
  const described = /--method <name> ([a-z, ]+?) \(/.exec(help)?.[1];
  assert.ok(described !== undefined, 'cam --help describes --method');
  assert.deepEqual(described.split(', '), [...METHOD_NAMES]);
});

/** The relative modules and packages a source file loads when imported (not `import type`, not `import()`). */
function staticImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const loads = /^(?:import|export)\s+(?!type\b)(?:[^;]*?\sfrom\s+)?'([^']+)'/gm;
  return Array.from(text.matchAll(loads), ([, specifier]) => specifier ?? '');
}

test('the modules the command line loads for --help import neither TensorFlow.js nor sharp', () => {
  const seen = new Set<string>();
  const packages = new Set<string>();
  const pending = [join(repoRoot, 'src', 'cli', 'main.ts')];
  for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
    if (seen.has(file)) continue;
    seen.add(file);
    for (const specifier of staticImports(file)) {
      if (specifier.startsWith('.')) pending.push(join(dirname(file), specifier.replace(/\.js$/, '.ts')));
      else packages.add(specifier);
    }
  }
  assert.ok(seen.has(join(repoRoot, 'src', 'render', 'colormap.ts')), 'the walk follows the imports');
  const heavy = [...packages].filter((name) => name.startsWith('@tensorflow/') || name === 'sharp');
  assert.deepEqual(heavy, [], `loaded at start-up by ${[...seen].map((file) => file.slice(repoRoot.length + 1)).join(', ')}`);
});
