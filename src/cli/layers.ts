/** `camviz layers`: the layer table. */
import { describeLayers } from '../executor/layers.js';
import { type OnnxLayerInfo, describeOnnxLayers } from '../model/onnx/load.js';
import { releaseBackend } from '../engine/release.js';
import { openTaskContext } from '../tasks/context.js';
import { type ModelOptions, checkModelOptions, printJson } from './common.js';
import type { GridView } from '../executor/grid-view.js';
import { modelSpec } from './run-command.js';
import { printable } from '../util/text.js';

export async function runLayers(options: ModelOptions & { json?: boolean }): Promise<number> {
  checkModelOptions(options);
  // The table reads the graph only: no pass runs, so no ONNX Runtime session is made.
  const { model } = await openTaskContext({ ...modelSpec(options), engine: 'tfjs' });
  try {
    const described = describeLayers(model.network(), model.meta);
    // ONNX models: ONNX node names and shapes, and the PyTorch module of each output.
    const layers: OnnxLayerInfo[] = model.onnx === undefined ? described : describeOnnxLayers(model.onnx, described);
    if (options.json) {
      printJson(layers);
      return 0;
    }
    const shape = (dims: (number | null)[]): string => `[${dims.map((dim) => dim ?? '?').join(', ')}]`;
    // Names come from the model file: escaped, so that one cannot break the table's rows or drive the terminal.
    const shown = layers.map((layer) => ({ ...layer, name: printable(layer.name), className: printable(layer.className), module: layer.module === undefined ? undefined : printable(layer.module) }));
    const nameWidth = Math.max(4, ...shown.map((layer) => layer.name.length));
    const classWidth = Math.max(5, ...shown.map((layer) => layer.className.length));
    const moduleWidth = Math.max(0, ...shown.map((layer) => (layer.module === undefined ? 0 : Math.max(6, layer.module.length))));
    const moduleColumn = (text: string): string => (moduleWidth === 0 ? '' : `${text.padEnd(moduleWidth)}  `);
    const rows = shown.map(
      (layer) =>
        `${layer.name.padEnd(nameWidth)}  ${moduleColumn(layer.module ?? '')}${layer.className.padEnd(classWidth)}  ${shape(layer.outputShape).padEnd(22)} ${String(layer.params).padStart(9)}  ${
          layer.default ? 'CAM (default)' : layer.camTarget ? 'CAM' : ''
        }${layer.grid === undefined ? '' : ` ${gridText(layer.grid)}`}`.trimEnd(),
    );
    const header = `${'name'.padEnd(nameWidth)}  ${moduleColumn('module')}${'class'.padEnd(classWidth)}  ${'output'.padEnd(22)} ${'params'.padStart(9)}  target`;
    const scoreLayer = model.network().score.scoreLayer;
    const total = layers.reduce((sum, layer) => sum + layer.params, 0);
    process.stdout.write(`${header}\n${rows.join('\n')}\n${layers.length} layers, ${total} parameters; score layer: ${printable(model.onnx?.nodeNames.get(scoreLayer) ?? scoreLayer)}\n`);
    return 0;
  } finally {
    model.dispose();
    await releaseBackend();
  }
}

/** How the table says a layer is read as a grid: its token grid after the leading tokens, or channels-last. */
function gridText(grid: GridView): string {
  return grid.kind === 'tokens' ? `as ${grid.height}x${grid.width} grid${grid.leading > 0 ? ` after ${grid.leading} token${grid.leading === 1 ? '' : 's'}` : ''}` : 'as channels-last (NHWC)';
}
