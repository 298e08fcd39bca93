/**
 * Class labels: loading label files in the common formats, and resolving
 * what a user typed (`281`, `"tabby cat"`, `tabby`) to a class index.
 */
import { createRequire } from 'node:module';
import { CamvizError, UsageError } from '../util/errors.js';
import { isNotRegularFileCode, readRegularFile } from '../util/read-whole-file.js';
import { closestMatches } from '../util/text.js';

/** Far more than any class list needs (ImageNet-21k's 21,843 names take under 1 MiB): a bound on what a labels file may make camviz read. */
const MAX_LABELS_FILE_BYTES = 64 * 2 ** 20;

/** The 1000 ImageNet classes in the standard Keras/TF order. */
export function imagenetLabels(): string[] {
  // Apache-2.0 list shipped with @tensorflow-models/mobilenet (same order as Keras).
  const require = createRequire(import.meta.url);
  const { IMAGENET_CLASSES } = require('@tensorflow-models/mobilenet/dist/imagenet_classes.js') as {
    IMAGENET_CLASSES: Record<number, string>;
  };
  return Array.from({ length: 1000 }, (_, i) => IMAGENET_CLASSES[i]!);
}

/**
 * Reads labels from JSON (an array of names; `{"0": "name"}`; Keras'
 * `{"0": ["n01440764", "tench"]}`) or plain text (one name per line).
 */
export async function readLabelsFile(path: string): Promise<string[]> {
  let text: string;
  try {
    // A FIFO or a device given as the labels is refused, not read without end.
    text = (await readRegularFile(path, MAX_LABELS_FILE_BYTES)).bytes.toString('utf8');
  } catch (error) {
    throw new CamvizError(labelsFileProblem((error as NodeJS.ErrnoException).code), { file: path });
  }
  // Editors on Windows save UTF-8 with a byte-order mark, which JSON.parse rejects.
  text = text.replace(/^\uFEFF/, '');
  if (!path.toLowerCase().endsWith('.json')) return labelsFromText(text, path);
  try {
    return labelsFromJson(JSON.parse(text) as unknown);
  } catch (error) {
    throw new CamvizError(`labels file is not a list of class names: ${(error as Error).message}`, { file: path });
  }
}

function labelsFileProblem(code: string | undefined): string {
  if (code === 'ENOENT') return 'labels file not found';
  if (isNotRegularFileCode(code)) return 'labels file is not a regular file: refused';
  if (code === 'ERR_FS_FILE_TOO_LARGE') return `labels file is over ${MAX_LABELS_FILE_BYTES / 2 ** 20} MiB: refused`;
  return `labels file unreadable (${code})`;
}

/**
 * One class per line, in index order. Trailing blank lines are ignored; a
 * blank line between names is refused, since skipping it would shift every
 * later class to the wrong index.
 */
function labelsFromText(text: string, path: string): string[] {
  const lines = text.split(/\r?\n/).map((line) => line.trim());
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const blank = lines.indexOf('');
  if (blank >= 0) throw new CamvizError(`line ${blank + 1} of the labels file is blank: every line names the class of its index`, { file: path });
  if (lines.length === 0) throw new CamvizError('labels file holds no class names', { file: path });
  return lines;
}

export function labelsFromJson(value: unknown): string[] {
  if (Array.isArray(value)) return value.map((entry) => labelOf(entry));
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value as Record<string, unknown>);
    const labels: string[] = [];
    for (const [key, entry] of entries) {
      const index = Number(key);
      if (!Number.isInteger(index) || index < 0) throw new Error(`key '${key}' is not a class index`);
      labels[index] = labelOf(entry);
    }
    const hole = labels.findIndex((label) => label === undefined);
    if (hole >= 0 || labels.length !== entries.length) throw new Error(`class ${hole >= 0 ? hole : labels.length} has no label`);
    return labels;
  }
  throw new Error('expected an array or an object');
}

function labelOf(entry: unknown): string {
  if (typeof entry === 'string') return entry;
  // Keras' class index: [wordnet id, name].
  if (Array.isArray(entry) && typeof entry[entry.length - 1] === 'string') return entry[entry.length - 1] as string;
  throw new Error(`label ${JSON.stringify(entry)} is not a string`);
}

/** The short display form: "tabby, tabby cat" -> "tabby". */
export function shortLabel(label: string): string {
  return label.split(',')[0]!.trim();
}

/**
 * Resolves `--class` text: an index, or a name matched case-insensitively,
 * looser each step, the first step with exactly one match winning: an exact
 * label or synonym (labels list synonyms separated by commas); else the word
 * or words in a synonym ("bus" is the school bus, not the busby it starts);
 * else a synonym prefix; else a substring. A step with several matches is
 * ambiguous: the error lists them, and those of the looser steps after them,
 * so that whole-word matches ("tabby cat" for "cat") come before mere
 * prefixes and substrings ("catamaran").
 */
