#!/usr/bin/env bash
# Presets (docs/results.md, "## Presets"): first the selection protocol on validation splits of
# good training images (examples/select_preset.rs; never reads test images), then every
# candidate's test results and costs with `ad run` (one process each, fitted on all good
# training images, --threshold none) on MVTec AD bottle and the 12 PIPED classes, and the
# candidates x test table (PIPED means, the two hard classes, bottle, costs).
#
#   tools/run_presets.sh [DATA_ROOT] [--test-only] [--only NAME,...]
#
# --test-only skips the protocol; --only runs (and tabulates) only the named candidates; a candidate whose out/presets/<name>/<split>/report.json
# already exists is not run again (delete it to re-run). Needs ../shared/datasets (or another
# root holding mvtec_ad/ and piped/). Writes out/presets/.
set -euo pipefail
cd "$(dirname "$0")/.."
data=../shared/datasets
test_only=0
only=
while [ $# -gt 0 ]; do
  case $1 in
    --test-only) test_only=1 ;;
    --only) only=$2; shift ;;
    *) data=$1 ;;
  esac
  shift
done
mkdir -p out/presets
cargo build --release -p ad-cli
ad=target/release/ad
if [ "$test_only" = 0 ]; then
  cargo build --release -p ad-cli --example select_preset
  uptime
  target/release/examples/select_preset --data "$data" 2> out/presets_validation.log
