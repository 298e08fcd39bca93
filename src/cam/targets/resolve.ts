/**
 * A target spec in a model's terms: which target, which output and unit,
 * which classes, checked against the model before any image is read, so
 * that a target that does not fit the model is a usage error naming the
 * model's outputs.
 */
import type * as tf from '../../engine/tf.js';
import type { Executor } from '../../executor/executor.js';
import type { GraphNode } from '../../executor/graph.js';
import { resolveLayer } from '../../executor/layers.js';
import { resolveClasses } from '../../model/labels.js';
import type { CamvizModel } from '../../model/load.js';
import { UsageError } from '../../util/errors.js';
import type { ClassRequest } from '../classes.js';
import type { ScoreKind } from '../names.js';
import { classRequest } from '../request.js';
import { ClassTarget, ProbTarget } from './class.js';
import { OutputTarget } from './output.js';
import { RegionTarget, loadRegionMask } from './region.js';
import { SigmoidTarget } from './sigmoid.js';
import { SimilarityTarget, embeddingOf } from './similarity.js';
import { NEGATIVE_CLASS, type TargetKind, type TargetSpec } from './spec.js';
import { type Target, classUnits, unitCount, valueShape } from './target.js';

/** One model output: its position, name and shape. */
export interface ModelOutput {
  index: number;
  name: string;
  shape: readonly (number | null)[];
}

/** What the task needs besides the target spec. */
export interface TargetRequest {
  /** The canonical method name: Eigen-CAM needs no score. */
  method: string;
  /** `--class` specs; empty: the top k. */
  classes: readonly string[];
  topK: number;
  /** `--score`: `prob` is `--target prob`. */
  score: ScoreKind;
}

/** A target checked against a model; `build` makes it (similarity computes its reference, region reads its mask). */
export interface TargetChoice {
  kind: TargetKind;
  classes: ClassRequest;
  /** The names of the units (the model's labels, for targets whose units are its classes). */
  labels: readonly string[] | undefined;
  /**
   * Whether Y goes up with the model's probability of the explained unit,
   * which is what the faithfulness metrics measure: class, prob and a
   * positive sigmoid unit. Not output, region, similarity (Y is no class's),
   * a negated sigmoid unit (Y falls as that probability rises), nor a model
   * without a class head.
   */
  measuredByClassProbability: boolean;
  build(referenceInput: () => Promise<tf.Tensor4D>): Promise<Target>;
}

/** Methods that explain without a score: any 4-D layer of any model, with or without a class head. */
const SCORELESS_METHODS = new Set(['eigencam']);

/** The flags that belong to each target; any other target flag is refused. */
const TARGET_FLAGS: Readonly<Record<keyof Omit<TargetSpec, 'kind'>, { flag: string; kinds: readonly TargetKind[] }>> = {
  output: { flag: '--output', kinds: ['output', 'region'] },
  unit: { flag: '--unit', kinds: ['output'] },
  region: { flag: '--region', kinds: ['region'] },
  mask: { flag: '--mask', kinds: ['region'] },
  reference: { flag: '--reference', kinds: ['similarity'] },
  embedding: { flag: '--embedding', kinds: ['similarity'] },
};

export function chooseTarget(model: CamvizModel, spec: TargetSpec, request: TargetRequest): TargetChoice {
  const network = model.network();
  const kind = targetKind(network, spec, request.score);
  for (const [field, { flag, kinds }] of Object.entries(TARGET_FLAGS)) {
    if (spec[field as keyof typeof TARGET_FLAGS] !== undefined && !kinds.includes(kind)) {
      throw new UsageError(`${flag} does not apply to --target ${kind} (it goes with --target ${kinds.join(' or ')})`);
    }
  }
  switch (kind) {
    case 'class':
    case 'prob':
      return classChoice(model, kind, request);
    case 'sigmoid':
      return sigmoidChoice(model, request);
    case 'output':
      return outputChoice(network, spec, request);
    case 'region':
      return regionChoice(model, spec, request);
    case 'similarity':
      return similarityChoice(network, spec, request);
  }
}

/** The kind asked for; none: sigmoid for a sigmoid head, else class (prob with `--score prob`). */
function targetKind(network: Executor, spec: TargetSpec, score: ScoreKind): TargetKind {
  if (score === 'prob') {
    if (spec.kind !== undefined && spec.kind !== 'prob') throw new UsageError(`--score prob is --target prob: it does not combine with --target ${spec.kind}`);
    return 'prob';
  }
  return spec.kind ?? (network.score.activation === 'sigmoid' ? 'sigmoid' : 'class');
}