export function resolveClass(spec: string, labels: readonly string[] | undefined, classCount: number): number {
  const text = spec.trim();
  if (/^\d+$/.test(text)) {
    const index = Number(text);
    if (index >= classCount) throw new UsageError(`class ${index} is out of range: the model has ${classCount} classes (0-${classCount - 1})`);
    return index;
  }
  if (labels === undefined) throw new UsageError(`class '${text}' is not an index and the model has no labels (give --labels)`);
  const wanted = normalise(text);
  const tiers = matchTiers(wanted).map((matches) => labels.flatMap((label, index) => (matches(label) ? [index] : [])));
  for (const [tier, found] of tiers.entries()) {
    if (found.length === 1) return found[0]!;
    if (found.length > 1) {
      // Several exact names are the candidates; a looser step's candidates go on with the looser matches.
      const candidates = tier === 0 ? found : [...new Set(tiers.slice(tier).flat())];
      const shown = candidates.slice(0, AMBIGUOUS_SHOWN).map((index) => `${index} "${labels[index]}"`).join(', ');
      const more = candidates.length > AMBIGUOUS_SHOWN ? `, and ${candidates.length - AMBIGUOUS_SHOWN} more` : '';
      throw new UsageError(`class '${text}' is ambiguous: ${shown}${more}`);
    }
  }
  const close = closestLabels(wanted, labels);
  throw new UsageError(`class '${text}' matches no label${close.length > 0 ? `; closest: ${close.join(', ')}` : ''}`);
}

/** Candidates an ambiguity error names; the rest are counted. */
const AMBIGUOUS_SHOWN = 8;

/** The label tests of resolveClass, strictest first. */
function matchTiers(wanted: string): ((label: string) => boolean)[] {
  const synonymsOf = (label: string): string[] => [normalise(label), ...label.split(',').map(normalise)];
  const wholeWords = wholeWordPattern(wanted);
  return [
    (label) => synonymsOf(label).includes(wanted),
    (label) => synonymsOf(label).some((name) => wholeWords.test(name)),
    (label) => synonymsOf(label).some((name) => name.startsWith(wanted)),
    (label) => normalise(label).includes(wanted),
  ];
}

/**
 * `wanted` not inside a longer word: "cat" in "tiger cat", not in "polecat"
 * or "catamaran". Apostrophes belong to words ("jack o' lantern").
 */
function wholeWordPattern(wanted: string): RegExp {
  const escaped = wanted.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(?<![\\p{L}\\p{N}'])${escaped}(?![\\p{L}\\p{N}'])`, 'u');
}

/** What a request explains: these classes, or each image's top k (cam/classes.ts's ClassRequest, as it is made from the flags). */
export type ClassesOfSpecs = { kind: 'explicit'; classes: readonly number[] } | { kind: 'top'; k: number };

/**
 * Classes by index or label (`--class` specs, resolved by resolveClasses;
 * repeats explained once), or, with none, each image's top `topK` of
 * `count` classes. Shared by the cam task and planned runs.
 */
export function classRequestOf(specs: readonly (string | number)[], topK: number, labels: readonly string[] | undefined, count: number): ClassesOfSpecs {
  // As predict's --top: asking for more classes than the model has gives them all.
  if (specs.length === 0) {
    if (!(Number.isInteger(topK) && topK >= 1)) throw new UsageError(`top-k ${topK} must be a whole number of at least 1`);
    return { kind: 'top', k: Math.min(topK, count) };
  }
  const classes = specs.flatMap((spec) => resolveClasses(String(spec), labels, count));
  return { kind: 'explicit', classes: [...new Set(classes)] };
}

/**
 * The classes one `--class` spec names: a whole label as one class (ImageNet's
 * hold commas: "tabby, tabby cat"), else its comma-separated parts each
 * (blank parts skipped; a spec of blanks and commas only is a usage error).
 */
export function resolveClasses(spec: string, labels: readonly string[] | undefined, classCount: number): number[] {
  const wanted = normalise(spec);
  const parts = labels?.some((label) => normalise(label) === wanted) ? [spec] : spec.split(',').filter((part) => part.trim() !== '');
  // Blanks and commas only would explain no class at all: refused, not skipped.
  if (parts.length === 0) throw new UsageError(`class '${spec}' names no class: give an index or a name, several separated by commas`);
  return parts.map((part) => resolveClass(part, labels, classCount));
}

function normalise(text: string): string {
  return text.trim().toLowerCase().replace(/[\s_-]+/g, ' ');
}

function closestLabels(wanted: string, labels: readonly string[]): string[] {
  const numbered = labels.map((label, index) => `${index} "${label}"`);
  return closestMatches(wanted, numbered, 3, (entry) => normalise(shortLabel(entry.slice(entry.indexOf('"') + 1, -1))));
}
