/**
 * A tiny PyTorch CNN made at test time with 1-D and 3-D layers after its
 * image layers, exported to ONNX, with what PyTorch itself computes on it.
 * The block's 8x8 feature map read as 8 sequences of 64 goes through
 * nn.Conv1d (dilated, grouped), nn.MaxPool1d (ceil_mode), nn.ConvTranspose1d
 * (strided, grouped, output_padding) and nn.AvgPool1d (count_include_pad
 * off, ceil_mode); the same map upsampled by 2 (nearest: every value four
 * times, and the ReLU's zeros, so maxima tie) read as a volume of depth 8
 * goes through nn.MaxPool3d (padded, ceil_mode) and nn.AvgPool3d
 * (count_include_pad). Seeded; nothing is stored in the repository.
 */
import { EXPORT_TINY_PY, GRADCAM_REFERENCE_PY, REFERENCE_SCRIPT_HEAD_PY, type TorchGradcamReference, runTorchScript } from './torch-parity.js';

/** What PyTorch computed, for a batch of two 3x16x16 images. */
export interface TorchSpatialReference extends TorchGradcamReference {
  /** Per image, Grad-CAM at module `block` (8x8, after ReLU): relu(Σ_c mean(dY/dA_c) · A_c), Y the image's class logit. */
  cams: { block: number[][][] };
  /** The export's nodes: op type and the rank of its kernel_shape (0 without one). */
  nodes: [string, number][];
}

export const TORCH_SPATIAL_SIDE = 16;

const SCRIPT =
  REFERENCE_SCRIPT_HEAD_PY +
  String.raw`

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.block = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.ReLU())
        self.sequence = nn.Sequential(
            nn.Conv1d(8, 8, 3, padding=2, dilation=2, groups=2),
            nn.MaxPool1d(3, stride=2, padding=1, ceil_mode=True),
            nn.ConvTranspose1d(8, 6, 4, stride=2, padding=1, output_padding=1, groups=2),
            nn.AvgPool1d(3, stride=2, padding=1, count_include_pad=False, ceil_mode=True),
        )
        self.volume = nn.Sequential(
            nn.MaxPool3d((3, 2, 2), stride=(2, 2, 2), padding=(1, 1, 0), ceil_mode=True),
            nn.AvgPool3d(2, stride=1, padding=1, count_include_pad=True),
        )
        self.head = nn.Linear(self.features(torch.zeros(1, 3, 16, 16)).shape[1], 5)

    def features(self, x):
        a = self.block(torch.relu(self.conv1(x)))
        near = F.interpolate(a, scale_factor=2, mode='nearest')
        return torch.cat([self.sequence(a.flatten(2)).flatten(1), self.volume(near.unsqueeze(1)).flatten(1)], 1)

    def forward(self, x):
        return self.head(self.features(x))

` +
  EXPORT_TINY_PY +
  String.raw`

nodes = [[node.op_type, max([len(a.ints) for a in node.attribute if a.name == 'kernel_shape'] + [0])] for node in onnx.load(path).graph.node]
` +
  GRADCAM_REFERENCE_PY +
  `write_gradcam_reference(model, x, [1, 3], ['block'], {'nodes': nodes})
`;

/** Exports the network to `dir`/model.onnx at `opset` and returns PyTorch's values; throws with Python's stderr when it fails. */
export function makeTorchSpatialModel(python: string, dir: string, opset: number): TorchSpatialReference {
  return runTorchScript<TorchSpatialReference>(python, SCRIPT, [dir, String(opset)], dir, `PyTorch export at opset ${opset}`);
}
