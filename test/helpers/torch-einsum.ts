/**
 * A tiny PyTorch CNN with torch.einsum in it, made at test time and
 * exported to ONNX (Einsum nodes), with what PyTorch itself computes on it:
 * a channel mixing 'bchw,dc->bdhw' in its own module (`mix`, a Grad-CAM
 * target whose output is an Einsum's), attention over the pixels as
 * 'bqc,dc->bqd', 'bqc,bkc->bqk' and 'bqk,bkc->bqc', the scores' diagonal
 * 'bii->bi', an ellipsis '...hw,w->...h' and an implicit output 'bqc,c'.
 * Seeded; nothing is stored in the repository.
 *
 * Also numpy.einsum (what ONNX's reference implementation runs) on a table
 * of equations over the whole grammar, with seeded inputs, for the op test
 * against numpy, and torch.einsum on the equations numpy refuses.
 */
import { EXPORT_TINY_PY, GRADCAM_REFERENCE_PY, REFERENCE_SCRIPT_HEAD_PY, type TorchGradcamReference, runTorchScript } from './torch-parity.js';

/** What PyTorch computed, for a batch of two 3x16x16 images. */
export interface TorchEinsumReference extends TorchGradcamReference {
  /** Per module, per image, Grad-CAM relu(Σ_c mean(dY/dA_c) · A_c), Y the image's class logit: at `block` (8x8, a ReLU's) and `mix` (8x8, the channel-mixing einsum's). */
  cams: Record<'block' | 'mix', number[][][]>;
  /** The ONNX node types of the export. */
  ops: string[];
  /** The equations of the export's Einsum nodes. */
  equations: string[];
}

export const TORCH_EINSUM_SIDE = 16;

const SCRIPT =
  REFERENCE_SCRIPT_HEAD_PY +
  String.raw`

class Mix(nn.Module):
    def __init__(self, channels, out):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out, channels) * 0.3)

    def forward(self, x):
        return torch.einsum('bchw,dc->bdhw', x, self.weight)

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.mix = Mix(8, 6)
        self.key = nn.Parameter(torch.randn(6, 6) * 0.3)
        self.rows = nn.Parameter(torch.randn(8) * 0.3)
        self.probe = nn.Parameter(torch.randn(6))
        self.head = nn.Linear(6 + 6 + 1 + 64, 5)

    def forward(self, x):
        a = self.block(torch.relu(self.conv1(x)))
        m = self.mix(a)
        tokens = m.flatten(2).transpose(1, 2)
        keys = torch.einsum('bqc,dc->bqd', tokens, self.key)
        scores = torch.einsum('bqc,bkc->bqk', tokens, keys) / 6 ** 0.5
        attended = torch.einsum('bqk,bkc->bqc', scores.softmax(-1), tokens)
        pooled = [
            attended.mean(1),
            torch.einsum('...hw,w->...h', m, self.rows).mean(2),
            torch.einsum('bii->bi', scores).mean(1, keepdim=True),
            torch.einsum('bqc,c', tokens, self.probe),
        ]
        return self.head(torch.cat(pooled, 1))

` +
  EXPORT_TINY_PY +
  String.raw`

exported = onnx.load(path).graph.node
ops = sorted({node.op_type for node in exported})
equations = [attribute.s.decode() for node in exported if node.op_type == 'Einsum' for attribute in node.attribute if attribute.name == 'equation']
` +
  GRADCAM_REFERENCE_PY +
  `write_gradcam_reference(model, x, [2, 4], ['block', 'mix'], {'ops': ops, 'equations': equations})
`;

/** Exports the network to `dir`/model.onnx at `opset` and returns PyTorch's values; throws with Python's stderr when it fails. */
export function makeTorchEinsumModel(python: string, dir: string, opset: number): TorchEinsumReference {
  return runTorchScript<TorchEinsumReference>(python, SCRIPT, [dir, String(opset)], dir, `PyTorch export at opset ${opset}`);
}

/** One equation, its operands and numpy.einsum's or torch.einsum's result (float64, of the float32 operands). */
export interface EinsumCase {
  equation: string;
  operands: { shape: number[]; values: number[] }[];
  shape: number[];
  values: number[];
}

