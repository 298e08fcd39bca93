/** `camviz layers`: the layer table. */
import { describeLayers } from '../executor/layers.js';
import { releaseBackend } from '../engine/release.js';
import { openTaskContext } from '../tasks/common.js';
import { type ModelOptions, checkModelOptions, printJson } from './common.js';
import { modelSpec } from './run-command.js';

export async function runLayers(options: ModelOptions & { json?: boolean }): Promise<number> {
  checkModelOptions(options);
  const { model } = await openTaskContext(modelSpec(options));
  try {
    const layers = describeLayers(model.network(), model.meta.targetLayer);
    if (options.json) {
      printJson(layers);
      return 0;
    }
    const shape = (dims: (number | null)[]): string => `[${dims.map((dim) => dim ?? '?').join(', ')}]`;
    const nameWidth = Math.max(4, ...layers.map((layer) => layer.name.length));
    const classWidth = Math.max(5, ...layers.map((layer) => layer.className.length));
    const rows = layers.map(
      (layer) =>
        `${layer.name.padEnd(nameWidth)}  ${layer.className.padEnd(classWidth)}  ${shape(layer.outputShape).padEnd(22)} ${String(layer.params).padStart(9)}  ${
          layer.default ? 'CAM (default)' : layer.camTarget ? 'CAM' : ''
        }`.trimEnd(),
    );
    const header = `${'name'.padEnd(nameWidth)}  ${'class'.padEnd(classWidth)}  ${'output'.padEnd(22)} ${'params'.padStart(9)}  target`;
    const total = layers.reduce((sum, layer) => sum + layer.params, 0);
    process.stdout.write(`${header}\n${rows.join('\n')}\n${layers.length} layers, ${total} parameters; score layer: ${model.network().score.scoreLayer}\n`);
    return 0;
  } finally {
    model.dispose();
    await releaseBackend();
  }
}
