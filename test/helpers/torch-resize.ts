/**
 * A tiny PyTorch network made at test time, exported to ONNX, with what
 * PyTorch itself computes on it: the upsampling PyTorch models export
 * (F.interpolate bilinear with and without align_corners, nearest by scale
 * and to a size that is no multiple, bicubic) after InstanceNorm2d, with
 * and without affine weights. Seeded; nothing is stored in the repository.
 *
 * Variant 'interpolate' exports every interpolation (opsets 11 and up:
 * Resize with the coordinate transforms of each mode); 'legacy' only
 * nearest by constant scales (2, and 3 by 2), since PyTorch's bilinear
 * exports to opsets 9 (Upsample) and 10 (Resize-10) compute something else
 * than PyTorch does, and sizes do not export there.
 */
import { GRADCAM_REFERENCE_PY, type TorchGradcamReference, runTorchScript } from './torch-parity.js';

export type TorchResizeVariant = 'interpolate' | 'legacy';

/** What PyTorch computed, for a batch of two 3x16x16 images. */
export interface TorchResizeReference extends TorchGradcamReference {
  /** Per image, Grad-CAM at module `block` (8x8, after ReLU): relu(Σ_c mean(dY/dA_c) · A_c), Y the image's class logit. */
  cams: { block: number[][][] };
  /** The ONNX node types of the export. */
  ops: string[];
}

export const TORCH_RESIZE_SIDE = 16;

const SCRIPT = String.raw`
import json, sys, warnings
import torch, torch.nn as nn, torch.nn.functional as F

out_dir, opset, variant = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.norm = nn.InstanceNorm2d(6, affine=True)
        self.block = nn.Sequential(nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.InstanceNorm2d(8), nn.ReLU())
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(40 if variant == 'interpolate' else 16, 5)
        with torch.no_grad():
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.uniform_(-0.5, 0.5)

    def forward(self, x):
        x = torch.relu(self.norm(self.conv1(x)))
        a = self.block(x)
        near = F.interpolate(a, scale_factor=2, mode='nearest')
        if variant == 'legacy':
            # Opsets 9 and 10 export constant scales only.
            uneven = F.interpolate(a, scale_factor=(3, 2), mode='nearest')
            pooled = [F.adaptive_avg_pool2d(self.conv2(near), 1), F.adaptive_max_pool2d(uneven, 1)]
        else:
            odd = F.interpolate(a, size=(11, 13), mode='nearest')
            up = F.interpolate(a, scale_factor=2, mode='bilinear', align_corners=False)
            corners = F.interpolate(a, size=(13, 11), mode='bilinear', align_corners=True)
            cubic = F.interpolate(a, scale_factor=2, mode='bicubic', align_corners=False)
            pooled = [
                F.adaptive_avg_pool2d(self.conv2(up + near), 1),
                F.adaptive_avg_pool2d(corners * corners, 1),
                # An average here: a global max over nearest copies (ties) is test/onnx-max-torch.test.ts's case.
                F.adaptive_avg_pool2d(odd * odd, 1),
                F.adaptive_avg_pool2d(self.conv2(cubic), 1),
                F.adaptive_avg_pool2d(torch.tanh(up - near), 1),
            ]
        return self.head(torch.cat(pooled, 1).flatten(1))

model = Tiny().eval()
x = torch.randn(2, 3, 16, 16)
with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    torch.onnx.export(model, x[:1], out_dir + '/model.onnx', input_names=['input'], output_names=['logits'],
                      opset_version=opset, dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}})

import onnx
ops = sorted({node.op_type for node in onnx.load(out_dir + '/model.onnx').graph.node})
` +
  GRADCAM_REFERENCE_PY +
  `write_gradcam_reference(model, x, [2, 4], ['block'], {'ops': ops})
`;

/** Exports the network to `dir`/model.onnx and returns PyTorch's values; throws with Python's stderr when it fails. */
export function makeTorchResizeModel(python: string, dir: string, opset: number, variant: TorchResizeVariant): TorchResizeReference {
  return runTorchScript<TorchResizeReference>(python, SCRIPT, [dir, String(opset), variant], dir, `PyTorch export at opset ${opset}`);
}
