#!/usr/bin/env python3
"""Generate the reference fixtures of crates/ad-metrics (run by hand; CI only reads the output).

    python3 tools/metrics_fixtures.py

Writes crates/ad-metrics/tests/fixtures/metrics_cases.json (expected values) and one
little-endian binary file per case:
  binary case: n x f32 scores, then n x u8 labels (0/1)
  pro case:    count*h*w x f32 maps, then count*h*w x u8 masks (0/1)

References: scikit-learn (roc_auc_score, roc_curve, precision_recall_curve,
average_precision_score), anomalib's F1 formula 2pr/(p+r+1e-10) with argmax over the
ascending thresholds, and a re-implementation of the MVTec AD AU-PRO procedure
(scipy.ndimage.label with a 3x3 structure, FPR over all background pixels cast to float32 as the
reference script does, trapezoid with interpolation at the FPR limit, divided by the limit).
"""
import bisect
import json
import os

import numpy as np
import scipy
import sklearn
from scipy.ndimage import label
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "ad-metrics", "tests", "fixtures")
LIMITS = [0.3, 0.05, 1.0]


def f1_max(labels, scores):
    p, r, t = precision_recall_curve(labels, scores)
    f1 = 2 * p * r / (p + r + 1e-10)
    i = int(np.argmax(f1))
    return float(f1[i]), float(t[i])


def mvtec_pro_curve(maps, masks):
    """(fpr, pro) arrays as the MVTec AD evaluation code builds them."""
    structure = np.ones((3, 3), dtype=int)
    n_ok, n_regions = 0, 0
    fp_inc = np.zeros(maps.shape, dtype=np.uint32)
    pro_inc = np.zeros(maps.shape, dtype=np.float64)
    for i, m in enumerate(masks):
        lab, k = label(m, structure)
        n_regions += k
        ok = lab == 0
        n_ok += int(ok.sum())
        fp_inc[i][ok] = 1
        for c in range(1, k + 1):
            region = lab == c
            pro_inc[i][region] = 1.0 / region.sum()
    s = maps.ravel()
    order = np.argsort(s, kind="stable")[::-1]
    s = s[order]
    fprs = np.cumsum(fp_inc.ravel()[order]).astype(np.float32) / np.float32(n_ok)
    fprs = fprs.astype(np.float32)
    pros = np.cumsum(pro_inc.ravel()[order]) / n_regions
    keep = np.append(np.diff(s) != 0, True)
    fprs = np.clip(fprs[keep], None, 1.0)
    pros = np.clip(pros[keep], None, 1.0)
    return np.concatenate(([0.0], fprs, [1.0])), np.concatenate(([0.0], pros, [1.0]))


def trapezoid_to(x, y, x_max):
    x = np.asarray(x)
    y = np.asarray(y)
    correction = 0.0
    if x_max not in x:
        ins = bisect.bisect(x, x_max)
        assert 0 < ins < len(x)
        y_i = y[ins - 1] + (y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1])
        correction = 0.5 * (y_i + y[ins - 1]) * (x_max - x[ins - 1])
    keep = x <= x_max
    x, y = x[keep], y[keep]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction)


def write(name, floats, labels):
    path = os.path.join(OUT, name + ".bin")
    with open(path, "wb") as f:
        f.write(np.asarray(floats, dtype="<f4").tobytes())
        f.write(np.asarray(labels, dtype=np.uint8).tobytes())
    return name + ".bin"


