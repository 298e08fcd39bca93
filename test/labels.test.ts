/**
 * Class labels: the built-in ImageNet list, label files in their common
 * formats, and turning what users type after `--class` into an index.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { CamvizError, UsageError } from '../src/util/errors.js';
import { imagenetLabels, labelsFromJson, readLabelsFile, resolveClass, resolveClasses, shortLabel } from '../src/model/labels.js';
import { asset, skipWithoutSharedAssets } from './helpers/assets.js';
import { fifoReleasedAfter, skipWithoutFifos } from './helpers/files.js';

const workDir = await mkdtemp(join(tmpdir(), 'camviz-labels-test-'));
after(() => rm(workDir, { recursive: true, force: true }));

const imagenet = imagenetLabels();

function usageError(run: () => unknown): UsageError {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof UsageError, `expected a UsageError, got ${String(caught)}`);
  assert.equal(caught.exitCode, 2);
  assert.ok(!caught.describe().includes('\n'), 'one line');
  return caught;
}

describe('the ImageNet labels', () => {
  test('are 1000 names with 281 = "tabby, tabby cat" and 282 = "tiger cat"', () => {
    assert.equal(imagenet.length, 1000);
    assert.ok(imagenet.every((label) => typeof label === 'string' && label.length > 0));
    assert.equal(imagenet[0], 'tench, Tinca tinca');
    assert.equal(imagenet[281], 'tabby, tabby cat');
    assert.equal(imagenet[282], 'tiger cat');
    assert.equal(imagenet[386], 'African elephant, Loxodonta africana');
    assert.equal(shortLabel(imagenet[281]!), 'tabby');
  });

  test('equal the shared imagenet_classes.json, name for name', { skip: skipWithoutSharedAssets }, () => {
    const shared = JSON.parse(readFileSync(asset('imagenet', 'imagenet_classes.json'), 'utf8')) as string[];
    assert.deepEqual(imagenet, shared);
  });
});

describe('resolveClass with the ImageNet labels', () => {
  const cases: [string, number][] = [
    ['281', 281],
    [' 281 ', 281],
    ['0', 0],
    ['999', 999],
    ['tabby cat', 281],
    ['tabby', 281],
    ['TABBY CAT', 281],
    ['tabby_cat', 281],
    ['tiger cat', 282],
    ['Siamese', 284], // a synonym after the first name
    ['African elephant', 386],
    ['Loxodonta', 386], // a unique prefix of a synonym
  ];
  for (const [spec, expected] of cases) {
    test(`'${spec}' -> ${expected}`, () => {
      assert.equal(resolveClass(spec, imagenet, 1000), expected);
    });
  }

  test("'1000' is out of range: a UsageError giving the range", () => {
    const error = usageError(() => resolveClass('1000', imagenet, 1000));
    assert.match(error.message, /out of range/);
    assert.match(error.message, /0-999/);
  });

  test("'cat' is ambiguous: the labels with the word cat are listed first, then prefixes and substrings", () => {
    const error = usageError(() => resolveClass('cat', imagenet, 1000));
    assert.match(error.message, /^class 'cat' is ambiguous: /);
    const listed = [...error.message.matchAll(/(\d+) "/g)].map((match) => Number(match[1]));
    // Every label holding the word "cat" (no label has the synonym "cat" itself), in index order:
    // tabby cat, tiger cat, Persian cat, Siamese cat, Egyptian cat, Madagascar cat, bear cat (red panda).
    const wholeWord = [281, 282, 283, 284, 285, 383, 387];
    assert.deepEqual(listed.slice(0, wholeWord.length), wholeWord, error.message);
    // Then the synonyms starting with "cat" (catamount, catamaran, ...), the first of them shown.
    assert.equal(listed[wholeWord.length], 286, error.message);
    for (const index of wholeWord) assert.ok(error.message.includes(`${index} "${imagenet[index]}"`));
    // The rest (prefixes and substrings: lynx, catamaran, oscilloscope, polecat, ...) are counted.
    assert.match(error.message, /, and \d+ more$/);
  });

  test("'bus' is the school bus: the one label with the word, before the synonyms starting with it (busby, bustard)", () => {
    assert.equal(resolveClass('bus', imagenet, 1000), 779);
    assert.equal(imagenet[779], 'school bus');
  });

  test('a unique whole-word match wins over a unique prefix; several whole-word matches stay ambiguous', () => {
    const labels = ['catamaran', 'tabby cat', 'polecat'];
    assert.equal(resolveClass('cat', labels, labels.length), 1);
    const twoCats = ['catamaran', 'tabby cat', 'tiger cat'];
    assert.match(usageError(() => resolveClass('cat', twoCats, twoCats.length)).message, /^class 'cat' is ambiguous: 1 "tabby cat", 2 "tiger cat", 0 "catamaran"$/);
    // An exact synonym still comes first, and a prefix still resolves when no label has the word.
    assert.equal(resolveClass('cat', [...labels, 'house cat, cat'], 4), 3);
    assert.equal(resolveClass('catam', labels, labels.length), 0);
  });

  test("'elephant' is ambiguous between the elephants only", () => {
    const error = usageError(() => resolveClass('elephant', imagenet, 1000));
    const listed = [...error.message.matchAll(/(\d+) "/g)].map((match) => Number(match[1]));
    assert.deepEqual(listed.sort((a, b) => a - b), [385, 386]);
  });

  test("'xyzzy' is unknown: a UsageError", () => {
    const error = usageError(() => resolveClass('xyzzy', imagenet, 1000));
    assert.match(error.message, /matches no label/);
    assert.ok(error.message.includes("'xyzzy'"));
  });

  test('a near miss suggests the closest labels', () => {
    const error = usageError(() => resolveClass('tabbby', imagenet, 1000));
    assert.ok(error.message.includes('281 "tabby, tabby cat"'), error.message);
  });

  test('a name without labels is a UsageError asking for --labels; an index still works', () => {
    const error = usageError(() => resolveClass('tabby', undefined, 1000));
    assert.match(error.message, /--labels/);
    assert.equal(resolveClass('7', undefined, 10), 7);
    usageError(() => resolveClass('10', undefined, 10));
  });
});

describe('resolveClasses: one --class value', () => {
  test('a comma-separated list, a whole label holding commas as one class, blank parts skipped', () => {
    assert.deepEqual(resolveClasses('243,281', imagenet, 1000), [243, 281]);
    assert.deepEqual(resolveClasses('tabby, tabby cat', imagenet, 1000), [281]);
    assert.deepEqual(resolveClasses('281,', imagenet, 1000), [281]);
  });

  test("blanks and commas only ('', ',', ' , ') name no class: a UsageError, not an empty list", () => {
    for (const spec of ['', ',', ' , ']) {
      assert.match(usageError(() => resolveClasses(spec, imagenet, 1000)).message, /names no class/);
      assert.match(usageError(() => resolveClasses(spec, undefined, 5)).message, /names no class/);
    }
  });
});

describe('label files', () => {
  async function labelsFrom(name: string, text: string): Promise<string[]> {
    const path = join(workDir, name);
    await writeFile(path, text);
    return readLabelsFile(path);
  }

  async function labelsError(name: string, text: string): Promise<CamvizError> {
    const path = join(workDir, name);
    await writeFile(path, text);
    let caught: unknown;
    try {
      await readLabelsFile(path);
    } catch (error) {
      caught = error;
    }
    assert.ok(caught instanceof CamvizError, `expected a CamvizError, got ${String(caught)}`);
    assert.equal(caught.file, path);
    return caught;
  }

  test('a JSON array of names', async () => {
    assert.deepEqual(await labelsFrom('array.json', '["cat", "dog", "bird"]'), ['cat', 'dog', 'bird']);
  });

  test('a JSON object {"0": name}, in any key order', async () => {
    assert.deepEqual(await labelsFrom('object.json', '{"1": "b", "0": "a", "2": "c"}'), ['a', 'b', 'c']);
  });

  test("Keras' class index {\"0\": [wordnet id, name]}", async () => {
    const text = JSON.stringify({ 0: ['n01440764', 'tench'], 1: ['n01443537', 'goldfish'] });
    assert.deepEqual(await labelsFrom('class_index.json', text), ['tench', 'goldfish']);
  });

  test("the shared Keras imagenet_class_index.json: 1000 names, 281 'tabby'", { skip: skipWithoutSharedAssets }, async () => {
    const labels = await readLabelsFile(asset('imagenet', 'imagenet_class_index.json'));
    assert.equal(labels.length, 1000);
    assert.equal(labels[281], 'tabby');
    assert.equal(labels[0], 'tench');
  });

  test('a text file, one name per line (CRLF, surrounding spaces and a trailing newline)', async () => {
    assert.deepEqual(await labelsFrom('labels.txt', 'cat\r\n  dog  \r\nhot dog, frankfurter\r\n'), ['cat', 'dog', 'hot dog, frankfurter']);
  });

  test('a byte-order mark (as Windows editors save UTF-8) is skipped, in JSON and text', async () => {
    assert.deepEqual(await labelsFrom('bom.json', '\uFEFF["cat", "dog"]'), ['cat', 'dog']);
    assert.deepEqual(await labelsFrom('bom.txt', '\uFEFFcat\ndog\n'), ['cat', 'dog']);
  });

  test('a blank line between names is refused (it would shift later classes); trailing blank lines are fine', async () => {
    assert.deepEqual(await labelsFrom('trailing.txt', 'cat\ndog\n\n \n'), ['cat', 'dog']);
    assert.match((await labelsError('gap.txt', 'cat\n\ndog\n')).message, /line 2 of the labels file is blank/);
    assert.match((await labelsError('empty.txt', '\n\n')).message, /no class names/);
  });

  test('an object with a hole is an error naming the missing class', async () => {
    const error = await labelsError('hole.json', '{"0": "a", "2": "c"}');
    assert.match(error.message, /class 1 has no label/);
  });

  test('an object without class 0 is an error', async () => {
    const error = await labelsError('no-zero.json', '{"1": "b"}');
    assert.match(error.message, /class 0 has no label/);
  });

  test('keys that are not class indices, non-string names and invalid JSON are errors', async () => {
    assert.match((await labelsError('key.json', '{"cat": "a"}')).message, /'cat' is not a class index/);
    assert.match((await labelsError('number.json', '["a", 2]')).message, /not a string/);
    await labelsError('bad.json', '["a", ');
    await labelsError('scalar.json', '"a"');
  });

  test('a missing labels file is a CamvizError naming it', async () => {
    const path = join(workDir, 'nope.json');
    await assert.rejects(readLabelsFile(path), (error: unknown) => error instanceof CamvizError && error.file === path && /not found/.test(error.message));
  });

  test('a FIFO or a folder given as the labels is refused at once, and a file over 64 MiB by its size, before it is read', { timeout: 30_000 }, async () => {
    const refused = async (path: string, message: string): Promise<void> => {
      await assert.rejects(readLabelsFile(path), (error: unknown) => error instanceof CamvizError && error.file === path && error.message === message);
    };
    if (!skipWithoutFifos) {
      const fifo = join(workDir, 'fifo.txt');
      const released = fifoReleasedAfter(fifo);
      await refused(fifo, 'labels file is not a regular file: refused');
      assert.equal(released(), false, 'refused without waiting for a writer');
    }
    const folder = join(workDir, 'folder.json');
    await mkdir(folder);
    await refused(folder, 'labels file is not a regular file: refused');
    const huge = join(workDir, 'huge.txt');
    await writeFile(huge, 'a\n');
    await truncate(huge, 2 ** 30);
    await refused(huge, 'labels file is over 64 MiB: refused');
  });

  test('labelsFromJson accepts what readLabelsFile does', () => {
    assert.deepEqual(labelsFromJson(['x', 'y']), ['x', 'y']);
    assert.deepEqual(labelsFromJson({ 0: ['n1', 'x'] }), ['x']);
    assert.throws(() => labelsFromJson(42));
  });
});

// Labels read from a file resolve like the built-in list.
test('resolveClass over a file of labels', { skip: skipWithoutSharedAssets }, async () => {
  const labels = await readLabelsFile(asset('imagenet', 'imagenet_classes.json'));
  assert.equal(resolveClass('tabby cat', labels, labels.length), 281);
});
