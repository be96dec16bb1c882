#!/usr/bin/env bash
# Streaming coreset quality (docs/results.md, "## Streaming coreset"): PatchCore with the exact
# greedy coreset against the streaming coreset under a small budget (several chunks: 32 MiB on
# bottle's 164k patch features of 178 MiB working set, 8 MiB on each PIPED class's 25k), both
# fitted on every good training image (--threshold none). Needs ../shared/datasets (or pass
# another root as $1). Writes out/streaming/.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/datasets}
cargo build --release -p ad-cli
ad=target/release/ad
uptime
$ad run --quiet --model patchcore --threshold none --data "$data/mvtec_ad" --category bottle \
    --out out/streaming/bottle_exact --overlays 0 > /dev/null
$ad run --quiet --model patchcore --threshold none --data "$data/mvtec_ad" --category bottle \
    --out out/streaming/bottle_budget32 --overlays 0 --fit-budget-mib 32 > /dev/null
$ad run --quiet --model patchcore --threshold none --data "$data/piped" --category all \
    --out out/streaming/piped_exact --overlays 0 > /dev/null
$ad run --quiet --model patchcore --threshold none --data "$data/piped" --category all \
    --out out/streaming/piped_budget8 --overlays 0 --fit-budget-mib 8 > /dev/null
uptime
python3 tools/report_table.py "bottle exact greedy=out/streaming/bottle_exact" \
    "bottle streaming 32 MiB=out/streaming/bottle_budget32" \
    "PIPED mean, exact greedy=out/streaming/piped_exact" \
    "PIPED mean, streaming 8 MiB=out/streaming/piped_budget8"
