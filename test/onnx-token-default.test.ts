/**
 * A ViT built as timm builds its blocks (the attention's qkv Linear reads
 * norm1 directly, then reshapes; torchvision's attention transposes
 * first): its default CAM target is the last block's norm1, the module
 * pytorch-grad-cam names for timm's ViT (blocks[-1].norm1), not the qkv
 * Linear after it. Exported by PyTorch at test time; skips without it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useBackend } from '../src/engine/backend.js';
import { loadModel } from '../src/model/load.js';
import { runTorchScript, torchParity } from './helpers/torch-parity.js';

const { python, skipTorch } = torchParity('torch, onnx', 'python3-torch, python3-onnx');

const SCRIPT = String.raw`
import json, sys
import torch, torch.nn as nn
out_dir = sys.argv[1]
torch.manual_seed(0)
class Attn(nn.Module):
    def __init__(s, d, h):
        super().__init__(); s.h=h; s.qkv=nn.Linear(d,3*d); s.proj=nn.Linear(d,d)
    def forward(s, x):
        B,N,C=x.shape
        qkv=s.qkv(x).reshape(B,N,3,s.h,C//s.h).permute(2,0,3,1,4)
        q,k,v=qkv.unbind(0)
        a=(q@k.transpose(-2,-1)*0.5).softmax(-1)
        return s.proj((a@v).transpose(1,2).reshape(B,N,C))
class Block(nn.Module):
    def __init__(s,d):
        super().__init__(); s.norm1=nn.LayerNorm(d); s.attn=Attn(d,2); s.norm2=nn.LayerNorm(d); s.mlp=nn.Sequential(nn.Linear(d,2*d),nn.GELU(),nn.Linear(2*d,d))
    def forward(s,x):
        x=x+s.attn(s.norm1(x)); return x+s.mlp(s.norm2(x))
class ViT(nn.Module):
    def __init__(s,d=16):
        super().__init__(); s.patch_embed=nn.Conv2d(3,d,8,8); s.cls_token=nn.Parameter(torch.zeros(1,1,d)); s.pos=nn.Parameter(torch.randn(1,17,d)*.02)
        s.blocks=nn.Sequential(Block(d),Block(d)); s.norm=nn.LayerNorm(d); s.head=nn.Linear(d,5)
    def forward(s,x):
        x=s.patch_embed(x).flatten(2).transpose(1,2)
        x=torch.cat([s.cls_token.expand(x.shape[0],-1,-1),x],1)+s.pos
        x=s.blocks(x); return s.head(s.norm(x)[:,0])
torch.onnx.export(ViT().eval(), torch.randn(1,3,32,32), out_dir + '/model.onnx', opset_version=17, input_names=['input'], output_names=['logits'])
json.dump({}, open(out_dir + '/reference.json', 'w'))
`;

describe('a timm-style ViT (qkv Linear straight after norm1)', { skip: skipTorch }, () => {
  let folder: string;
  before(async () => {
    await useBackend('cpu');
    folder = await mkdtemp(join(tmpdir(), 'camviz-timm-vit-'));
    runTorchScript<Record<string, never>>(python!, SCRIPT, [folder], folder, 'timm-style ViT export');
  });
  after(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  test("the default CAM target is the last block's norm1, not the qkv Linear that reads it", async () => {
    const model = await loadModel(join(folder, 'model.onnx'), { preprocess: 'none', engine: 'tfjs' });
    try {
      assert.equal(model.meta.targetLayer, 'blocks.1.norm1');
    } finally {
      model.dispose();
    }
  });
});
