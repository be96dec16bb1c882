#!/usr/bin/env bash
# Student vs teacher (docs/results.md, "## Score student"): PatchCore (coreset 0.1) and the
# ScoreStudent that regresses it, on MVTec AD bottle and the 12 PIPED classes, both fitted on
# every good training image (--threshold none), run back to back; then the table with the
# predict-time ratio. Needs ../shared/datasets (or pass another root as $1). Writes out/student/.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/datasets}
cargo build --release -p ad-cli
ad=target/release/ad
uptime
for model in patchcore student; do
  $ad run --quiet --model $model --threshold none --data "$data/mvtec_ad" --category bottle \
      --out out/student/bottle_$model --overlays 4
  $ad run --quiet --model $model --threshold none --data "$data/piped" --category all \
      --out out/student/piped_$model --overlays 2
done
uptime
python3 tools/compare_reports.py teacher out/student/bottle_patchcore out/student/piped_patchcore \
    -- student out/student/bottle_student out/student/piped_student
