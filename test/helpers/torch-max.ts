/**
 * A tiny PyTorch network made at test time whose maxima tie, exported to
 * ONNX, with what PyTorch itself computes on it. A nearest upsampling by 2
 * copies every value four times; after it come the max ops PyTorch models
 * export: nn.AdaptiveMaxPool2d(1) and F.max_pool2d (MaxPool; also written
 * as GlobalMaxPool, the same global maximum, in a second file), torch.amax
 * and torch.amin (ReduceMax, ReduceMin) and torch.maximum and torch.minimum
 * against a copy shifted by one column, which ties at every other column
 * (Max, Min). PyTorch routes a max pool's gradient to the first maximum of
 * each window and divides amax's, amin's, maximum's and minimum's among
 * the ties. Seeded; nothing is stored in the repository.
 */
import { EXPORT_TINY_PY, GRADCAM_REFERENCE_PY, REFERENCE_SCRIPT_HEAD_PY, type TorchGradcamReference, runTorchScript } from './torch-parity.js';

/** What PyTorch computed, for a batch of two 3x16x16 images. */
export interface TorchMaxReference extends TorchGradcamReference {
  /** Per image, Grad-CAM at module `block` (8x8, after ReLU): relu(Σ_c mean(dY/dA_c) · A_c), Y the image's class logit. */
  cams: { block: number[][][] };
  /** The ONNX node types of each file written: `model.onnx` as exported, `global.onnx` with the whole-map MaxPool as GlobalMaxPool. */
  ops: { model: string[]; global: string[] };
}

export const TORCH_MAX_SIDE = 16;

const SCRIPT =
  REFERENCE_SCRIPT_HEAD_PY +
  String.raw`

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU())
        # No activation: continuous values, which tie only where the upsampling copies them.
        self.conv2 = nn.Conv2d(8, 4, 1)
        self.global_max = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(4 * 7, 5)

    def forward(self, x):
        a = self.block(torch.relu(self.conv1(x)))
        near = F.interpolate(self.conv2(a), scale_factor=2, mode='nearest')
        # One column to the right (the first repeated): equal to near at every odd column.
        shifted = torch.cat([near[..., :1], near[..., :-1]], 3)
        pooled = [
            self.global_max(near).flatten(1),
            F.max_pool2d(near, 3, stride=2, padding=1).mean((2, 3)),
            F.max_pool2d(near, 2, stride=1, dilation=2).mean((2, 3)),
            torch.amax(near, dim=(2, 3)),
            torch.amin(near, dim=(2, 3)),
            torch.maximum(near, shifted).mean((2, 3)),
            torch.minimum(near, shifted).mean((2, 3)),
        ]
        return self.head(torch.cat(pooled, 1))

` +
  EXPORT_TINY_PY +
  String.raw`

# The same network with AdaptiveMaxPool2d(1) as GlobalMaxPool (what other exporters write for it).
graph = onnx.load(out_dir + '/model.onnx')
for i, node in enumerate(graph.graph.node):
    kernel = [list(a.ints) for a in node.attribute if a.name == 'kernel_shape']
    if node.op_type == 'MaxPool' and kernel == [[16, 16]]:
        graph.graph.node.remove(node)
        graph.graph.node.insert(i, onnx.helper.make_node('GlobalMaxPool', list(node.input), list(node.output), name=node.name))
        break
onnx.checker.check_model(graph)
onnx.save(graph, out_dir + '/global.onnx')

ops = {name: sorted({node.op_type for node in onnx.load(out_dir + '/' + name + '.onnx').graph.node}) for name in ['model', 'global']}
` +
  GRADCAM_REFERENCE_PY +
  `write_gradcam_reference(model, x, [1, 3], ['block'], {'ops': ops})
`;

/** Exports the network to `dir` (model.onnx, global.onnx) and returns PyTorch's values; throws with Python's stderr when it fails. */
export function makeTorchMaxModel(python: string, dir: string, opset: number): TorchMaxReference {
  return runTorchScript<TorchMaxReference>(python, SCRIPT, [dir, String(opset)], dir, `PyTorch export at opset ${opset}`);
}
