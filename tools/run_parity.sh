#!/usr/bin/env bash
# PatchCore against its PyTorch peer on MVTec AD bottle, back to back on the same cores, then the
# ratio table (docs/performance.md, "PatchCore end to end"). Each coreset ratio runs ours, then the
# peer; `REPEATS` pairs per ratio (default 2); the table reports every pair and the median ratio.
#
#     tools/run_parity.sh [DATA_ROOT] [RATIOS...]     # defaults: ../shared/datasets 0.1 0.01
#
# Needs torch (pip install torch) and the Lite0 weights (downloaded by `ad` on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/datasets}
shift || true
ratios=${*:-0.1 0.01}
repeats=${REPEATS:-2}
cargo build --release -p ad-cli
ad=target/release/ad
out=out/parity
mkdir -p $out
for r in $ratios; do
  for i in $(seq 1 "$repeats"); do
    load_ours=$(cut -d' ' -f1 /proc/loadavg)
    $ad run --model patchcore --threshold none --quiet --overlays 0 --data "$data/mvtec_ad" \
        --category bottle --coreset-ratio "$r" --out $out/ours_${r}_$i > /dev/null
    load_peer=$(cut -d' ' -f1 /proc/loadavg)
    python3 benches/peers/patchcore_peer.py --data "$data/mvtec_ad" --category bottle \
        --coreset-ratio "$r" --json $out/peer_${r}_$i.json > /dev/null
    echo "$r $i $load_ours $load_peer" >> $out/pairs.txt.new
  done
done
mv $out/pairs.txt.new $out/pairs.txt
python3 - "$out" <<'PY'
import json, statistics, sys
out = sys.argv[1]
pairs = [l.split() for l in open(f"{out}/pairs.txt")]
print("| coreset | load (ours / peer) | fit s, ours vs PyTorch | fit: PyTorch / ours | predict ms/img, ours vs PyTorch | predict: PyTorch / ours | image AUROC ours / PyTorch | pixel AUROC ours / PyTorch |")
print("|---|---|---|---|---|---|---|---|")
by = {}
for r, i, lo, lp in pairs:
    ours = json.load(open(f"{out}/ours_{r}_{i}/report.json"))["rows"][0]
    peer = json.load(open(f"{out}/peer_{r}_{i}.json"))
    fit = peer["fit_s"] / ours["fit_seconds"]
    pred = peer["predict_ms_per_image"] / ours["predict_ms_per_image"]
    by.setdefault(r, []).append((fit, pred))
    print(f"| {r} | {lo} / {lp} | {ours['fit_seconds']:.2f} vs {peer['fit_s']:.2f} | {fit:.2f}x "
          f"| {ours['predict_ms_per_image']:.1f} vs {peer['predict_ms_per_image']:.1f} | {pred:.2f}x "
          f"| {ours['image_auroc']:.4f} / {peer['image_auroc']:.4f} | {ours['pixel_auroc']:.5f} / {peer['pixel_auroc']:.5f} |")
for r, v in by.items():
    print(f"\ncoreset {r}: median fit ratio {statistics.median(x[0] for x in v):.2f}x, "
          f"median predict ratio {statistics.median(x[1] for x in v):.2f}x (PyTorch time / ours; above 1 = ours faster)")
PY
