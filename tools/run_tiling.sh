#!/usr/bin/env bash
# Tiling (docs/results.md, "## Tiling"): PatchCore on MVTec AD bottle at 512 px (the stored
# images' size) and on a PIPED class upsampled from 128 to 512 px: single pass at 256 and 512,
# tiled with 256 px tiles (no overlap, 32 px overlap), and the tiled ensemble. Every model is
# fitted on all good training images (--threshold none), one `ad run` process each (peak MiB is
# the process's). Needs ../shared/datasets (or pass another root as $1). Writes out/tiling/.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/datasets}
piped_class=${2:-PA_BRG03_TL}
cargo build --release -p ad-cli
ad=target/release/ad
run() { # name data category flags...
  local name=$1 root=$2 cat=$3; shift 3
  $ad run --quiet --model patchcore --threshold none --data "$root" --category "$cat" \
      --out "out/tiling/$name" --overlays 2 "$@" > /dev/null
}
uptime
for target in "bottle:$data/mvtec_ad:bottle" "piped:$data/piped:$piped_class"; do
  IFS=: read -r name root cat <<< "$target"
  run "${name}_single256" "$root" "$cat"
  run "${name}_single512" "$root" "$cat" --image-size 512
  run "${name}_tiled512" "$root" "$cat" --image-size 512 --tile 256
  run "${name}_tiled512_overlap" "$root" "$cat" --image-size 512 --tile 256 --tile-stride 224
  run "${name}_ensemble512" "$root" "$cat" --image-size 512 --tile 256 --tile-ensemble
done
uptime
args=()
for name in bottle piped; do
  for v in single256 single512 tiled512 tiled512_overlap ensemble512; do
    args+=("${name} ${v}=out/tiling/${name}_${v}")
  done
done
python3 tools/report_table.py "${args[@]}"
