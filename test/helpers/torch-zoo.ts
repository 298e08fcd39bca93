/**
 * Small representatives of torchvision classifier families, made at test
 * time with seeded random weights (no download), exported to ONNX, with
 * what PyTorch computes on them: the logits, Grad-CAM at named modules
 * (pytorch-grad-cam's forward hook: what the module returns, including
 * later in-place changes to it; Swin's channels-last maps and ViT's tokens
 * through the reshape_transform of pytorch-grad-cam's examples) and
 * dY/dinput, for a batch of two
 * seeded smooth images. Nothing is stored in the repository.
 *
 * - 'vgg': VGG's layout (features: Conv, BatchNorm, ReLU, MaxPool; avgpool:
 *   AdaptiveAvgPool2d to a fixed size, which exports as AveragePool; flatten;
 *   classifier), no global pooling.
 * - 'densenet': torchvision's DenseNet class, small; its forward applies
 *   F.relu(features, inplace=True), so a hook on `features` sees the ReLU'd
 *   map.
 * - 'swin': torchvision's SwinTransformer class, small (shifted windows:
 *   Mod, ScatterND, and F.dropout(p=0.0) exported in training mode); its
 *   `permute` module turns the channels-last map NCHW before the pooling.
 * - 'vit': torchvision's VisionTransformer class, small (token sequences
 *   after the patch embedding). Exported with gradients enabled: its
 *   nn.MultiheadAttention's fused inference path does not export in
 *   torch 1.13.
 *
 * BatchNorm statistics are re-estimated on seeded smooth noise (torchvision
 * leaves mean 0 and variance 1). The references are float64, from the
 * float32 weights and input.
 */
import { GRADCAM_REFERENCE_PY, type TorchGradcamReference, runTorchScript } from './torch-parity.js';

export type TorchZooArch = 'vgg' | 'densenet' | 'swin' | 'vit';

export interface TorchZooReference extends TorchGradcamReference {
  /** Per module, per image, Grad-CAM relu(Σ_c mean(dY/dA_c) · A_c), Y the image's class logit. */
  cams: Record<string, number[][][]>;
  /** The ONNX node types of the export. */
  ops: string[];
}

const SCRIPT = String.raw`
import json, sys, warnings
import torch, torch.nn as nn, torch.nn.functional as F
import torchvision.models as models
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.vision_transformer import VisionTransformer
import onnx
warnings.filterwarnings('ignore')

out_dir, arch, side, opset = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
modules = [m for m in sys.argv[5].split(',') if m]
CLASSES = 5
torch.manual_seed(0)

class VggLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((side // 8, side // 8))
        self.classifier = nn.Sequential(nn.Linear(16 * (side // 8) ** 2, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, CLASSES))
    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

def build():
    if arch == 'vgg': return VggLike()
    if arch == 'densenet': return models.DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2, num_classes=CLASSES)
    if arch == 'swin': return SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 2], window_size=[4, 4], num_classes=CLASSES)
    model = VisionTransformer(image_size=side, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=CLASSES)
    nn.init.normal_(model.heads.head.weight, std=0.5)  # torchvision zero-initialises the head
    return model

def smooth(n, seed):
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.randn(n, 3, side // 4, side // 4, generator=g), size=(side, side), mode='bilinear', align_corners=False)

model = build().eval()
norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
for m in norms: m.momentum = None; m.train()
with torch.no_grad(): model(smooth(16, 1))
model.eval()

path = out_dir + '/model.onnx'
with torch.set_grad_enabled(arch == 'vit'):
    torch.onnx.export(model, torch.zeros(1, 3, side, side), path, input_names=['input'], output_names=['logits'],
                      dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}}, opset_version=opset, do_constant_folding=True)
ops = sorted({n.op_type for n in onnx.load(path).graph.node})

model = model.double()
x = smooth(2, 2).float().double()
with torch.no_grad(): classes = model(x).argmax(1).tolist()
` + GRADCAM_REFERENCE_PY + String.raw`
def reshape_transform(name, tensor):
    # pytorch-grad-cam's swinT_example.py and vit_example.py: channels-last maps, and a ViT's tokens but the class token, as NCHW grids.
    if arch == 'swin' and name != 'permute': return tensor.permute(0, 3, 1, 2)
    if arch == 'vit' and tensor.dim() == 3:
        grid = side // 8
        return tensor[:, 1:, :].reshape(tensor.size(0), grid, grid, tensor.size(2)).permute(0, 3, 1, 2)
    return tensor

write_gradcam_reference(model, x, classes, modules, {'ops': ops}, reshape_transform)
`;

/** Exports `arch` (input `side` x `side`) at `opset` into `dir`/model.onnx and returns PyTorch's values, with Grad-CAM at `modules`. */
export function makeTorchZooModel(python: string, dir: string, arch: TorchZooArch, side: number, opset: number, modules: readonly string[]): TorchZooReference {
  return runTorchScript<TorchZooReference>(python, SCRIPT, [dir, arch, String(side), String(opset), modules.join(',')], dir, `exporting a small ${arch}`);
}
