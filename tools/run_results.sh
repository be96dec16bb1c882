#!/usr/bin/env bash
# Reruns the PatchCore, threshold and CFlow figures of docs/results.md (MVTec AD bottle, 12 PIPED classes; coreset
# 0.1 and 0.01). Needs ../shared/datasets (or pass another root as $1). Writes out/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/datasets}
cargo build --release -p ad-cli
bin="target/release/ad run --model patchcore"
# The published protocol fits on every good training image: --threshold none (no hold-out).
for ratio in 0.1 0.01; do
  $bin --quiet --threshold none --data "$data/mvtec_ad" --category bottle --coreset-ratio $ratio \
       --out out/results/bottle_$ratio --overlays 8
  $bin --quiet --threshold none --data "$data/piped" --category all --coreset-ratio $ratio \
       --out out/results/piped_$ratio --overlays 4
done
# Pass/fail decisions with the threshold from held-out good images only (docs/results.md).
target/release/ad fit --quiet --data "$data/mvtec_ad" --category bottle --out out/results/bottle_fit/bottle.patchcore
target/release/ad test --quiet out/results/bottle_fit/bottle.patchcore "$data/mvtec_ad/bottle" --out out/results/bottle_fit/test --overlays 0
target/release/ad fit --quiet --model padim --data "$data/mvtec_ad" --category bottle --out out/results/bottle_fit/bottle.padim
target/release/ad test --quiet out/results/bottle_fit/bottle.padim "$data/mvtec_ad/bottle" --out out/results/bottle_fit/test_padim --overlays 0
# CFlow (docs/results.md, "## CFlow"): bottle and the 12 PIPED classes, 5 epochs.
target/release/ad run --quiet --model cflow --epochs 5 --threshold none --data "$data/mvtec_ad" --category bottle --out out/results/cflow_bottle --overlays 8
target/release/ad run --quiet --model cflow --epochs 5 --threshold none --data "$data/piped" --category all --out out/results/cflow_piped --overlays 2
