#!/usr/bin/env python3
"""Peer of benches/metrics.rs: the same 83 x 256 x 256 maps, timed in scikit-learn and in a
re-implementation of the MVTec AD AU-PRO script (tools/metrics_fixtures.py).

    python3 benches/peers/metrics_peer.py [--repeats 5]

Prints the metric values (to compare with the bench's "values:" line) and one line per
measurement: median and min of the wall times in milliseconds.
"""
import argparse
import os
import sys
import time

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from metrics_fixtures import mvtec_pro_curve, trapezoid_to  # noqa: E402

N, H, W = 83, 256, 256
M = np.uint64


def splitmix(x):
    with np.errstate(over="ignore"):
        z = (x + M(1)) * M(0x9E3779B97F4A7C15)
        z = (z ^ (z >> M(30))) * M(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> M(27))) * M(0x94D049BB133111EB)
        return z ^ (z >> M(31))


def uniform(x):
    return ((splitmix(x) >> M(40)).astype(np.float32) / np.float32(1 << 24)).astype(np.float32)


def data():
    idx = np.arange(N * H * W, dtype=np.uint64)
    masks = np.zeros((N, H, W), dtype=bool)
    rr, cc = np.mgrid[0:H, 0:W]
    for i in range(N):
        if i % 3 == 0:
            continue
        cy, cx = 64 + (i * 37) % 128, 64 + (i * 53) % 128
        ry, rx = 10 + (i % 5) * 6, 12 + (i % 7) * 5
        masks[i] = ((rr - cy) / ry) ** 2 + ((cc - cx) / rx) ** 2 <= 1.0
    u1 = uniform(idx)
    u2 = uniform(idx + M(1 << 40))
    maps = (np.float32(0.7) * u1 + np.where(masks.ravel(), np.float32(0.35) * u2, np.float32(0))).astype(np.float32)
    return maps.reshape(N, H, W), masks


def timed(f, repeats):
    times, value = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        value = f()
        times.append((time.perf_counter() - t) * 1e3)
    return value, float(np.median(times)), float(np.min(times))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    maps, masks = data()
    flat_s, flat_l = maps.ravel(), masks.ravel()

    auroc, med, mn = timed(lambda: roc_auc_score(flat_l, flat_s), args.repeats)
    print(f"sklearn roc_auc_score {N}x{H}x{W}: median {med:.1f} ms, min {mn:.1f} ms (auroc={auroc:.10f})")

    def pro():
        fpr, pr = mvtec_pro_curve(maps, masks)
        return trapezoid_to(fpr, pr, 0.3) / 0.3

    au, med, mn = timed(pro, max(1, args.repeats // 2))
    print(f"mvtec aupro@0.3 {N}x{H}x{W}: median {med:.1f} ms, min {mn:.1f} ms (aupro={au:.10f})")


if __name__ == "__main__":
    main()