/** Equations over the whole grammar, with the operand shapes each is run on. */
const NUMPY_CASES: [string, number[][]][] = [
  ['ij,jk->ik', [[2, 3], [3, 4]]],
  ['ij,jk', [[2, 3], [3, 4]]],
  ['ii->i', [[3, 3]]],
  ['ii', [[3, 3]]],
  ['iii->i', [[2, 2, 2]]],
  ['iji->ij', [[2, 3, 2]]],
  ['iij,jk->ik', [[3, 3, 2], [2, 4]]],
  [' b c h w , d c -> b d h w ', [[2, 3, 4, 5], [6, 3]]],
  ['bchw,bchw->bchw', [[2, 3, 4, 5], [2, 3, 4, 5]]],
  ['bchw,c->bchw', [[2, 3, 4, 5], [3]]],
  ['bchw,bc->bhw', [[2, 3, 4, 5], [2, 3]]],
  ['nchw,nkhw->nck', [[2, 3, 4, 5], [2, 2, 4, 5]]],
  ['abcd->dcba', [[2, 3, 4, 5]]],
  ['bhqd,bhkd->bhqk', [[2, 2, 3, 4], [2, 2, 5, 4]]],
  ['BCHW,DC->BDHW', [[1, 3, 2, 2], [2, 3]]],
  ['bqc,bkc->bqk', [[2, 3, 4], [2, 5, 4]]],
  ['bij,bjk->bki', [[1, 2, 3], [4, 3, 2]]],
  ['...ii->...i', [[3, 4, 4]]],
  ['...i,...i->...', [[2, 3], [3]]],
  ['...ij,...jk->...ik', [[2, 1, 3, 4], [5, 4, 2]]],
  ['i...->...i', [[2, 3, 4]]],
  ['ii...->i...', [[2, 2, 3]]],
  ['i...i->i...', [[2, 3, 2]]],
  ['...', [[2, 3]]],
  ['i,i', [[1], [3]]],
  ['ij,jk', [[2, 1], [3, 4]]],
  ['ij,ij->', [[2, 3], [2, 1]]],
  ['i,j,k->ijk', [[2], [3], [2]]],
  ['ab,bc,ca->', [[2, 3], [3, 4], [4, 2]]],
  ['ijk,ijk,ijk->', [[2, 3, 2], [2, 3, 2], [2, 3, 2]]],
  ['Ab,bA->', [[2, 3], [3, 2]]],
  ['->', [[]]],
  ['i,', [[2], []]],
];

/**
 * Equations that numpy refuses (and ONNX Runtime with it) but PyTorch runs,
 * and exports as they are: an ellipsis whose dims the explicit output
 * leaves out, which PyTorch sums as it sums any letter left out.
 */
const TORCH_CASES: [string, number[][]][] = [
  ['...ij->ij', [[2, 3, 4]]],
  ['...ij->i', [[2, 3, 4, 5]]],
  ['i...->i', [[2, 3, 4]]],
  ['...->', [[2, 3]]],
  ['...ij,...jk->ik', [[2, 3, 4], [2, 4, 5]]],
  ['...ij,jk->ik', [[3, 1, 2, 4], [4, 2]]],
  ['b...c,c->b', [[2, 3, 4, 5], [5]]],
  ['...ij,...j->i', [[2, 3, 4], [4]]],
  ['b...,b...->b', [[2, 3, 4, 5], [2, 1, 4, 1]]],
];

const EINSUM_SCRIPT = String.raw`
import json, sys
import numpy as np

out_dir, cases, reference = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
if reference == 'torch':
    import torch
rng = np.random.default_rng(0)
result = []
for equation, shapes in cases:
    operands = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    wide = [operand.astype(np.float64) for operand in operands]
    value = np.einsum(equation, *wide) if reference == 'numpy' else torch.einsum(equation, *map(torch.from_numpy, wide)).numpy()
    result.append({
        'equation': equation,
        'operands': [{'shape': list(shape), 'values': operand.flatten().tolist()} for shape, operand in zip(shapes, operands)],
        'shape': list(np.shape(value)),
        'values': np.ravel(value).tolist(),
    })
json.dump(result, open(out_dir + '/reference.json', 'w'))
`;

/** numpy.einsum on NUMPY_CASES, writing `dir`/reference.json; throws with Python's stderr when it fails. */
export function numpyEinsumCases(python: string, dir: string): EinsumCase[] {
  return runTorchScript<EinsumCase[]>(python, EINSUM_SCRIPT, [dir, JSON.stringify(NUMPY_CASES), 'numpy'], dir, 'numpy.einsum');
}

/** torch.einsum on TORCH_CASES, as numpyEinsumCases. */
export function torchEinsumCases(python: string, dir: string): EinsumCase[] {
  return runTorchScript<EinsumCase[]>(python, EINSUM_SCRIPT, [dir, JSON.stringify(TORCH_CASES), 'torch'], dir, 'torch.einsum');
}
