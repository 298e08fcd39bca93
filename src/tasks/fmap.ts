/**
 * The feature-map task: one forward pass per batch returns every requested
 * layer's output, with its shape; each layer's channels are tiled into a grid
 * (torchvision make_grid with per-channel normalisation) and written as
 * `<stem>.<layer>.fmap.png`, with a sidecar `.fmap.json` legend and, with
 * --raw, the activation as `.npy` [H, W, C].
 */
import { UsageError } from '../util/errors.js';
import type { Tensor } from '../engine/tf.js';
import type { GraphNode } from '../executor/graph.js';
import { asGrid } from '../executor/grid-view.js';
import { isCamTarget, isFeatureMap, resolveLayer } from '../executor/layers.js';
import { disposeValues } from '../executor/network.js';
import { inputTensor } from '../model/predict.js';
import { makeFeatureGrid } from '../render/grid.js';
import { encodeNpy } from '../render/npy.js';
import { encodePng } from '../render/png.js';
import {
  type DecodedInput,
  type OutputSet,
  type TaskContext,
  type Batching,
  decodeBatch,
  elapsedSince,
  modelWorkInParts,
  recordEach,
  recordsOfParts,
  fileSafe,
  outputStem,
  recordOutputs,
} from './common.js';
import { inBatchOrder } from './records.js';
import type { BatchOutcome, FmapResultRecord, FmapTaskOptions, InputImage, InputRecord, SummaryImage } from './types.js';

const CONV_CLASSES = new Set(['Conv2D', 'DepthwiseConv2D', 'SeparableConv2D', 'Conv2DTranspose']);

export class FmapTask {
  readonly layers: GraphNode[];
  private readonly batching: Batching = { oneAtATime: false };

  constructor(
    private readonly context: TaskContext,
    private readonly options: FmapTaskOptions,
  ) {
    this.layers = resolveFmapLayers(context, options);
  }

  async process(batch: readonly InputImage[]): Promise<BatchOutcome> {
    const { decoded, failed } = await decodeBatch(batch, this.context, this.options);
    const summaries: SummaryImage[] = [];
    const timedCapture = async (items: readonly DecodedInput[]): Promise<{ activations: Activation[][]; forward: number }> => {
      const started = performance.now();
      const activations = await this.capture(items);
      return { activations, forward: elapsedSince(started) / items.length };
    };
    const parts = await modelWorkInParts(decoded, this.batching, timedCapture, this.context);
    const records = await recordsOfParts(parts, (items, { activations, forward }) =>
      recordEach(items, (item, i) => this.writeOutputs(item, activations[i]!, forward, summaries)),
    );
    return { records: inBatchOrder(batch, [...failed, ...records]), summaries };
  }

  /** Per image, per layer: the activation [H, W, C] as a flat array, with its shape. */
  private async capture(decoded: readonly DecodedInput[]): Promise<Activation[][]> {
    const input = inputTensor(this.context.model, decoded.map((item) => item.image.input));
    try {
      const values = await (await this.context.model.executor()).forward(input, { layers: this.layers });
      try {
        const perLayer = this.layers.map((node) => splitImages(values.layers.get(node.path), node));
        return decoded.map((_, image) => perLayer.map((images) => images[image]!));
      } finally {
        disposeValues(values);
      }
    } finally {
      input.dispose();
    }
  }

  private async writeOutputs(item: DecodedInput, activations: Activation[], forward: number, summaries: SummaryImage[]): Promise<InputRecord> {
    const timings = { ...item.timings, forward, render: 0, encode: 0 };
    return recordOutputs(item, this.options.outDir, timings, async (outputs) => {
      const results: FmapResultRecord[] = [];
      for (const [i, node] of this.layers.entries()) {
        results.push(await this.writeLayer(item, node, activations[i]!, outputs, timings, summaries));
      }
      return { results };
    });
  }

  private async writeLayer(
    item: DecodedInput,
    node: GraphNode,
    { data: activation, height, width, channels }: Activation,
    outputs: OutputSet,
    timings: { render: number; encode: number },
    summaries: SummaryImage[],
  ): Promise<FmapResultRecord> {
    const renderStarted = performance.now();
    const grid = makeFeatureGrid(activation, { height, width, channels }, {
      padding: this.options.padding,
      tileSize: this.options.tileSize,
      colormap: this.options.colormap,
      ...(this.options.nrow === undefined ? {} : { nrow: this.options.nrow }),
      ...(this.options.maxChannels === undefined ? {} : { maxChannels: this.options.maxChannels }),
    });
    timings.render += elapsedSince(renderStarted);
    const encodeStarted = performance.now();
    const stem = `${outputStem(this.options.outDir, item.input.relative)}.${fileSafe(node.path)}.fmap`;
    const pngBytes = await encodePng(grid.rgb, grid.width, grid.height, { compressionLevel: this.options.pngCompression });
    const png = await outputs.write(`${stem}.png`, pngBytes);
    const legend = {
      input: item.input.path,
      layer: node.path,
      className: node.layer.getClassName(),
      shape: [height, width, channels],
      channelsShown: grid.layout.tiles.length,
      order: 'channel 0 at the top left, then row by row',
      normalisation: 'each channel min-max normalised on its own (constant channels show as 0)',
      colormap: this.options.colormap,
      ...grid.layout,
    };
    const json = await outputs.write(`${stem}.json`, `${JSON.stringify(legend, null, 2)}\n`);
    const npy = this.options.raw ? await outputs.write(`${stem}.npy`, encodeNpy(activation, [height, width, channels])) : undefined;
    timings.encode += elapsedSince(encodeStarted);
    if (this.options.tensorboard) summaries.push({ input: item.input.path, tag: `feature map in ${node.path}`, png: pngBytes, width: grid.width, height: grid.height });
    return { input: item.input.path, layer: node.path, shape: [height, width, channels], png, json, ...(npy === undefined ? {} : { npy }) };
  }
}

/** One image's activation of one layer, [height, width, channels] row-major. */
interface Activation {
  data: Float32Array;
  height: number;
  width: number;
  channels: number;
}

/** A layer's batch output (a token sequence as its grid: grid-view.ts) split per image; the shape is the tensor's own (a model with a free input size has no fixed one). */
function splitImages(output: Tensor | undefined, node: GraphNode): Activation[] {
  if (output === undefined) throw new Error(`layer ${node.path} did not run`);
  const tensor = asGrid(output, node);
  let data: Float32Array;
  try {
    if (tensor.rank !== 4) throw new Error(`layer ${node.path} gives a ${tensor.rank}-D output, not a 4-D feature map`);
    data = tensor.dataSync() as Float32Array;
  } finally {
    if (tensor !== output) tensor.dispose();
  }
  const [batch, height, width, channels] = tensor.shape as [number, number, number, number];
  const size = height * width * channels;
  return Array.from({ length: batch }, (_, image) => ({ data: data.slice(image * size, (image + 1) * size), height, width, channels }));
}

function resolveFmapLayers(context: TaskContext, options: FmapTaskOptions): GraphNode[] {
  const network = context.model.network();
  const named = options.layers.map((name) => resolveLayer(network, name, isFeatureMap, 'a feature map (4-D output)'));
  // A 1x1 map (a classifier written as a convolution, like MobileNet's conv_preds) has nothing spatial to show.
  const convs = options.allConv ? network.graph.nodes.filter((node) => CONV_CLASSES.has(node.layer.getClassName()) && isCamTarget(node)) : [];
  const layers = [...new Set([...named, ...convs])];
  if (layers.length === 0) throw new UsageError('give --layer NAME (several allowed) or --all-conv (camviz layers lists the names)');
  return layers;
}
