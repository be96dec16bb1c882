#!/usr/bin/env python3
"""One table row per `ad run` output directory (report.json, searched recursively; several
categories are averaged): image/pixel AUROC, AUPRO, fit s, predict ms/img, peak MiB, memory
rows. Standard library only.

    python3 tools/report_table.py "LABEL=DIR" ["LABEL=DIR" ...]
"""
import json
import os
import sys


def rows(d):
    """Rows of every report.json under `d`, one per category (a multi-category run writes
    each category's report and a combined one)."""
    out = {}
    for root, _, files in sorted(os.walk(d)):
        if "report.json" in files:
            with open(os.path.join(root, "report.json")) as f:
                for r in json.load(f)["rows"]:
                    out[r["category"]] = r
    return list(out.values())


def per_category(args):
    print("| run | category | image AUROC % | pixel AUROC % | AUPRO % | predict ms/img |")
    print("| --- | --- | --- | --- | --- | --- |")
    for arg in args:
        label, d = arg.split("=", 1)
        for r in sorted(rows(d), key=lambda r: r["category"]):
            print(f"| {label} | {r['category']} | {100 * r['image_auroc']:.2f} | "
                  f"{100 * (r.get('pixel_auroc') or 0):.2f} | {100 * (r.get('aupro') or 0):.2f} | "
                  f"{r['predict_ms_per_image']:.1f} |")


def main():
    if sys.argv[1:2] == ["--per-category"]:
        return per_category(sys.argv[2:])
    print("| run | categories | image AUROC % | pixel AUROC % | AUPRO % | fit s | predict ms/img "
          "| peak MiB | memory rows | model MiB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for arg in sys.argv[1:]:
        label, d = arg.split("=", 1)
        rs = rows(d)
        if not rs:
            print(f"| {label} | (no report under {d}) | | | | | | | | |")
            continue
        mean = lambda k: sum(r.get(k) or 0.0 for r in rs) / len(rs)
        peak = max(r.get("peak_memory_mb") or 0.0 for r in rs)
        mem = sum(r["extras"].get("memory_rows", 0.0) for r in rs) / len(rs)
        mib = sum(r["extras"].get("model_mb", 0.0) for r in rs) / len(rs)
        print(f"| {label} | {len(rs)} | {100 * mean('image_auroc'):.2f} | "
              f"{100 * mean('pixel_auroc'):.2f} | {100 * mean('aupro'):.2f} | "
              f"{mean('fit_seconds'):.1f} | {mean('predict_ms_per_image'):.1f} | {peak:.0f} | "
              f"{mem:.0f} | {mib:.1f} |")


if __name__ == "__main__":
    main()
