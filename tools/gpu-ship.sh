#!/usr/bin/env bash
# Prepares what a lent GPU machine needs (it has no Rust toolchain and no network; about
# 64 MiB of files travel with each call): a stripped `--features wgpu` release build of `ad`,
# gzipped, and the EfficientNet-Lite0 weights, under ship/ (git-ignored); the Vulkan loaders
# under .gl/ and the peer's model code under .whl/. Then, on the device tool, with
# `carry: ["ship", ".gl", ".whl"]`: `bash tools/gpu-machine.sh` (then, if device time is left,
# tools/gpu-timing.sh and tools/gpu-predict-sweep.sh; docs/backends.md "On a real GPU").
#
#     tools/gpu-ship.sh            # ~37 CPU-minutes from a cold target/ship
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target/ship}"
CARGO_TARGET_DIR="$target" CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=true \
    cargo build --release --features wgpu -p ad-cli --bin ad
weights="${AD_WEIGHTS_DIR:-$HOME/.cache/anomaly-detection/weights}/efficientnet-lite0-57934424.pth"
if [ ! -f "$weights" ]; then
    echo "missing $weights: run any pretrained model once (e.g. cargo run --release --example mvtec_patchcore)" >&2
    exit 2
fi
rm -rf ship
mkdir -p ship/weights
gzip -9 -c "$target/release/ad" > ship/ad.gz
cp "$weights" ship/weights/
# The Vulkan/EGL loaders (Debian packages, unpacked there when the machine has none) and the
# PyTorch peer's model code, as the device README describes; both git-ignored.
if [ ! -d .gl ]; then
    mkdir -p .gl /tmp/amd64/partial
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    apt-get $o update -q >/dev/null
    (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
[ -d .whl ] || python3 -m pip download -q --no-deps -d .whl efficientnet_lite_pytorch==0.1.0
du -b ship/* | awk '{ printf "%8.1f MiB  %s\n", $1 / 1048576, $2; t += $1 } END { printf "%8.1f MiB  total (limit 64)\n", t / 1048576 }'
