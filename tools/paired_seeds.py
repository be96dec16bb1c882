#!/usr/bin/env python3
"""Paired comparison of score-student variants over seeds (docs/results.md, "The fast
student's PA_FVN01_TL over eight seeds"): the image AUROC of every seed of every variant, from
the `ad predict` JSON lines `tools/student_seeds.sh` leaves in its output folder
(`<variant>-s<seed>.jsonl`), and for each variant against the first: the mean, the standard
deviation over seeds, the paired difference's mean and standard error, and how many seeds are
within one point of the teacher. Standard library only.

    python3 tools/paired_seeds.py out/student_seeds_spr/PA_FVN01_TL fast-noise0.25 fast-raw-noise0.25
    SEEDS="0 1 2 3 4 5 6 7" TEACHER=91.02 python3 tools/paired_seeds.py DIR BASE VARIANT...

SEEDS (default 0-7) names the seeds; TEACHER (default 91.02, the fast PatchCore's PA_FVN01_TL)
the teacher's AUROC, %. PIXEL=1: the pixel AUROC of `ad test`'s report
(`<variant>-s<seed>.test/report.json`, what `PIXEL=1 tools/student_seeds.sh` writes) instead.
BASE="v0 v1 ...": the first variant's values per seed given here (runs recorded in
docs/results.md on a CPU that trains the same students) instead of read from DIR; BASE_NAME
names them.

    PIXEL=1 TEACHER=98.88 BASE="98.56 97.32 97.58 98.03 97.81 96.83 94.95 98.60" \
        BASE_NAME=accurate-synth12-raw-noise0.25 python3 tools/paired_seeds.py \
        out/student_seeds_spr/PA_BDP01_TL accurate-synth12-raw-noise0.25-cov

Image AUROC only: TEACHER_SCORES=teacher.jsonl (`ad predict` of the teacher on the same
images) computes the teacher's AUROC instead of taking TEACHER, and EXCLUDE="a.png b.png"
leaves those files (by name) out of every AUROC, the teacher's included (e.g. byte-identical
copies, which `ad test` reports). LEVELS=1 (image scores only) adds a second table: every
variant's mean image score of the good and of the defective test images over the seeds, and
their separation (the difference over the good scores' standard deviation).
"""
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_scores import auroc, load  # noqa: E402


EXCLUDED = set(os.environ.get("EXCLUDE", "").split())


def image_auroc(path):
    scores = load(path)
    paths = sorted(p for p in scores if os.path.basename(p) not in EXCLUDED)
    return 100 * auroc([scores[p] for p in paths], ["/good/" not in p for p in paths])


def pixel_auroc(path):
    with open(path) as f:
        return 100 * json.load(f)["rows"][0]["pixel_auroc"]


def main():
    given = os.environ.get("BASE")
    if len(sys.argv) < (2 if given else 3):
        sys.exit(__doc__)
    out, variants = sys.argv[1], sys.argv[2:]
    seeds = [int(s) for s in os.environ.get("SEEDS", "0 1 2 3 4 5 6 7").split()]
    pixel = bool(os.environ.get("PIXEL"))
    if os.environ.get("TEACHER_SCORES") and not pixel:
        teacher = image_auroc(os.environ["TEACHER_SCORES"])
    else:
        teacher = float(os.environ.get("TEACHER", "91.02"))
    if pixel:
        table = {v: [pixel_auroc(f"{out}/{v}-s{s}.test/report.json") for s in seeds]
                 for v in variants}
    else:
        table = {v: [image_auroc(f"{out}/{v}-s{s}.jsonl") for s in seeds] for v in variants}
    if given:
        name = os.environ.get("BASE_NAME", "base (given)")
        table[name] = [float(v) for v in given.split()]
        if len(table[name]) != len(seeds):
            sys.exit(f"BASE has {len(table[name])} values for {len(seeds)} seeds")
        variants = [name] + variants
    base = table[variants[0]]
    kind = "pixel" if pixel else "image"
    print(f"| {kind} AUROC % (teacher {teacher:.2f}) | "
          + " | ".join(f"seed {s}" for s in seeds)
          + " | mean | sd | paired difference +- SE | within the point |")
    print("| --- " * (len(seeds) + 5) + "|")
    for v in variants:
        each = table[v]
        mean = statistics.mean(each)
        sd = statistics.stdev(each) if len(each) > 1 else 0.0
        diff = [a - b for a, b in zip(each, base)]
        if v == variants[0] or len(diff) < 2:
            paired = ""
        else:
            se = statistics.stdev(diff) / len(diff) ** 0.5
            t = statistics.mean(diff) / se if se > 0 else float("inf")
            paired = f"{statistics.mean(diff):+.2f} +- {se:.2f} ({t:+.1f} SE)"
        within = sum(a >= teacher - 1 for a in each)
        cells = " | ".join(f"{a:.2f}" for a in each)
        print(f"| {v} | {cells} | {mean:.2f} | {sd:.2f} | {paired} | {within} of {len(each)} |")

    if os.environ.get("LEVELS") and not pixel:
        print()
        print("| variant | good images' mean score | defective images' mean score "
              "| separation (good sd) |")
        print("| --- | --- | --- | --- |")
        for v in variants:
            if v not in table or given and v == variants[0]:
                continue
            good, bad = [], []
            for s in seeds:
                for p, score in load(f"{out}/{v}-s{s}.jsonl").items():
                    if os.path.basename(p) not in EXCLUDED:
                        (good if "/good/" in p else bad).append(score)
            sd = statistics.stdev(good)
            sep = (statistics.mean(bad) - statistics.mean(good)) / sd
            print(f"| {v} | {statistics.mean(good):.2f} | {statistics.mean(bad):.2f} "
                  f"| {sep:.2f} |")


if __name__ == "__main__":
    main()
