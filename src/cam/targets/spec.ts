/**
 * Targets as plain data: what `--target` and its flags ask for, and what a
 * manifest record says of its target. Free of TensorFlow.js, so that the
 * command line can check them without loading it.
 */
export const TARGET_KINDS = ['class', 'prob', 'sigmoid', 'output', 'region', 'similarity'] as const;
export type TargetKind = (typeof TARGET_KINDS)[number];

export function isTargetKind(value: string): value is TargetKind {
  return (TARGET_KINDS as readonly string[]).includes(value);
}

/** The `--class` value that explains a single-unit sigmoid head's negative class. */
export const NEGATIVE_CLASS = 'neg';

/** A box in original image pixels: x0, y0 (inclusive), x1, y1 (exclusive). */
export type RegionBox = readonly [number, number, number, number];

/** What the target flags ask for; the model decides the rest (see resolveTarget). */
export interface TargetSpec {
  /** Absent: the model's kind (sigmoid for a sigmoid head, else class). */
  kind?: TargetKind;
  /** `--output`: a model output's name or index (output, region). */
  output?: string;
  /** `--unit`: the scalar unit of that output (output). */
  unit?: number;
  /** `--region x0,y0,x1,y1` (region). */
  region?: RegionBox;
  /** `--mask m.png` (region). */
  mask?: string;
  /** `--reference ref.png` (similarity). */
  reference?: string;
  /** `--embedding <layer>` (similarity). */
  embedding?: string;
}

/** What a manifest record says of its target. */
export interface TargetRecord {
  kind: string;
  /** The explained class (class, prob, sigmoid, region). */
  class?: number;
  /** sigmoid: the negated logit (`--class neg`). */
  negated?: boolean;
  /** output, region: the model output's name. */
  output?: string;
  /** output: the scalar unit. */
  unit?: number;
  /** region: the box, in original image pixels. */
  region?: RegionBox;
  /** region: the mask file. */
  mask?: string;
  /** similarity: the reference image. */
  reference?: string;
  /** similarity: the embedding layer. */
  embedding?: string;
}

/**
 * The part of an output file name that names the target: absent for class
 * and prob (`<stem>.<method>.<class>.png`, as before targets existed) and for
 * a positive sigmoid unit, which is the same logit.
 */
export function targetFileSuffix(record: TargetRecord): string {
  switch (record.kind) {
    case 'class':
    case 'prob':
      return `${record.class}`;
    case 'sigmoid':
      return record.negated === true ? `${record.class}.neg` : `${record.class}`;
    case 'output':
      return `output.${fileSafePart(record.output ?? '')}.${record.unit}`;
    case 'region':
      return `region.${record.class}`;
    case 'similarity':
      return 'similarity';
    default:
      return record.kind;
  }
}

function fileSafePart(name: string): string {
  return name.replace(/[\\/:*?"<>|\s.]+/g, '_');
}

/** `x0,y0,x1,y1` in pixels, x1 > x0 and y1 > y0; else the reason it is not one. */
export function parseRegionBox(text: string): RegionBox | string {
  const parts = text.split(',').map((part) => part.trim());
  const numbers = parts.map((part) => (/^-?(\d+\.?\d*|\.\d+)$/.test(part) ? Number(part) : Number.NaN));
  if (numbers.length !== 4 || numbers.some((value) => !Number.isFinite(value))) return 'give four numbers x0,y0,x1,y1 in original image pixels';
  const [x0, y0, x1, y1] = numbers as [number, number, number, number];
  if (!(x1 > x0 && y1 > y0)) return 'the box is empty: x1 must exceed x0 and y1 exceed y0';
  if (x1 <= 0 || y1 <= 0) return 'the box lies outside the image (left of or above it)';
  return [x0, y0, x1, y1];
}
