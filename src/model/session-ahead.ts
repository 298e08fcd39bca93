/**
 * Which ONNX Runtime session to make ahead for a model (executor/
 * ort-session-ahead.ts): each run that makes a model's first session from
 * its files notes it in `<cache>/onnx/first-sessions.json`, by the real
 * path of the model's file (model.json, or the .onnx file); the command
 * line of a later one-image run reads the note before it loads anything
 * and starts that session in a worker.
 *
 * The note only says what to try: the executor takes the session made
 * ahead only when its own first session has exactly its key (which names
 * the model's fingerprint and the session's outputs), so a model changed
 * since, another input size, a damaged or forged note cost a worker's work
 * on the other core, never a wrong result.
 */
import { realpathSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { type SessionAheadSpec, startSessionAhead } from '../executor/ort-session-ahead.js';

export { closeSessionsAhead } from '../executor/ort-session-ahead.js';
import { type EntryIndex, readEntryIndex, readEntryIndexSync, writeEntryIndex } from './entry-index.js';
import { onnxCacheDir } from './onnx-writer/cache-limit.js';
import { resolveModelJsonPath } from './io.js';
import { localOnnxPath } from './onnx/file.js';
import { DEFAULT_MODEL, zooEntry, zooModelJsonPath } from './zoo.js';

/** The note of first sessions, in the ONNX cache folder. */
export const FIRST_SESSIONS_NAME = 'first-sessions.json';

/** The note keeps the models most recently noted: a few hundred bytes each. */
const MAX_NOTES = 256;

/** The most intra-op threads a noted session may have: a forged note must not start hundreds of threads. */
const MAX_THREADS = 64;

/** What is noted of a model's first session. */
export type FirstSessionNote = Omit<SessionAheadSpec, 'optimizedFolder'>;

/**
 * Starts the first session of the model `spec` names (a path, or a zoo
 * model's name; undefined: the default) in a worker, when a previous run
 * noted one for its file. Cheap (a few stats, a small read): the command
 * line calls it before loading anything. Any problem only means nothing is
 * started.
 */
export async function startModelSessionAhead(spec: string | undefined): Promise<void> {
  const file = await modelFileOf(spec);
  if (file === undefined) return;
  const folder = onnxCacheDir();
  const note = readNotesSync(join(folder, FIRST_SESSIONS_NAME))[file];
  if (note !== undefined) startSessionAhead({ ...note, optimizedFolder: folder });
}

/**
 * The real path of the file a model spec loads, found as the load finds
 * it: an ONNX file (a .onnx, a file that starts as one, a folder with
 * model.onnx), else a TF.js model.json (in a folder, or the file given),
 * a zoo model's where it is already; undefined for anything else (a URL, a
 * zoo model not yet downloaded, a path that is not there).
 */
export async function modelFileOf(spec: string | undefined): Promise<string | undefined> {
  const path = await modelPathOf(spec);
  return path === undefined ? undefined : realpath(path).catch(() => undefined);
}

/**
 * The file a model spec loads, as modelFileOf finds it, but as the load
 * uses it: absolute, its links not resolved (the load looks for
 * camviz.json and the weights beside the path it was given, not beside
 * the file a link leads to).
 */
export async function modelPathOf(spec: string | undefined): Promise<string | undefined> {
  const entry = zooEntry(spec ?? DEFAULT_MODEL);
  const path = entry === undefined ? spec : zooModelJsonPath(entry);
  if (path === undefined) return undefined;
  try {
    return resolve(localOnnxPath(path) ?? (await resolveModelJsonPath(path)));
  } catch {
    return undefined;
  }
}

/**
 * Notes the first session of the model read from `modelFile`, unless it
 * is noted as it is. Best effort: a note that cannot be written costs the
 * next run its head start.
 */
export async function noteFirstSession(modelFile: string, note: FirstSessionNote, folder = onnxCacheDir()): Promise<void> {
  let key: string;
  try {
    key = realpathSync(modelFile);
  } catch {
    return;
  }
  const path = join(folder, FIRST_SESSIONS_NAME);
  const notes = await readEntryIndex(path, checkedNote);
  if (JSON.stringify(notes[key]) !== JSON.stringify(note)) await writeEntryIndex(path, notes, key, note, MAX_NOTES);
}

function readNotesSync(path: string): EntryIndex<FirstSessionNote> {
  return readEntryIndexSync(path, checkedNote);
}

function checkedNote(value: unknown): FirstSessionNote | undefined {
  const candidate = value as Partial<Record<keyof FirstSessionNote, unknown>> | null;
  const { sessionKey, inputName, outputNames, threads } = candidate ?? {};
  const isName = (name: unknown): name is string => typeof name === 'string' && name.length > 0 && name.length <= 1000;
  if (!isName(inputName) || typeof sessionKey !== 'string' || sessionKey.length > 100_000) return undefined;
  if (!Array.isArray(outputNames) || outputNames.length === 0 || outputNames.length > 1000 || !outputNames.every(isName)) return undefined;
  if (typeof threads !== 'number' || !Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) return undefined;
  return { sessionKey, inputName, outputNames, threads };
}
