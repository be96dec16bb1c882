#!/usr/bin/env bash
# Presets (docs/results.md, "## Presets"): first the selection protocol on validation splits of
# good training images (examples/select_preset.rs; never reads test images), then every
# candidate's test results and costs with `ad run` (one process each, fitted on all good
# training images, --threshold none) on MVTec AD bottle and the 12 PIPED classes.
# Needs ../shared/datasets (or pass another root as $1). Writes out/presets/.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/datasets}
cargo build --release -p ad-cli --example select_preset
cargo build --release -p ad-cli
ad=target/release/ad
uptime
target/release/examples/select_preset --data "$data" 2> out/presets_validation.log
uptime
declare -A flags=(
  [lite0-256]=""
  [lite1-256]="--backbone efficientnet-lite1"
  [lite2-256]="--backbone efficientnet-lite2"
  [lite0-320]="--image-size 320"
  [lite0-256-s4s8]="--taps blocks.2,blocks.4"
  [lite0-256-p5]="--config tools/presets/patch5.toml"
  [lite2-320]="--backbone efficientnet-lite2 --image-size 320"
)
args=()
for name in lite0-256 lite1-256 lite2-256 lite0-320 lite0-256-s4s8 lite0-256-p5 lite2-320; do
  # shellcheck disable=SC2086
  $ad run --quiet --model patchcore --threshold none --data "$data/mvtec_ad" --category bottle \
      --out "out/presets/$name/bottle" --overlays 0 ${flags[$name]} > /dev/null
  # shellcheck disable=SC2086
  $ad run --quiet --model patchcore --threshold none --data "$data/piped" --category all \
      --out "out/presets/$name/piped" --overlays 0 ${flags[$name]} > /dev/null
  args+=("$name bottle=out/presets/$name/bottle" "$name PIPED mean=out/presets/$name/piped")
done
uptime
python3 tools/report_table.py "${args[@]}"
python3 tools/report_table.py --per-category \
    "fast PIPED=out/presets/lite0-256/piped" "accurate PIPED=out/presets/lite0-256-s4s8/piped"
