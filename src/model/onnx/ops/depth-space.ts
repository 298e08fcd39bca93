/**
 * DepthToSpace and SpaceToDepth (pixel shuffle: ESPCN, PixelShuffle's
 * export, YOLOv5's Focus): moves between the channels and blocks of
 * blocksize x blocksize pixels. Both are reshapes and one transpose of the
 * stored NHWC value (tfjs' depthToSpace has no gradient), of rank 5 at most
 * (wasm's transpose kernel), and their outputs stay 'nhwc'.
 */
import * as tf from '../../../engine/tf.js';
import { CamvizError } from '../../../util/errors.js';
import { laid, type LaidTensor } from '../layout.js';
import { attrInt, attrString, unsupported, type OpContext, type OpFunction } from './common.js';
import { spatialInput } from './conv-pool.js';

type Inputs = (LaidTensor | undefined)[];

function blocksizeOf(ctx: OpContext): number {
  const blocksize = attrInt(ctx, 'blocksize', 0);
  if (blocksize < 1) throw new CamvizError(`ONNX node '${ctx.node.name}' (${ctx.node.opType}): blocksize ${blocksize} (it must be at least 1)`);
  return blocksize;
}

/**
 * DCR (the default, and the only mode before opset 11): output pixel
 * (h·b + i, w·b + j) of channel k is input channel (i·b + j)·C' + k. CRD
 * (PyTorch's PixelShuffle): input channel k·b² + i·b + j.
 */
function depthToSpace(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = spatialInput(ctx, inputs);
  const b = blocksizeOf(ctx);
  const mode = ctx.opset >= 11 ? attrString(ctx, 'mode', 'DCR') : 'DCR';
  if (mode !== 'DCR' && mode !== 'CRD') throw unsupported(ctx, `mode '${mode}'`);
  const [n, h, w, c] = x.shape;
  if (c % (b * b) !== 0) throw new CamvizError(`ONNX node '${ctx.node.name}' (DepthToSpace): ${c} channels for blocks of ${b}x${b}`);
  const depth = c / (b * b);
  // Rows n·h stay together; DCR moves i before w (j and k stay one axis), CRD takes i and j from behind k.
  const moved =
    mode === 'DCR'
      ? tf.transpose(tf.reshape(x, [n * h, w, b, b * depth]), [0, 2, 1, 3])
      : tf.transpose(tf.reshape(x, [n * h, w, depth, b, b]), [0, 3, 1, 4, 2]);
  return [laid(tf.reshape(moved, [n, h * b, w * b, depth]), 'nhwc')];
}

/** Input pixel (h·b + i, w·b + j) of channel k becomes output channel (i·b + j)·C + k (DCR, ONNX's only order). */
function spaceToDepth(ctx: OpContext, inputs: Inputs): LaidTensor[] {
  const x = spatialInput(ctx, inputs);
  const b = blocksizeOf(ctx);
  const [n, h, w, c] = x.shape;
  if (h % b !== 0 || w % b !== 0) throw new CamvizError(`ONNX node '${ctx.node.name}' (SpaceToDepth): ${h}x${w} pixels for blocks of ${b}x${b}`);
  const moved = tf.transpose(tf.reshape(x, [n * (h / b), b, w / b, b * c]), [0, 2, 1, 3]);
  return [laid(tf.reshape(moved, [n, h / b, w / b, b * b * c]), 'nhwc')];
}

export const DEPTH_SPACE_OPS: Record<string, OpFunction> = {
  DepthToSpace: depthToSpace,
  SpaceToDepth: spaceToDepth,
};
