#!/usr/bin/env bash
# A generated 4000 x 3000 image: tiled PatchCore (256 px tiles at native resolution) vs a
# single pass over the whole image; fit on 4 good images, then score one defective image in a
# fresh process and compare its peak memory with a 1 GiB budget (docs/performance.md,
# "## Large images"). No dataset needed. Writes out/large/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p ad-cli --example large_image
ex=target/release/examples/large_image
mkdir -p out/large
uptime
$ex fit --model out/large/tiled.tiled
$ex score --model out/large/tiled.tiled
$ex fit --model out/large/single.patchcore --single-pass --budget-mib 4096
$ex score --model out/large/single.patchcore --single-pass --budget-mib 1024 || true
uptime
