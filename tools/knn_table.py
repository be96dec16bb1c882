#!/usr/bin/env python3
"""Markdown ratio table from `cargo bench --bench knn` one-shot lines and `knn_peer.py` lines.

    python3 tools/knn_table.py ours.log peers.log

Lines read: `knn ours <Index>/<row> median_s=S ...` and `knn peer <peer> <row> median_s=S ...`.
Columns: ours (Brute = the default kernel), ours on the gemm kernel when present, each peer and
peer / ours (above 1 = ours faster), and our GFLOP/s (2 nq n d / time).
"""
import re
import sys

LINE = re.compile(r"knn (ours|peer) (\S+)(?: (\S+))? median_s=([0-9.]+)")
ROW = re.compile(r"q(\d+)-n(\d+)-d(\d+)-k(\d+)")


def read(paths):
    times = {}
    for path in paths:
        for line in open(path):
            m = LINE.search(line)
            if not m:
                continue
            who, a, b, t = m.groups()
            if who == "ours":
                index, row = a.split("/", 1)
                # "Brute@host" (this label) or "Brute" (logs written before the device axis);
                # BurnKnn rows on a device other than flex keep their device.
                index, _, on = index.partition("@")
                if on not in ("", "host", "cpu"):
                    index = f"{index}@{on}"
                times[(row, index)] = float(t)
            else:
                times[(b, a)] = float(t)
    return times


def main():
    times = read(sys.argv[1:])
    rows = sorted({r for r, _ in times if (r, "Brute") in times},
                  key=lambda r: tuple(int(x) for x in ROW.match(r).groups()))
    peers = sorted({w for _, w in times if w not in ("Brute", "Gemm", "Burn", "Kd")})
    has_gemm = any((r, "Gemm") in times for r in rows)
    head = ["queries", "bank", "d", "k", "ours (ms)", "GFLOP/s"]
    if has_gemm:
        head += ["ours, gemm kernel (ms)", "gemm / fused"]
    for p in peers:
        head += [f"{p} (ms)", f"{p} / ours"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        nq, n, d, k = (int(x) for x in ROW.match(r).groups())
        ours = times[(r, "Brute")]
        cells = [f"{nq:,}", f"{n:,}", str(d), str(k), f"{ours * 1e3:,.1f}",
                 f"{2 * nq * n * d / ours / 1e9:.0f}"]
        if has_gemm:
            g = times.get((r, "Gemm"))
            cells += [f"{g * 1e3:,.1f}", f"{g / ours:.2f}x"] if g else ["-", "-"]
        for p in peers:
            t = times.get((r, p))
            cells += [f"{t * 1e3:,.1f}", f"**{t / ours:.2f}x**"] if t else ["-", "-"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
