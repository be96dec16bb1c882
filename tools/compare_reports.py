#!/usr/bin/env python3
"""Side-by-side table of two sets of `ad run` reports (report.json under each directory,
searched recursively), per category: image/pixel AUROC, AUPRO, predict ms/img of each and the
ratio A/B of predict times (> 1: B is faster). Standard library only.

    python3 tools/compare_reports.py NAME_A DIR... -- NAME_B DIR...
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


def main():
    args = sys.argv[1:]
    split = args.index("--")
    name_a, dirs_a = args[0], args[1:split]
    name_b, dirs_b = args[split + 1], args[split + 2:]
    a, b = rows(dirs_a), rows(dirs_b)
    cats = [c for c in a if c in b]
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}"
    print(f"| category | {name_a} image | {name_b} image | {name_a} pixel | {name_b} pixel "
          f"| {name_a} AUPRO | {name_b} AUPRO | {name_a} ms/img | {name_b} ms/img | ratio |")
    print("|" + " --- |" * 10)
    sums = {k: [0.0, 0.0] for k in ("image_auroc", "pixel_auroc", "aupro")}
    for c in cats:
        ra, rb = a[c], b[c]
        for k in sums:
            sums[k][0] += ra.get(k) or 0.0
            sums[k][1] += rb.get(k) or 0.0
        ta, tb = ra["predict_ms_per_image"], rb["predict_ms_per_image"]
        print(f"| {c} | {pct(ra['image_auroc'])} | {pct(rb['image_auroc'])} "
              f"| {pct(ra.get('pixel_auroc'))} | {pct(rb.get('pixel_auroc'))} "
              f"| {pct(ra.get('aupro'))} | {pct(rb.get('aupro'))} "
              f"| {ta:.1f} | {tb:.1f} | {ta / tb:.2f}x |")
    piped = [c for c in cats if c.startswith("PA_")]
    if piped:
        m = lambda k, i: sum((a if i == 0 else b)[c].get(k) or 0.0 for c in piped) / len(piped)
        ta = sum(a[c]["predict_ms_per_image"] for c in piped) / len(piped)
        tb = sum(b[c]["predict_ms_per_image"] for c in piped) / len(piped)
        print(f"| PIPED mean ({len(piped)}) | {pct(m('image_auroc', 0))} | {pct(m('image_auroc', 1))} "
              f"| {pct(m('pixel_auroc', 0))} | {pct(m('pixel_auroc', 1))} "
              f"| {pct(m('aupro', 0))} | {pct(m('aupro', 1))} | {ta:.1f} | {tb:.1f} | {ta / tb:.2f}x |")


if __name__ == "__main__":
    main()
