/**
 * Planned runs (issue 12's cold start): a one-image Grad-CAM on ONNX
 * Runtime whose target layer has a pooled linear head needs, of the model,
 * only a session of the optimised graph a previous run saved, the names of
 * the target's activations and of the class scores, the classifier's
 * kernel, and the model's metadata. A run that computes such a request on
 * ONNX Runtime writes them down as the model's **plan**; a later one-image
 * run of the same model and settings reads it and runs from it
 * (planned-cam.ts), loading neither tfjs nor the model's layers: about
 * 0.15 s of a 0.55 s start.
 *
 * A plan is a file `<cache>/plans/<32 hex>.plan`, named by what decides it
 * (planKey: camviz's version, the model file's real path, --preprocess,
 * --labels, --size, --backend) and sealed as saved graphs are
 * (engine/saved-graph-seal.ts): a length, its JSON, the classifier's
 * kernel (float32), the seal. It holds the identity of every file the
 * model's outputs depend on (the model's files, camviz.json or its
 * absence, a labels file), and is used only while each is unchanged; one
 * is written only when all of them last changed SETTLED_MS or more before
 * the writing process started (model/file-fingerprints.ts says why that is
 * safe), so that a model edited during a run is never planned from what
 * that run read. A plan that does not hold only means the run loads the
 * model, which writes the plan again. The folder keeps the MAX_PLANS most
 * recently used. CAMVIZ_PLANS=0 turns plans off.
 */
