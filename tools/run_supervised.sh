#!/usr/bin/env bash
# Supervised classifier figures of docs/results.md ("## Supervised classifier"): 5-fold
# stratified CV on MVTec AD bottle and the 12 PIPED classes (good + defective pooled), CAM
# overlays, fusion with PatchCore; the recipe's defaults, then Adam at 1e-3. Needs
# ../shared/datasets (or pass another root as $1). Writes out/supervised/.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/datasets}
cargo build --release -p ad-cli
ad=target/release/ad
uptime
$ad supervised --quiet --data "$data/mvtec_ad" --category bottle --fusion patchcore \
    --out out/supervised/bottle --save out/supervised/bottle/model.classifier
$ad supervised --quiet --data "$data/piped" --category all --fusion patchcore --out out/supervised/piped
$ad supervised --quiet --data "$data/mvtec_ad" --category bottle --learning-rate 1e-3 --out out/supervised/bottle_lr1e-3 --overlays 0
$ad supervised --quiet --data "$data/piped" --category all --learning-rate 1e-3 --out out/supervised/piped_lr1e-3 --overlays 0
uptime
# Fine-tuning the last stage (EfficientNet-Lite's 1x1 head convolution) with the dense layer.
$ad supervised --quiet --data "$data/mvtec_ad" --category bottle --fine-tune-last-stage --out out/supervised/bottle_ft --overlays 0
$ad supervised --quiet --data "$data/piped" --category all --fine-tune-last-stage --out out/supervised/piped_ft --overlays 0
$ad supervised --quiet --data "$data/mvtec_ad" --category bottle --fine-tune-last-stage --learning-rate 1e-3 --out out/supervised/bottle_ft_lr1e-3 --overlays 0
$ad supervised --quiet --data "$data/piped" --category all --fine-tune-last-stage --learning-rate 1e-3 --out out/supervised/piped_ft_lr1e-3 --overlays 0
uptime
