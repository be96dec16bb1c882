"""Peer for `cargo bench --bench loader`: PIL + numpy loading of a whole MVTec category.

    python3 benches/peers/loader_peer.py [root] [category]

Each image: PIL open, convert("RGB"), resize((256, 256), BILINEAR), scale to [0, 1], ImageNet
normalise, HWC -> CHW float32; masks are not counted (the Rust bench does not load them for good
images either, and loads them for defective test images, so this peer is slightly favoured).
Reported: one process (a plain loop) and a 2-process pool (torch DataLoader with 2 workers does
the same). Median of 5 runs, images/s.
"""
import pathlib
import statistics
import sys
import time
from multiprocessing import Pool

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def load(path):
    img = Image.open(path).convert("RGB").resize((256, 256), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return ((arr - MEAN) / STD).transpose(2, 0, 1).copy()


def main():
    here = pathlib.Path(__file__).resolve().parents[2]
    root = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else here.parent / "shared/datasets/mvtec_ad"
    cat = sys.argv[2] if len(sys.argv) > 2 else "bottle"
    files = sorted((root / cat / "train").rglob("*.png")) + sorted((root / cat / "test").rglob("*.png"))
    print(f"{len(files)} images from {root / cat}")
    for name, workers in [("PIL+numpy, 1 process", 1), ("PIL+numpy, 2 processes", 2)]:
        times = []
        for _ in range(5):
            t = time.perf_counter()
            if workers == 1:
                out = [load(f) for f in files]
            else:
                with Pool(workers) as pool:
                    out = pool.map(load, files, chunksize=8)
            times.append(time.perf_counter() - t)
            assert len(out) == len(files)
        med = statistics.median(times)
        print(f"{name}: median {med:.3f} s, {len(files) / med:.1f} images/s")


if __name__ == "__main__":
    main()
