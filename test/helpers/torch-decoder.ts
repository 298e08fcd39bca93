/**
 * A tiny decoder-style PyTorch network made at test time, exported to
 * ONNX, with what PyTorch itself computes on it: ConvTranspose2d (groups 2,
 * stride 2, padding, output_padding; a 2x2 stride-2 U-Net upsampling; a
 * dilated one), PixelShuffle and PixelUnshuffle, GroupNorm and Mish, and,
 * in the 'onnx-ops' variant, LocalResponseNorm. Seeded; nothing is stored in
 * the repository.
 *
 * Variant 'export' is torch.onnx.export's own graph (ConvTranspose,
 * DepthToSpace CRD for PixelShuffle, a 6-D Reshape/Transpose for
 * PixelUnshuffle, GroupNorm as InstanceNormalization between reshapes, Mish
 * as Softplus, Tanh and Mul). Variant 'onnx-ops' writes GroupNorm, Mish,
 * LocalResponseNorm and a space-to-depth as the ONNX ops GroupNormalization,
 * Mish, LRN and SpaceToDepth, which PyTorch 1.13 cannot export (Mish and
 * GroupNormalization are opset 18, LocalResponseNorm exports to a 3-D
 * AveragePool): they are exported as custom ops and moved to the default
 * domain at opset 18 (GroupNormalization's scale and bias per group) or 21
 * (per channel). PyTorch computes the references with its own modules.
 */
import { GRADCAM_REFERENCE_PY, type TorchGradcamReference, runTorchScript } from './torch-parity.js';

export type TorchDecoderVariant = 'export' | 'onnx-ops';

export type CamModule = 'block' | 'up';

/** What PyTorch computed, for a batch of two 3x16x16 images. */
export interface TorchDecoderReference extends TorchGradcamReference {
  /**
   * Per module, per image, Grad-CAM relu(Σ_c mean(dY/dA_c) · A_c), Y the
   * image's class logit: at `block` (8x8, after GroupNorm and Mish) and at
   * `up` (16x16, the grouped, strided ConvTranspose).
   */
  cams: Record<CamModule, number[][][]>;
  /** The ONNX node types of the export. */
  ops: string[];
}

export const TORCH_DECODER_SIDE = 16;

