#!/usr/bin/env python3
"""Side-by-side table of two or more sets of `ad run` reports (report.json under each
directory, searched recursively), per category: image/pixel AUROC, AUPRO and predict ms/img of
each set, and the ratio A/B of the first two sets' predict times (> 1: B is faster); a PIPED
mean row when PA_* categories are present. Standard library only.

    python3 tools/compare_reports.py NAME_A DIR... -- NAME_B DIR... [-- NAME_C DIR...]
"""
import json
import os
import sys


def rows(dirs):
    out = {}
    for d in dirs:
        for root, _, files in os.walk(d):
            if "report.json" in files:
                with open(os.path.join(root, "report.json")) as f:
                    for r in json.load(f)["rows"]:
                        out[r["category"]] = r
    return out


def groups(args):
    """[(name, [dirs])] from NAME DIR... -- NAME DIR... ."""
    out, cur = [], []
    for a in args + ["--"]:
        if a == "--":
            if len(cur) < 2:
                sys.exit("usage: compare_reports.py NAME_A DIR... -- NAME_B DIR... [-- ...]")
            out.append((cur[0], cur[1:]))
            cur = []
        else:
            cur.append(a)
    if len(out) < 2:
        sys.exit("need at least two sets of reports")
    return out


def main():
    sets = [(name, rows(dirs)) for name, dirs in groups(sys.argv[1:])]
    names = [n for n, _ in sets]
    cats = [c for c in sets[0][1] if all(c in r for _, r in sets[1:])]
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}"
    metrics = [("image_auroc", "image"), ("pixel_auroc", "pixel"), ("aupro", "AUPRO")]
    head = [f"{n} {label}" for _, label in metrics for n in names]
    head += [f"{n} ms/img" for n in names] + ["ratio"]
    print("| category | " + " | ".join(head) + " |")
    print("|" + " --- |" * (len(head) + 1))

    def line(label, value):
        cells = [pct(value(r, k)) for k, _ in metrics for _, r in sets]
        times = [value(r, "predict_ms_per_image") for _, r in sets]
        cells += [f"{t:.1f}" for t in times] + [f"{times[0] / times[1]:.2f}x"]
        print(f"| {label} | " + " | ".join(cells) + " |")

    for c in cats:
        line(c, lambda r, k: r[c].get(k))
    piped = [c for c in cats if c.startswith("PA_")]
    if piped:
        line(f"PIPED mean ({len(piped)})",
             lambda r, k: sum(r[c].get(k) or 0.0 for c in piped) / len(piped))


if __name__ == "__main__":
    main()
