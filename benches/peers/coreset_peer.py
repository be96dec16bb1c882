#!/usr/bin/env python3
"""Coreset peers for benches/coreset.rs: same shapes, one line per row.

* anomalib's `KCenterGreedy` algorithm (anomalib 2.x k_center_greedy.py, re-implemented faithfully):
  anomalib's SparseRandomProjection (eps 0.9), random start selected first, per step
  `torch.linalg.norm(features - centre, dim=1, keepdim=True)`, `torch.minimum`, `torch.max`, scatter 0.
* The official `ApproximateGreedyCoresetSampler` (amazon-research/patchcore-inspection
  src/patchcore/sampler.py, re-implemented faithfully): untrained `torch.nn.Linear(d, 128, bias=False)`
  projection, 10 random starting points, mean distance to them as the initial anchor distance, then per
  step `_compute_batchwise_differences` (a.a - 2 a.b + b.b, clamp, sqrt), cat and min.

PyTorch CPU with torch.set_num_threads(2). Both loops cost the same at every step (they touch all N
points), so by default a row runs the projection plus `--steps` greedy steps and reports
time = projection + count * (step time); `--full` runs every step instead.

    python3 benches/peers/coreset_peer.py [--quick] [--full] [--steps 200]
"""
import argparse
import time

import numpy as np
import torch

torch.set_num_threads(2)

# (n, d, ratio) as in benches/coreset.rs ROWS / QUICK_ROWS
ROWS = [(164_000, 152, 0.01), (164_000, 152, 0.1), (164_000, 1536, 0.01), (164_000, 1536, 0.1)]
QUICK_ROWS = [(16_400, 152, 0.1), (16_400, 1536, 0.1)]


def jl_min_dim(n_samples, eps):
    return int(4 * np.log(n_samples) / ((eps**2 / 2) - (eps**3 / 3)))


def anomalib_sparse_matrix(n_components, n_features):
    from sklearn.utils.random import sample_without_replacement

    density = 1 / np.sqrt(n_features)
    components = torch.zeros((n_components, n_features), dtype=torch.float32)
    for i in range(n_components):
        nnz = int(torch.distributions.Binomial(total_count=n_features, probs=density).sample())
        cols = torch.tensor(sample_without_replacement(n_population=n_features, n_samples=nnz), dtype=torch.long)
        components[i, cols] = torch.distributions.Binomial(total_count=1, probs=0.5).sample(cols.size()) * 2 - 1
    return components * (np.sqrt(1 / density) / np.sqrt(n_components))


def anomalib_kcenter(embedding, ratio, max_steps):
    """Returns (projection seconds, seconds per greedy step, steps run, coreset size)."""
    t0 = time.perf_counter()
    n, d = embedding.shape
    matrix = anomalib_sparse_matrix(jl_min_dim(n, 0.9), d)
    features = embedding @ matrix.T.float()
    t_proj = time.perf_counter() - t0
    coreset_size = int(n * ratio)
    steps = min(coreset_size - 1, max_steps)
    t1 = time.perf_counter()
    idx = torch.randint(high=n, size=(1,)).squeeze()
    selected = torch.empty(coreset_size, dtype=torch.long)
    selected[0] = idx
    min_distances = None
    for i in range(1, steps + 1):
        distances = torch.linalg.norm(features - features[idx].squeeze(), ord=2, dim=1, keepdim=True)
        min_distances = distances if min_distances is None else torch.minimum(min_distances, distances)
        _, idx = torch.max(min_distances.squeeze(1), dim=0)
        min_distances.scatter_(0, idx.unsqueeze(0).unsqueeze(1), 0.0)
        selected[i] = idx
    return t_proj, (time.perf_counter() - t1) / steps, steps, coreset_size


def batchwise_differences(a, b):
    a_times_a = a.unsqueeze(1).bmm(a.unsqueeze(2)).reshape(-1, 1)
    b_times_b = b.unsqueeze(1).bmm(b.unsqueeze(2)).reshape(1, -1)
    a_times_b = a.mm(b.T)
    return (-2 * a_times_b + a_times_a + b_times_b).clamp(0, None).sqrt()


def official_approximate(embedding, ratio, max_steps):
    t0 = time.perf_counter()
    with torch.no_grad():
        mapper = torch.nn.Linear(embedding.shape[1], 128, bias=False)
        features = mapper(embedding)
    t_proj = time.perf_counter() - t0
    n = len(features)
    num = int(n * ratio)
    steps = min(num, max_steps)
    t1 = time.perf_counter()
    start_points = np.random.choice(n, 10, replace=False).tolist()
    anchor = torch.mean(batchwise_differences(features, features[start_points]), axis=-1).reshape(-1, 1)
    indices = []
    with torch.no_grad():
        for _ in range(steps):
            select_idx = torch.argmax(anchor).item()
            indices.append(select_idx)
            dist = batchwise_differences(features, features[select_idx : select_idx + 1])
            anchor = torch.min(torch.cat([anchor, dist], dim=-1), dim=1).values.reshape(-1, 1)
    return t_proj, (time.perf_counter() - t1) / steps, steps, num


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full", action="store_true", help="run every greedy step (no extrapolation)")
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    for n, d, ratio in QUICK_ROWS if args.quick else ROWS:
        x = torch.randn(n, d)
        max_steps = 1 << 62 if args.full else args.steps
        for name, fn in [("anomalib_kcenter", anomalib_kcenter), ("official_approx", official_approximate)]:
            t_proj, t_step, steps, count = fn(x, ratio, max_steps)
            total = t_proj + t_step * count
            kind = "measured" if steps >= count - 1 else f"extrapolated_from_{steps}_steps"
            print(f"coreset peer {name} n{n}-d{d}-r{ratio} time_s={total:.3f} proj_s={t_proj:.3f} "
                  f"step_ms={1e3 * t_step:.3f} count={count} {kind}", flush=True)


if __name__ == "__main__":
    main()