const SCRIPT = String.raw`
import json, sys, warnings
import torch, torch.nn as nn, torch.nn.functional as F
import onnx

out_dir, opset, variant = sys.argv[1], int(sys.argv[2]), sys.argv[3]
custom = variant == 'onnx-ops'
torch.manual_seed(0)
EXPORTING = [False]
DOMAIN = 'camviz_test'

def space_to_depth(x, b):
    # ONNX's SpaceToDepth: output channel (i*b + j)*C + k holds pixel (h*b + i, w*b + j) of channel k.
    n, c, h, w = x.shape
    return x.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4).reshape(n, c * b * b, h // b, w // b)

GROUPS, EPSILON = 4, 1e-5

# Stand-ins for ONNX ops while exporting (one class each: PyTorch 1.13's tracer wants fixed signatures).
# What their forward computes in the trace does not matter, only the shape; PyTorch's own modules compute the references.
class MishOp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x): return F.mish(x)
    @staticmethod
    def symbolic(g, x): return g.op(DOMAIN + '::Mish', x)

class LrnOp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x): return x.clone()
    @staticmethod
    def symbolic(g, x): return g.op(DOMAIN + '::LRN', x, size_i=5, alpha_f=0.5, beta_f=0.75, bias_f=1.5)

class SpaceToDepthOp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x): return space_to_depth(x, 2)
    @staticmethod
    def symbolic(g, x): return g.op(DOMAIN + '::SpaceToDepth', x, blocksize_i=2)

class GroupNormOp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale, bias): return F.group_norm(x, GROUPS)
    @staticmethod
    def symbolic(g, x, scale, bias): return g.op(DOMAIN + '::GroupNormalization', x, scale, bias, num_groups_i=GROUPS, epsilon_f=EPSILON)

def as_onnx(op, module_output, *inputs):
    return op.apply(*inputs) if custom and EXPORTING[0] else module_output()

class GroupNorm(nn.GroupNorm):
    def forward(self, x):
        per = self.num_channels // self.num_groups
        # Opset 18's scale and bias are per group (Tiny gives each group's channels the same ones), 21's per channel.
        scale, bias = (self.weight, self.bias) if opset >= 21 else (self.weight[::per].contiguous(), self.bias[::per].contiguous())
        return as_onnx(GroupNormOp, lambda: super(GroupNorm, self).forward(x), x, scale, bias)

class Mish(nn.Mish):
    def forward(self, x):
        return as_onnx(MishOp, lambda: F.mish(x), x)

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.norm = GroupNorm(GROUPS, 8, eps=EPSILON)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), self.norm, Mish())
        self.up = nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1, groups=2)
        self.up2 = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.dilated = nn.ConvTranspose2d(8, 4, 3, padding=2, dilation=2)
        self.lrn = nn.LocalResponseNorm(5, alpha=0.5, beta=0.75, k=1.5)
        self.head = nn.Linear(32 + 4 + 4 + 8, 5)
        with torch.no_grad():
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.uniform_(-0.5, 0.5)
            if custom and opset < 21:
                per = self.norm.num_channels // self.norm.num_groups
                self.norm.weight.copy_(self.norm.weight[::per].repeat_interleave(per))
                self.norm.bias.copy_(self.norm.bias[::per].repeat_interleave(per))

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        a = self.block(x)
        shuffled = F.pixel_shuffle(self.up(a), 2)
        unshuffled = F.pixel_unshuffle(shuffled, 4)
        if custom:
            unshuffled = as_onnx(LrnOp, lambda: self.lrn(unshuffled), unshuffled)
        b = self.up2(a)
        packed = as_onnx(SpaceToDepthOp, lambda: space_to_depth(shuffled, 2), shuffled) if custom else shuffled[:, :, ::2, ::2].repeat(1, 4, 1, 1)
        pooled = [
            F.adaptive_avg_pool2d(unshuffled, 1),
            F.adaptive_avg_pool2d(b * b, 1),
            F.adaptive_avg_pool2d(torch.tanh(self.dilated(a)), 1),
            F.adaptive_avg_pool2d(packed * packed, 1),
        ]
        return self.head(torch.cat(pooled, 1).flatten(1))

model = Tiny().eval()
x = torch.randn(2, 3, 16, 16)
path = out_dir + '/model.onnx'
EXPORTING[0] = True
with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    torch.onnx.export(model, x[:1], path, input_names=['input'], output_names=['logits'],
                      opset_version=min(opset, 17), dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}},
                      custom_opsets={DOMAIN: 1} if custom else None)
EXPORTING[0] = False
if custom:
    exported = onnx.load(path)
    for node in exported.graph.node:
        if node.domain == DOMAIN:
            node.domain = ''
    kept = [entry for entry in exported.opset_import if entry.domain not in (DOMAIN, '')]
    del exported.opset_import[:]
    exported.opset_import.extend(kept + [onnx.helper.make_opsetid('', opset)])
    onnx.save(exported, path)

ops = sorted({node.op_type for node in onnx.load(path).graph.node})
` +
  GRADCAM_REFERENCE_PY +
  `write_gradcam_reference(model, x, [2, 4], ['block', 'up'], {'ops': ops})
`;

/** Exports the network to `dir`/model.onnx and returns PyTorch's values; throws with Python's stderr when it fails. */
export function makeTorchDecoderModel(python: string, dir: string, opset: number, variant: TorchDecoderVariant): TorchDecoderReference {
  return runTorchScript<TorchDecoderReference>(python, SCRIPT, [dir, String(opset), variant], dir, `PyTorch export at opset ${opset} (${variant})`);
}
