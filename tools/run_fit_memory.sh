#!/usr/bin/env bash
# Peak memory of PatchCore fits against the number of generated 128 px training images
# (docs/performance.md, "## Fitting many images"): the exact greedy coreset vs the streaming
# coreset under a 256 MiB budget, one process per row. No dataset needed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p ad-cli --example fit_memory
ex=target/release/examples/fit_memory
uptime
first=--header
for n in 200 1000 5000; do
  $ex --images $n $first
  first=
  $ex --images $n --budget-mib 256
done
uptime