function built(target: Target): TargetChoice['build'] {
  return () => Promise.resolve(target);
}

function classChoice(model: CamvizModel, kind: 'class' | 'prob', request: TargetRequest): TargetChoice {
  const network = model.network();
  if (!hasClassHead(network)) {
    if (!SCORELESS_METHODS.has(request.method)) {
      throw new UsageError(
        `the model has no class head for --target ${kind} (${describeOutputs(network)}): choose --target output, region or similarity, or the class-agnostic --method eigencam`,
      );
    }
    if (request.classes.length > 0) throw new UsageError(`the model has no class head (${describeOutputs(network)}): --class does not apply`);
    // A class-agnostic map of a model without classes: one map, unit 0, not the top "class" of a flattened feature map.
    return { kind, classes: { kind: 'explicit', classes: [0] }, labels: undefined, measuredByClassProbability: false, build: built(kind === 'prob' ? new ProbTarget() : new ClassTarget()) };
  }
  refuseNegative(request, kind);
  const target = kind === 'prob' ? new ProbTarget() : new ClassTarget();
  return { kind, classes: classRequest(model, request.classes, request.topK), labels: model.meta.labels, measuredByClassProbability: true, build: built(target) };
}

function sigmoidChoice(model: CamvizModel, request: TargetRequest): TargetChoice {
  const network = model.network();
  if (network.score.activation === 'softmax') {
    throw new UsageError(`--target sigmoid needs a sigmoid (or linear) head; this model's output ends in softmax: use --target class or prob`);
  }
  const negative = request.classes.filter(isNegative);
  const labels = model.meta.labels;
  if (negative.length === 0) return { kind: 'sigmoid', classes: classRequest(model, request.classes, request.topK), labels, measuredByClassProbability: true, build: built(new SigmoidTarget()) };
  const units = classUnits(network);
  if (units !== 1) throw new UsageError(`--class ${NEGATIVE_CLASS} is the negative class of a single-unit sigmoid head; this head has ${units ?? 'several'} units`);
  if (negative.length !== request.classes.length) throw new UsageError(`give --class 0 or --class ${NEGATIVE_CLASS}, not both`);
  return { kind: 'sigmoid', classes: { kind: 'explicit', classes: [0] }, labels, measuredByClassProbability: false, build: built(new SigmoidTarget(true)) };
}

function outputChoice(network: Executor, spec: TargetSpec, request: TargetRequest): TargetChoice {
  if (request.classes.length > 0) throw new UsageError('--target output picks its unit with --unit, not --class');
  const output = chosenOutput(network, spec.output);
  const units = unitCount(output.shape);
  let unit = spec.unit;
  if (unit === undefined) {
    if (units !== 1) throw new UsageError(`--target output: give --unit (output '${output.name}' is ${describeShape(output.shape)})`);
    unit = 0;
  }
  if (units !== undefined && unit >= units) {
    throw new UsageError(`--unit ${unit} is beyond output '${output.name}' ${describeShape(output.shape)}: its units are 0 to ${units - 1}`);
  }
  return { kind: 'output', classes: { kind: 'explicit', classes: [unit] }, labels: undefined, measuredByClassProbability: false, build: built(new OutputTarget(output.index, output.name)) };
}

function regionChoice(model: CamvizModel, spec: TargetSpec, request: TargetRequest): TargetChoice {
  const network = model.network();
  const output = chosenOutput(network, spec.output);
  if (output.shape.length !== 4) {
    throw new UsageError(`--target region needs a segmentation output [batch, h, w, classes]; ${describeOutputs(network)}`);
  }
  if ((spec.region === undefined) === (spec.mask === undefined)) throw new UsageError('--target region needs --region x0,y0,x1,y1 or --mask m.png (one of them)');
  refuseNegative(request, 'region');
  const classCount = output.shape[3] ?? Number.MAX_SAFE_INTEGER;
  const labels = model.meta.labels?.length === classCount ? model.meta.labels : undefined;
  const classes: ClassRequest =
    request.classes.length === 0
      ? { kind: 'top', k: Math.min(request.topK, classCount) }
      : { kind: 'explicit', classes: [...new Set(request.classes.flatMap((value) => resolveClasses(value, labels, classCount)))] };
  const box = spec.region;
  const mask = spec.mask;
  return {
    kind: 'region',
    classes,
    labels,
    measuredByClassProbability: false,
    build: async () => new RegionTarget(box !== undefined ? { box } : { mask: await loadRegionMask(mask!) }, [], output.index, output.name),
  };
}

