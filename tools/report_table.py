#!/usr/bin/env python3
"""One table row per `ad run` output directory (report.json, searched recursively; several
categories are averaged): image/pixel AUROC, AUPRO, fit s, predict ms/img, peak MiB, memory
rows. Standard library only.

    python3 tools/report_table.py "LABEL=DIR" ["LABEL=DIR" ...]
    python3 tools/report_table.py --per-category "LABEL=DIR" ...
    python3 tools/report_table.py --candidates out/presets/NAME ...   (NAME/bottle, NAME/piped)
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


def candidates(dirs):
    """The candidates x test table of docs/results.md ("Presets"): one row per candidate
    directory holding `bottle/` and `piped/` runs."""
    print("| candidate | PIPED image AUROC % | PIPED pixel AUROC % | PIPED AUPRO % | worst PIPED "
          "image AUROC % | PA_BRG03_TL image / AUPRO % | PA_FVN01_TL image / AUPRO % | bottle "
          "image / pixel / AUPRO % | fit s (PIPED mean / bottle) | predict ms/img (PIPED mean / "
          "bottle) | model MiB (bottle) | peak MiB (bottle) |")
    print("|" + " --- |" * 12)
    for d in dirs:
        name = os.path.basename(d.rstrip("/"))
        piped, bottle = rows(os.path.join(d, "piped")), rows(os.path.join(d, "bottle"))
        if not piped or not bottle:
            print(f"| {name} | (missing runs under {d}) |" + " |" * 10)
            continue
        by = {r["category"]: r for r in piped}
        mean = lambda k: sum(r.get(k) or 0.0 for r in piped) / len(piped)
        worst = min(piped, key=lambda r: r["image_auroc"])
        b = bottle[0]
        pct = lambda r, k: f"{100 * (r.get(k) or 0.0):.2f}"
        hard = lambda c: f"{pct(by[c], 'image_auroc')} / {pct(by[c], 'aupro')}" if c in by else "-"
        print(f"| {name} | {100 * mean('image_auroc'):.2f} | {100 * mean('pixel_auroc'):.2f} | "
              f"{100 * mean('aupro'):.2f} | {pct(worst, 'image_auroc')} ({worst['category']}) | "
              f"{hard('PA_BRG03_TL')} | {hard('PA_FVN01_TL')} | {pct(b, 'image_auroc')} / "
              f"{pct(b, 'pixel_auroc')} / {pct(b, 'aupro')} | {mean('fit_seconds'):.1f} / "
              f"{b['fit_seconds']:.1f} | {mean('predict_ms_per_image'):.1f} / "
              f"{b['predict_ms_per_image']:.1f} | {b['extras'].get('model_mb', 0.0):.1f} | "
              f"{b.get('peak_memory_mb') or 0.0:.0f} |")


def main():
    if sys.argv[1:2] == ["--per-category"]:
        return per_category(sys.argv[2:])
    if sys.argv[1:2] == ["--candidates"]:
        return candidates(sys.argv[2:])
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