fi
uptime
# The candidates of examples/select_preset.rs, as `ad run` flags.
declare -A flags=(
  [lite0-256]="--model patchcore"
  [lite1-256]="--model patchcore --backbone efficientnet-lite1"
  [lite2-256]="--model patchcore --backbone efficientnet-lite2"
  [lite0-320]="--model patchcore --image-size 320"
  [lite0-256-s4s8]="--model patchcore --taps blocks.2,blocks.4"
  [lite0-256-s4s8s16]="--model patchcore --taps blocks.2,blocks.4,blocks.10"
  [lite1-256-s4s8]="--model patchcore --backbone efficientnet-lite1 --taps blocks.3,blocks.6"
  [lite0-256-p5]="--config tools/presets/patch5.toml"
  [lite2-320]="--model patchcore --backbone efficientnet-lite2 --image-size 320"
  [ensemble-lite1-s4s8-padim]="--config tools/presets/ensemble_padim.toml"
  [lite1-320]="--model patchcore --backbone efficientnet-lite1 --image-size 320"
  [lite1-256-flips]="--model patchcore --backbone efficientnet-lite1 --augment flips"
  [ensemble-lite1-lite1s4s8-padim]="--config tools/presets/ensemble3.toml"
  [lite0-384]="--model patchcore --image-size 384"
  [lite1-384]="--model patchcore --backbone efficientnet-lite1 --image-size 384"
  # Native resolution: the images' own size (bottle 512 px, PIPED 128 px), below per split.
  [lite0-native]="--model patchcore"
  [lite1-native]="--model patchcore --backbone efficientnet-lite1"
  [ensemble-lite1s4s8-padim-lite1half]="--config tools/presets/ensemble_multires.toml"
  [ensemble-lite1s4s8-lite1half]="--config tools/presets/ensemble_half.toml"
  [ensemble-lite1s4s8-padim-score-lite1half]="--config tools/presets/ensemble_score_half.toml"
  [ensemble-lite1s4s8-score-lite1half]="--config tools/presets/ensemble_score_half_nopadim.toml"
  [ensemble-lite1s4s8-padim-score-lite1-192]="--config tools/presets/ensemble_score_192.toml"
  [ensemble-lite1s4s8-score-lite1-192]="--config tools/presets/ensemble_score_192_nopadim.toml"
  [ensemble-lite1s4s8-padim-score-lite1-256]="--config tools/presets/ensemble_score_256.toml"
  [ensemble-lite1s4s8-score-lite1-256]="--config tools/presets/ensemble_score_256_nopadim.toml"
  [ensemble-lite1s4s8-padim-score-lite1half-cv4]="--config tools/presets/ensemble_score_half_cv4.toml"
  [ensemble-lite1s4s8-score-lite1half-cv4]="--config tools/presets/ensemble_score_half_nopadim_cv4.toml"
  [ensemble-lite1s4s8-padim-score-lite1half-folds4]="--config tools/presets/ensemble_score_half_folds4.toml"
  [ensemble-lite1s4s8-score-lite1-192-folds4]="--config tools/presets/ensemble_score_192_nopadim_folds4.toml"
  [ensemble-lite1s4s8-score-lite1-192-folds4-pixel-padim]="--config tools/presets/ensemble_score_192_pixel_padim_folds4.toml"
  [ensemble-lite1s4s8-score-lite1-192-pixel-padim]="--config tools/presets/ensemble_score_192_pixel_padim.toml"
  [ensemble-lite1s4s8-score-lite1half-pixel-padim]="--config tools/presets/ensemble_score_128_pixel_padim.toml"
  [ensemble-lite0s4s8-score-lite1half-pixel-padim]="--config tools/presets/ensemble_lite0s4s8_score_128_pixel_padim.toml"
  [ensemble-lite0s4s8-padim]="--config tools/presets/ensemble_lite0s4s8_padim.toml"
)
# The images' own side per split, for the *-native candidates.
declare -A native=([bottle]=512 [piped]=128)
names=(lite0-256 lite1-256 lite2-256 lite0-320 lite0-256-s4s8 lite0-256-s4s8s16 lite1-256-s4s8
       lite0-256-p5 lite2-320 ensemble-lite1-s4s8-padim lite1-320 lite1-256-flips
       ensemble-lite1-lite1s4s8-padim lite0-384 lite1-384 lite0-native lite1-native
       ensemble-lite1s4s8-padim-lite1half ensemble-lite1s4s8-lite1half
       ensemble-lite1s4s8-padim-score-lite1half ensemble-lite1s4s8-score-lite1half
       ensemble-lite1s4s8-padim-score-lite1-192 ensemble-lite1s4s8-score-lite1-192
       ensemble-lite1s4s8-padim-score-lite1-256 ensemble-lite1s4s8-score-lite1-256
       ensemble-lite1s4s8-padim-score-lite1half-cv4 ensemble-lite1s4s8-score-lite1half-cv4
       ensemble-lite1s4s8-padim-score-lite1half-folds4 ensemble-lite1s4s8-score-lite1-192-folds4
       ensemble-lite1s4s8-score-lite1-192-folds4-pixel-padim
       ensemble-lite1s4s8-score-lite1-192-pixel-padim ensemble-lite1s4s8-score-lite1half-pixel-padim
       ensemble-lite0s4s8-score-lite1half-pixel-padim ensemble-lite0s4s8-padim)
if [ -n "$only" ]; then
  IFS=, read -r -a names <<< "$only"
fi
for name in "${names[@]}"; do
  for split in bottle piped; do
    out="out/presets/$name/$split"
    if [ -f "$out/report.json" ]; then
      echo "$name $split: $out/report.json exists, not re-run"
      continue
    fi
    if [ "$split" = bottle ]; then
      where=(--data "$data/mvtec_ad" --category bottle)
    else
      where=(--data "$data/piped" --category all)
    fi
    size=()
    if [[ $name == *-native ]]; then
      size=(--image-size "${native[$split]}")
    fi
    echo "$(date -u +%H:%M) $name $split ($(cut -d' ' -f1-3 /proc/loadavg))"
    # shellcheck disable=SC2086
    $ad run --quiet --threshold none "${where[@]}" --out "$out" \
        --overlays 0 ${flags[$name]} "${size[@]}" > /dev/null
  done
done
uptime
python3 tools/report_table.py --candidates "${names[@]/#/out/presets/}"
