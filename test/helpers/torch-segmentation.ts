/**
 * torchvision segmentation networks made at test time with seeded random
 * weights (no download), exported to ONNX, with what PyTorch computes on
 * them for pytorch-grad-cam's SemanticSegmentationTarget: Y = the sum of
 * class `category`'s logits weighted by a mask at the output's resolution,
 * Grad-CAM at named modules, and dY/dinput. Nothing is stored in the
 * repository.
 *
 * The model is wrapped so that its output is the 'out' tensor alone (what
 * pytorch-grad-cam's SegmentationModelOutputWrapper returns), at the
 * input's size; output 'stride8' is LR-ASPP's logits before their final
 * upsampling, at 1/8 of it. BatchNorm statistics are re-estimated on seeded
 * smooth noise (torchvision leaves mean 0 and variance 1, under which
 * MobileNet v3's activations all but vanish in eval mode). The references
 * are float64, from the float32 weights and input; the input is the image
 * as camviz's 'torch' preprocessing makes it.
 */
import { runTorchScript } from './torch-parity.js';

export type TorchSegmentationArch = 'lraspp' | 'deeplabv3' | 'fcn';

/** 'full': the logits upsampled to the input's size; 'stride8': LR-ASPP's at 1/8 of it. */
export type TorchSegmentationOutput = 'full' | 'stride8';

/** A region as the test gives it: a box in image pixels, or a raw 0/non-0 mask file of `width` x `height` bytes. */
export type TorchRegion = { box: [number, number, number, number] } | { mask: string; width: number; height: number };

export interface TorchSegmentationSpec {
  arch: TorchSegmentationArch;
  output: TorchSegmentationOutput;
  /** The image and model input are side x side. */
  side: number;
  classes: number;
  opset: number;
  /** Raw RGB bytes of the image, side x side x 3. */
  pixels: string;
  category: number;
  /** Module paths (`backbone.16`, `classifier.cbr`) to compute Grad-CAM at. */
  layers: string[];
  regions: Record<string, TorchRegion>;
}

/** What PyTorch computed for one region. */
export interface TorchRegionReference {
  /** Y = Σ out[category] · mask. */
  score: number;
  /** The mask at output resolution, row-major: each cell's share inside the region. */
  weights: number[];
  /** Per layer, the raw Grad-CAM map relu(Σ_c mean(dY/dA_c) · A_c), row-major. */
  cams: Record<string, number[]>;
  /** Per layer, [h, w] of its map. */
  camShapes: Record<string, [number, number]>;
  /** dY/dinput, NCHW, flat. */
  inputGradient: number[];
}

export interface TorchSegmentationReference {
  /** The preprocessed input, NCHW, flat. */
  input: number[];
  /** The model's output (logits), NCHW, flat. */
  output: number[];
  outputShape: [number, number, number, number];
  regions: Record<string, TorchRegionReference>;
  /** The ONNX node types of the export. */
  ops: string[];
}

