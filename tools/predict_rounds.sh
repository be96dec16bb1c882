#!/usr/bin/env bash
# Predict time of saved models measured in turn: each round runs `ad test` once per model, in
# the order given, so a host that slows down mid-run slows every model of a round alike (used
# for the score students' ratios in docs/results.md). Prints one line per round, ms per image
# (report.json rows[0].predict_ms_per_image), with /proc/stat's cpu line (its 8th field is the
# host's steal) and the load average before and after. `ADS="BIN1 BIN2"` runs each model with
# each binary in turn (two builds compared in the same rounds; default target/release/ad).
#
#     tools/predict_rounds.sh ROUNDS DATA CATEGORY MODEL...
#     tools/predict_rounds.sh 4 ../shared/datasets/piped PA_GLA01_TL \
#         out/student/piped_patchcore_accurate/PA_GLA01_TL/model.patchcore \
#         out/student/piped_student_accurate/PA_GLA01_TL/model.student
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 4 ]; then
  sed -n 2,12p "$0"
  exit 2
fi
rounds=$1 data=$2 category=$3
shift 3
read -r -a ads <<< "${ADS:-target/release/ad}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
grep -E "^cpu " /proc/stat
uptime
for i in $(seq 1 "$rounds"); do
  line="round $i:"
  for model in "$@"; do
    for ad in "${ads[@]}"; do
      $ad test -q "$model" --data "$data" --category "$category" --out "$out" --overlays 0 >/dev/null
      line="$line $(python3 -c "import json, sys; r = json.load(open(sys.argv[1])); print(round(r['rows'][0]['predict_ms_per_image'], 1))" "$out/report.json")"
    done
  done
  echo "$line"
done
grep -E "^cpu " /proc/stat
uptime
