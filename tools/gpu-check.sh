#!/usr/bin/env bash
# wgpu, checked: installs a Vulkan driver when none is present (Mesa's lavapipe, a Vulkan 1.3 on
# the CPU, from Debian's mesa-vulkan-drivers), builds with `--features wgpu` and runs the
# backend-parity tests: PatchCore, PaDiM, CFlow and the score student, flex against the wgpu
# device (`tests/backend_parity.rs`, prints a table), and what PatchCore's and PaDiM's predict
# paths read back from the device (`tests/device_path.rs`).
#
#     tools/gpu-check.sh                          # wgpu-cpu: lavapipe
#     AD_PARITY_DEVICE=wgpu tools/gpu-check.sh    # wgpu's choice of adapter (a GPU first)
#
# Not part of .ci/run: a cold build with --features wgpu takes far longer than today's CI
# (docs/backends.md has the measured times). Output: target/gpu-check/parity.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
device="${AD_PARITY_DEVICE:-wgpu-cpu}"
if ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1; then
    echo "no Vulkan driver: installing mesa-vulkan-drivers (lavapipe)"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q mesa-vulkan-drivers libvulkan1
fi
if command -v vulkaninfo >/dev/null; then
    vulkaninfo --summary 2>/dev/null | grep -E 'deviceName|driverName|apiVersion' || true
fi
out=target/gpu-check
mkdir -p "$out"
export AD_PARITY_DEVICE="$device"
start=$(date +%s)
cargo test --features wgpu --test backend_parity --test device_path --no-run
echo "build: $(( $(date +%s) - start )) s on $(nproc) cores (load: $(cut -d' ' -f1-3 /proc/loadavg))"
cargo test --features wgpu --test backend_parity --test device_path -- --nocapture --test-threads 1 \
    2>&1 | grep -v XDG_RUNTIME_DIR | tee "$out/parity.txt"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