def binary_case(name, scores, labels, curves=False):
    scores = np.asarray(scores, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.uint8)
    s64 = scores.astype(np.float64)
    f1, thr = f1_max(labels, s64)
    case = {
        "name": name,
        "kind": "binary",
        "file": write(name, scores, labels),
        "n": int(len(scores)),
        "auroc": float(roc_auc_score(labels, s64)),
        "f1_max": f1,
        "f1_threshold": thr,
        "average_precision": float(average_precision_score(labels, s64)),
    }
    if curves:
        fpr, tpr, thr_roc = roc_curve(labels, s64, drop_intermediate=True)
        case["roc_drop"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": [None if np.isinf(t) else float(t) for t in thr_roc]}
        fpr, tpr, thr_roc = roc_curve(labels, s64, drop_intermediate=False)
        case["roc_full_len"] = int(len(fpr))
        p, r, t = precision_recall_curve(labels, s64)
        case["pr"] = {"precision": p.tolist(), "recall": r.tolist(), "thresholds": t.tolist()}
    return case


def pro_case(name, maps, masks):
    maps = np.asarray(maps, dtype=np.float32)
    masks = np.asarray(masks, dtype=bool)
    fpr, pro = mvtec_pro_curve(maps.astype(np.float64), masks)
    flat_labels = masks.ravel().astype(np.uint8)
    s64 = maps.ravel().astype(np.float64)
    f1, thr = f1_max(flat_labels, s64)
    return {
        "name": name,
        "kind": "pro",
        "file": write(name, maps.ravel(), flat_labels),
        "dims": list(maps.shape),
        "aupro": {str(l): trapezoid_to(fpr, pro, l) / l for l in LIMITS},
        "pro_curve_len": int(len(fpr)),
        "regions": int(sum(label(m, np.ones((3, 3), dtype=int))[1] for m in masks)),
        "pixel_auroc": float(roc_auc_score(flat_labels, s64)),
        "pixel_f1_max": f1,
        "pixel_f1_threshold": thr,
    }


def blob_masks(rng, count, h, w, blobs):
    masks = np.zeros((count, h, w), dtype=bool)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(count):
        for _ in range(rng.integers(0, blobs + 1)):
            cy, cx = rng.integers(0, h), rng.integers(0, w)
            ry, rx = rng.integers(1, max(2, h // 6)), rng.integers(1, max(2, w // 6))
            masks[i] |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    return masks


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = []

    rng = np.random.default_rng(20261123)
    # seeded random scores, balanced and imbalanced
    lab = rng.random(5000) < 0.3
    cases.append(binary_case("random_gauss", rng.normal(size=5000) + 1.2 * lab, lab))
    lab = rng.random(20000) < 0.02
    cases.append(binary_case("random_imbalanced", rng.normal(size=20000) + 2.0 * lab, lab))
    # heavy ties: 11 distinct values
    lab = rng.random(8000) < 0.4
    cases.append(binary_case("heavy_ties", np.round(rng.random(8000) * 0.7 + 0.3 * lab, 1), lab))
    # only 3 distinct values, all positives tied with some negatives
    lab = rng.random(3000) < 0.1
    cases.append(binary_case("three_levels", rng.integers(0, 3, 3000) + lab.astype(int), lab))
    # negative and zero scores (-0.0 and 0.0 are one tie group), small, with full curves
    lab = rng.random(200) < 0.5
    sc = np.round(rng.normal(size=200) + 0.8 * lab, 1)
    sc[sc == 0] = np.where(rng.random(int((sc == 0).sum())) < 0.5, -0.0, 0.0)
    cases.append(binary_case("small_signed", sc, lab, curves=True))
    # image-level sized: 83 images with ties
    lab = np.arange(83) >= 20
    cases.append(binary_case("images83", np.round(rng.random(83) + 0.5 * lab, 2), lab, curves=True))

    # AUPRO: random smooth maps with elliptic blobs, one map in three fully good
    count, h, w = 6, 48, 64
    masks = blob_masks(rng, count, h, w, 4)
    masks[::3] = False
    maps = rng.normal(size=(count, h, w)) * 0.5 + masks * rng.random((count, 1, 1)) * 2.0
    cases.append(pro_case("pro_random", maps, masks))
    # the same with heavy ties (quantised maps)
    cases.append(pro_case("pro_ties", np.round(maps * 4) / 4, masks))
    # structured: diagonal lines (8-connected only), single pixels, touching borders, a missed blob
    m = np.zeros((3, 16, 20), dtype=bool)
    for k in range(8):
        m[0, 2 + k, 3 + k] = True  # one diagonal region
    m[0, 12:16, 0:3] = True  # touches the border
    m[1, 5, 5] = True
    m[1, 5, 7] = True  # two separate single pixels
    m[1, 0:4, 14:20] = True
    m[2] = False  # a good image
    yy, xx = np.mgrid[0:16, 0:20]
    maps = np.stack([np.exp(-((yy - 6) ** 2 + (xx - 7) ** 2) / 20.0), np.exp(-((yy - 2) ** 2 + (xx - 17) ** 2) / 8.0),
                     0.3 * np.exp(-((yy - 8) ** 2 + (xx - 10) ** 2) / 30.0)])
    maps = maps + 0.05 * rng.random(maps.shape)
    cases.append(pro_case("pro_structured", maps, m))

    meta = {"generator": "tools/metrics_fixtures.py", "sklearn": sklearn.__version__, "scipy": scipy.__version__,
            "numpy": np.__version__, "cases": cases}
    with open(os.path.join(OUT, "metrics_cases.json"), "w") as f:
        json.dump(meta, f, indent=1, allow_nan=False)
    total = sum(os.path.getsize(os.path.join(OUT, x)) for x in os.listdir(OUT))
    print(f"wrote {len(cases)} cases, {total} bytes under {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
