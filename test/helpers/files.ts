/**
 * Test inputs written on the fly and output folders read back: noise images
 * that differ from one another, folder listings and run manifests.
 */
import { execFileSync, spawn } from 'node:child_process';
import { type Dirent, existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';

import type { Manifest } from '../../src/batch/manifest.js';
import { LEDGER_NAME } from '../../src/util/outputs-ledger.js';

/**
 * Deterministic noise (a 32-bit LCG, top byte of each step), so that images
 * differ and the model has something to see, and reruns see the same bytes.
 */
export function noise(width: number, height: number, seed: number, channels = 3): Buffer {
  const bytes = Buffer.alloc(width * height * channels);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < bytes.length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    bytes[i] = state >>> 24;
  }
  return bytes;
}

/** Why a FIFO test is skipped, if it is: Windows has no mkfifo. */
export const skipWithoutFifos: string | false = process.platform === 'win32' ? 'no FIFOs' : false;

/**
 * Makes a FIFO at `path` that a separate process opens and closes again
 * after `afterMs`, and returns whether it has done so yet. Should camviz
 * wait on the FIFO for a writer (the regression these tests catch), its
 * open returns only then: the test asserts that camviz refused the FIFO
 * before (`released()` still false), and fails instead of hanging the test
 * runner (a blocked synchronous open would stop even the test's timeout).
 */
export function fifoReleasedAfter(path: string, afterMs = 10_000): () => boolean {
  execFileSync('mkfifo', [path]);
  const marker = `${path}.released`;
  // The marker first; then `<>` opens for reading and writing, which never waits: it lets a reader's open through, then closes.
  spawn('sh', ['-c', `sleep ${afterMs / 1000}; : > "$0.released"; : <> "$0"`, path], { stdio: 'ignore', detached: true }).unref();
  return () => existsSync(marker);
}

export interface ListFilesOptions {
  /**
   * List a folder that does not exist as empty, for checks that nothing was
   * written; otherwise a missing folder throws, so that a run which wrote
   * nothing cannot pass for one that wrote what was expected.
   */
  missingAsEmpty?: boolean;
}

/**
 * Every file under `folder` (hidden ones too: a temporary file left is a
 * bug), relative with '/' separators, sorted; but camviz's ledger of the
 * files it wrote (`.camviz-outputs`), which every folder run that writes
 * outputs keeps: folder-safety.test.ts checks it.
 */
export async function listFiles(folder: string, { missingAsEmpty = false }: ListFilesOptions = {}): Promise<string[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(folder, { recursive: true, withFileTypes: true });
  } catch (error) {
    if (missingAsEmpty && (error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  return entries
    .filter((entry) => entry.isFile() && entry.name !== LEDGER_NAME)
    .map((entry) => relative(folder, join(parentOf(entry, folder), entry.name)).split(sep).join('/'))
    .sort();
}

/** `parentPath` is Node 20.12+; earlier 20.x (allowed by package.json) call it `path`. */
function parentOf(entry: Dirent, folder: string): string {
  const named = entry as { parentPath?: string; path?: string };
  return named.parentPath ?? named.path ?? folder;
}

/** The manifest.json a folder run wrote into `outDir`. */
export async function readManifest(outDir: string): Promise<Manifest> {
  return JSON.parse(await readFile(join(outDir, 'manifest.json'), 'utf8')) as Manifest;
}
