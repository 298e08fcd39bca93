/**
 * The parts of a TF.js graph model's GraphDef (model.json `modelTopology`)
 * that camviz reads to import it: node names, ops, data inputs and the few
 * attributes that decide a node's Keras-class view. Plain data, read from
 * the JSON as the converter wrote it.
 */

/** One GraphDef node: `input` holds `name`, `name:k` (output k) and `^name` (control dependency). */
export interface TfNode {
  readonly name: string;
  readonly op: string;
  /** Data inputs as value keys (see `valueKey`); control inputs left out. */
  readonly inputs: readonly string[];
  readonly attr: Readonly<Record<string, unknown>>;
}

/**
 * Ops that `GraphModel.execute` cannot run (control flow, dynamic shapes,
 * hash tables: the converter needs `executeAsync` for them), and that
 * `tf.grad` therefore cannot differentiate through camviz's executor.
 */
const ASYNC_OPS = new Set([
  'Switch',
  'Merge',
  'Enter',
  'Exit',
  'NextIteration',
  'LoopCond',
  'StatelessIf',
  'StatelessWhile',
  'If',
  'While',
  'NonMaxSuppressionV2',
  'NonMaxSuppressionV3',
  'NonMaxSuppressionV4',
  'NonMaxSuppressionV5',
  'Where',
  'HashTable',
  'HashTableV2',
  'LookupTableImport',
  'LookupTableImportV2',
  'LookupTableFind',
  'LookupTableFindV2',
  'LookupTableSize',
  'LookupTableSizeV2',
]);

export function needsExecuteAsync(op: string): boolean {
  return ASYNC_OPS.has(op) || op.startsWith('TensorList') || op.startsWith('TensorArray');
}

/**
 * The key of a value: the node name for output 0 (`x`, `x:0`), `x:k` for
 * output k. The converter's `execute` takes feeds and fetches by these keys.
 */
export function valueKey(input: string): string {
  const match = /^(.*):(\d+)$/.exec(input);
  if (match === null) return input;
  return match[2] === '0' ? match[1]! : `${match[1]!}:${Number(match[2])}`;
}

/** The node a value key belongs to. */
export function nodeOfValue(key: string): string {
  const match = /^(.*):\d+$/.exec(key);
  return match === null ? key : match[1]!;
}

/** The nodes of a GraphDef JSON (`modelTopology.node`), with control inputs dropped. */
export function readNodes(topology: Readonly<Record<string, unknown>>): TfNode[] {
  const raw = topology['node'];
  if (!Array.isArray(raw)) return [];
  return raw.map((entry: unknown, index): TfNode => {
    const node = (entry ?? {}) as { name?: unknown; op?: unknown; input?: unknown; attr?: unknown };
    const inputs = Array.isArray(node.input) ? node.input.filter((value): value is string => typeof value === 'string' && !value.startsWith('^')).map(valueKey) : [];
    return {
      name: typeof node.name === 'string' ? node.name : `node_${index}`,
      op: typeof node.op === 'string' ? node.op : '',
      inputs,
      attr: typeof node.attr === 'object' && node.attr !== null ? (node.attr as Record<string, unknown>) : {},
    };
  });
}

/** The `fused_ops` of a `_FusedConv2D` / `_FusedMatMul` (as `{list: {s: [base64]}}`). */
export function fusedOps(node: TfNode): string[] {
  const value = node.attr['fused_ops'] as { list?: { s?: unknown[] } } | undefined;
  const list = value?.list?.s;
  if (!Array.isArray(list)) return [];
  return list.filter((entry): entry is string => typeof entry === 'string').map((entry) => Buffer.from(entry, 'base64').toString('utf8'));
}

/** An `ints` list attribute (`{list: {i: ['1', '2']}}`), as numbers. */
export function intsAttr(node: TfNode, name: string): number[] | undefined {
  const list = (node.attr[name] as { list?: { i?: unknown[] } } | undefined)?.list?.i;
  return Array.isArray(list) ? list.map(Number) : undefined;
}

/** A string attribute (`{s: base64}`), decoded. */
export function stringAttr(node: TfNode, name: string): string | undefined {
  const value = (node.attr[name] as { s?: unknown } | undefined)?.s;
  return typeof value === 'string' ? Buffer.from(value, 'base64').toString('utf8') : undefined;
}

/** A boolean attribute (`{b: true}`). */
export function boolAttr(node: TfNode, name: string): boolean | undefined {
  const value = (node.attr[name] as { b?: unknown } | undefined)?.b;
  return typeof value === 'boolean' ? value : undefined;
}

/** A float attribute (`{f: 0.001}`). */
export function floatAttr(node: TfNode, name: string): number | undefined {
  const value = (node.attr[name] as { f?: unknown } | undefined)?.f;
  return typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : undefined;
}
