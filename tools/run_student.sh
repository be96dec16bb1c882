#!/usr/bin/env bash
# Student vs teacher (docs/results.md, "## Score student"): PatchCore (coreset 0.1) and the
# ScoreStudent that regresses it, on MVTec AD bottle and the 12 PIPED classes, both fitted on
# every good training image (--threshold none), run back to back; then the table with the
# predict-time ratio. Needs ../shared/datasets (or pass another root as $1). Writes out/student/.
#
#     PRESET=accurate tools/run_student.sh   # the Lite1 PatchCore at strides 4 and 8 (the accurate
#                                           # preset until 2026-12-03, the accurate student's teacher)
#                                           # and that student (`--preset accurate`): out/student/*_accurate
#     STUDENT_FLAGS="--synthetic-per-image 3" PRESET=accurate tools/run_student.sh
#                                           # flags for the student's runs only
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/datasets}
cargo build --release -p ad-cli
ad=target/release/ad
preset=${PRESET:-fast}
suffix=""
if [ "$preset" != fast ]; then suffix="_$preset"; fi
uptime
for model in patchcore student; do
  extra=()
  if [ $model = student ]; then read -r -a extra <<< "${STUDENT_FLAGS:-}"; fi
  # The accurate student's teacher is Lite1 at strides 4 and 8, not today's accurate PatchCore.
  if [ $model = patchcore ] && [ "$preset" = accurate ]; then
    extra=(--backbone efficientnet-lite1 --taps blocks.3,blocks.6)
  fi
  $ad run --quiet --model $model --preset "$preset" "${extra[@]}" --threshold none \
      --data "$data/mvtec_ad" --category bottle --out out/student/bottle_$model$suffix --overlays 4
  $ad run --quiet --model $model --preset "$preset" "${extra[@]}" --threshold none \
      --data "$data/piped" --category all --out out/student/piped_$model$suffix --overlays 2
done
uptime
python3 tools/compare_reports.py teacher out/student/bottle_patchcore$suffix out/student/piped_patchcore$suffix \
    -- student out/student/bottle_student$suffix out/student/piped_student$suffix
