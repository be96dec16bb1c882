#!/usr/bin/env python3
"""k-NN peers for benches/knn.rs: faiss IndexFlatL2 and torch.cdist + topk, 2 threads, same rows.

Rows: 784 queries (one image) and 83 x 784 = 65,072 (a test set) against banks of 1,640 / 16,400 /
164,000 vectors, k = 1 and 9, d = 152 and 1536. Gaussian data (exact search cost does not depend on it).
torch.cdist runs per image (chunks of 784 queries) so its distance matrix fits in memory, as PatchCore
inference does. Prints one line per row and peer: median seconds over --runs runs.
Rows above --max-gflop (2 * nq * n * d / 1e9) are skipped and printed as skipped.

    python3 benches/peers/knn_peer.py [--runs 3] [--max-gflop 4000] [--filter q784] [--peers faiss]

Real-data rows (`--real BANK QUERIES`, both raw little-endian f32 [n, 152]): the PatchCore memory bank
that `AD_BENCH_REAL=... cargo bench --bench knn` wrote (a coreset of MVTec bottle's train patches) and
bottle's 65,072 test patches (`tools/bottle_features.py --test`); rows `real-bottle-q{784,65072}-...`,
the same as the bench's.
"""
import argparse
import time

import faiss
import numpy as np
import torch

torch.set_num_threads(2)
faiss.omp_set_num_threads(2)

ROWS = [(nq, n, d, k) for nq in (784, 65_072) for n in (1_640, 16_400, 164_000) for d in (152, 1536) for k in (1, 9)]


def median_time(fn, runs):
    fn_small = fn  # warm-up handled by caller
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn_small()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-gflop", type=float, default=4000.0)
    ap.add_argument("--filter", default="")
    ap.add_argument("--peers", default="faiss,torch", help="comma-separated subset of faiss,torch")
    ap.add_argument("--real", nargs=2, metavar=("BANK", "QUERIES"), help="real-data rows only")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = ROWS
    if args.real:
        real_bank = np.fromfile(args.real[0], dtype="<f4").reshape(-1, 152)
        real_queries = np.fromfile(args.real[1], dtype="<f4").reshape(-1, 152)
        rows = [(nq, real_bank.shape[0], 152, k) for nq in (784, real_queries.shape[0]) for k in (1, 9)]
    for nq, n, d, k in rows:
        name = f"{'real-bottle-' if args.real else ''}q{nq}-n{n}-d{d}-k{k}"
        if args.filter not in name:
            continue
        gflop = 2.0 * nq * n * d / 1e9
        if gflop > args.max_gflop:
            print(f"knn peer skipped {name} gflop={gflop:.0f}", flush=True)
            continue
        runs = 1 if gflop > 500 else args.runs
        if args.real:
            bank, queries = real_bank, np.ascontiguousarray(real_queries[:nq])
        else:
            bank = rng.standard_normal((n, d), dtype=np.float32)
            queries = rng.standard_normal((nq, d), dtype=np.float32)
        if "faiss" in args.peers:
            index = faiss.IndexFlatL2(d)
            index.add(bank)
            index.search(queries[:784], k)  # warm-up
            t = median_time(lambda: index.search(queries, k), runs)
            print(f"knn peer faiss {name} median_s={t:.5f} runs={runs}", flush=True)
        if "torch" not in args.peers:
            continue

        tb = torch.from_numpy(bank)
        tq = torch.from_numpy(queries)

        def torch_search():
            out = []
            for s in range(0, nq, 784):
                dist = torch.cdist(tq[s : s + 784], tb)
                out.append(dist.topk(k, dim=1, largest=False))
            return out

        tq_warm = tq[:784]
        torch.cdist(tq_warm, tb).topk(k, dim=1, largest=False)
        t = median_time(torch_search, runs)
        print(f"knn peer torch_cdist {name} median_s={t:.5f} runs={runs}", flush=True)


if __name__ == "__main__":
    main()
