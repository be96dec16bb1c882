#!/usr/bin/env bash
# Reruns every PatchCore figure of docs/results.md (MVTec AD bottle, 12 PIPED classes; coreset
# 0.1 and 0.01). Needs ../shared/datasets (or pass another root as $1). Writes out/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/datasets}
cargo build --release --example mvtec_patchcore
bin=target/release/examples/mvtec_patchcore
for ratio in 0.1 0.01; do
  $bin --quiet --data "$data/mvtec_ad" --category bottle --coreset-ratio $ratio \
       --out out/results/bottle_$ratio --overlays 8
  $bin --quiet --data "$data/piped" --category all --coreset-ratio $ratio \
       --out out/results/piped_$ratio --overlays 4
done
