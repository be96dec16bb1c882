#!/usr/bin/env python3
"""Markdown ratio table from `cargo bench --bench knn` one-shot lines and `knn_peer.py` lines.

    python3 tools/knn_table.py ours.log peers.log

Lines read: `knn ours <Index>/<row> median_s=S ...` and `knn peer <peer> <row> median_s=S ...`.
Columns: ours (Brute = the default kernel), ours on the gemm kernel and on the full fused scan
when present, each peer and peer / ours (above 1 = ours faster), and our effective GFLOP/s
(2 nq n d / time: the work of a full scan, whatever the kernel skipped). Real-data rows
(`real-bottle-...`) are labelled as such in the first column.
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
                  key=lambda r: (r.startswith("real"),) + tuple(int(x) for x in ROW.search(r).groups()))
    peers = sorted({w for _, w in times if w not in ("Brute", "Gemm", "Fused", "Burn", "Kd")})
    has_gemm = any((r, "Gemm") in times for r in rows)
    has_fused = any((r, "Fused") in times for r in rows)
    head = ["queries", "bank", "d", "k", "ours (ms)", "GFLOP/s"]
    if has_gemm:
        head += ["ours, gemm kernel (ms)", "gemm / fused"]
    if has_fused:
        head += ["ours, full fused scan (ms)", "full scan / ours"]
    for p in peers:
        head += [f"{p} (ms)", f"{p} / ours"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        nq, n, d, k = (int(x) for x in ROW.search(r).groups())
        ours = times[(r, "Brute")]
        data = "real " if r.startswith("real") else ""
        cells = [f"{data}{nq:,}", f"{n:,}", str(d), str(k), f"{ours * 1e3:,.1f}",
                 f"{2 * nq * n * d / ours / 1e9:.0f}"]
        if has_gemm:
            g = times.get((r, "Gemm"))
            cells += [f"{g * 1e3:,.1f}", f"{g / ours:.2f}x"] if g else ["-", "-"]
        if has_fused:
            f = times.get((r, "Fused"))
            cells += [f"{f * 1e3:,.1f}", f"{f / ours:.2f}x"] if f else ["-", "-"]
        for p in peers:
            t = times.get((r, p))
            cells += [f"{t * 1e3:,.1f}", f"**{t / ours:.2f}x**"] if t else ["-", "-"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
