#!/usr/bin/env python3
"""Fixtures for ad-memory-bank's coreset exactness test.

Re-implements, in PyTorch, anomalib's `KCenterGreedy.select_coreset_idxs` (anomalib 2.x,
src/anomalib/models/components/sampling/k_center_greedy.py) and its `SparseRandomProjection`
(eps = 0.9, density 1/sqrt(n_features), per-row Binomial non-zero count, sklearn's
sample_without_replacement for the columns, +-sqrt(1/density)/sqrt(n_components) values), on small
seeded inputs, and stores everything the Rust test needs to reproduce the selection:

    crates/ad-memory-bank/tests/fixtures/coreset_<name>.bin, little-endian:
      u32 n, u32 d, u32 d_proj, u32 count, u32 start,
      f32 features[n*d], f32 matrix[d_proj*d], f32 projected[n*d_proj], i64 indices[count]

Run: python3 tools/coreset_fixtures.py   (torch, numpy, scikit-learn)
"""
import os
import struct

import numpy as np
import torch
from sklearn.utils.random import sample_without_replacement

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "ad-memory-bank", "tests", "fixtures")


def jl_min_dim(n_samples, eps):
    denominator = (eps**2 / 2) - (eps**3 / 3)
    return int(4 * np.log(n_samples) / denominator)


def sparse_random_matrix(n_components, n_features):
    density = 1 / np.sqrt(n_features)
    components = torch.zeros((n_components, n_features), dtype=torch.float32)
    for i in range(n_components):
        nnz = int(torch.distributions.Binomial(total_count=n_features, probs=density).sample())
        cols = torch.tensor(sample_without_replacement(n_population=n_features, n_samples=nnz), dtype=torch.long)
        signs = torch.distributions.Binomial(total_count=1, probs=0.5).sample(sample_shape=cols.size()) * 2 - 1
        components[i, cols] = signs
    components *= np.sqrt(1 / density) / np.sqrt(n_components)
    return components


def k_center_greedy(features, coreset_size):
    """anomalib's loop: random start (selected first), L2 via torch.linalg.norm, first argmax."""
    n = features.shape[0]
    idx = torch.randint(high=n, size=(1,)).squeeze()
    start = int(idx)
    selected = torch.empty(coreset_size, dtype=torch.long)
    selected[0] = idx
    min_distances = None
    for i in range(1, coreset_size):
        center = features[idx].squeeze()
        distances = torch.linalg.norm(features - center, ord=2, dim=1, keepdim=True)
        min_distances = distances if min_distances is None else torch.minimum(min_distances, distances)
        _, idx = torch.max(min_distances.squeeze(1), dim=0)
        min_distances.scatter_(0, idx.unsqueeze(0).unsqueeze(1), 0.0)
        selected[i] = idx
    return start, selected


def make_case(name, features, ratio, seed):
    torch.manual_seed(seed)
    np.random.seed(seed)
    n, d = features.shape
    d_proj = jl_min_dim(n, 0.9)
    matrix = sparse_random_matrix(d_proj, d)
    projected = features @ matrix.T.float()
    count = int(n * ratio)
    start, selected = k_center_greedy(projected, count)
    path = os.path.join(OUT, f"coreset_{name}.bin")
    with open(path, "wb") as f:
        f.write(struct.pack("<5I", n, d, d_proj, count, start))
        f.write(features.numpy().astype("<f4").tobytes())
        f.write(matrix.numpy().astype("<f4").tobytes())
        f.write(projected.numpy().astype("<f4").tobytes())
        f.write(selected.numpy().astype("<i8").tobytes())
    print(f"{path}: n={n} d={d} d_proj={d_proj} count={count} start={start} first={selected[:8].tolist()}")


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(1234)
    make_case("gaussian", torch.randn(400, 48, generator=g), 0.1, 7)
    # Clustered, like CNN patch features: 8 blobs on a low-rank subspace plus small noise.
    centres = torch.randn(8, 6, generator=g) * 4
    basis = torch.randn(6, 32, generator=g)
    labels = torch.randint(0, 8, (500,), generator=g)
    x = (centres[labels] + 0.5 * torch.randn(500, 6, generator=g)) @ basis + 0.05 * torch.randn(500, 32, generator=g)
    make_case("clustered", x.float(), 0.1, 11)


if __name__ == "__main__":
    main()