const SCRIPT = String.raw`
import json, sys, warnings
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
import torchvision.models.segmentation as segmentation
import onnx

spec = json.loads(sys.argv[1])
out_dir = sys.argv[2]
side, classes = spec['side'], spec['classes']
torch.manual_seed(0)

BUILDERS = {
    'lraspp': segmentation.lraspp_mobilenet_v3_large,
    'deeplabv3': segmentation.deeplabv3_mobilenet_v3_large,
    'fcn': segmentation.fcn_resnet50,
}
model = BUILDERS[spec['arch']](weights=None, weights_backbone=None, num_classes=classes)
whole = model.forward
if spec['output'] == 'stride8':
    # LR-ASPP's logits before its final upsampling: 1/8 of the input.
    model.forward = lambda x: model.classifier(model.backbone(x))
else:
    # The 'out' tensor only, as pytorch-grad-cam's SegmentationModelOutputWrapper gives it.
    model.forward = lambda x: whole(x)['out']

def calibration_batch(n=4):
    # Smooth, seeded noise: BatchNorm statistics of white noise leave deep layers ill-conditioned.
    g = torch.Generator().manual_seed(1)
    coarse = torch.randn(n, 3, side // 8, side // 8, generator=g, dtype=torch.float64)
    fine = torch.randn(n, 3, side, side, generator=g, dtype=torch.float64)
    x = F.interpolate(coarse, size=(side, side), mode='bilinear', align_corners=False) + 0.3 * fine
    return x / x.std()

def calibrate_batchnorm():
    # torchvision leaves running mean 0 and var 1: in eval mode MobileNet v3's activations then all but vanish.
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval().double()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    with torch.no_grad():
        model(calibration_batch())
    model.float().eval()

calibrate_batchnorm()

# The image as camviz's 'torch' preprocessing makes it, in float32.
pixels = np.fromfile(spec['pixels'], dtype=np.uint8).reshape(side, side, 3).astype(np.float64)
mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
x32 = torch.from_numpy((pixels * (1 / (255 * std)) + (-mean / std)).astype(np.float32)).permute(2, 0, 1)[None].contiguous()

path = out_dir + '/model.onnx'
with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    torch.onnx.export(model, x32, path, input_names=['input'], output_names=['out'], opset_version=spec['opset'])
ops = sorted({node.op_type for node in onnx.load(path).graph.node})

# References in float64 from the float32 weights and input.
model.double()
captured = {}
modules = dict(model.named_modules())
for name in spec['layers']:
    modules[name].register_forward_hook(lambda module, inputs, output, name=name: captured.__setitem__(name, output))
x = x32.double().requires_grad_(True)
out = model(x)
height, width = out.shape[2], out.shape[3]
stride = side // height

def cell_weights(region):
    # pytorch-grad-cam's mask at output resolution: the share of each output cell inside the region (0/1 on cell boundaries).
    inside = np.zeros((side, side))
    if 'box' in region:
        x0, y0, x1, y1 = region['box']
        inside[y0:y1, x0:x1] = 1
    else:
        # A mask of another size covers the image by nearest neighbour: mask pixel floor(x * width / side).
        mask = np.fromfile(region['mask'], dtype=np.uint8).reshape(region['height'], region['width']) != 0
        rows = np.arange(side) * region['height'] // side
        columns = np.arange(side) * region['width'] // side
        inside = mask[rows][:, columns].astype(np.float64)
    return torch.from_numpy(inside.reshape(height, stride, width, stride).mean((1, 3)))

def grad_cam(activation, gradient):
    weights = gradient.mean((2, 3), keepdim=True)
    return torch.relu((weights * activation).sum(1))[0]

results = {}
for key, region in spec['regions'].items():
    mask = cell_weights(region)
    score = (out[0, spec['category']] * mask).sum()  # SemanticSegmentationTarget(category, mask)
    grads = torch.autograd.grad(score, [captured[name] for name in spec['layers']] + [x], retain_graph=True)
    results[key] = {
        'score': score.item(),
        'weights': mask.flatten().tolist(),
        'cams': {name: grad_cam(captured[name], g).flatten().tolist() for name, g in zip(spec['layers'], grads)},
        'camShapes': {name: list(captured[name].shape[2:]) for name in spec['layers']},
        'inputGradient': grads[-1].flatten().tolist(),
    }

json.dump({
    'input': x32.flatten().tolist(),
    'output': out.detach().flatten().tolist(),
    'outputShape': list(out.shape),
    'regions': results,
    'ops': ops,
}, open(out_dir + '/reference.json', 'w'))
`;

/** Exports the network to `dir`/model.onnx and returns PyTorch's values; throws with Python's stderr when it fails. */
export function makeTorchSegmentationModel(python: string, dir: string, spec: TorchSegmentationSpec): TorchSegmentationReference {
  return runTorchScript<TorchSegmentationReference>(python, SCRIPT, [JSON.stringify(spec), dir], dir, `PyTorch export of ${spec.arch} (${spec.output})`);
}
