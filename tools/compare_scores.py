#!/usr/bin/env python3
"""Agreement of two models' image scores on the same images: the JSON lines of `ad predict`
(one `{"path", "score"}` per image) of each; the label is 1 unless the path has a `/good/`
folder. Prints each model's image AUROC, the Pearson correlation of the scores, and the range
of each model's scores on good and defective images. Standard library only.

    ad fit --model patchcore --threshold none --data ../shared/datasets/piped --category PA_FVN01_TL --out /tmp/t.model
    ad fit --model student --threshold none --data ../shared/datasets/piped --category PA_FVN01_TL --out /tmp/s.model
    ad predict /tmp/t.model "../shared/datasets/piped/PA_FVN01_TL/test/*/*.png" > /tmp/t.jsonl   # same for s
    python3 tools/compare_scores.py teacher /tmp/t.jsonl student /tmp/s.jsonl
"""
import json
import sys


def load(path):
    with open(path) as f:
        return {r["path"]: r["score"] for r in map(json.loads, f) if "score" in r}


def auroc(scores, labels):
    """Probability that a defective image outscores a good one (ties count half)."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def pearson(a, b):
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    return cov / (va * vb) ** 0.5


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    (na, fa), (nb, fb) = (sys.argv[1], sys.argv[2]), (sys.argv[3], sys.argv[4])
    a, b = load(fa), load(fb)
    paths = sorted(p for p in a if p in b)
    labels = [0 if "/good/" in p else 1 for p in paths]
    sa, sb = [a[p] for p in paths], [b[p] for p in paths]
    print(f"{len(paths)} images ({sum(labels)} defective)")
    for name, s in ((na, sa), (nb, sb)):
        good = [v for v, y in zip(s, labels) if not y]
        bad = [v for v, y in zip(s, labels) if y]
        print(f"{name}: image AUROC {100 * auroc(s, labels):.2f}; good {min(good):.2f}-{max(good):.2f}, "
              f"defective {min(bad):.2f}-{max(bad):.2f}")
    print(f"correlation of the scores: {pearson(sa, sb):.3f}")


if __name__ == "__main__":
    main()