function similarityChoice(network: Executor, spec: TargetSpec, request: TargetRequest): TargetChoice {
  if (spec.reference === undefined) throw new UsageError('--target similarity needs --reference <image>: the image to compare with');
  if (request.classes.length > 0) throw new UsageError('--target similarity has one score, the similarity to --reference: --class does not apply');
  const embedding = spec.embedding === undefined ? defaultEmbedding(network) : resolveLayer(network, spec.embedding, hasOneOutput, 'a layer with one output');
  const reference = spec.reference;
  return {
    kind: 'similarity',
    classes: { kind: 'explicit', classes: [0] },
    labels: undefined,
    measuredByClassProbability: false,
    build: async (referenceInput) => {
      const input = await referenceInput();
      try {
        return new SimilarityTarget(embedding, await embeddingOf(network, input, embedding), reference);
      } finally {
        input.dispose();
      }
    },
  };
}

/**
 * The default embedding: the features the class scores are computed from
 * (the score layer's input, the penultimate features; pooled if 4-D); for
 * a model without a class head, its output.
 */
export function defaultEmbedding(network: Executor): GraphNode {
  const outputNode = network.graph.producer(network.score.outputKey);
  if (!hasClassHead(network)) {
    if (outputNode === undefined) throw new UsageError('the model output is its input: give --embedding <layer>');
    return outputNode;
  }
  const scoreNode = network.graph.findNodes(network.score.scoreLayer).at(-1);
  const features = scoreNode === undefined ? undefined : network.graph.producer(scoreNode.inputs[0]!);
  if (features === undefined) throw new UsageError(`the score layer ${network.score.scoreLayer} reads the model input: give --embedding <layer>`);
  return features;
}

function hasOneOutput(node: GraphNode): boolean {
  return node.outputShapes.length === 1;
}

function isNegative(value: string): boolean {
  return value.trim().toLowerCase() === NEGATIVE_CLASS;
}

function refuseNegative(request: TargetRequest, kind: TargetKind): void {
  if (request.classes.some(isNegative)) throw new UsageError(`--class ${NEGATIVE_CLASS} is for a single-unit sigmoid head (--target sigmoid), not --target ${kind}`);
}

/**
 * Whether the model ends in class scores: a softmax or sigmoid, or scores
 * of shape [batch, classes]. A backbone's feature map (4-D, no activation)
 * is no class head.
 */
export function hasClassHead(network: Executor): boolean {
  if (network.score.activation !== 'none') return true;
  const shape = network.graph.producer(network.score.scoreKey)?.outputShapes[0];
  return shape !== undefined && shape.length === 2;
}

/** The model's outputs, in order. */
export function modelOutputs(network: Executor): ModelOutput[] {
  return network.graph.outputKeys.map((key, index) => ({ index, name: network.graph.producer(key)?.path ?? key, shape: valueShape(network, key) }));
}

/** "the model's outputs: 0 'dense' [?, 10], 1 'value' [?, 1]" */
export function describeOutputs(network: Executor): string {
  const outputs = modelOutputs(network);
  return `the model's output${outputs.length === 1 ? '' : 's'}: ${outputs.map((output) => `${output.index} '${output.name}' ${describeShape(output.shape)}`).join(', ')}`;
}

/** `--output NAME|INDEX`; absent: the first output. */
function chosenOutput(network: Executor, wanted: string | undefined): ModelOutput {
  const outputs = modelOutputs(network);
  if (wanted === undefined) return outputs[0]!;
  const byIndex = /^\d+$/.test(wanted.trim()) ? outputs[Number(wanted.trim())] : undefined;
  const byName = outputs.find((output) => output.name === wanted || output.name.split('/').at(-1) === wanted);
  const output = byName ?? byIndex;
  if (output === undefined) throw new UsageError(`--output '${wanted}' is not a model output; ${describeOutputs(network)}`);
  return output;
}

function describeShape(shape: readonly (number | null)[]): string {
  return `[${shape.map((dim) => dim ?? '?').join(', ')}]`;
}
