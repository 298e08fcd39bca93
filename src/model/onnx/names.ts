/**
 * The names a PyTorch user knows for the values of an exported graph.
 * `torch.onnx.export` names each node by its module scope, e.g.
 * `/layer4/layer4.1/relu_1/Relu`: the node is inside modules `layer4`,
 * `layer4.1` and `layer4.1.relu_1`. torch 1.13 writes a Sequential's
 * children with their full dotted name as one component
 * (`/features/features.18/features.18.2/Clip`) and attribute children with
 * their attribute name only (`/layer4/layer4.1/conv2/Conv`, module
 * `layer4.1.conv2`): both give the same dotted module paths here.
 *
 * A module's output (what `model.layer4` gives a forward hook in
 * pytorch-grad-cam) is the last node of its scope, in topological order,
 * whose output leaves the scope: read by a node outside it, or a graph
 * output.
 */

/** What naming needs of a node: its ONNX name and the values it reads and writes. */
export interface NamedNode {
  readonly name: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
}

/**
 * The module paths a node is in, outermost first: `/layer4/layer4.1/conv2/Conv`
 * gives `layer4`, `layer4.1`, `layer4.1.conv2`. A node name without scope
 * components (`/Flatten`, `Conv_12`) is in no module.
 */
export function moduleScopes(nodeName: string): string[] {
  if (!nodeName.startsWith('/')) return [];
  const components = nodeName.split('/').slice(1, -1);
  const scopes: string[] = [];
  let path = '';
  for (const component of components) {
    if (component === '') return scopes;
    // A Sequential child carries its full dotted path already.
    path = path === '' || component.startsWith(`${path}.`) ? component : `${path}.${component}`;
    scopes.push(path);
  }
  return scopes;
}

/**
 * Each module's output node: module path -> index into `nodes` of the last
 * node in its scope whose output is read outside the scope or is a graph
 * output. `nodes` must be in topological order.
 */
export function moduleOutputs(nodes: readonly NamedNode[], graphOutputs: readonly string[]): Map<string, number> {
  const scopesOf = nodes.map((node) => moduleScopes(node.name));
  const producer = new Map<string, number>();
  nodes.forEach((node, index) => node.outputs.forEach((value) => producer.set(value, index)));
  // The modules each value is read outside of: those of its producer that its reader is not in.
  const leaves = nodes.map(() => new Set<string>());
  nodes.forEach((node, index) => {
    for (const value of node.inputs) {
      const from = producer.get(value);
      if (from === undefined) continue;
      for (const scope of scopesOf[from]!) if (!scopesOf[index]!.includes(scope)) leaves[from]!.add(scope);
    }
  });
  for (const value of graphOutputs) {
    const from = producer.get(value);
    if (from !== undefined) for (const scope of scopesOf[from]!) leaves[from]!.add(scope);
  }
  const outputs = new Map<string, number>();
  leaves.forEach((scopes, index) => {
    for (const scope of scopes) outputs.set(scope, index);
  });
  return outputs;
}

/** The top-level module a node is in, or undefined. */
export function topModule(nodeName: string): string | undefined {
  return moduleScopes(nodeName)[0];
}

/**
 * Every name that selects a node, with the index of that node: the module
 * paths (their output node), the ONNX node names and the ONNX names of the
 * values the nodes write (for a node with several outputs, each names the
 * node). A module path wins over a node or value of the same name, as the
 * name a PyTorch user means.
 */
export function nodeNameIndex(nodes: readonly NamedNode[], graphOutputs: readonly string[]): Map<string, number> {
  const index = new Map<string, number>();
  nodes.forEach((node, i) => {
    for (const value of node.outputs) if (value !== '') index.set(value, i);
  });
  nodes.forEach((node, i) => {
    if (node.name !== '') index.set(node.name, i);
  });
  for (const [module, i] of moduleOutputs(nodes, graphOutputs)) index.set(module, i);
  return index;
}