import { createHash } from 'node:crypto';
import { readdir, rm, stat } from 'node:fs/promises';
import { type BigIntStats, realpathSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { PooledHead } from '../executor/closed-form.js';
import type { OrtPassPlan } from '../executor/ort-plan.js';
import { sealOf, sealedGraph } from '../engine/saved-graph-seal.js';
import { PREPROCESS_NAMES } from '../image/preprocess-names.js';
import { settledIdentity } from '../model/file-fingerprints.js';
import { type ModelMetadata, readCamvizJson } from '../model/metadata.js';
import { modelPathOf } from '../model/session-ahead.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { cacheRoot } from '../util/cache-root.js';
import { type FileIdentity, identityOf, sameIdentity } from '../util/file-identity.js';
import { makeFolders } from '../util/make-folders.js';
import { readRegularFileSync } from '../util/read-whole-file.js';
import { ReadsAhead } from '../util/reads-ahead.js';
import { touch } from '../util/touch.js';
import { VERSION } from '../util/version.js';
import type { CamTaskOptions, ModelSpec } from './types.js';

/** Bumped when what a plan holds, or what a planned run does with it, changes: older plans are then not found. */
// 2: a Reshape's 4-D image value is stored (and fetched from ONNX Runtime) NHWC, so a plan's layouts changed.
// 3: an ONNX model's default CAM target changed for VGG, AlexNet and DenseNet exports (features, the in-place ReLU), and a ViT has none: a plan holds the target it resolved.
const PLAN_FORMAT = 3;

/** The plans kept: the most recently used. Each is mostly its kernel (MobileNet v1's 3 MB). */
const MAX_PLANS = 32;

/** A plan file larger than this is not read (a kernel of 16M weights). */
const MAX_PLAN_BYTES = 64 * 2 ** 20;

/**
 * A file the plan's outputs depend on: its path as the load uses it, and
 * the file that path led to (its identity holds its real path) when the plan
 * was written (null: there was none). A link there pointed elsewhere since
 * leads to another real path: the plan no longer holds.
 */
export interface PlanDependency {
  readonly path: string;
  readonly identity: FileIdentity | null;
}

export interface CamPlan {
  /** The pass: the session, the target's activations, the scores and the classifier. */
  readonly pass: OrtPassPlan;
  /** The model's metadata as the writing run resolved it (`source` is the current run's). */
  readonly meta: ModelMetadata;
  /** The target layers' label, as records name them. */
  readonly layerLabel: string;
  /** tfjs' backend as the writing run chose it (the manifest's `backend`): settings the key holds. */
  readonly backend: { readonly kind: string; readonly package: string };
  readonly dependencies: readonly PlanDependency[];
}

/** The settings of a run that decide its plan, besides the model file: what planKey hashes. */
type PlanSettings = Pick<ModelSpec, 'preprocess' | 'labels' | 'size' | 'backend'>;

/**
 * Whether a cam task's request is one a plan serves: Grad-CAM of the
 * model's default target layer for class logits (`--class`, or each
 * image's top k), without smoothing or metrics. Its drawing options
 * (colormap, alpha, --heatmap-only, --raw, image and PNG settings) are the
 * planned run's own, as for any run.
 */
export function plannable(options: CamTaskOptions): boolean {
  return (
    options.method === 'gradcam' &&
    options.layers.length === 0 &&
    options.score === 'logit' &&
    (options.target === undefined || options.target.kind === 'class') &&
    !options.augSmooth &&
    !options.eigenSmooth &&
    options.metrics === undefined &&
    options.model.engine !== 'tfjs' &&
    options.model.tfjsOnly === undefined
  );
}

/** CAMVIZ_PLANS=0: plans are neither read nor written (every run loads its model). */
function plansEnabled(): boolean {
  return process.env['CAMVIZ_PLANS'] !== '0';
}

/**
 * The plan's name: the model file's path as the load uses it (links not
 * resolved: camviz.json and the weights are looked for beside it, so two
 * folders linking one file are two models) and the settings that decide
 * the plan, hashed with camviz's version and the plan format.
 */
function planKey(modelFile: string, settings: PlanSettings): string {
  const labels = settings.labels === undefined ? null : resolve(settings.labels);
  const backend = settings.backend ?? process.env['CAMVIZ_BACKEND'] ?? null;
  const material = [PLAN_FORMAT, VERSION, modelFile, settings.preprocess ?? null, labels, settings.size ?? null, backend];
  return createHash('sha256').update(JSON.stringify(material)).digest('hex').slice(0, 32);
}

/** Where plans are kept. */
function plansFolder(): string {
  return join(cacheRoot(), 'plans');
}

function planPath(key: string): string {
  return join(plansFolder(), `${key}.plan`);
}

const readsAhead = new ReadsAhead<PlanRead>();

/** The key a read ahead is kept under: the request as given (readCamPlanAhead and takeCamPlan see the same options). */
function aheadKey(spec: ModelSpec): string {
  return JSON.stringify([spec.model ?? null, spec.preprocess ?? null, spec.labels ?? null, spec.size ?? null, spec.backend ?? null]);
}

/**
 * Reads the plan of the model `spec` names ahead of a later takeCamPlan,
 * which takes it: the command line calls it before the command's modules
 * load. Resolves to the plan, when one holds.
 */
export async function readCamPlanAhead(spec: ModelSpec): Promise<CamPlan | undefined> {
  let read: PlanRead | undefined;
  await readsAhead.start(aheadKey(spec), async () => {
    read = await readCamPlan(spec);
    return read;
  });
  return read?.plan;
}

/** The plan of the model `spec` names (read ahead, or read now), or why there is none. */
export async function takeCamPlan(spec: ModelSpec): Promise<PlanRead> {
  return (await readsAhead.take(aheadKey(spec))) ?? readCamPlan(spec);
}

/** A plan read: the plan, or why there is none (undefined: no plan was written for these settings). */
export type PlanRead = { readonly plan: CamPlan; readonly why?: undefined } | { readonly plan?: undefined; readonly why: string | undefined };

/**
 * The model's plan for these settings, when one is there, sealed, well
 * formed, and every file it depends on as it was. Never rejects: a cache
 * that cannot be read has no plans.
 */
async function readCamPlan(spec: ModelSpec): Promise<PlanRead> {
  const modelFile = plansEnabled() ? await modelPathOf(spec.model) : undefined;
  if (modelFile === undefined) return { why: undefined };
  const key = planKey(modelFile, spec);
  const path = planPath(key);
  // ENOTDIR and the like (`plans` a file, a folder that cannot be searched): no plan there either.
  if (statOrUndefined(path) === undefined) return { why: undefined };
  const file = readRegularFileSync(path, MAX_PLAN_BYTES);
  if (file === undefined) return { why: 'it is not a regular file of a plan\'s size' };
  const bytes = sealedGraph(file, key);
  const plan = bytes === undefined ? undefined : decodePlan(bytes);
  if (plan === undefined) return { why: 'it is damaged, or of another format' };
  const changed = plan.dependencies.find((dependency) => !unchanged(dependency));
  if (changed !== undefined) return { why: `${changed.path} changed since it was written` };
  // Its "last used", which the folder's bound evicts by.
  await touch(path);
  return { plan: { ...plan, meta: { ...plan.meta, source: spec.model ?? plan.meta.source } } };
}

/**
 * Removes the plan of the model `spec` names: one its saved graph does not
 * match (planned-cam.ts), which would otherwise be found holding by every
 * run, and be tried by each.
 */
export async function forgetCamPlan(spec: ModelSpec): Promise<void> {
  const modelFile = await modelPathOf(spec.model);
  if (modelFile !== undefined) await rm(planPath(planKey(modelFile, spec)), { force: true }).catch(() => undefined);
}

function statOrUndefined(path: string): BigIntStats | undefined {
  try {
    return statSync(path, { bigint: true, throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

/** Whether the file a dependency names is as it was (or still absent): its path leads to the same file, unchanged. */
function unchanged(dependency: PlanDependency): boolean {
  const now = statOrUndefined(dependency.path);
  if (dependency.identity === null) return now === undefined;
  const real = now === undefined ? undefined : realpathOrUndefined(dependency.path);
  return now !== undefined && real === dependency.identity.path && sameIdentity(dependency.identity, identityOf(real, now));
}

function realpathOrUndefined(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

/** What a run that computed a plannable request tells writeCamPlan. */
export interface PlanSource {
  readonly spec: ModelSpec;
  readonly pass: OrtPassPlan;
  readonly meta: ModelMetadata;
  readonly layerLabel: string;
  readonly backend: CamPlan['backend'];
  /** The model's own files (its model.json and weights, or its .onnx file), by their paths as the load used them. */
  readonly modelFiles: readonly string[];
}

/**
 * Writes the plan of a run's request, unless a file it depends on changed
 * too recently to be trusted (see the file comment): SETTLED_MS before
 * `settledBefore`, by default this process's start. Best effort: a plan
 * that cannot be written only costs the next run its head start.
 */
export async function writeCamPlan(source: PlanSource, settledBefore = performance.timeOrigin): Promise<boolean> {
  if (!plansEnabled()) return false;
  try {
    const modelFile = await modelPathOf(source.spec.model);
    // One that holds is kept as it is: a full run of a planned request (a folder's) need not write its 3 MB again.
    if (modelFile === undefined || (await readCamPlan(source.spec)).plan !== undefined) return false;
    const dependencies = await dependenciesOf(source, settledBefore);
    if (dependencies === undefined) return false;
    const key = planKey(modelFile, source.spec);
    const bytes = encodePlan({ pass: source.pass, meta: source.meta, layerLabel: source.layerLabel, backend: source.backend, dependencies });
    await makeFolders(plansFolder());
    await writeFileAtomic(planPath(key), Buffer.concat([bytes, sealOf(bytes, key)]), { durable: false });
    await prunePlans();
    return true;
  } catch {
    return false;
  }
}

/**
 * The files the outputs depend on, each settled before this process
 * started (`settledBefore`): the model's files, camviz.json beside it (or
 * its absence), the labels file (--labels, or the one camviz.json names).
 * Undefined when one is not settled.
 */
async function dependenciesOf(source: PlanSource, settledBefore: number): Promise<PlanDependency[] | undefined> {
  const modelJsonPath = resolve(source.meta.modelJsonPath);
  const camvizJson = join(dirname(modelJsonPath), 'camviz.json');
  const labels = source.spec.labels !== undefined ? [resolve(source.spec.labels)] : await camvizJsonLabelsFile(modelJsonPath);
  if (labels === undefined) return undefined;
  const modelFiles = source.modelFiles.map((path) => resolve(path));
  const dependencies: PlanDependency[] = [];
  for (const path of new Set([...modelFiles, camvizJson, ...labels])) {
    const identity = await settledIdentity(path, settledBefore);
    if (identity === undefined) return undefined;
    // A model file must be there: only camviz.json and labels may be absent.
    if (identity === null && modelFiles.includes(path)) return undefined;
    dependencies.push({ path, identity });
  }
  return dependencies;
}

/** The labels file camviz.json names, read as the load reads it ([] for none, or the built-in ImageNet labels); undefined when it is not valid JSON. */
async function camvizJsonLabelsFile(modelJsonPath: string): Promise<string[] | undefined> {
  const camvizJson = await readCamvizJson(modelJsonPath).catch(() => null);
  if (camvizJson === null) return undefined;
  const labels = camvizJson?.labels;
  return typeof labels === 'string' && labels !== 'imagenet' ? [resolve(dirname(modelJsonPath), labels)] : [];
}

/** Keeps the MAX_PLANS most recently used plans (mtime: read plans are touched). */
async function prunePlans(): Promise<void> {
  const folder = plansFolder();
  const names = (await readdir(folder)).filter((name) => /^[0-9a-f]{32}\.plan$/.test(name));
  if (names.length <= MAX_PLANS) return;
  const dated = await Promise.all(names.map(async (name) => ({ name, mtime: (await stat(join(folder, name)).catch(() => undefined))?.mtimeMs ?? 0 })));
  dated.sort((a, b) => b.mtime - a.mtime);
  await Promise.all(dated.slice(MAX_PLANS).map(({ name }) => rm(join(folder, name), { force: true })));
}

/** What the JSON part holds: the plan without the kernel, which follows it as float32. */
interface PlanJson extends Omit<CamPlan, 'pass'> {
  readonly format: number;
  readonly pass: Omit<OrtPassPlan, 'head'> & { readonly head: Omit<PooledHead, 'kernel'> & { readonly identity: boolean } };
}

/** u32 length of the JSON, the JSON, zeros to a multiple of 4, the kernel's float32s (little-endian). */
function encodePlan(plan: CamPlan): Buffer {
  const { kernel, ...head } = plan.pass.head;
  const json: PlanJson = { format: PLAN_FORMAT, ...plan, pass: { ...plan.pass, head: { ...head, identity: kernel === undefined } } };
  const text = Buffer.from(JSON.stringify(json), 'utf8');
  const padded = 4 + text.length + ((4 - (text.length % 4)) % 4);
  const out = Buffer.alloc(padded + (kernel?.byteLength ?? 0));
  out.writeUInt32LE(text.length, 0);
  text.copy(out, 4);
  if (kernel !== undefined) Buffer.from(kernel.buffer, kernel.byteOffset, kernel.byteLength).copy(out, padded);
  return out;
}

/** The plan in `bytes` (sealed, so written by camviz), or undefined when it is not one of this format (checked field by field). */
function decodePlan(bytes: Uint8Array): CamPlan | undefined {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer.length < 4) return undefined;
  const length = buffer.readUInt32LE(0);
  if (4 + length > buffer.length) return undefined;
  let json: PlanJson;
  try {
    json = JSON.parse(buffer.toString('utf8', 4, 4 + length)) as PlanJson;
  } catch {
    return undefined;
  }
  if (!wellFormed(json)) return undefined;
  const { identity, ...head } = json.pass.head;
  const padded = 4 + length + ((4 - (length % 4)) % 4);
  const kernelBytes = identity ? 0 : head.channels * head.classes * 4;
  if (buffer.length !== padded + kernelBytes) return undefined;
  // A view of the file's bytes where they are aligned (a read of its own: they are), else a copy.
  const start = buffer.byteOffset + padded;
  const kernel = identity ? undefined : start % 4 === 0 ? new Float32Array(buffer.buffer, start, kernelBytes / 4) : new Float32Array(buffer.buffer.slice(start, start + kernelBytes));
  const { format: _format, ...plan } = json;
  return { ...plan, pass: { ...json.pass, head: { ...head, kernel } } };
}

/** Whether the JSON has every field a planned run reads, of its type: a plan from another format or damaged is not used. */
function wellFormed(json: PlanJson): boolean {
  const { format, pass, meta, layerLabel, backend, dependencies } = json ?? {};
  const isString = (value: unknown): value is string => typeof value === 'string';
  const isCount = (value: unknown): value is number => Number.isInteger(value) && (value as number) > 0 && (value as number) <= 1 << 24;
  const head = pass?.head;
  return (
    format === PLAN_FORMAT &&
    isString(layerLabel) &&
    isString(backend?.kind) &&
    isString(backend?.package) &&
    Array.isArray(dependencies) &&
    dependencies.every((dependency) => isString(dependency?.path) && (dependency.identity === null || isString(dependency.identity?.ctimeNs))) &&
    [pass?.sessionKey, pass?.inputName, pass?.activationName, pass?.scoresName].every(isString) &&
    (pass.probabilitiesName === undefined || isString(pass.probabilitiesName)) &&
    (pass.inputLayout === 'nchw' || pass.inputLayout === 'same') &&
    (pass.channelAxis === 1 || pass.channelAxis === 3) &&
    isCount(pass.inputSize?.height) &&
    isCount(pass.inputSize?.width) &&
    typeof head?.identity === 'boolean' &&
    isCount(head.channels) &&
    isCount(head.classes) &&
    head.channels * head.classes <= 1 << 24 &&
    head.channelStride === 1 &&
    head.classStride === head.channels &&
    (!head.identity || head.channels === head.classes) &&
    isString(meta?.name) &&
    isString(meta.sha256) &&
    isString(meta.modelJsonPath) &&
    (PREPROCESS_NAMES as readonly string[]).includes(meta.preprocess) &&
    meta.inputSize?.height === pass.inputSize.height &&
    meta.inputSize.width === pass.inputSize.width &&
    (meta.labels === undefined || (Array.isArray(meta.labels) && meta.labels.every(isString)))
  );
}
