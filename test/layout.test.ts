/**
 * The layout is the architecture: each folder of src/ may import only from
 * folders below it in LAYERS (and from itself). A new folder must be placed
 * in the list before anything may import it.
 */
import { strict as assert } from 'node:assert';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, posix, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const src = join(root, 'src');

/** Bottom to top. Files directly in src/ (the package entry) sit above all. */
const LAYERS = ['util', 'engine', 'hooks', 'executor', 'image', 'model', 'render', 'cam', 'metrics', 'tasks', 'batch', 'cli'];

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

function folderOf(file: string): string {
  const [first, second] = relative(src, file).split('/');
  return second === undefined ? '' : first!;
}

function rank(folder: string): number {
  return folder === '' ? LAYERS.length : LAYERS.indexOf(folder);
}

test('every folder of src/ is a known layer', () => {
  const folders = readdirSync(src).filter((name) => statSync(join(src, name)).isDirectory());
  assert.deepEqual(folders.filter((folder) => !LAYERS.includes(folder)), []);
});

test('no folder imports from a folder above it', () => {
  const violations: string[] = [];
  for (const file of sources(src)) {
    const from = folderOf(file);
    const text = readFileSync(file, 'utf8');
    // Static imports and re-exports (at a line's start or closing a list) and dynamic imports.
    for (const match of text.matchAll(/^(?:import|export|\}).*?from '(\.{1,2}\/[^']+)'|import\('(\.{1,2}\/[^']+)'\)/gm)) {
      const specifier = (match[1] ?? match[2])!;
      const target = posix.normalize(posix.join(dirname(relative(src, file)), specifier));
      const to = target.includes('/') ? target.split('/')[0]! : '';
      if (to !== from && rank(to) > rank(from)) violations.push(`${relative(root, file)} imports ${specifier} (${from || 'src'} -> ${to || 'src'})`);
    }
  }
  assert.deepEqual(violations, []);
});
